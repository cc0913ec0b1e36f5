"""Heatmap head initialisation as Lightning Pose's: Xavier-uniform with gain 0.01, zero bias (also mhcrnn's
single-frame head, which is built from the same layers)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import keyhead


@pytest.mark.parametrize("head", ["heatmap", "mhcrnn"])
def test_upsampling_layers_start_small_like_lightning_pose(head):
    torch.manual_seed(0)
    model = keyhead.create_model(num_keypoints=5, backbone="tiny", head=head, input_size=(64, 64))
    layers = model.head.upsample if head == "heatmap" else model.head.single  # mhcrnn: its single-frame head
    convs = [m for m in layers.modules() if isinstance(m, nn.ConvTranspose2d | nn.Conv2d)]
    assert convs
    for m in convs:
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
        bound = 0.01 * math.sqrt(6.0 / (fan_in + fan_out))
        assert float(m.weight.abs().max()) <= bound * (1 + 1e-6), (m, float(m.weight.abs().max()), bound)
        assert float(m.weight.abs().max()) > 0.5 * bound  # Xavier-uniform, not zeros
        assert torch.count_nonzero(m.bias) == 0


def test_init_gain_is_an_option():
    torch.manual_seed(0)
    model = keyhead.create_model(
        num_keypoints=5, backbone="tiny", head="heatmap", input_size=(64, 64), head_kwargs={"init_gain": 1.0}
    )
    deconv = next(m for m in model.head.upsample.modules() if isinstance(m, nn.ConvTranspose2d))
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(deconv.weight)
    assert float(deconv.weight.abs().max()) > 0.5 * math.sqrt(6.0 / (fan_in + fan_out))
    with pytest.raises(keyhead.KeyheadError, match="init_gain"):
        keyhead.create_model(num_keypoints=5, backbone="tiny", head="heatmap", head_kwargs={"init_gain": 0})
