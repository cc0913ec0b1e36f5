from __future__ import annotations

import pytest
import torch
from torch import nn

from keyhead.errors import KeyheadError
from keyhead.models.backbones import create_backbone


def test_blocks_halve_resolution_and_use_bn_and_the_chosen_activation():
    bb = create_backbone("simple_cnn", in_channels=1, channels=[8, 16, 32], activation="relu", dropout=0.2)
    assert [(f.channels, f.stride) for f in bb.feature_info] == [(8, 2), (16, 4), (32, 8)]
    assert [tuple(t.shape) for t in bb(torch.rand(2, 1, 64, 64))] == [(2, 8, 32, 32), (2, 16, 16, 16), (2, 32, 8, 8)]
    kinds = {type(m) for m in bb.modules()}
    assert {nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.Dropout2d} <= kinds and nn.ELU not in kinds


def test_out_indices_and_bad_arguments():
    bb = create_backbone("simple_cnn", channels=[8, 16, 32], out_indices=[-1])
    assert [(f.channels, f.stride) for f in bb.feature_info] == [(32, 8)]
    with pytest.raises(KeyheadError, match="no pretrained weights"):
        create_backbone("simple_cnn", pretrained=True)
    with pytest.raises(KeyheadError, match="dropout"):
        create_backbone("simple_cnn", dropout=1.5)
