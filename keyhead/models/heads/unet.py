"""Seed 001's U-Net expanding path as a head: up-convolutions with skip connections down to the heatmap stride."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from keyhead.errors import KeyheadError
from keyhead.models.backbones.unet import DoubleConv
from keyhead.models.decoders.functional import log2_int
from keyhead.models.heads.base import Head
from keyhead.registry import HEADS


class UpBlock(nn.Module):
    """ConvTranspose2d(2x2, stride 2) halving the channels, concatenation with the skip map, ``DoubleConv``."""

    def __init__(self, c_in: int, c_skip: int, c_out: int, activation: str, dropout: float) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(c_in, c_in // 2, 2, stride=2)
        self.conv = DoubleConv(c_in // 2 + c_skip, c_out, activation, dropout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.up(x)
        if skip is not None:
            if x.shape[-2:] != skip.shape[-2:]:  # odd sizes upstream: match the skip's grid
                x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = torch.cat((skip, x), dim=1)
        return self.conv(x)


@HEADS.register("unet")
class UNetHead(Head):
    """U-Net decoder from the deepest map back to stride ``2**downsample_factor``, then a 1x1 conv to K heatmaps.

    Every 2x up step concatenates the backbone map of that stride when there is one (the skip connection) and
    outputs its channels; steps below the shallowest map have no skip and halve the channels. On the
    ``unet_encoder`` backbone this is seed 001's U-Net (512 -> 256 -> 128 -> 64 -> 32, heatmaps at full
    resolution with ``downsample_factor: 0``); any other backbone works too (e.g. ResNet levels 2..32).

    Args:
        feature_info: backbone feature maps (channels, stride), shallow to deep.
        num_keypoints: K.
        downsample_factor: heatmap stride is ``2**downsample_factor`` input pixels (0: full resolution).
        activation: ``"elu"`` (seed 001) or ``"relu"``.
        dropout: spatial dropout in every double convolution.

    Shapes:
        features: maps at strides s_i -> logits (B, K, H / 2^d, W / 2^d).
    """

    output_kind = "heatmap"

    def __init__(
        self,
        feature_info: Sequence,
        num_keypoints: int,
        downsample_factor: int = 0,
        activation: str = "elu",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        deep = feature_info[-1]
        target = 2**downsample_factor
        if target > deep.stride:
            raise KeyheadError(
                f"head 'unet': model.downsample_factor={downsample_factor} asks for heatmaps coarser than the "
                f"backbone stride {deep.stride}; use downsample_factor <= {log2_int(deep.stride)}"
            )
        by_stride = {f.stride: i for i, f in enumerate(feature_info)}
        self.num_keypoints = num_keypoints
        self.downsample_factor = downsample_factor
        self.stride = target
        self.skip_index: list[int | None] = []
        blocks = []
        ch, stride = deep.channels, deep.stride
        while stride > target:
            stride //= 2
            skip = by_stride.get(stride)
            c_skip = feature_info[skip].channels if skip is not None else 0
            c_out = c_skip if skip is not None else max(ch // 2, num_keypoints)
            blocks.append(UpBlock(ch, c_skip, c_out, activation, dropout))
            self.skip_index.append(skip)
            ch = c_out
        self.ups = nn.ModuleList(blocks)
        self.out = nn.Conv2d(ch, num_keypoints, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for block, skip in zip(self.ups, self.skip_index, strict=True):
            x = block(x, None if skip is None else features[skip])
        return self.out(x)

    def extra_repr(self) -> str:
        return f"num_keypoints={self.num_keypoints}, downsample_factor={self.downsample_factor}"
