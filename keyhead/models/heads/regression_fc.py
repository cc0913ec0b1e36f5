"""Seed 001's direct-regression head: flatten the whole feature map (no pooling), dropout, FC layers -> 2K."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from keyhead.errors import KeyheadError
from keyhead.models.backbones.simple_cnn import make_activation
from keyhead.models.heads.base import Head
from keyhead.registry import HEADS


def mlp(sizes: Sequence[int], activation: str, dropout: float, where: str) -> nn.Sequential:
    """Linear layers ``sizes[0] -> sizes[1] -> ...``, each followed by the activation and dropout."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=False):
        layers += [nn.Linear(a, b), make_activation(activation, where), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class CoordOutput:
    """Mixin for heads ending in features (B, D): ``coords`` (B, K, 2) normalised and an optional Laplace ``log_scale``.

    The coordinates start near the image centre (tiny weights, zero bias); the log-scale starts at b = 0.05
    (confidence 1/e) rather than at an arbitrary scale.
    """

    def init_coord_output(self, in_features: int, num_keypoints: int, uncertainty: bool = True) -> None:
        self.coords = nn.Linear(in_features, 2 * num_keypoints)
        nn.init.zeros_(self.coords.bias)
        nn.init.normal_(self.coords.weight, std=1e-3)
        self.log_scale = nn.Linear(in_features, num_keypoints) if uncertainty else None
        if self.log_scale is not None:
            nn.init.zeros_(self.log_scale.weight)
            nn.init.constant_(self.log_scale.bias, math.log(0.05))

    def coord_output(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {"coords": self.coords(z).view(-1, self.num_keypoints, 2)}
        if self.log_scale is not None:
            out["log_scale"] = self.log_scale(z)
        return out


@HEADS.register("regression_fc")
class RegressionFCHead(CoordOutput, Head):
    """Flatten (B, C, h, w) -> dropout -> hidden FC layers -> 2K coordinates in [-1, 1] (+ a Laplace log-scale).

    Unlike ``regression`` (global average pooling), every cell of the map keeps its own weights, so the layer
    knows where in the image a feature is, as seed 001's regression CNN. The map size is fixed by the model
    input: h = H / stride, w = W / stride.

    Args:
        feature_info: backbone feature maps; the deepest is used.
        num_keypoints: K.
        input_size: model input (H, W) in pixels (create_model passes it).
        hidden: widths of the hidden FC layers (empty: one linear layer to 2K).
        dropout: dropout before every FC layer.
        activation: ``"elu"`` or ``"relu"`` between FC layers.
        uncertainty: also predict a per-keypoint Laplace ``log_scale`` (normalised units), trained on the
            detached coordinate error; it becomes the confidence.

    Shapes:
        features[-1]: (B, C, H/s, W/s) -> {"coords": (B, K, 2) normalised (x, y), "log_scale": (B, K)}.
    """

    output_kind = "coords"

    def __init__(
        self,
        feature_info: Sequence,
        num_keypoints: int,
        input_size: tuple[int, int] = (224, 224),
        hidden: Sequence[int] = (512,),
        dropout: float = 0.3,
        activation: str = "elu",
        uncertainty: bool = True,
    ) -> None:
        super().__init__()
        last = feature_info[-1]
        self.num_keypoints = num_keypoints
        self.stride = last.stride
        self.map_size = (-(-int(input_size[0]) // last.stride), -(-int(input_size[1]) // last.stride))
        flat = last.channels * self.map_size[0] * self.map_size[1]
        if flat > 50_000_000:
            raise KeyheadError(
                f"head 'regression_fc': flattening a {last.channels} x {self.map_size[0]} x {self.map_size[1]} map "
                f"gives {flat} inputs; use a deeper backbone level or a smaller data.input_size"
            )
        sizes = [flat, *[int(h) for h in hidden]]
        self.trunk = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), mlp(sizes, activation, dropout, "head"))
        self.init_coord_output(sizes[-1], num_keypoints, uncertainty)

    def forward(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        x = features[-1]
        if tuple(x.shape[-2:]) != self.map_size:
            raise KeyheadError(
                f"head 'regression_fc' was built for {self.map_size} feature maps (the model's input size) but got "
                f"{tuple(x.shape[-2:])}; feed images of the model's data.input_size"
            )
        return self.coord_output(self.trunk(x))

    def extra_repr(self) -> str:
        return f"num_keypoints={self.num_keypoints}, map_size={self.map_size}, uncertainty={self.log_scale is not None}"
