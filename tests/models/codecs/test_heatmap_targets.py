"""Heatmap targets: a continuous Gaussian (default) or seed 001's Gaussian-filtered delta on the nearest cell."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

import keyhead
from keyhead.config import load_config, template_dir
from keyhead.models.codecs.heatmap import HeatmapCodec


def test_pixel_targets_are_a_filtered_delta_on_the_nearest_cell():
    codec = HeatmapCodec((32, 40), stride=1, sigma=2.33, target="pixel")
    xy = torch.tensor([[[10.4, 7.6], [0.2, 31.3]]], dtype=torch.float64)
    targets, valid = codec.encode(xy)
    assert valid.all()
    for j, (x, y) in enumerate([(10, 8), (0, 31)]):
        delta = np.zeros((32, 40))
        delta[y, x] = 1.0
        ref = gaussian_filter(delta, 2.33, mode="constant")
        np.testing.assert_allclose(targets[0, j].numpy(), ref / ref.max(), atol=1e-12)


def test_gaussian_targets_stay_sub_pixel_by_default():
    codec = HeatmapCodec((32, 32), stride=1, sigma=2.33)
    t, _ = codec.encode(torch.tensor([[[10.5, 8.0]]], dtype=torch.float64))
    assert t[0, 0, 8, 10] == pytest.approx(t[0, 0, 8, 11])  # centred between two cells
    with pytest.raises(ValueError, match="target"):
        HeatmapCodec((32, 32), stride=1, target="delta")


def test_the_option_reaches_the_model_from_the_config():
    cfg = load_config(template_dir() / "face_unet.yaml", ["model.target=pixel", "data.input_size=[32,32]"])
    assert cfg.model.target == "pixel"
    model = keyhead.create_model(num_keypoints=2, backbone="tiny", head="heatmap", target="pixel", input_size=(64, 64))
    assert model.codec.target == "pixel"
