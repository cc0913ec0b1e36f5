"""Seed 001's direct-regression CNN trunk: conv blocks with BatchNorm, ELU (or ReLU), max pooling and dropout."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor, nn

from keyhead.errors import KeyheadError
from keyhead.models.backbones.base import Backbone, FeatureInfo, select_levels
from keyhead.registry import BACKBONES

ACTIVATIONS: dict[str, type[nn.Module]] = {"elu": nn.ELU, "relu": nn.ReLU}


def make_activation(name: str, where: str) -> nn.Module:
    """``"elu"`` or ``"relu"`` as a module; anything else is a KeyheadError naming ``where``."""
    if name not in ACTIVATIONS:
        raise KeyheadError(f"{where}: activation must be one of {', '.join(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name](inplace=True)


def conv_bn_act(c_in: int, c_out: int, activation: str, where: str) -> nn.Sequential:
    """3x3 convolution (padding 1, no bias), BatchNorm, activation."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), make_activation(activation, where)
    )


class SimpleCNN(Backbone):
    """Conv blocks of ``convs_per_block`` x (conv3x3 -> BN -> activation), then 2x2 max pooling and dropout.

    Block i halves the resolution, so its features have stride 2^(i+1) and ``channels[i]`` channels. It starts
    from random init (seed 001 trains it from scratch).

    Args:
        in_channels: input channels C (1 for grayscale).
        channels: output channels of each block, shallow to deep.
        activation: ``"elu"`` (seed 001's choice) or ``"relu"``.
        dropout: spatial dropout probability after each block.
        convs_per_block: convolutions per block.
        out_indices: which blocks' features to return (None: all).

    Example:
        >>> import torch
        >>> bb = SimpleCNN(in_channels=1, channels=(8, 16))
        >>> [(f.channels, f.stride) for f in bb.feature_info]
        [(8, 2), (16, 4)]
        >>> [tuple(t.shape) for t in bb(torch.zeros(2, 1, 32, 32))]
        [(2, 8, 16, 16), (2, 16, 8, 8)]
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: Sequence[int] = (32, 64, 128, 256, 256),
        activation: str = "elu",
        dropout: float = 0.1,
        convs_per_block: int = 1,
        out_indices: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        where = "backbone 'simple_cnn'"
        if not channels or any(int(c) < 1 for c in channels):
            raise KeyheadError(f"{where}: channels must be a non-empty list of positive integers, got {channels!r}")
        if convs_per_block < 1:
            raise KeyheadError(f"{where}: convs_per_block must be >= 1, got {convs_per_block}")
        if not 0.0 <= dropout < 1.0:
            raise KeyheadError(f"{where}: dropout must be in [0, 1), got {dropout}")
        self.in_channels = in_channels
        self.activation = activation
        self.channels = [int(c) for c in channels]
        self.out_indices = select_levels(len(self.channels), out_indices, where)
        blocks = []
        c_prev = in_channels
        for c in self.channels:
            layers = [conv_bn_act(c_prev if j == 0 else c, c, activation, where) for j in range(convs_per_block)]
            blocks.append(nn.Sequential(*layers, nn.MaxPool2d(2), nn.Dropout2d(dropout)))
            c_prev = c
        self.blocks = nn.ModuleList(blocks[: max(self.out_indices) + 1])
        self.feature_info = [FeatureInfo(self.channels[i], 2 ** (i + 1)) for i in self.out_indices]
        # Inputs in [0, 1] are centred; the BatchNorm after every convolution takes care of the rest.
        self.mean, self.std = (0.5,) * in_channels, (0.25,) * in_channels

    def forward(self, x: Tensor) -> list[Tensor]:
        levels = []
        for block in self.blocks:
            x = block(x)
            levels.append(x)
        return [levels[i] for i in self.out_indices]

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}, {super().extra_repr()}"


@BACKBONES.register("simple_cnn")
def create_simple_cnn(
    pretrained: bool | str | Path = False,
    in_channels: int = 1,
    out_indices: Sequence[int] | None = None,
    channels: Sequence[int] = (32, 64, 128, 256, 256),
    activation: str = "elu",
    dropout: float = 0.1,
    convs_per_block: int = 1,
) -> SimpleCNN:
    """Seed 001's regression CNN trunk (random init; ``pretrained`` must be false)."""
    if pretrained:
        raise KeyheadError("backbone 'simple_cnn' has no pretrained weights; set model.pretrained: false")
    return SimpleCNN(in_channels, channels, activation, dropout, convs_per_block, out_indices)
