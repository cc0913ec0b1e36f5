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
    if path.stat().st_size == 0:
        raise KeyheadError(f"image {path} is an empty file (0 bytes); replace or remove it")
    flag = cv2.IMREAD_GRAYSCALE if in_channels == 1 else cv2.IMREAD_COLOR  # both apply the EXIF orientation
    try:
        img = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), flag)
    except cv2.error:
        img = None
    if img is None:
        raise KeyheadError(f"image {path} could not be decoded (corrupt or not an image); replace or remove it")
    return img[..., None] if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def resize_matrix(src_wh: tuple[float, float], dst_wh: tuple[float, float]) -> np.ndarray:
    """3x3 matrix of a resize from ``src_wh`` to ``dst_wh``: x -> (x + 0.5) * s - 0.5."""
    sx, sy = dst_wh[0] / src_wh[0], dst_wh[1] / src_wh[1]
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]], dtype=np.float64)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def collect_images(inputs: list[str | os.PathLike], hint: str = "") -> list[Path]:
    """Image files named directly or found (non-recursively) in folders, sorted, without duplicates.

    Args:
        inputs: files and folders.
        hint: added to the error for a file that is not an image (e.g. "videos need the run folder").
    """
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found += sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                raise KeyheadError(f"{p}: not an image file ({', '.join(IMAGE_SUFFIXES)}){hint}")
            found.append(p)
        else:
            raise KeyheadError(f"{p} does not exist")
    unique = list(dict.fromkeys(q.resolve() for q in found))
    if not unique:
        raise KeyheadError(f"no images found in {', '.join(str(i) for i in inputs)}")
    return unique


def warp(image: np.ndarray, matrix: np.ndarray, out_wh: tuple[int, int]) -> np.ndarray:
    """Warp an (H, W[, C]) image with a 3x3 matrix (pixel-centre convention), keeping the channel axis."""
    out = cv2.warpAffine(
        image, matrix[:2].astype(np.float64), out_wh, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    return out[..., None] if out.ndim == 2 else out


def to_original(xy: np.ndarray, wh: tuple[int, int], input_size: tuple[int, int]) -> np.ndarray:
    """Input-pixel (x, y) (..., 2) -> original-frame pixels (the inverse of the whole-frame resize)."""
    s = np.array([wh[0] / input_size[1], wh[1] / input_size[0]])
    return (xy.astype(np.float64) + 0.5) * s - 0.5


def resize_like_training(image: np.ndarray, input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize a whole image or frame (H, W[, C]) to the model input ``(h, w)`` as training and evaluation do.

    One bilinear affine warp with :func:`resize_matrix`; every prediction path (PyTorch, ONNX, video streaming,
    semi-supervised clips) resizes with this function, so all of them see the pixels training saw.

    Returns:
        (resized (h, w, C) uint8, the 3x3 original -> input matrix).
    """
    h, w = input_size
    m = resize_matrix((image.shape[1], image.shape[0]), (w, h))
    return warp(image, m, (w, h)), m


def to_network_input(images: np.ndarray) -> np.ndarray:
    """(..., h, w, C) uint8 -> (..., C, h, w) float32 in [0, 1], in one pass: one image or a batch of them.

    Example:
        >>> to_network_input(np.full((2, 4, 3, 1), 255, np.uint8)).shape
        (2, 1, 4, 3)
    """
    moved = np.moveaxis(images, -1, -3)
    out = np.empty(moved.shape, np.float32)
    np.divide(moved, np.float32(255.0), out=out)
    return out
