"""Heatmap decoders as pure functions: (B, K, h, w) maps -> (x, y) in input pixels and a confidence.

A heatmap of stride ``s`` has cell (u, v) centred at input pixel ((u + 0.5) * s - 0.5, (v + 0.5) * s - 0.5).
Every decoder takes non-negative maps (already activated: spatial softmax, sigmoid, ...) and returns
``(xy (B, K, 2), confidence (B, K))``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def cells_to_pixels(uv: torch.Tensor, stride: float) -> torch.Tensor:
    """Map heatmap cell coordinates (B, K, 2) to input pixels: x = (u + 0.5) * stride - 0.5."""
    return (uv + 0.5) * stride - 0.5


def pixels_to_cells(xy: torch.Tensor, stride: float) -> torch.Tensor:
    """Inverse of :func:`cells_to_pixels`."""
    return (xy + 0.5) / stride - 0.5


def window_mass(maps: torch.Tensor, centre: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """Fraction of each map's mass inside a (2r+1) x (2r+1) window around an integer cell.

    Only the window's cells are read (a gather), not the whole map; cells outside the map count as 0.

    Args:
        maps: (B, K, h, w) non-negative maps.
        centre: (B, K, 2) integer (u, v) cells.
        radius: half window size (2 gives Lightning Pose's 5x5 window).

    Returns:
        (B, K) in [0, 1].
    """
    b, k, h, w = maps.shape
    offsets = torch.arange(-radius, radius + 1, device=maps.device)
    u = centre[..., 0:1].long() + offsets
    v = centre[..., 1:2].long() + offsets
    inside = ((v >= 0) & (v < h))[..., :, None] & ((u >= 0) & (u < w))[..., None, :]
    idx = v.clamp(0, h - 1)[..., :, None] * w + u.clamp(0, w - 1)[..., None, :]
    flat = maps.reshape(b, k, h * w)
    picked = (flat.gather(2, idx.reshape(b, k, -1)) * inside.reshape(b, k, -1)).sum(-1)
    total = flat.sum(-1).clamp_min(1e-12)
    return (picked / total).clamp(0.0, 1.0)


def _argmax_cells(maps: torch.Tensor) -> torch.Tensor:
    b, k, h, w = maps.shape
    idx = maps.reshape(b, k, -1).argmax(-1)
    return torch.stack((idx % w, idx // w), dim=-1)


def argmax_subpixel(
    maps: torch.Tensor, stride: float = 1.0, refine: bool = True, radius: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Arg-max with sub-pixel refinement by a parabola fit to the log-heatmap around the peak.

    A Gaussian is a parabola in log space, so on a Gaussian target the fit recovers the exact centre.
    Peaks on the border are not refined.

    Args:
        maps: (B, K, h, w) non-negative maps.
        stride: input pixels per heatmap cell.
        refine: fit the parabola (else the integer peak is returned).
        radius: confidence window half-size in cells.

    Returns:
        xy (B, K, 2) in input pixels; confidence (B, K) = mass fraction in the window around the peak.

    Example:
        >>> m = torch.zeros(1, 1, 8, 8); m[0, 0, 3, 5] = 1.0
        >>> argmax_subpixel(m, stride=4.0)[0].tolist()
        [[[21.5, 13.5]]]
    """
    b, k, h, w = maps.shape
    peak = _argmax_cells(maps)
    uv = peak.to(maps.dtype)
    if refine:
        logm = maps.clamp_min(1e-10).log().reshape(b, k, h * w)
        u, v = peak[..., 0], peak[..., 1]

        def at(du: int, dv: int) -> torch.Tensor:
            uu = (u + du).clamp(0, w - 1)
            vv = (v + dv).clamp(0, h - 1)
            return logm.gather(2, (vv * w + uu).unsqueeze(-1)).squeeze(-1)

        c = at(0, 0)
        for axis, (lo, hi), size, coord in ((0, (at(-1, 0), at(1, 0)), w, u), (1, (at(0, -1), at(0, 1)), h, v)):
            curv = lo - 2 * c + hi
            offset = torch.where(curv < -1e-6, 0.5 * (lo - hi) / curv.clamp(max=-1e-6), torch.zeros_like(curv))
            inside = (coord > 0) & (coord < size - 1)
            uv[..., axis] = uv[..., axis] + torch.where(inside, offset.clamp(-0.5, 0.5), torch.zeros_like(offset))
    return cells_to_pixels(uv, stride), window_mass(maps, peak, radius)


def _spatial_softmax(maps: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(maps / temperature) over each map (float32 at least), shape kept."""
    b, k, h, w = maps.shape
    work = maps.float() if maps.dtype in (torch.float16, torch.bfloat16) else maps
    return torch.softmax(work.reshape(b, k, -1) / temperature, dim=-1).reshape(b, k, h, w)


def _expectation(prob: torch.Tensor) -> torch.Tensor:
    """Spatial expectation (B, K, 2) in cells (u, v) of distributions (B, K, h, w)."""
    h, w = prob.shape[-2:]
    xs = torch.arange(w, device=prob.device, dtype=prob.dtype)
    ys = torch.arange(h, device=prob.device, dtype=prob.dtype)
    return torch.stack(((prob.sum(2) * xs).sum(-1), (prob.sum(3) * ys).sum(-1)), dim=-1)


def soft_argmax(
    maps: torch.Tensor, stride: float = 1.0, temperature: float = 1.0, radius: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatial expectation under softmax(maps / temperature) (differentiable).

    Args:
        maps: (B, K, h, w) scores (logits, or activated maps with a small temperature).
        stride: input pixels per cell.
        temperature: softmax temperature; small values sharpen towards the arg-max.
        radius: confidence window half-size in cells.

    Returns:
        xy (B, K, 2) in input pixels; confidence (B, K) = mass of the softmax in the window around its peak.

    Example:
        >>> m = torch.zeros(1, 1, 5, 5); m[0, 0, 2, 1] = 50.0
        >>> soft_argmax(m)[0].round().tolist()
        [[[1.0, 2.0]]]
    """
    prob = _spatial_softmax(maps, temperature)
    uv = _expectation(prob)
    conf = window_mass(prob, uv.round().long(), radius)
    return cells_to_pixels(uv, stride).to(maps.dtype), conf.to(maps.dtype)


# kornia's Gaussian pyramid kernel (``pyrup`` / ``pyrdown``), which Lightning Pose blurs its upsampled maps with
_PYRAMID_ROW = (1.0, 4.0, 6.0, 4.0, 1.0)


def _pyramid_kernel5(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    row = torch.tensor(_PYRAMID_ROW, device=device, dtype=dtype)
    return row[:, None] * row[None, :] / 256.0


def upsample_blur(maps: torch.Tensor, steps: int, batch_groups: bool = True) -> torch.Tensor:
    """Lightning Pose's ``upsample``, ``steps`` times: bicubic 2x (align_corners=False), then kornia's 5x5 Gaussian
    pyramid kernel (binomial 1-4-6-4-1 / 256) with zero borders.

    ``batch_groups``: one depthwise convolution over all B*K maps (B*K groups), several times faster on CPU than
    K groups per image; ``False`` uses K groups, a count that does not depend on the batch, as an ONNX graph with
    a dynamic batch axis needs. Both give the same numbers.
    """
    b, k, h, w = maps.shape
    groups = b * k if batch_groups else k
    kernel = _pyramid_kernel5(maps.device, maps.dtype)[None, None].expand(groups, 1, 5, 5)
    x = maps.reshape(1, b * k, h, w) if batch_groups else maps
    for _ in range(steps):
        x = F.interpolate(x, scale_factor=2.0, mode="bicubic", align_corners=False)
        x = F.conv2d(x, kernel, padding=2, groups=groups)
    return x.reshape(b, k, x.shape[-2], x.shape[-1])


def crop_around_peaks(maps: torch.Tensor, half: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A (2*half) x (2*half) window of each map around its arg-max, shifted to stay inside the map.

    Args:
        maps: (B, K, h, w), with h, w >= 2 * half.
        half: half window size in cells.

    Returns:
        crops (B, K, 2*half, 2*half); origin (B, K, 2) = (u0, v0) cell of each crop's top-left corner.
    """
    b, k, h, w = maps.shape
    peak = _argmax_cells(maps)
    u0 = (peak[..., 0] - half).clamp(0, w - 2 * half)
    v0 = (peak[..., 1] - half).clamp(0, h - 2 * half)
    offs = torch.arange(2 * half, device=maps.device)
    idx = (v0[..., None] + offs)[..., :, None] * w + (u0[..., None] + offs)[..., None, :]
    crops = maps.reshape(b, k, h * w).gather(2, idx.reshape(b, k, -1)).reshape(b, k, 2 * half, 2 * half)
    return crops, torch.stack((u0, v0), dim=-1)


def subpixel_maxima(
    maps: torch.Tensor,
    stride: float = 1.0,
    upsample_steps: int = 2,
    beta: float = 1000.0,
    radius: int = 2,
    window: int | None = 5,
    batch_groups: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lightning Pose's ``run_subpixelmaxima``: upsample, sharpen, take the spatial expectation.

    Lightning Pose's arithmetic in keyhead's coordinates: the maps are upsampled 2x per step (one step per
    downsampling level: :func:`upsample_blur`, bicubic + kornia's pyramid kernel, zero borders, no clamping),
    sharpened by a softmax of ``maps * beta``, and the expectation is taken. The confidence is the probability
    mass of the sharpened distribution in the 5x5 window centred on the truncated expectation. Positions are
    Lightning Pose's + 1.5 px for stride 4 (keyhead's cell centres, see the module docstring); confidences
    are Lightning Pose's (tests/models/decoders/test_lightning_pose_maxima.py). As there, the confidence
    saturates near 1 for any peaked map (a known limitation; it still ranks keypoints; the
    ``calibrated_maxima`` decoder does not saturate).

    With ``window`` set, only a (2*window)-cell square around each map's arg-max is upsampled (the
    sharpened softmax has no mass elsewhere for a peaked map), which makes decoding ~30x cheaper; inside the
    window the values are those of the full-map computation. ``window=None`` upsamples the whole map.

    Args:
        maps: (B, K, h, w) spatial-softmax heatmaps (each map sums to 1).
        stride: input pixels per cell of ``maps``.
        upsample_steps: number of 2x upsampling steps (Lightning Pose: ``downsample_factor``).
        beta: sharpening factor (Lightning Pose: 1000).
        radius: confidence window half-size in upsampled cells.
        window: half-size in cells of the region upsampled around each peak (None: the whole map).
        batch_groups: convolution grouping of :func:`upsample_blur` (``False`` for ONNX export).

    Returns:
        xy (B, K, 2) in input pixels; confidence (B, K).
    """
    h, w = maps.shape[-2:]
    cell = stride / 2**upsample_steps
    origin = None
    if window is not None and 2 * window < min(h, w):
        maps, origin = crop_around_peaks(maps, window)
    prob = _spatial_softmax(upsample_blur(maps, upsample_steps, batch_groups=batch_groups), 1.0 / beta)
    uv = _expectation(prob)
    conf = window_mass(prob, uv.long(), radius)  # Lightning Pose centres the window on the truncated position
    xy = cells_to_pixels(uv, cell)
    if origin is not None:
        xy = xy + origin.to(xy.dtype) * stride
    return xy.to(maps.dtype), conf.to(maps.dtype)


def calibrated_maxima(
    maps: torch.Tensor,
    stride: float = 1.0,
    upsample_steps: int = 2,
    beta: float = 1000.0,
    radius_px: float | None = None,
    window: int | None = 5,
    batch_groups: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sub-pixel maxima positions with a confidence that does not saturate.

    The position is that of :func:`subpixel_maxima`. The confidence is the model's own probability that
    the keypoint lies within ``radius_px`` of it: the mass of the (unsharpened) spatial-softmax heatmap in
    the disc of that radius around the decoded position. A confident, well-localised map gives the mass
    of its Gaussian core (< 1); a spread or multi-modal map gives little. Unlike the 5x5 mass of the
    sharpened map, it keeps ranking keypoints by how uncertain the heatmap is.

    Args:
        maps: (B, K, h, w) spatial-softmax heatmaps.
        stride: input pixels per cell.
        upsample_steps, beta, window, batch_groups: as :func:`subpixel_maxima`.
        radius_px: disc radius in input pixels (default: 2 cells).

    Returns:
        xy (B, K, 2) in input pixels; confidence (B, K) in [0, 1].
    """
    xy, _ = subpixel_maxima(maps, stride, upsample_steps, beta, window=window, batch_groups=batch_groups)
    b, k, h, w = maps.shape
    r = (2.0 * stride) if radius_px is None else float(radius_px)
    centres = cells_to_pixels(torch.arange(max(h, w), device=maps.device, dtype=maps.dtype), stride)
    dx2 = (centres[:w] - xy[..., 0:1]) ** 2  # (B, K, w)
    dy2 = (centres[:h] - xy[..., 1:2]) ** 2  # (B, K, h)
    inside = (dy2[..., :, None] + dx2[..., None, :]) <= r * r
    total = maps.flatten(2).sum(-1).clamp_min(1e-12)
    conf = (maps * inside).flatten(2).sum(-1) / total
    return xy, conf.clamp(0.0, 1.0)


def entropy_maxima(
    maps: torch.Tensor,
    stride: float = 1.0,
    upsample_steps: int = 2,
    beta: float = 1000.0,
    window: int | None = 5,
    batch_groups: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sub-pixel maxima positions with the heatmap's normalised entropy as the confidence.

    The position is that of :func:`subpixel_maxima`. The confidence is ``1 - H(p) / log(h * w)`` of the whole map
    ``p`` (normalised to sum 1): 1 for a single cell, 0 for a uniform map. It reads every cell, so a second peak
    (the other paw, a look-alike) or a spread map lowers it, where the 5x5 mass of the sharpened map stays near 1
    and :func:`calibrated_maxima`'s disc sees only the mass near the decoded position. It ranked wrong keypoints
    better than :func:`subpixel_maxima`'s confidence on each of the accuracy benchmark's 14 heatmap runs (README,
    Benchmarks).

    Args:
        maps: (B, K, h, w) non-negative heatmaps (spatial-softmax maps sum to 1; others are normalised here).
        stride, upsample_steps, beta, window, batch_groups: as :func:`subpixel_maxima`.

    Returns:
        xy (B, K, 2) in input pixels; confidence (B, K) in [0, 1].
    """
    xy, _ = subpixel_maxima(maps, stride, upsample_steps, beta, window=window, batch_groups=batch_groups)
    p = maps.flatten(2).clamp_min(0.0)
    p = p / p.sum(-1, keepdim=True).clamp_min(1e-12)
    entropy = -(p * p.clamp_min(1e-12).log()).sum(-1)
    conf = 1.0 - entropy / math.log(p.shape[-1])
    return xy, conf.clamp(0.0, 1.0).to(maps.dtype)


def spatial_softmax(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Softmax over the pixels of each (B, K, h, w) map."""
    b, k, h, w = logits.shape
    return torch.softmax(logits.reshape(b, k, -1) / temperature, dim=-1).reshape(b, k, h, w)


def activate(logits: torch.Tensor, activation: str) -> torch.Tensor:
    """Turn head logits into the non-negative maps decoders read ("softmax", "sigmoid" or "identity")."""
    if activation == "softmax":
        return spatial_softmax(logits)
    if activation == "sigmoid":
        return torch.sigmoid(logits)
    if activation == "identity":
        return logits.clamp_min(0.0)
    raise ValueError(f"unknown heatmap activation {activation!r}")


def log2_int(x: float) -> int:
    """Exact integer log2 of a power of two."""
    n = int(round(math.log2(x)))
    if 2**n != x:
        raise ValueError(f"{x} is not a power of two")
    return n
