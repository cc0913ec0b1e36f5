"""Direct coordinate regression head: pooled features -> 2K normalised coordinates (+ uncertainty)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from keyhead.models.heads.base import Head
from keyhead.registry import HEADS


@HEADS.register("regression")
class RegressionHead(Head):
    """Global average pooling, optional hidden MLP layer, a linear layer to 2K coordinates in [-1, 1].

    With ``uncertainty=True`` a second linear layer predicts a per-keypoint Laplace scale (``log_scale``,
    normalised units); it is trained by a Laplace likelihood on the detached coordinate error, so the
    coordinate objective is untouched and the scale learns to predict the head's own error.

    Args:
        feature_info: backbone feature maps; the deepest is used.
        num_keypoints: K.
        hidden: width of a hidden layer (0 for none).
        dropout: dropout before the output layer.
        uncertainty: also predict ``log_scale``.

    Shapes:
        features[-1]: (B, C, h, w) -> {"coords": (B, K, 2), "log_scale": (B, K)}.
    """

    output_kind = "coords"

    def __init__(
        self,
        feature_info: Sequence,
        num_keypoints: int,
        hidden: int = 0,
        dropout: float = 0.0,
        uncertainty: bool = True,
    ) -> None:
        super().__init__()
        ch = feature_info[-1].channels
        self.num_keypoints = num_keypoints
        self.stride = feature_info[-1].stride
        layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if hidden:
            layers += [nn.Linear(ch, hidden), nn.ReLU(inplace=True)]
            ch = hidden
        layers.append(nn.Dropout(dropout))
        self.trunk = nn.Sequential(*layers)
        self.coords = nn.Linear(ch, 2 * num_keypoints)
        nn.init.zeros_(self.coords.bias)
        nn.init.normal_(self.coords.weight, std=1e-3)
        self.log_scale = nn.Linear(ch, num_keypoints) if uncertainty else None

    def forward(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        z = self.trunk(features[-1])
        out = {"coords": self.coords(z).view(-1, self.num_keypoints, 2)}
        if self.log_scale is not None:
            out["log_scale"] = self.log_scale(z)
        return out

    def extra_repr(self) -> str:
        return f"num_keypoints={self.num_keypoints}, uncertainty={self.log_scale is not None}"
