"""A small, fast CNN with random init, for tests and smoke runs (not for accuracy)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor, nn

from keyhead.errors import KeyheadError
from keyhead.models.backbones.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Backbone,
    FeatureInfo,
    channel_stats,
    select_levels,
)
from keyhead.registry import BACKBONES


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


class TinyBackbone(Backbone):
    """Four conv-BN-ReLU stages with feature maps at strides 4, 8, 16, 32 and ``width * (1, 2, 4, 8)`` channels.

    Args:
        in_channels: input channels C.
        width: channels of the first (stride 4) level.
        out_indices: which of the four levels to return (None: all).

    Example:
        >>> import torch
        >>> bb = TinyBackbone(in_channels=1, width=8)
        >>> [(f.channels, f.stride) for f in bb.feature_info]
        [(8, 4), (16, 8), (32, 16), (64, 32)]
        >>> [tuple(t.shape) for t in bb(torch.zeros(2, 1, 64, 64))]
        [(2, 8, 16, 16), (2, 16, 8, 8), (2, 32, 4, 4), (2, 64, 2, 2)]
    """

    def __init__(self, in_channels: int = 3, width: int = 16, out_indices: Sequence[int] | None = None) -> None:
        super().__init__()
        if not isinstance(in_channels, int) or in_channels < 1:
            raise KeyheadError(f"backbone 'tiny': in_channels must be a positive integer, got {in_channels!r}")
        self.in_channels = in_channels
        self.width = width
        self.out_indices = select_levels(4, out_indices, "backbone 'tiny'")
        channels = [width, 2 * width, 4 * width, 8 * width]
        self.stages = nn.ModuleList(
            [nn.Sequential(_conv_bn_relu(in_channels, width, 2), _conv_bn_relu(width, width, 2))]
            + [
                nn.Sequential(_conv_bn_relu(c_in, c_out, 2), _conv_bn_relu(c_out, c_out, 1))
                for c_in, c_out in zip(channels[:-1], channels[1:], strict=False)
            ]
        )
        self.stages = self.stages[: max(self.out_indices) + 1]
        self.feature_info = [FeatureInfo(channels[i], 4 * 2**i) for i in self.out_indices]
        self.mean, self.std = channel_stats(in_channels, IMAGENET_MEAN, IMAGENET_STD)

    def forward(self, x: Tensor) -> list[Tensor]:
        levels = []
        for stage in self.stages:
            x = stage(x)
            levels.append(x)
        return [levels[i] for i in self.out_indices]

    def extra_repr(self) -> str:
        return f"width={self.width}, {super().extra_repr()}"


@BACKBONES.register("tiny")
def create_tiny(
    pretrained: bool | str | Path = False,
    in_channels: int = 3,
    out_indices: Sequence[int] | None = None,
    width: int = 16,
) -> TinyBackbone:
    """The ``tiny`` test backbone; it has no pretrained weights."""
    if pretrained:
        raise KeyheadError("backbone 'tiny' has no pretrained weights; use pretrained=False (or a timm backbone)")
    return TinyBackbone(in_channels=in_channels, width=width, out_indices=out_indices)
