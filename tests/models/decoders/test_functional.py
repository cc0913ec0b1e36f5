from __future__ import annotations

import pytest
import torch

from keyhead.models.codecs import HeatmapCodec
from keyhead.models.decoders import argmax_subpixel, soft_argmax, subpixel_maxima, window_mass
from keyhead.models.decoders.functional import cells_to_pixels, pixels_to_cells, spatial_softmax


def gaussian_maps(xy_cells: torch.Tensor, h: int, w: int, sigma: float) -> torch.Tensor:
    xs = torch.arange(w, dtype=torch.float64)
    ys = torch.arange(h, dtype=torch.float64)
    gx = torch.exp(-((xs - xy_cells[..., 0:1]) ** 2) / (2 * sigma**2))
    gy = torch.exp(-((ys - xy_cells[..., 1:2]) ** 2) / (2 * sigma**2))
    return gy[..., :, None] * gx[..., None, :]


def test_cells_pixels_round_trip():
    xy = torch.tensor([[[-0.5, 0.0], [17.25, 63.5]]], dtype=torch.float64)
    assert torch.allclose(cells_to_pixels(pixels_to_cells(xy, 4), 4), xy)
    # cell (0, 0) of a stride-4 map covers input pixels 0..3: its centre is 1.5
    assert cells_to_pixels(torch.zeros(1, 1, 2), 4).tolist() == [[[1.5, 1.5]]]


def test_argmax_subpixel_recovers_gaussian_centre_exactly():
    torch.manual_seed(0)
    centres = torch.rand(3, 5, 2, dtype=torch.float64) * 20 + 4  # away from the border
    maps = gaussian_maps(centres, 32, 32, sigma=1.5)
    xy, conf = argmax_subpixel(maps, stride=4.0)
    assert torch.allclose(xy, cells_to_pixels(centres, 4.0), atol=1e-4)  # exact for a Gaussian (log-parabola)
    assert conf.shape == (3, 5) and (conf > 0.5).all()


def test_argmax_without_refinement_is_integer_cell():
    maps = torch.zeros(1, 1, 8, 8)
    maps[0, 0, 2, 6] = 1.0
    xy, conf = argmax_subpixel(maps, stride=1.0)
    assert xy.tolist() == [[[6.0, 2.0]]] and conf.item() == pytest.approx(1.0)


@pytest.mark.parametrize("temperature", [0.05, 0.2], ids=["t0.05", "t0.2"])
def test_soft_argmax_centre_of_symmetric_blob(temperature: float):
    centres = torch.tensor([[[10.3, 7.8]]], dtype=torch.float64)
    logits = gaussian_maps(centres, 24, 24, sigma=2.0).log().clamp_min(-50) * temperature * 10
    xy, _ = soft_argmax(logits, stride=2.0, temperature=temperature)
    assert torch.allclose(xy, cells_to_pixels(centres, 2.0), atol=0.05)


def test_soft_argmax_gradcheck():
    logits = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m: soft_argmax(m, stride=2.0, temperature=0.5)[0], (logits,))


def test_subpixel_maxima_within_tenth_of_a_pixel_and_saturating_confidence():
    centres = torch.tensor([[[20.37, 11.61], [5.5, 40.2]]], dtype=torch.float64)
    logits = gaussian_maps(centres, 64, 64, sigma=1.25).clamp_min(1e-30).log()
    maps = spatial_softmax(logits)
    xy, conf = subpixel_maxima(maps, stride=4.0, upsample_steps=2)
    assert torch.allclose(xy, cells_to_pixels(centres, 4.0), atol=0.1)  # tolerance in input pixels
    assert (conf > 0.9).all()  # the known Lightning Pose behaviour: peaked maps give confidence near 1


def test_window_mass_uniform_and_peak():
    uniform = torch.ones(1, 1, 10, 10)
    assert window_mass(uniform, torch.tensor([[[5, 5]]]), 2).item() == pytest.approx(25 / 100)
    assert window_mass(uniform, torch.tensor([[[0, 0]]]), 2).item() == pytest.approx(9 / 100)


@pytest.mark.parametrize("decoder", ["argmax", "soft_argmax", "subpixel_maxima"])
def test_codec_round_trip(decoder: str):
    codec = HeatmapCodec((128, 96), stride=4, sigma=1.25, activation="softmax", decoder=decoder)
    torch.manual_seed(1)
    xy = torch.rand(2, 6, 2) * torch.tensor([80.0, 110.0]) + 8
    targets, valid = codec.encode(xy)
    assert valid.all() and targets.shape == (2, 6, 32, 24)
    logits = targets.clamp_min(1e-12).log()  # softmax(log t) is the normalised target
    kp = codec.decode(logits)
    tol = {"argmax": 0.01, "soft_argmax": 0.25, "subpixel_maxima": 0.1}[decoder]  # input pixels
    assert (kp.xy - xy).abs().max().item() < tol


def test_codec_marks_missing_and_outside_invalid():
    codec = HeatmapCodec((64, 64), stride=4, sigma=1.0)
    xy = torch.tensor([[[10.0, 10.0], [float("nan"), 3.0], [70.0, 5.0], [-0.5, 63.5]]])
    targets, valid = codec.encode(xy)
    assert valid.tolist() == [[True, False, False, True]]
    assert targets[0, 1].abs().sum() == 0 and targets[0, 2].abs().sum() == 0


@pytest.mark.parametrize("decoder", ["argmax", "subpixel_maxima"])
def test_codec_round_trip_with_cropped_border(decoder: str):
    """A 7x7 unpadded convolution turns a 16x16 stride-4 grid into 10x10 (offset 3): positions must still agree."""
    codec = HeatmapCodec((64, 64), stride=4, sigma=1.0, activation="softmax", decoder=decoder, offset=3)
    xy = torch.tensor([[[20.3, 30.9], [33.0, 40.1]]])
    targets, valid = codec.encode(xy)
    assert targets.shape == (1, 2, 10, 10) and valid.all()
    kp = codec.decode(targets.clamp_min(1e-12).log())
    assert (kp.xy - xy).abs().max().item() < 0.1  # input pixels


def test_local_window_subpixel_maxima_matches_full_map():
    from keyhead.models.codecs import HeatmapCodec
    from keyhead.models.decoders.functional import spatial_softmax, subpixel_maxima

    torch.manual_seed(0)
    codec = HeatmapCodec((128, 128), 4, 1.25, "softmax", "argmax")
    xy = torch.rand(3, 6, 2) * 126
    xy[0, 0] = torch.tensor([0.3, 127.0])  # peaks at the borders too
    t, _ = codec.encode(xy)
    maps = spatial_softmax(torch.log(t * 0.98 + 1e-4) * 2 + torch.randn_like(t) * 0.2)
    full = subpixel_maxima(maps, 4, 2, window=None)
    local = subpixel_maxima(maps, 4, 2, window=5)
    assert torch.allclose(full[0], local[0], atol=0.02)
    assert torch.allclose(full[1], local[1], atol=1e-3)


def test_calibrated_confidence_does_not_saturate_and_ranks_spread():
    from keyhead.models.codecs import HeatmapCodec
    from keyhead.models.decoders.functional import calibrated_maxima, subpixel_maxima

    sharp = HeatmapCodec((64, 64), 4, 1.0, "softmax", "argmax").encode(torch.tensor([[[30.0, 30.0]]]))[0]
    broad = HeatmapCodec((64, 64), 4, 2.5, "softmax", "argmax").encode(torch.tensor([[[30.0, 30.0]]]))[0]
    maps = torch.cat([sharp, broad], 1)
    maps = maps / maps.flatten(2).sum(-1)[..., None, None]
    lp = subpixel_maxima(maps, 4, 2)[1][0]
    cal = calibrated_maxima(maps, 4, 2)[1][0]
    assert lp[0] > 0.999  # Lightning Pose's confidence saturates for a well-localised map
    assert 0.5 < cal[0] < 0.9 and cal[1] < cal[0] - 0.2


def test_entropy_confidence_is_one_for_a_delta_zero_for_uniform_and_ranks_spread_and_second_peaks():
    """``entropy_maxima``: subpixel_maxima's positions; confidence 1 - H(map) / log(cells): a delta 1, a uniform
    map 0, a broad or two-peaked map below a sharp one (a second peak barely moves the 5x5 sharpened mass)."""
    from keyhead.models.codecs import HeatmapCodec
    from keyhead.models.decoders.functional import entropy_maxima, subpixel_maxima

    enc = HeatmapCodec((64, 64), 4, 1.0, "softmax", "argmax").encode
    sharp = enc(torch.tensor([[[30.0, 30.0]]]))[0]
    broad = HeatmapCodec((64, 64), 4, 2.5, "softmax", "argmax").encode(torch.tensor([[[30.0, 30.0]]]))[0]
    second = sharp + 0.6 * enc(torch.tensor([[[10.0, 50.0]]]))[0]
    delta, uniform = torch.zeros_like(sharp), torch.ones_like(sharp)
    delta[..., 7, 7] = 1.0
    maps = torch.cat([sharp, broad, second, delta, uniform], 1)
    maps = maps / maps.flatten(2).sum(-1)[..., None, None]
    xy, conf = entropy_maxima(maps, 4, 2)
    ref_xy, ref_conf = subpixel_maxima(maps, 4, 2)
    assert torch.equal(xy, ref_xy)
    c = conf[0].tolist()
    assert c[3] == pytest.approx(1.0) and c[4] == pytest.approx(0.0, abs=1e-6)
    assert c[0] > c[1] + 0.1 and c[0] > c[2] + 0.05
    assert ref_conf[0, 2] > ref_conf[0, 0] - 0.01  # the window mass does not see the second peak


@pytest.mark.parametrize("decoder", ["subpixel_maxima", "calibrated_maxima", "entropy_maxima"])
@pytest.mark.parametrize("window", [None, 3])
def test_batch_independent_groups_give_the_same_keypoints(decoder: str, window):
    """``batch_groups=False`` (K groups, what ONNX export needs) decodes exactly as the eager B*K grouping."""
    gen = torch.Generator().manual_seed(0)
    maps = spatial_softmax(torch.randn(3, 4, 16, 16, generator=gen) * 3)
    codec = HeatmapCodec((64, 64), 4, decoder=decoder, decoder_kwargs={"window": window})
    eager, static = codec.decode(maps.log(), batch_groups=True), codec.decode(maps.log(), batch_groups=False)
    assert torch.allclose(eager.xy, static.xy, atol=1e-4) and torch.allclose(
        eager.confidence, static.confidence, atol=1e-5
    )


def test_decoders_declare_what_they_take():
    from keyhead.registry import DECODERS

    assert DECODERS.get("soft_argmax").takes_logits and not DECODERS.get("subpixel_maxima").takes_logits
    assert DECODERS.get("subpixel_maxima").pyramid and not DECODERS.get("argmax").pyramid
    for name in ("calibrated_maxima", "entropy_maxima"):  # the same positions, another confidence
        assert DECODERS.get(name).positions_of == "subpixel_maxima"
    assert DECODERS.get("subpixel_maxima").positions_of is None and DECODERS.get("argmax").positions_of is None
    assert HeatmapCodec((64, 64), 4, decoder="argmax").decoder_kwargs == {}  # no pyramid steps for a plain arg-max
