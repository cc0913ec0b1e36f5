"""The multi-head CRNN head: shapes, windows, views, causal mode, both heads supervised, most-confident decode."""

from __future__ import annotations

import pytest
import torch

from keyhead.errors import KeyheadError
from keyhead.models.model import create_model


def _model(decoder: str = "subpixel_maxima", **head_kwargs):
    torch.manual_seed(0)
    return create_model(
        num_keypoints=4,
        backbone="tiny",
        head="mhcrnn",
        input_size=(64, 64),
        decoder=decoder,
        head_kwargs=head_kwargs,
    )


@pytest.mark.parametrize(
    ("kwargs", "offsets"),
    [({}, [-2, -1, 0, 1, 2]), ({"context": 3}, [-1, 0, 1]), ({"context": 4, "causal": True}, [-3, -2, -1, 0])],
    ids=["lp-5", "window-3", "causal-4"],
)
def test_windows_shapes_and_gradients(kwargs, offsets):
    m = _model(**kwargs)
    assert m.head.frame_offsets() == offsets
    t = len(offsets)
    out = m(torch.rand(2, t, 3, 64, 64))
    assert out.shape == (2, 2, 4, 16, 16)
    out.logsumexp((-2, -1)).sum().backward()
    missing = [n for n, p in m.head.named_parameters() if p.grad is None]
    assert not missing
    kp = m.predict(torch.rand(2, t, 3, 64, 64))
    assert kp.xy.shape == (2, 4, 2) and bool(((kp.confidence >= 0) & (kp.confidence <= 1)).all())


def test_context_grad_off_only_target_frame_reaches_backbone():
    m = _model()
    m.train()
    x = torch.rand(1, 5, 3, 64, 64, requires_grad=True)
    m(x).sum().backward()
    per_frame = x.grad.abs().flatten(2).sum(-1)[0]
    assert per_frame[2] > 0 and torch.all(per_frame[[0, 1, 3, 4]] == 0)
    m2 = _model(context_grad=True)
    m2.train()
    x2 = torch.rand(1, 5, 3, 64, 64, requires_grad=True)
    m2(x2).sum().backward()
    assert torch.all(x2.grad.abs().flatten(2).sum(-1) > 0)


def test_detached_and_full_forward_agree():
    m = _model()
    m.eval()
    x = torch.rand(2, 5, 3, 64, 64)
    with torch.no_grad():
        full = m(x)
    m.head.context_grad = False
    m.train()
    for mod in m.modules():  # batch norm in eval so both paths normalise alike
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.eval()
    assert torch.allclose(m(x), full, atol=1e-5)


def test_causal_ignores_future_frames():
    m = _model(context=3, causal=True).eval()
    x = torch.rand(1, 3, 3, 64, 64)
    with torch.no_grad():
        a = m(x)
        y = x.clone()
        y[:, -1] = torch.rand(3, 64, 64)  # the target (last) frame changes -> output changes
        b = m(y)
    assert not torch.allclose(a, b)


def test_multiview_folds_views_into_batch():
    m = _model(num_views=2).eval()
    x = torch.rand(3, 2, 5, 3, 64, 64)
    with torch.no_grad():
        out = m(x)
    assert out.shape == (3, 2, 4, 16, 16)
    with torch.no_grad():
        single = m(x[:, 1])  # view 1 alone with a 2-keypoint-per-view head gives keypoints 2..3
    assert torch.allclose(out[:, :, 2:], single[:, :, :2], atol=1e-5)


def test_decode_takes_the_more_confident_head():
    m = _model(decoder="calibrated_maxima")  # Lightning Pose's subpixel confidence saturates: ties
    logits = torch.full((1, 2, 4, 16, 16), -10.0)
    logits[0, 0, :, 3, 3] = 10.0  # single-frame head: sharp peak at cell (3, 3)
    logits[0, 1, :, 8, 8] = 2.0  # multi-frame head: a weak peak elsewhere
    logits[0, 1, 0, 8, 8] = 30.0  # ...except keypoint 0, where it is the sharper one
    kp = m.decode(logits)
    assert kp.xy[0, 0].tolist() == pytest.approx([8 * 4 + 1.5, 8 * 4 + 1.5], abs=0.6)
    assert kp.xy[0, 1].tolist() == pytest.approx([3 * 4 + 1.5, 3 * 4 + 1.5], abs=0.6)


def test_bad_settings_are_one_line_errors():
    with pytest.raises(KeyheadError, match="odd"):
        _model(context=4)
    with pytest.raises(KeyheadError, match="upsampling_factor"):
        _model(upsampling_factor=1)
    with pytest.raises(KeyheadError, match="num_views"):
        _model(num_views=3)


def test_tiny_overfit_loss_falls():
    from keyhead.config import RunConfig
    from keyhead.engine.module import KeypointModule

    torch.manual_seed(0)
    m = create_model(num_keypoints=4, backbone="tiny", head="mhcrnn", input_size=(64, 64))
    cfg = RunConfig()
    module = KeypointModule(m, cfg)
    torch.manual_seed(1)
    x = torch.rand(4, 5, 3, 64, 64)
    kp = torch.rand(4, 4, 2) * 50 + 7
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    losses = []
    for _ in range(12):
        loss = module.compute_loss(m(x), kp)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_mhcrnn_suggests_the_calibrated_decoder_and_a_named_decoder_wins():
    from keyhead.models.model import create_model

    m = create_model(num_keypoints=2, backbone="tiny", head="mhcrnn", input_size=(64, 64))
    assert m.codec.decoder_name == "calibrated_maxima"
    plain = create_model(num_keypoints=2, backbone="tiny", head="heatmap", input_size=(64, 64))
    assert plain.codec.decoder_name == "subpixel_maxima"
    named = create_model(
        num_keypoints=2, backbone="tiny", head="mhcrnn", input_size=(64, 64), decoder="subpixel_maxima"
    )
    assert named.codec.decoder_name == "subpixel_maxima"


def test_the_lightning_pose_template_is_lightning_pose_one_setting_away():
    """keyhead's mhcrnn defaults (calibrated head choice, context gradients off, auto context) vs the faithful
    template: numbered neighbours always, gradients through every frame, run_subpixelmaxima's confidence."""
    from keyhead.config import load_config, template_dir
    from keyhead.models.build import model_from_config

    cfg = load_config(template_dir() / "mhcrnn_lightning_pose.yaml", ["model.backbone=tiny", "data.input_size=[64,64]"])
    assert cfg.data.context_frames == "frames"
    model = model_from_config(cfg, ["a", "b"], pretrained=False)
    assert model.head.context_grad and model.head.frame_offsets() == [-2, -1, 0, 1, 2]
    assert model.codec.decoder_name == "subpixel_maxima"
    default = create_model(num_keypoints=2, backbone="tiny", head="mhcrnn", input_size=(64, 64))
    assert not default.head.context_grad and default.codec.decoder_name == "calibrated_maxima"
