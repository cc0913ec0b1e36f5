"""``subpixel_maxima`` is Lightning Pose's ``run_subpixelmaxima`` computed in keyhead's coordinates.

The reference below is written from Lightning Pose's documented steps (not its code): per downsampling step,
bicubic 2x upsampling (``align_corners=False``) then kornia's 5x5 Gaussian pyramid kernel (binomial 1-4-6-4-1,
/256) with zero ("constant") borders; a spatial softmax of the maps x 1000; the spatial expectation in upsampled
cells, minus 1.5 cells for downsample factor 2 (its grid offset); the confidence is the softmax mass in the 5x5
window whose centre is the expectation truncated to integers, cells outside the map counting 0. keyhead's
positions are Lightning Pose's + 1.5 px (keyhead's cell centres: x = (u + 0.5) * stride - 0.5); confidences equal.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from keyhead.models.decoders import subpixel_maxima


def lightning_pose_reference(maps: torch.Tensor, downsample_factor: int = 2, temperature: float = 1000.0):
    b, k = maps.shape[:2]
    row = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=maps.dtype)
    kernel = (row[:, None] * row[None, :] / 256.0).expand(k, 1, 5, 5)
    x = maps
    for _ in range(downsample_factor):
        x = F.interpolate(x, scale_factor=2.0, mode="bicubic", align_corners=False)
        x = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="constant", value=0.0), kernel, groups=k)
    h, w = x.shape[-2:]
    soft = torch.softmax((x * temperature).reshape(b, k, -1), dim=-1).reshape(b, k, h, w)
    u = (soft.sum(2) * torch.arange(w, dtype=maps.dtype)).sum(-1)
    v = (soft.sum(3) * torch.arange(h, dtype=maps.dtype)).sum(-1)
    conf = torch.zeros(b, k, dtype=maps.dtype)
    for bi in range(b):
        for ki in range(k):
            cu, cv = int(u[bi, ki]), int(v[bi, ki])  # truncation, as a cast to int64
            for dv in range(-2, 3):
                for du in range(-2, 3):
                    if 0 <= cv + dv < h and 0 <= cu + du < w:
                        conf[bi, ki] += soft[bi, ki, cv + dv, cu + du]
    offset = {1: 0.5, 2: 1.5, 3: 2.5}[downsample_factor]
    return torch.stack((u, v), dim=-1) - offset, conf


def _softmax_maps(seed: int, b: int = 2, k: int = 5, h: int = 24, w: int = 20, sharp: float = 8.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(b, k, 2, generator=g) * torch.tensor([w - 1.0, h - 1.0])
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    d2 = (xs - centres[..., 0, None, None].double()) ** 2 + (ys - centres[..., 1, None, None].double()) ** 2
    logits = -d2 / (2 * 1.5**2) * sharp / 8 + 0.3 * torch.rand(b, k, h, w, generator=g, dtype=torch.float64)
    return torch.softmax(logits.reshape(b, k, -1), -1).reshape(b, k, h, w)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("window", [None, 5])
def test_subpixel_maxima_is_lightning_pose_arithmetic(seed, window):
    maps = _softmax_maps(seed)
    lp_xy, lp_conf = lightning_pose_reference(maps)
    xy, conf = subpixel_maxima(maps, stride=4.0, upsample_steps=2, window=window)
    torch.testing.assert_close(xy, lp_xy + 1.5, atol=1e-4, rtol=0)
    torch.testing.assert_close(conf, lp_conf, atol=1e-4, rtol=0)


def test_flat_maps_and_peaks_at_the_border_match_too():
    maps = _softmax_maps(3, sharp=0.5)  # broad: the confidence is far from saturated
    maps[0, 0] = torch.softmax(torch.zeros(24 * 20, dtype=maps.dtype), 0).reshape(24, 20)
    peak = torch.full((24, 20), -30.0, dtype=maps.dtype)
    peak[0, 19] = 0.0
    maps[1, 1] = torch.softmax(peak.flatten(), 0).reshape(24, 20)
    lp_xy, lp_conf = lightning_pose_reference(maps)
    xy, conf = subpixel_maxima(maps, stride=4.0, upsample_steps=2, window=None)
    torch.testing.assert_close(xy, lp_xy + 1.5, atol=1e-4, rtol=0)
    torch.testing.assert_close(conf, lp_conf, atol=1e-5, rtol=0)
