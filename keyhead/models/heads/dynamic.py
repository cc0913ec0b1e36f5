"""Seed 000's dynamic keypoint head: per-image, per-keypoint 1x1 convolutions generated from the image's features.

Seed 000 describes a conv3x3 + conv1x1 head whose behaviour adapts to its input and which reports its own
uncertainty. Here the adaptation is real: each keypoint's 1x1 kernel is generated per image by a query that
starts from a learned keypoint embedding plus the image's global context and attends to the feature map, so two
images get different kernels (unlike the static queries of ``vit_query``). Each keypoint also gets a Laplace
scale b (its expected error), trained by a likelihood on the soft-argmax of its heatmap; the codec turns b into
the confidence exp(-b / 0.05), so a larger predicted error always means a lower confidence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from keyhead.errors import KeyheadError
from keyhead.models.decoders.functional import log2_int
from keyhead.models.heads.base import Head
from keyhead.models.heads.vit import map_to_tokens
from keyhead.registry import HEADS


def sine_positions(h: int, w: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Fixed 2-D sine/cosine position code (h * w, dim) (row-major): dim/2 channels for y, dim/2 for x."""
    quarter = dim // 4
    # from one period per image up to the grid's Nyquist rate, geometrically spaced
    freq = torch.exp(torch.linspace(0.0, math.log(max(h, w, 2) / 2), quarter, device=device, dtype=dtype))
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h * 2 * math.pi
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w * 2 * math.pi
    ay, ax = ys[:, None] * freq, xs[:, None] * freq
    code_y = torch.cat((ay.sin(), ay.cos()), -1)[:, None, :].expand(h, w, -1)
    code_x = torch.cat((ax.sin(), ax.cos()), -1)[None, :, :].expand(h, w, -1)
    code = torch.cat((code_y, code_x), -1).reshape(h * w, -1)
    return nn.functional.pad(code, (0, dim - code.shape[-1]))


def soft_argmax_normalised(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Expectation and spread of softmax(logits) over each map, in normalised [-1, 1] coordinates.

    Cell u of a w-wide map that covers the whole input is at x_n = (2u + 1) / w - 1 (the align_corners=False
    meaning of the coordinate codec), whatever the stride.

    Args:
        logits: (B, K, h, w).

    Returns:
        coords (B, K, 2) normalised (x, y); spread (B, K) = sqrt(var_x + var_y) of the distribution, normalised.
    """
    b, k, h, w = logits.shape
    prob = logits.float().flatten(2).softmax(-1).view(b, k, h, w)
    xs = (2 * torch.arange(w, device=logits.device, dtype=prob.dtype) + 1) / w - 1
    ys = (2 * torch.arange(h, device=logits.device, dtype=prob.dtype) + 1) / h - 1
    px, py = prob.sum(2), prob.sum(3)
    mx, my = (px * xs).sum(-1), (py * ys).sum(-1)
    var = (px * (xs - mx[..., None]).square()).sum(-1) + (py * (ys - my[..., None]).square()).sum(-1)
    return torch.stack((mx, my), -1).to(logits.dtype), var.clamp_min(1e-12).sqrt().to(logits.dtype)


class QueryLayer(nn.Module):
    """Pre-norm decoder layer: queries cross-attend to the feature tokens, attend to each other, then an MLP."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.cross = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, q: torch.Tensor, tokens: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q (B, K, D), tokens (B, N, D), pos (N, D) -> (q (B, K, D), cross-attention (B, K, N))."""
        kv = self.norm_kv(tokens)
        a, weights = self.cross(self.norm_q(q), kv + pos, kv, need_weights=True)
        q = q + a
        h = self.norm_self(q)
        q = q + self.self_attn(h, h, h, need_weights=False)[0]
        return q + self.ff(self.norm_ff(q)), weights


@HEADS.register("dynamic")
class DynamicHead(Head):
    """Input-conditioned queries -> per-keypoint dynamic 1x1 convolutions -> K heatmaps, plus a per-keypoint scale.

    1. Features: conv3x3 -> BN -> ReLU on the deepest map (C -> D), then 2x transposed convolutions up to the
       heatmap stride ``2**downsample_factor`` (F, (B, D, H/2^d, W/2^d)).
    2. Queries: q_k = e_k + g, e_k a learned keypoint embedding and g an MLP of the globally pooled features;
       ``num_layers`` layers of cross-attention to the low-resolution feature tokens (sine position code on the
       keys), self-attention among the keypoints and an MLP refine them per image.
    3. Dynamic convolution: W_k = S_k + A q_k (D), b_k = c . q_k; heatmap_k = (W_k . F) / sqrt(D) + b_k. S_k is a
       static per-keypoint kernel (``static_kernels``, default) and A starts at zero, so the head first learns
       like a static heatmap head and the generated part grows from there; without S_k (``static_kernels:
       false``) the generated kernels stay near uniform heatmaps for long (HELEN, 3 CPU minutes: 39.6 % NME
       against 11.2 % with S_k).
    4. Uncertainty: ``log_scale`` = log b_k of a Laplace distribution (normalised units) from q_k and the
       (detached) spread of heatmap k; the engine trains it with ``laplace_nll`` on the heatmap's soft-argmax.

    Args:
        feature_info: backbone feature maps; the deepest is used (any stride 2..32).
        num_keypoints: K.
        downsample_factor: heatmap stride is ``2**downsample_factor`` input pixels.
        dim: D, the width of the features, queries and kernels.
        num_layers: query refinement layers.
        num_heads: attention heads (must divide D).
        static_kernels: add a learned static kernel per keypoint to the generated one (generated part zero-init).

    Shapes:
        features[-1]: (B, C, H/s, W/s) -> {"heatmaps": logits (B, K, H/2^d, W/2^d), "coords": (B, K, 2)
        soft-argmax in normalised (x, y), "log_scale": (B, K)}. :meth:`dynamic_params` returns the per-image
        kernels; ``last_attention`` holds the latest forward's cross-attention (B, K, H/s, W/s), detached.
    """

    output_kind = "heatmap"

    def __init__(
        self,
        feature_info: Sequence,
        num_keypoints: int,
        downsample_factor: int = 2,
        dim: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        static_kernels: bool = True,
    ) -> None:
        super().__init__()
        last = feature_info[-1]
        n_up = log2_int(last.stride) - downsample_factor
        if n_up < 0:
            raise KeyheadError(
                f"head 'dynamic': model.downsample_factor={downsample_factor} asks for heatmaps coarser than the "
                f"backbone stride {last.stride}; use downsample_factor <= {log2_int(last.stride)}"
            )
        if dim % num_heads or num_layers < 1:
            raise KeyheadError(f"head 'dynamic': dim {dim} must be divisible by num_heads {num_heads}, num_layers >= 1")
        self.num_keypoints = num_keypoints
        self.downsample_factor = downsample_factor
        self.stride = 2**downsample_factor
        self.dim = dim
        self.reduce = nn.Sequential(
            nn.Conv2d(last.channels, dim, 3, padding=1, bias=False), nn.BatchNorm2d(dim), nn.ReLU(inplace=True)
        )
        ups: list[nn.Module] = []
        for _ in range(n_up):
            ups += [nn.ConvTranspose2d(dim, dim, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(dim), nn.ReLU()]
        self.upsample = nn.Sequential(*ups)
        self.embed = nn.Parameter(torch.randn(num_keypoints, dim) * 0.02)
        self.global_context = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim))
        self.layers = nn.ModuleList(QueryLayer(dim, num_heads) for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)
        self.kernel = nn.Linear(dim, dim)
        self.static_kernel: nn.Parameter | None = None
        if static_kernels:  # W_k = S_k + A q_k: a static per-keypoint kernel, the generated part starts at zero
            self.static_kernel = nn.Parameter(torch.randn(num_keypoints, dim))
            nn.init.zeros_(self.kernel.weight)
            nn.init.zeros_(self.kernel.bias)
        self.bias = nn.Linear(dim, 1)
        self.scale = nn.Sequential(nn.Linear(dim + 1, dim // 2), nn.ReLU(inplace=True), nn.Linear(dim // 2, 1))
        nn.init.constant_(self.scale[-1].bias, math.log(0.05))
        self.last_attention: torch.Tensor | None = None

    def _queries(self, low: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, d, h, w = low.shape
        tokens = map_to_tokens(low)
        pos = sine_positions(h, w, d, low.device, low.dtype)
        q = self.embed.unsqueeze(0) + self.global_context(tokens.mean(1)).unsqueeze(1)
        for layer in self.layers:
            q, attn = layer(q, tokens, pos)
        return self.norm(q), attn.view(b, self.num_keypoints, h, w)

    def dynamic_params(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """The per-image parameters: {"kernel": (B, K, D) 1x1-conv weights, "bias": (B, K), "query": (B, K, D)}."""
        q, _ = self._queries(self.reduce(features[-1]))
        return {"kernel": self._kernels(q), "bias": self.bias(q).squeeze(-1), "query": q}

    def _kernels(self, q: torch.Tensor) -> torch.Tensor:
        kernels = self.kernel(q)
        return kernels if self.static_kernel is None else kernels + self.static_kernel

    def forward(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        low = self.reduce(features[-1])
        q, attn = self._queries(low)
        self.last_attention = attn.detach()
        fmap = self.upsample(low)
        logits = torch.einsum("bkd,bdhw->bkhw", self._kernels(q), fmap) / math.sqrt(self.dim)
        logits = logits + self.bias(q)[..., None]
        coords, spread = soft_argmax_normalised(logits)
        log_scale = self.scale(torch.cat((q, spread.detach().log()[..., None]), -1)).squeeze(-1)
        return {"heatmaps": logits, "coords": coords, "log_scale": log_scale}

    def extra_repr(self) -> str:
        return (
            f"num_keypoints={self.num_keypoints}, downsample_factor={self.downsample_factor}, dim={self.dim}, "
            f"num_layers={len(self.layers)}"
        )
