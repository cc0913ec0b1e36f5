from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import keyhead
from keyhead.errors import KeyheadError
from keyhead.registry import HEADS


@pytest.mark.parametrize(
    "head,loss", [("heatmap", "heatmap_mse"), ("regression", "smooth_l1")], ids=["heatmap", "regression"]
)
def test_model_contract(head: str, loss: str):
    torch.manual_seed(0)
    model = keyhead.create_model(num_keypoints=5, backbone="tiny", head=head, loss=loss, input_size=(64, 96))
    x = torch.rand(2, 3, 64, 96)
    raw = model(x)
    kp = model.predict(x)
    assert kp.xy.shape == (2, 5, 2) and kp.confidence.shape == (2, 5)
    assert torch.isfinite(kp.xy).all() and ((kp.confidence >= 0) & (kp.confidence <= 1)).all()
    if head == "heatmap":
        assert raw.shape == (2, 5, 16, 24)  # downsample_factor 2 -> stride 4


@pytest.mark.parametrize("d", [0, 1, 2, 3, 4, 5], ids=lambda d: f"d{d}")
def test_heatmap_stride_follows_downsample_factor(d: int):
    model = keyhead.create_model(num_keypoints=3, backbone="tiny", input_size=(64, 64), downsample_factor=d)
    assert model(torch.rand(1, 3, 64, 64)).shape[-1] == 64 // 2**d
    assert model.codec.stride == 2**d


def test_loss_must_match_head_kind():
    with pytest.raises(KeyheadError, match="coordinate loss"):
        keyhead.create_model(num_keypoints=3, backbone="tiny", head="heatmap", loss="smooth_l1", input_size=(64, 64))


def test_unknown_head_did_you_mean():
    with pytest.raises(KeyheadError, match="did you mean 'heatmap'"):
        keyhead.create_model(num_keypoints=3, backbone="tiny", head="heatmapp", input_size=(64, 64))


def test_registry_lists_heads():
    assert {"heatmap", "regression"} <= set(HEADS.names())


def test_tiny_model_learns_a_fixed_point():
    """A few optimisation steps on one image pull the prediction towards the label (the loss is wired right)."""
    torch.manual_seed(0)
    model = keyhead.create_model(num_keypoints=1, backbone="tiny", input_size=(64, 64), loss="kl", decoder="argmax")
    from keyhead.models.losses import loss_spec

    x = torch.rand(1, 3, 64, 64)
    target = torch.tensor([[[40.0, 22.0]]])
    t, valid = model.codec.encode(target)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    fn = loss_spec("kl").fn
    for _ in range(60):
        opt.zero_grad()
        loss = fn(model(x), t, valid)
        loss.backward()
        opt.step()
    model.eval()
    assert (model.predict(x).xy - target).norm() < 3.0  # pixels


def test_frame_offsets_come_from_the_head_declaration():
    single = keyhead.create_model(num_keypoints=2, backbone="tiny", input_size=(64, 64))
    assert single.frame_offsets() == [0] and single.context == 1
    m = keyhead.create_model(num_keypoints=2, backbone="tiny", head="mhcrnn", input_size=(64, 64))
    assert m.frame_offsets() == [-2, -1, 0, 1, 2]
    causal = keyhead.create_model(
        num_keypoints=2, backbone="tiny", head="mhcrnn", input_size=(64, 64), head_kwargs={"causal": True, "context": 3}
    )
    assert causal.frame_offsets() == [-2, -1, 0]


def test_a_head_that_is_not_a_head_subclass_is_refused(monkeypatch):
    from torch import nn

    class Plain(nn.Module):
        output_kind = "heatmap"

    monkeypatch.setitem(HEADS._items, "plain_module", Plain)
    with pytest.raises(KeyheadError, match="Head subclass"):
        keyhead.create_model(num_keypoints=2, backbone="tiny", head="plain_module", input_size=(64, 64))


def test_a_head_must_declare_a_known_output_kind():
    from keyhead.models.heads.base import Head

    with pytest.raises(TypeError, match="output_kind"):

        class Bad(Head):
            output_kind = "segmentation"


OLD_RUN = Path(__file__).resolve().parents[1] / "fixtures" / "old_layout_run"


def test_a_run_folder_written_by_the_old_flat_layout_still_loads_and_predicts_the_same():
    """Nothing a run stores names a module path: a run trained before the layer regrouping loads unchanged."""
    expected = json.loads((OLD_RUN / "expected.json").read_text())
    model, cfg = keyhead.load_run(OLD_RUN)
    torch.manual_seed(0)
    kp = model.predict(torch.rand(2, 3, 64, 64))
    assert torch.allclose(kp.xy, torch.tensor(expected["xy"]), atol=1e-4)
    assert torch.allclose(kp.confidence, torch.tensor(expected["confidence"]), atol=1e-5)
    assert cfg.model.backbone == "tiny" and model.keypoint_names == (OLD_RUN / "keypoints.txt").read_text().split()
