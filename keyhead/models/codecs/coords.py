"""Normalised coordinates in [-1, 1] (align_corners=False meaning) for regression heads."""

from __future__ import annotations

import torch

from keyhead.types import Keypoints


class CoordCodec:
    """Pixels <-> normalised coordinates: x_n = (2 x + 1) / W - 1, so pixel edges map to -1 and 1.

    Regression heads may also predict a per-keypoint Laplace scale ``log_scale`` in normalised units;
    the confidence is then ``exp(-b / confidence_scale)`` (1 for a perfectly sure head, falling as the
    expected error grows). Without it the confidence is 1.

    Example:
        >>> c = CoordCodec((100, 200))
        >>> c.encode(torch.tensor([[[-0.5, 99.5]]])).tolist()
        [[[-1.0, 1.0]]]
    """

    kind = "coords"
    decoder_name = "coords"  # the head predicts coordinates itself; nothing to choose

    def __init__(self, input_size: tuple[int, int], confidence_scale: float = 0.05) -> None:
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.confidence_scale = float(confidence_scale)

    def _wh(self, ref: torch.Tensor) -> torch.Tensor:
        return torch.tensor([self.input_size[1], self.input_size[0]], dtype=ref.dtype, device=ref.device)

    def encode(self, xy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, K, 2) pixels -> (normalised (B, K, 2) with NaN kept, valid (B, K))."""
        return (2 * xy + 1) / self._wh(xy) - 1, torch.isfinite(xy).all(-1)

    def to_pixels(self, xy_norm: torch.Tensor) -> torch.Tensor:
        return ((xy_norm + 1) * self._wh(xy_norm) - 1) / 2

    def decode(self, raw: dict[str, torch.Tensor], batch_groups: bool = True) -> Keypoints:
        """Regression head output {"coords": (B, K, 2), optional "log_scale": (B, K)} -> keypoints.

        ``batch_groups`` is accepted for the codec interface; coordinates need no grouping.
        """
        xy = self.to_pixels(raw["coords"].float())
        if "log_scale" in raw:
            conf = torch.exp(-raw["log_scale"].float().exp() / self.confidence_scale)
        else:
            conf = torch.ones(xy.shape[:-1], dtype=xy.dtype, device=xy.device)
        return Keypoints(xy, conf)

    def __repr__(self) -> str:
        return f"CoordCodec(input_size={self.input_size})"
