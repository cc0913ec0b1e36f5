from __future__ import annotations

import pytest
import torch
from torch import nn

from keyhead.errors import KeyheadError
from keyhead.models.backbones import create_backbone


def test_seed_001_encoder_levels():
    bb = create_backbone("unet_encoder", in_channels=1)
    assert [(f.channels, f.stride) for f in bb.feature_info] == [(32, 1), (64, 2), (128, 4), (256, 8), (512, 16)]
    kinds = {type(m) for m in bb.modules()}
    assert {nn.BatchNorm2d, nn.ELU, nn.MaxPool2d, nn.Dropout2d} <= kinds
    with torch.no_grad():
        shapes = [tuple(t.shape[1:]) for t in bb(torch.rand(1, 1, 32, 32))]
    assert shapes == [(32, 32, 32), (64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2)]


def test_bad_arguments_are_clear_errors():
    with pytest.raises(KeyheadError, match="no pretrained weights"):
        create_backbone("unet_encoder", pretrained=True)
    with pytest.raises(KeyheadError, match="depth in 1..6"):
        create_backbone("unet_encoder", depth=0)
