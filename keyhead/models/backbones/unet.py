"""Seed 001's U-Net encoder: a double convolution at full resolution, then 4 down modules (32 -> 512 channels).

Its five feature maps (strides 1, 2, 4, 8, 16) feed the ``unet`` head's up path through skip connections.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor, nn

from keyhead.errors import KeyheadError
from keyhead.models.backbones.base import Backbone, FeatureInfo, select_levels
from keyhead.models.backbones.simple_cnn import conv_bn_act
from keyhead.registry import BACKBONES


class DoubleConv(nn.Sequential):
    """conv3x3 -> BN -> activation -> dropout -> conv3x3 -> BN -> activation (seed 001: dropout after the first)."""

    def __init__(self, c_in: int, c_out: int, activation: str = "elu", dropout: float = 0.0) -> None:
        super().__init__(
            conv_bn_act(c_in, c_out, activation, "U-Net"),
            nn.Dropout2d(dropout),
            conv_bn_act(c_out, c_out, activation, "U-Net"),
        )


class UNetEncoder(Backbone):
    """The U-Net's contracting path: ``DoubleConv`` at full resolution, then ``depth`` x (max pool 2 -> DoubleConv).

    Channels double per level: ``width * 2**i`` at stride ``2**i`` (seed 001: 32, 64, 128, 256, 512).

    Args:
        in_channels: input channels C (1 for grayscale).
        width: channels of the full-resolution level.
        depth: number of down modules (4 in seed 001).
        activation: ``"elu"`` (seed 001) or ``"relu"``.
        dropout: spatial dropout inside every double convolution.
        out_indices: which levels to return (None: all; the ``unet`` head needs them all for its skips).

    Example:
        >>> import torch
        >>> bb = UNetEncoder(in_channels=1, width=4, depth=2)
        >>> [(f.channels, f.stride) for f in bb.feature_info]
        [(4, 1), (8, 2), (16, 4)]
        >>> [tuple(t.shape) for t in bb(torch.zeros(1, 1, 16, 16))]
        [(1, 4, 16, 16), (1, 8, 8, 8), (1, 16, 4, 4)]
    """

    def __init__(
        self,
        in_channels: int = 1,
        width: int = 32,
        depth: int = 4,
        activation: str = "elu",
        dropout: float = 0.1,
        out_indices: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if width < 1 or not 1 <= depth <= 6:
            raise KeyheadError(f"backbone 'unet_encoder': need width >= 1 and depth in 1..6, got {width}, {depth}")
        if not 0.0 <= dropout < 1.0:
            raise KeyheadError(f"backbone 'unet_encoder': dropout must be in [0, 1), got {dropout}")
        self.in_channels = in_channels
        self.activation = activation
        channels = [width * 2**i for i in range(depth + 1)]
        self.out_indices = select_levels(depth + 1, out_indices, "backbone 'unet_encoder'")
        self.inc = DoubleConv(in_channels, width, activation, dropout)
        self.downs = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), DoubleConv(a, b, activation, dropout))
            for a, b in zip(channels[:-1], channels[1:], strict=False)
        )
        self.feature_info = [FeatureInfo(channels[i], 2**i) for i in self.out_indices]
        self.mean, self.std = (0.5,) * in_channels, (0.25,) * in_channels

    def forward(self, x: Tensor) -> list[Tensor]:
        levels = [self.inc(x)]
        for down in self.downs:
            levels.append(down(levels[-1]))
        return [levels[i] for i in self.out_indices]

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}, {super().extra_repr()}"


@BACKBONES.register("unet_encoder")
def create_unet_encoder(
    pretrained: bool | str | Path = False,
    in_channels: int = 1,
    out_indices: Sequence[int] | None = None,
    width: int = 32,
    depth: int = 4,
    activation: str = "elu",
    dropout: float = 0.1,
) -> UNetEncoder:
    """Seed 001's U-Net encoder (random init; ``pretrained`` must be false)."""
    if pretrained:
        raise KeyheadError("backbone 'unet_encoder' has no pretrained weights; set model.pretrained: false")
    return UNetEncoder(in_channels, width, depth, activation, dropout, out_indices)
