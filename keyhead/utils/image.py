"""Image reading and the resize matrix, with NumPy and OpenCV only (the torch-free ONNX runtime uses them too)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from keyhead.errors import KeyheadError


def read_image(path: str | os.PathLike, in_channels: int = 3) -> np.ndarray:
    """Read an image as uint8 (H, W, C) RGB or (H, W, 1) grayscale; a clear error if missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise KeyheadError(f"image {path} does not exist; fix the path (or the label file) or restore the image")
    flag = cv2.IMREAD_GRAYSCALE if in_channels == 1 else cv2.IMREAD_COLOR
    img = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), flag)
    if img is None:
        raise KeyheadError(f"image {path} could not be decoded (corrupt or not an image); replace or remove it")
    return img[..., None] if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def resize_matrix(src_wh: tuple[float, float], dst_wh: tuple[float, float]) -> np.ndarray:
    """3x3 matrix of a resize from ``src_wh`` to ``dst_wh``: x -> (x + 0.5) * s - 0.5."""
    sx, sy = dst_wh[0] / src_wh[0], dst_wh[1] / src_wh[1]
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]], dtype=np.float64)
