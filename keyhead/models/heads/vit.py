"""Seed 001's two heads on ViT patch tokens: flatten + MLP, and learnable-query attention (one query per keypoint).

Both read the deepest feature map (B, D, h, w) as N = h * w tokens of width D (row-major), so they run on the
``dino_vits16`` backbone (D = 384, stride 16) and on any CNN backbone alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from keyhead.errors import KeyheadError
from keyhead.models.heads.base import Head
from keyhead.models.heads.regression_fc import CoordOutput, mlp
from keyhead.registry import HEADS


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, D, h, w) feature map -> (B, N = h * w, D) tokens, row-major over the grid."""
    return x.flatten(2).transpose(1, 2)


@HEADS.register("vit_flatten")
class ViTFlattenHead(CoordOutput, Head):
    """Seed 001's "flatten and regress": all patch tokens (CLS excluded) flattened, FC layers -> 2K coordinates.

    By default the raw tokens are flattened, as the seed does (196 x 384 DINO tokens: 75,264 inputs to the first
    FC layer, 38.5M weights at width 512). ``token_dim`` (a keyhead option) first projects every token to a few
    channels with one shared linear layer, so the first FC layer stays small.

    Args:
        feature_info: backbone feature maps; the deepest is used.
        num_keypoints: K.
        input_size: model input (H, W) in pixels (create_model passes it); fixes N = (H/s)(W/s).
        token_dim: per-token projection width before flattening (None, the seed's: no projection).
        hidden: widths of the hidden FC layers (seed: three FC layers in all).
        dropout: dropout before every FC layer.
        activation: ``"elu"`` or ``"relu"``.
        uncertainty: also predict a per-keypoint Laplace ``log_scale`` (normalised units) -> confidence.

    Shapes:
        features[-1]: (B, D, h, w) -> {"coords": (B, K, 2) normalised (x, y), "log_scale": (B, K)}.
    """

    output_kind = "coords"

    def __init__(
        self,
        feature_info: Sequence,
        num_keypoints: int,
        input_size: tuple[int, int] = (224, 224),
        token_dim: int | None = None,
        hidden: Sequence[int] = (512, 256),
        dropout: float = 0.1,
        activation: str = "elu",
        uncertainty: bool = True,
    ) -> None:
        super().__init__()
        last = feature_info[-1]
        self.num_keypoints = num_keypoints
        self.stride = last.stride
        self.grid = (-(-int(input_size[0]) // last.stride), -(-int(input_size[1]) // last.stride))
        width = last.channels if token_dim is None else int(token_dim)
        self.project = nn.Identity() if token_dim is None else nn.Linear(last.channels, width)
        sizes = [width * self.grid[0] * self.grid[1], *[int(h) for h in hidden]]
        self.trunk = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), mlp(sizes, activation, dropout, "head"))
        self.init_coord_output(sizes[-1], num_keypoints, uncertainty)

    def forward(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        x = features[-1]
        if tuple(x.shape[-2:]) != self.grid:
            raise KeyheadError(
                f"head 'vit_flatten' was built for a {self.grid} token grid (the model's input size) but got "
                f"{tuple(x.shape[-2:])}; feed images of the model's data.input_size"
            )
        return self.coord_output(self.trunk(self.project(map_to_tokens(x))))

    def extra_repr(self) -> str:
        return f"num_keypoints={self.num_keypoints}, grid={self.grid}"


@HEADS.register("vit_query")
class ViTQueryHead(Head):
    """Seed 001's learnable-query attention head: one static query per keypoint attends over the patch tokens.

    As the seed: the patch tokens T (B, N, D) are the keys and the values, K = V = T;
    A = softmax(Q K^T / sqrt(D)) over the N tokens, Q (K x D) learned; F = A V (B, K, D); then one linear
    D -> 2 layer shared by all keypoints, y_k = W F_k + b, gives (x, y) in [-1, 1]. The same Q serves every
    image (seed 001's "static query"; the ``dynamic`` head makes it input-conditioned). A linear D -> 1 on F
    gives a Laplace ``log_scale`` (keyhead's confidence; ``uncertainty=False`` leaves it out).

    Args:
        feature_info: backbone feature maps; the deepest is used (D = its channels).
        num_keypoints: K.
        shared_output: one D -> 2 layer for all keypoints (the seed's, default); False: one per keypoint.
        token_projection: keyhead's option: layer-norm the tokens and learn K = T W_k, V = T W_v.
        uncertainty: also predict ``log_scale`` (normalised units) -> confidence.

    Shapes:
        features[-1]: (B, D, h, w) -> {"coords": (B, K, 2), "log_scale": (B, K)}; :meth:`attention` and
        ``last_attention`` (from the latest forward, detached) give A as (B, K, h, w) maps whose cells sum to 1.
    """

    output_kind = "coords"

    def __init__(
        self,
        feature_info: Sequence,
        num_keypoints: int,
        shared_output: bool = True,
        token_projection: bool = False,
        uncertainty: bool = True,
    ) -> None:
        super().__init__()
        d = feature_info[-1].channels
        self.num_keypoints = num_keypoints
        self.stride = feature_info[-1].stride
        self.dim = d
        self.shared_output = shared_output
        self.token_projection = token_projection
        self.norm = nn.LayerNorm(d) if token_projection else nn.Identity()
        # Q ~ N(0, 1) makes Q T^T / sqrt(D) start at unit scale over the backbone's layer-normed tokens (the seed
        # gives no initialisation; N(0, 1/D) leaves the attention uniform and the head barely trains from scratch)
        self.query = nn.Parameter(torch.randn(num_keypoints, d) * (d**-0.5 if token_projection else 1.0))
        self.key = nn.Linear(d, d) if token_projection else nn.Identity()
        self.value = nn.Linear(d, d) if token_projection else nn.Identity()
        out_k = 1 if shared_output else num_keypoints
        self.out_weight = nn.Parameter(torch.randn(out_k, d, 2) * 1e-3)
        self.out_bias = nn.Parameter(torch.zeros(out_k, 2))
        self.log_scale = nn.Linear(d, 1) if uncertainty else None
        if self.log_scale is not None:
            nn.init.zeros_(self.log_scale.weight)
            nn.init.constant_(self.log_scale.bias, math.log(0.05))
        self.last_attention: torch.Tensor | None = None

    def _attend(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.norm(map_to_tokens(x))
        logits = torch.einsum("kd,bnd->bkn", self.query, self.key(tokens)) / math.sqrt(self.dim)
        attn = logits.softmax(-1)
        return attn, attn @ self.value(tokens)

    def attention(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Attention maps A (B, K, h, w) of every keypoint's query over the token grid (each sums to 1)."""
        x = features[-1]
        return self._attend(x)[0].view(x.shape[0], self.num_keypoints, *x.shape[-2:])

    def forward(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        x = features[-1]
        attn, feats = self._attend(x)
        self.last_attention = attn.detach().view(x.shape[0], self.num_keypoints, *x.shape[-2:])
        coords = torch.einsum("bkd,kdc->bkc", feats, self.out_weight.expand(self.num_keypoints, -1, -1))
        out = {"coords": coords + self.out_bias}
        if self.log_scale is not None:
            out["log_scale"] = self.log_scale(feats).squeeze(-1)
        return out

    def extra_repr(self) -> str:
        return (
            f"num_keypoints={self.num_keypoints}, dim={self.dim}, shared_output={self.shared_output}, "
            f"token_projection={self.token_projection}"
        )
