"""Distillation frames: the unlabelled frames plus warped and occluded copies for the teacher to label.

Distillation needs no labels, so the student can be shown more of what the detector will meet than the frames
themselves: random thin-plate-spline warps (pose and shape) and occluders. Occluders matter for a light student:
where a keypoint is covered the teacher infers it from the rest of the face (context), and a student that only saw
a few occluded frames follows the occluder's edge instead. :func:`occluded_copies` pastes elliptical patches of
*other* frames (skin, hair, background textures of the same footage) over random teacher keypoints, so every
keypoint is seen covered by plausible content and the student learns the teacher's answer there.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

from keyhead.fomm.unsupervised.frames import to_model_input
from keyhead.fomm.unsupervised.tps import TPSWarp

__all__ = ["occluded_copies", "tps_copies"]


def tps_copies(frames: Tensor, copies: int, seed: int) -> Tensor:
    """``copies`` random TPS-warped versions of each frame (uint8 (N, C, H, W) -> (copies * N, C, H, W)).

    The warp is :class:`keyhead.fomm.unsupervised.tps.TPSWarp` with affine sigma 0.1 and spline sigma 0.01 (FOMM's
    equivariance warps), drawn from a generator seeded with ``seed``.
    """
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(copies):
        for i in range(0, len(frames), 64):
            x = to_model_input(frames[i : i + 64])
            warp = TPSWarp(len(x), sigma_affine=0.1, sigma_tps=0.01, generator=gen)
            out.append((warp.warp_frame(x) * 255).round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out) if out else frames[:0]


def occluded_copies(
    frames: Tensor,
    keypoints_px: np.ndarray,
    copies: int,
    seed: int,
    max_occluders: int = 3,
    size: tuple[float, float] = (0.06, 0.16),
) -> Tensor:
    """``copies`` versions of each frame with 1..``max_occluders`` elliptical occluders over its keypoints.

    Each occluder is an ellipse (semi-axes ``size`` x the image side, random aspect and angle, edge softened over
    ~2 px) centred within one semi-axis of a random keypoint of the frame; its content is the same-shaped region of
    another random frame: half of the time around one of that frame's keypoints and blurred (sigma = half the
    short semi-axis: a smooth, face-coloured blob without facial features), otherwise from anywhere, sharp
    (background-like texture).

    Args:
        frames: uint8 (N, C, H, W).
        keypoints_px: (N, K, 2) keypoints (x, y) in input pixels, e.g. the teacher's predictions.
        copies: occluded versions per frame.
        seed: the random generator's seed.
        max_occluders: most occluders per copy.
        size: range of the ellipse semi-axes as fractions of min(H, W).

    Returns:
        uint8 (copies * N, C, H, W).
    """
    n, _, h, w = frames.shape
    if copies < 1 or n == 0:
        return frames[:0]
    rng = np.random.default_rng(seed)
    src = frames.permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
    side = min(h, w)
    out = np.empty((copies * n, h, w, src.shape[-1]), np.uint8)
    for c in range(copies):
        for i in range(n):
            img = src[i].astype(np.float32)
            for _ in range(int(rng.integers(1, max_occluders + 1))):
                ax = (rng.uniform(*size, 2) * side).astype(int).clip(2)
                kp = keypoints_px[i, rng.integers(keypoints_px.shape[1])]
                centre = kp + rng.uniform(-1, 1, 2) * ax.max()
                mask = np.zeros((h, w), np.float32)
                cx, cy = int(round(float(centre[0]))), int(round(float(centre[1])))
                cv2.ellipse(mask, (cx, cy), (int(ax[0]), int(ax[1])), float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
                mask = cv2.GaussianBlur(mask, (5, 5), 1.0)[..., None]
                j = int(rng.integers(n))
                patch = src[j]
                if rng.random() < 0.5:  # smooth face-coloured blob: blurred around one of frame j's keypoints
                    other = keypoints_px[j, rng.integers(keypoints_px.shape[1])]
                    shift = np.round(other - centre).astype(int)
                    patch = cv2.GaussianBlur(patch, (0, 0), max(2.0, float(ax.min()) / 2))
                else:
                    shift = rng.integers(-side // 2, side // 2 + 1, 2)
                patch = np.roll(patch, (-int(shift[1]), -int(shift[0])), axis=(0, 1)).astype(np.float32)
                img = img * (1 - mask) + patch * mask
            out[c * n + i] = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
