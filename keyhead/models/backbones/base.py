"""The backbone contract: an image batch in, a list of feature maps (shallow -> deep) out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from keyhead.errors import KeyheadError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class FeatureInfo:
    """One returned feature map: its channel count and its stride in input pixels."""

    channels: int
    stride: int


class Backbone(nn.Module):
    """Base class of every backbone.

    Subclasses set ``feature_info`` (one entry per returned map, shallow -> deep), ``in_channels`` and the
    per-input-channel ``mean`` / ``std`` with which the Model normalises inputs given in [0, 1].

    ``forward`` maps images (B, C, H, W) to a list of maps, the i-th of shape
    (B, feature_info[i].channels, ~H / feature_info[i].stride, ~W / feature_info[i].stride).
    """

    feature_info: list[FeatureInfo]
    in_channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def forward(self, x: Tensor) -> list[Tensor]:
        raise NotImplementedError

    @property
    def out_channels(self) -> int:
        """Channels of the deepest returned map."""
        return self.feature_info[-1].channels

    @property
    def stride(self) -> int:
        """Stride (input pixels per cell) of the deepest returned map."""
        return self.feature_info[-1].stride

    def layers_to_stride(self, stride: int) -> list[nn.Module]:
        """The innermost modules that compute the features up to ``stride`` input pixels per cell (the stem and the
        first stages), in forward order: what ``train.freeze_stride`` keeps frozen. Backbones without a stage map
        refuse."""
        raise KeyheadError(
            f"backbone {type(self).__name__} has no stage map to freeze up to stride {stride}; "
            "set train.freeze_stride: 0 or use a timm backbone"
        )

    def extra_repr(self) -> str:
        levels = ", ".join(f"{f.channels}@/{f.stride}" for f in self.feature_info)
        return f"in_channels={self.in_channels}, features=[{levels}]"


def channel_stats(
    in_channels: int, mean: Sequence[float], std: Sequence[float]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-input-channel normalisation stats for ``in_channels`` from stats given for another channel count.

    Matching counts are kept; otherwise every channel gets the average (grayscale from RGB stats), which pairs
    with the summed RGB stem weights that timm's ``adapt_input_conv`` makes for one channel.

    Example:
        >>> channel_stats(1, (0.25, 0.5, 0.75), (0.125, 0.25, 0.375))
        ((0.5,), (0.25,))
    """
    if len(mean) == in_channels:
        return tuple(float(m) for m in mean), tuple(float(s) for s in std)
    return (sum(mean) / len(mean),) * in_channels, (sum(std) / len(std),) * in_channels


def select_levels(n_levels: int, out_indices: Sequence[int] | None, where: str) -> tuple[int, ...]:
    """Resolve ``out_indices`` (None = all, negatives count from the end) against ``n_levels`` levels."""
    if out_indices is None:
        return tuple(range(n_levels))
    resolved = []
    for i in out_indices:
        if not -n_levels <= i < n_levels:
            raise KeyheadError(
                f"{where}: out_indices {tuple(out_indices)} has {i}, but there are only {n_levels} feature levels "
                f"(valid 0..{n_levels - 1})"
            )
        resolved.append(i % n_levels)
    return tuple(resolved)
