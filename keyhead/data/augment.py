"""Keypoint-aware geometric and photometric augmentation.

One 3x3 affine matrix maps original-image pixels to model-input pixels; the image is warped with it
(cv2.warpAffine, whose integer coordinates are pixel centres, matching keyhead's convention) and the
keypoints are transformed by the same matrix, so image and labels cannot disagree.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from keyhead.config import AugmentConfig
from keyhead.io.images import resize_matrix, warp  # noqa: F401  (re-exported)


def box_matrix(box_xywh: np.ndarray, dst_wh: tuple[int, int], margin: float = 1.25) -> np.ndarray:
    """3x3 matrix mapping a box (enlarged by ``margin``, aspect matched to ``dst_wh``) onto the output."""
    x, y, w, h = (float(v) for v in box_xywh)
    cx, cy = x + w / 2 - 0.5, y + h / 2 - 0.5
    aspect = dst_wh[0] / dst_wh[1]
    w, h = max(w, h * aspect, 1.0) * margin, max(h, w / aspect, 1.0) * margin
    s = dst_wh[0] / w
    return np.array([[s, 0, (dst_wh[0] - 1) / 2 - s * cx], [0, s, (dst_wh[1] - 1) / 2 - s * cy], [0, 0, 1]])


def random_affine(rng: np.random.Generator, cfg: AugmentConfig, out_wh: tuple[int, int]) -> tuple[np.ndarray, bool]:
    """A random rotation / scale / translation (/ flip) about the output centre, as a 3x3 matrix."""
    cx, cy = (out_wh[0] - 1) / 2, (out_wh[1] - 1) / 2
    angle = math.radians(rng.uniform(-cfg.rotation, cfg.rotation))
    s = rng.uniform(*cfg.scale)
    tx, ty = rng.uniform(-cfg.translate, cfg.translate, size=2) * np.array(out_wh)
    flip = bool(rng.random() < cfg.hflip)
    f = -1.0 if flip else 1.0
    c, si = math.cos(angle) * s, math.sin(angle) * s
    to_origin = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]])
    rot = np.array([[c * f, -si, 0], [si * f, c, 0], [0, 0, 1]])
    back = np.array([[1, 0, cx + tx], [0, 1, cy + ty], [0, 0, 1]])
    return back @ rot @ to_origin, flip


def transform_points(xy: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 3x3 affine matrix to (..., 2) points; NaN stays NaN."""
    return xy @ matrix[:2, :2].T + matrix[:2, 2]


def photometric(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Brightness, contrast, blur and noise on a float32 image in [0, 1]."""
    if cfg.contrast > 0 or cfg.brightness > 0:
        contrast = 1.0 + rng.uniform(-cfg.contrast, cfg.contrast)
        brightness = rng.uniform(-cfg.brightness, cfg.brightness)
        mean = image.mean()
        image = (image - mean) * contrast + mean + brightness
    if cfg.blur > 0 and rng.random() < cfg.blur:
        sigma = rng.uniform(0.5, 1.5)
        image = cv2.GaussianBlur(image, (0, 0), sigma)
        if image.ndim == 2:
            image = image[..., None]
    if cfg.noise > 0:
        image = image + rng.normal(0.0, cfg.noise, size=image.shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0)
