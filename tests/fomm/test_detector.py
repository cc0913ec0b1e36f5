"""The FOMM keypoint detector: vox-256 parameter counts (seed 003), shapes, coordinates, Jacobians, training."""

from __future__ import annotations

import pytest
import torch

import keyhead
from keyhead.errors import KeyheadError
from keyhead.fomm.detector import kp_detector, load_fomm_state_dict
from keyhead.models.backbones import create_backbone
from keyhead.models.backbones.fomm import AntiAliasInterpolation2d, anti_alias_kernel
from keyhead.models.heads.fomm import gaussian2kp, make_coordinate_grid, pixels_to_fomm
from keyhead.models.losses import loss_spec
from keyhead.models.weights import trust_pickle

# Seed 003's hourglass table (vox-256): parameters per down / up block and the whole hourglass.
SEED_DOWN = [1_920, 74_112, 295_680, 1_181_184, 4_721_664]
SEED_UP = [4_720_128, 2_360_064, 590_208, 147_648, 36_960]
SEED_SHAPES_DOWN = [((3, 64, 64), (64, 32, 32)), ((64, 32, 32), (128, 16, 16)), ((128, 16, 16), (256, 8, 8))]


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    return kp_detector().eval()


def test_parameter_counts_match_seed_table(detector):
    hourglass = detector.model.backbone.predictor
    assert [n_params(b) for b in hourglass.encoder.down_blocks] == SEED_DOWN
    assert [n_params(b) for b in hourglass.decoder.up_blocks] == SEED_UP
    assert n_params(hourglass) == sum(SEED_DOWN) + sum(SEED_UP) == 14_129_568
    assert round(n_params(hourglass) / 1e6, 2) == 14.13
    head = detector.model.head
    assert n_params(head.kp) == 35 * 10 * 49 + 10
    assert n_params(head.jacobian) == 35 * 40 * 49 + 40


def test_create_model_is_the_faithful_detector():
    """The brief's create_model call builds the vox-256 detector: 256 -> 64 (35 ch) -> 58x58 logits, offset 3."""
    model = keyhead.create_model(
        num_keypoints=10,
        backbone="fomm_hourglass",
        head="fomm_kp",
        decoder="soft_argmax",
        decoder_kwargs={"temperature": 0.1},
    ).eval()
    x = torch.rand(1, 3, 256, 256)
    with torch.inference_mode():
        (features,) = model.features(x)
        logits = model(x)
    assert features.shape == (1, 35, 64, 64)
    assert logits.shape == (1, 10, 58, 58)
    assert model.backbone.feature_info[0].channels == 35 and model.backbone.stride == 4
    assert model.backbone.mean == (0.0, 0.0, 0.0) and model.backbone.std == (1.0, 1.0, 1.0)
    assert model.codec.offset == 3 and model.codec.heatmap_size == (58, 58) and model.codec.stride == 4
    assert model.codec.decoder_kwargs == {"temperature": 0.1} and model.head.temperature == 0.1
    assert n_params(model) == n_params(kp_detector().model)


def test_config_template_builds_the_same_detector():
    from keyhead.config import load_config, template_dir
    from keyhead.models.build import model_from_config

    cfg = load_config(template_dir() / "fomm_kp.yaml")
    model = model_from_config(cfg, [f"kp{i}" for i in range(10)])
    ref = kp_detector().model
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    assert model.codec.offset == 3 and model.codec.decoder_kwargs["temperature"] == model.head.temperature == 0.1


def test_anti_alias_kernel_and_subsampling():
    kernel, sigma = anti_alias_kernel(0.25)
    assert sigma == 1.5 and kernel.shape == (13, 13)
    assert torch.isclose(kernel.sum(), torch.tensor(1.0)) and torch.equal(kernel, kernel.T)
    assert kernel.argmax() == 6 * 13 + 6
    down = AntiAliasInterpolation2d(3, 0.25)
    assert (down.ka, down.kb, down.int_inv_scale) == (6, 6, 4)
    out = down(torch.ones(1, 3, 256, 256))
    assert out.shape == (1, 3, 64, 64)
    # interior of a constant image stays constant; FOMM pads with zeros, so the border darkens
    assert torch.allclose(out[..., 2:-2, 2:-2], torch.ones(1, 3, 60, 60), atol=1e-5)
    assert out[0, 0, 0, 0] < 0.6
    # every 4th pixel of the blurred image, starting at pixel 0
    x = torch.rand(1, 1, 32, 32)
    blurred = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (6, 6, 6, 6)), kernel[None, None])
    assert torch.allclose(AntiAliasInterpolation2d(1, 0.25)(x), blurred[..., ::4, ::4], atol=1e-6)


@pytest.mark.parametrize("single", [False, True], ids=["per_keypoint_maps", "single_map"])
def test_jacobian_is_identity_at_init(single: bool):
    torch.manual_seed(0)
    det = kp_detector(num_kp=4, single_jacobian_map=single, block_expansion=8, max_features=64).eval()
    head = det.model.head
    assert head.jacobian.out_channels == 4 * (1 if single else 4)
    assert torch.equal(head.jacobian.weight, torch.zeros_like(head.jacobian.weight))
    with torch.inference_mode():
        out = det(torch.rand(2, 3, 256, 256))
    assert out["jacobian"].shape == (2, 4, 2, 2)
    assert torch.allclose(out["jacobian"], torch.eye(2).expand(2, 4, 2, 2), atol=1e-5)


def test_jacobian_pools_each_keypoints_own_map():
    from keyhead.models.heads.fomm import pool_jacobians

    heatmap = torch.zeros(1, 2, 3, 3)
    heatmap[0, 0, 0, 0] = heatmap[0, 1, 2, 2] = 1.0
    maps = torch.zeros(1, 8, 3, 3)
    maps[0, 0:4, 0, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    maps[0, 4:8, 2, 2] = torch.tensor([5.0, 6.0, 7.0, 8.0])
    assert pool_jacobians(heatmap, maps).tolist() == [[[[1, 2], [3, 4]], [[5, 6], [7, 8]]]]


@pytest.mark.parametrize("cell", [(0, 0), (57, 0), (20, 41), (57, 57)], ids=lambda c: f"u{c[0]}v{c[1]}")
def test_gaussian2kp_of_one_hot_is_the_grid_position(cell):
    u, v = cell
    heatmap = torch.zeros(1, 1, 58, 58)
    heatmap[0, 0, v, u] = 1.0
    value = gaussian2kp(heatmap)[0, 0]
    assert torch.allclose(value, torch.tensor([2 * u / 57 - 1, 2 * v / 57 - 1]), atol=1e-6)
    assert torch.equal(value, make_coordinate_grid(58, 58)[v, u])


@pytest.mark.parametrize("cell", [(0, 0), (57, 57), (10, 33)], ids=lambda c: f"u{c[0]}v{c[1]}")
def test_keyhead_decode_maps_a_cell_to_its_input_pixel(detector, cell):
    """Cell (u, v) of the 58x58 map lies at input pixel ((u + 3 + 0.5) * 4 - 0.5, ...) (offset 3, stride 4)."""
    u, v = cell
    logits = torch.zeros(1, 10, 58, 58)
    logits[:, :, v, u] = 50.0
    xy = detector.model.decode(logits).xy[0, 0]
    expected = torch.tensor([(u + 3.5) * 4 - 0.5, (v + 3.5) * 4 - 0.5])
    assert torch.allclose(xy, expected, atol=1e-3)
    value = gaussian2kp(torch.softmax(logits.flatten(2) / 0.1, -1).view_as(logits))
    assert torch.allclose(detector.to_pixels(value)[0, 0], expected, atol=1e-3)


def test_fomm_value_and_keyhead_prediction_agree(detector):
    """gaussian2kp (FOMM, [-1, 1] over the cells) and soft_argmax (keyhead, pixels) are the same expectation."""
    x = torch.rand(2, 3, 256, 256)
    with torch.inference_mode():
        out = detector(x)
        kp = detector.model.predict(x)
    assert torch.allclose(detector.to_pixels(out["value"]), kp.xy, atol=1e-3)
    assert torch.allclose(detector.to_fomm(kp.xy), out["value"], atol=1e-5)
    corners = torch.tensor([[[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]])
    assert detector.to_pixels(corners).tolist() == [[[13.5, 13.5], [241.5, 241.5], [127.5, 127.5]]]
    assert torch.allclose(pixels_to_fomm(detector.to_pixels(corners), (58, 58), 4, 3), corners)


def test_supervised_training_step():
    torch.manual_seed(0)
    model = keyhead.create_model(
        num_keypoints=3,
        backbone="fomm_hourglass",
        head="fomm_kp",
        input_size=(128, 128),
        decoder="soft_argmax",
        decoder_kwargs={"temperature": 0.1},
    ).train()
    x = torch.rand(2, 3, 128, 128)
    xy = torch.tensor([[[40.0, 60.0], [70.0, 30.5], [float("nan"), float("nan")]]]).repeat(2, 1, 1)
    targets, valid = model.codec.encode(xy)
    assert targets.shape == (2, 3, 26, 26) and valid.tolist() == [[True, True, False]] * 2
    loss = loss_spec("kl").fn(model(x), targets, valid)
    loss.backward()
    assert torch.isfinite(loss)
    first_conv = model.backbone.predictor.encoder.down_blocks[0].conv.weight
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0
    assert model.head.kp.weight.grad.abs().sum() > 0


def test_fomm_state_dict_loads(tmp_path):
    """A first-order-model kp_detector state dict (FOMM key names) loads into the detector and the backbone."""
    torch.manual_seed(1)
    src = kp_detector(num_kp=2, block_expansion=8, max_features=32, num_blocks=3).eval()
    fomm_state = {k.split(".", 1)[1]: v for k, v in src.model.state_dict().items()}
    assert {"down.weight", "predictor.encoder.down_blocks.0.conv.weight", "kp.weight", "jacobian.bias"} <= set(
        fomm_state
    )
    path = tmp_path / "vox-cpk.pth.tar"
    torch.save({"kp_detector": fomm_state, "epoch": 3}, path)
    with trust_pickle():  # a torch.save pickle: read (weights_only) only when trusted
        dst = kp_detector(num_kp=2, block_expansion=8, max_features=32, num_blocks=3, weights=path).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        a, b = src(x), dst(x)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with trust_pickle():
        bb = create_backbone("fomm_hourglass", pretrained=path, block_expansion=8, max_features=32, num_blocks=3)
    assert torch.equal(
        bb.predictor.encoder.down_blocks[0].conv.weight, src.model.backbone.predictor.encoder.down_blocks[0].conv.weight
    )
    with pytest.raises(KeyheadError, match="do not fit"):
        load_fomm_state_dict(kp_detector(num_kp=3, block_expansion=8, max_features=32, num_blocks=3).model, fomm_state)


def test_clear_errors():
    with pytest.raises(KeyheadError, match="downsample_factor=2"):
        keyhead.create_model(num_keypoints=2, backbone="fomm_hourglass", head="fomm_kp", downsample_factor=3)
    model = keyhead.create_model(num_keypoints=2, backbone="fomm_hourglass", head="fomm_kp", input_size=(96, 96))
    with pytest.raises(KeyheadError, match="multiple of 128"):
        model(torch.rand(1, 3, 96, 96))
    with pytest.raises(KeyheadError, match="no installed weights"):
        create_backbone("fomm_hourglass", pretrained=True)
