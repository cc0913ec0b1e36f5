from __future__ import annotations

import pytest
import torch

import keyhead
from keyhead.errors import KeyheadError

SMALL = dict(backbone="simple_cnn", head="regression_fc", in_channels=1, input_size=(64, 64))
SMALL_BB = {"channels": [8, 16, 32], "dropout": 0.0}


def _model(**kw):
    torch.manual_seed(0)
    args = dict(SMALL, num_keypoints=3, loss="smooth_l1", backbone_kwargs=SMALL_BB, head_kwargs={"hidden": [32]})
    args.update(kw)
    return keyhead.create_model(**args)


def test_shapes_and_decode(batch):
    model = _model()
    x, _ = batch(n=2)
    raw = model(x)
    assert raw["coords"].shape == (2, 3, 2) and raw["log_scale"].shape == (2, 3)
    assert model.head.map_size == (8, 8)  # 64 / stride 8: the map is flattened, not pooled
    kp = model.predict(x)
    assert kp.xy.shape == (2, 3, 2) and ((kp.confidence > 0) & (kp.confidence <= 1)).all()


@pytest.mark.parametrize("activation", ["elu", "relu"])
def test_activation_is_selectable(activation: str):
    model = _model(backbone_kwargs={**SMALL_BB, "activation": activation})
    acts = {type(m).__name__ for m in model.backbone.modules()}
    assert {"elu": "ELU", "relu": "ReLU"}[activation] in acts
    assert {"elu": "ReLU", "relu": "ELU"}[activation] not in acts


def test_unknown_activation_is_a_clear_error():
    with pytest.raises(KeyheadError, match="activation must be one of elu, relu"):
        _model(backbone_kwargs={**SMALL_BB, "activation": "gelu"})


def test_wrong_input_size_is_a_clear_error():
    with pytest.raises(KeyheadError, match="data.input_size"):
        _model()(torch.rand(1, 1, 96, 96))


def test_gradients_reach_every_parameter(batch, gradients):
    x, xy = batch()
    gradients(_model(), "smooth_l1", x, xy)


@pytest.mark.parametrize("loss", ["smooth_l1", "mse"])
def test_overfits_eight_images(batch, steps, loss: str):
    x, xy = batch()
    model = _model(loss=loss)
    model.head.log_scale = None  # the coordinate loss alone, so the curve is the loss under test
    before = (model.predict(x).xy - xy).norm(dim=-1).mean()
    losses = steps(model, loss, x, xy, steps=60, lr=3e-3)
    after = (model.predict(x).xy - xy).norm(dim=-1).mean()
    assert sum(losses[-5:]) / 5 < 0.3 * sum(losses[:3]) / 3
    assert after < 0.5 * before
