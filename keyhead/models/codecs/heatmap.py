"""Gaussian heatmap targets and their decoding, sharing one stride / coordinate mapping."""

from __future__ import annotations

from typing import Any

import torch

from keyhead.models.decoders import Decoder
from keyhead.models.decoders.functional import activate, pixels_to_cells
from keyhead.registry import DECODERS
from keyhead.types import Keypoints


class HeatmapCodec:
    """Encodes keypoints as Gaussian heatmaps and decodes heatmaps back to keypoints.

    Args:
        input_size: (H, W) of the model input in pixels.
        stride: input pixels per heatmap cell (e.g. 4 for a 64x64 map on a 256x256 input).
        sigma: Gaussian standard deviation in heatmap cells.
        activation: how head logits become the maps decoders read ("softmax", "sigmoid", "identity").
        decoder: registered decoder name ("argmax", "soft_argmax", "subpixel_maxima").
        decoder_kwargs: extra decoder arguments (e.g. temperature).
        offset: cells cropped from each border of the full ``input / stride`` grid (a head whose last layer is an
            unpadded convolution, e.g. FOMM's 7x7 keypoint convolution: 64x64 -> 58x58 is offset 3). Cell (u, v)
            of the map is then centred at input pixel ((u + offset + 0.5) * stride - 0.5, ...).

    Example:
        >>> codec = HeatmapCodec((64, 64), stride=4, sigma=1.0, activation="softmax", decoder="argmax")
        >>> t, valid = codec.encode(torch.tensor([[[20.3, 33.7]]]))
        >>> t.shape, bool(valid)
        (torch.Size([1, 1, 16, 16]), True)
    """

    kind = "heatmap"
    confidence_scale = 0.05  # Laplace scale (normalised units) at which a dict output's confidence is 1/e

    def __init__(
        self,
        input_size: tuple[int, int],
        stride: int,
        sigma: float = 1.25,
        activation: str = "softmax",
        decoder: str = "subpixel_maxima",
        decoder_kwargs: dict[str, Any] | None = None,
        offset: int = 0,
        target: str = "gaussian",
    ) -> None:
        if target not in ("gaussian", "pixel"):
            raise ValueError(f"heatmap target {target!r}: choose 'gaussian' or 'pixel'")
        self.target = target
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.stride = int(stride)
        self.offset = int(offset)
        if self.input_size[0] % self.stride or self.input_size[1] % self.stride:
            raise ValueError(f"input size {self.input_size} is not divisible by the heatmap stride {self.stride}")
        self.heatmap_size = (
            self.input_size[0] // self.stride - 2 * self.offset,
            self.input_size[1] // self.stride - 2 * self.offset,
        )
        self.sigma = float(sigma)
        self.activation = activation
        self.set_decoder(decoder, decoder_kwargs)

    def set_decoder(self, decoder: str, decoder_kwargs: dict[str, Any] | None = None) -> None:
        """Decode with another registered decoder (the maps, and so the trained weights, stay the same)."""
        self.decoder_name = decoder
        self.decoder: Decoder = DECODERS.get(decoder)
        self.decoder_kwargs = dict(decoder_kwargs or {})
        if self.decoder.pyramid:
            self.decoder_kwargs.setdefault("upsample_steps", max(0, self.stride.bit_length() - 1))

    def encode(self, xy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaussian targets with peak 1.

        ``target="gaussian"``: a continuous Gaussian centred at the sub-pixel position. ``target="pixel"`` (seed
        001's U-Net): a delta on the nearest cell filtered by a Gaussian truncated at 4 sigma (as
        ``scipy.ndimage.gaussian_filter``), scaled to peak 1.

        Args:
            xy: (B, K, 2) keypoints in input pixels, NaN where missing.

        Returns:
            targets (B, K, h, w), zero for invalid keypoints; valid (B, K) bool: labelled and inside the map.
        """
        h, w = self.heatmap_size
        uv = pixels_to_cells(xy, self.stride) - self.offset
        valid = (
            torch.isfinite(xy).all(-1)
            & (uv[..., 0] >= -0.5)
            & (uv[..., 0] <= w - 0.5)
            & (uv[..., 1] >= -0.5)
            & (uv[..., 1] <= h - 0.5)
        )
        uv = torch.where(valid[..., None], uv, torch.zeros_like(uv))
        if self.target == "pixel":
            uv = uv.round().clamp_min(0).minimum(torch.tensor([w - 1, h - 1], device=xy.device, dtype=uv.dtype))
        xs = torch.arange(w, device=xy.device, dtype=xy.dtype)
        ys = torch.arange(h, device=xy.device, dtype=xy.dtype)
        dx, dy = xs - uv[..., 0:1], ys - uv[..., 1:2]
        gx = torch.exp(-(dx**2) / (2 * self.sigma**2))
        gy = torch.exp(-(dy**2) / (2 * self.sigma**2))
        if self.target == "pixel":  # gaussian_filter's kernel radius: int(4 sigma + 0.5)
            radius = int(4.0 * self.sigma + 0.5)
            gx, gy = gx * (dx.abs() <= radius), gy * (dy.abs() <= radius)
        targets = gy[..., :, None] * gx[..., None, :]
        return targets * valid[..., None, None].to(targets.dtype), valid

    def maps(self, logits: torch.Tensor) -> torch.Tensor:
        """Activated, non-negative maps (B, K, h, w) from head logits."""
        return activate(logits, self.activation)

    def decode(self, logits: torch.Tensor | dict[str, torch.Tensor], batch_groups: bool = True) -> Keypoints:
        """Head logits (B, K, h, w) -> keypoints in input pixels with confidence.

        Logits of several heads stacked as (B, N, K, h, w) (e.g. ``mhcrnn``'s single- and multi-frame heads)
        are decoded each, and per keypoint the most confident head's result is kept.

        A dict holds the logits under "heatmaps" and, from heads that predict their own uncertainty (``dynamic``),
        a per-keypoint Laplace ``log_scale`` (B, K) in normalised units; the confidence is then
        ``exp(-b / confidence_scale)``, as for regression heads, instead of the decoder's.

        ``batch_groups`` goes to pyramid decoders (see :mod:`keyhead.models.decoders`): ``False`` for export.
        """
        if isinstance(logits, dict):
            kp = self.decode(logits["heatmaps"], batch_groups)
            if "log_scale" in logits:
                kp.confidence = torch.exp(-logits["log_scale"].float().exp() / self.confidence_scale)
            return kp
        if logits.ndim == 5:
            parts = [self.decode(logits[:, i], batch_groups) for i in range(logits.shape[1])]
            conf = torch.stack([p.confidence for p in parts], dim=1)
            xy = torch.stack([p.xy for p in parts], dim=1)
            best = conf.argmax(dim=1, keepdim=True)
            return Keypoints(
                xy.gather(1, best[..., None].expand(-1, -1, -1, 2)).squeeze(1), conf.gather(1, best).squeeze(1)
            )
        logits = logits.float()
        maps = logits if self.decoder.takes_logits else self.maps(logits)
        extra = {"batch_groups": batch_groups} if self.decoder.pyramid else {}
        xy, conf = self.decoder.fn(maps, stride=self.stride, **self.decoder_kwargs, **extra)
        return Keypoints(xy + self.offset * self.stride, conf)

    def __repr__(self) -> str:
        return (
            f"HeatmapCodec(input_size={self.input_size}, stride={self.stride}, sigma={self.sigma}, "
            f"target={self.target!r}, "
            f"activation={self.activation!r}, decoder={self.decoder_name!r})"
        )
