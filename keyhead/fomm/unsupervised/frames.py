"""Frames for unsupervised training and landmark evaluation: a video or a folder of images -> uint8 tensors.

All frames are resized to the model's input size (H, W) with area interpolation (the aspect ratio is not kept:
the mapping back to original pixels is a per-axis scale, which the landmark regressor absorbs). Colour order is
RGB; grayscale sources are repeated to 3 channels when the model wants 3.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from keyhead.errors import KeyheadError
from keyhead.io.images import IMAGE_SUFFIXES
from keyhead.io.video import VIDEO_SUFFIXES

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "read_frames", "read_images", "to_model_input"]


def _prepare(img: np.ndarray, size: tuple[int, int], channels: int) -> np.ndarray:
    """One BGR / gray image -> (channels, H, W) uint8 RGB (or gray) at ``size`` = (H, W)."""
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 4:
        img = img[:, :, :3]
    if channels == 1:
        img = img[:, :, :1] if img.shape[2] == 1 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[:, :, None]
    elif img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    h, w = size
    if img.shape[:2] != (h, w):
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        if img.ndim == 2:
            img = img[:, :, None]
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def read_frames(
    source: str | os.PathLike,
    size: tuple[int, int],
    channels: int = 3,
    max_frames: int | None = None,
    indices: list[int] | None = None,
) -> tuple[Tensor, tuple[int, int], list[int]]:
    """Read a video file or a folder of images.

    Args:
        source: a video (``.mp4``, ``.avi``, ...) or a folder of images (sorted by name).
        size: (H, W) to resize every frame to.
        channels: 3 (RGB) or 1 (gray).
        max_frames: keep at most this many frames, evenly spaced over the source (None: all).
        indices: read exactly these frame indices (video) / positions (folder) instead.

    Returns:
        (frames (N, C, H, W) uint8, original (height, width), the frame indices read).
    """
    src = Path(source)
    if src.is_dir():
        files = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise KeyheadError(f"{src}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder; give a video or images")
        return read_images(files, size, channels, max_frames, indices)
    if not src.is_file():
        raise KeyheadError(f"{src} does not exist; give a video file or a folder of frames")
    if src.suffix.lower() not in VIDEO_SUFFIXES:
        raise KeyheadError(f"{src}: not a video ({', '.join(VIDEO_SUFFIXES)}); give a video file or a folder of frames")
    cap = cv2.VideoCapture(str(src))
    if not cap.isOpened():
        raise KeyheadError(f"{src}: OpenCV cannot open this video; re-encode it (ffmpeg -i IN -c:v libx264 OUT.mp4)")
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        wanted = _wanted(n, max_frames, indices)
        frames, read, original, i = [], [], None, 0
        while True:
            ok, img = cap.read()
            if not ok:
                break
            if wanted is None or i in wanted:
                original = img.shape[:2]
                frames.append(_prepare(img, size, channels))
                read.append(i)
            i += 1
            if wanted is not None and read and len(read) == len(wanted):
                break
    finally:
        cap.release()
    if not frames:
        raise KeyheadError(f"{src}: no frames could be decoded; check the file (ffprobe {src})")
    if indices is not None and len(read) != len(set(indices)):
        missing = sorted(set(indices) - set(read))[:3]
        raise KeyheadError(f"{src}: frames {missing} are past the end of the video ({i} frames decoded)")
    return torch.from_numpy(np.stack(frames)), (int(original[0]), int(original[1])), read


def _wanted(n: int, max_frames: int | None, indices: list[int] | None) -> set[int] | None:
    if indices is not None:
        return set(indices)
    if max_frames is None or n <= 0 or max_frames >= n:
        return None
    return set(np.unique(np.linspace(0, n - 1, max_frames).round().astype(int)).tolist())


def read_images(
    files: list[Path],
    size: tuple[int, int],
    channels: int = 3,
    max_frames: int | None = None,
    indices: list[int] | None = None,
) -> tuple[Tensor, tuple[int, int], list[int]]:
    """Read image files (same contract as :func:`read_frames`; the original size is that of the first image)."""
    positions = sorted(_wanted(len(files), max_frames, indices) or range(len(files)))
    frames, original = [], None
    for pos in positions:
        if pos >= len(files):
            raise KeyheadError(f"image position {pos} is past the {len(files)} images given")
        img = cv2.imread(str(files[pos]), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise KeyheadError(f"{files[pos]}: not a readable image; remove or replace it")
        if img.dtype != np.uint8:
            img = cv2.convertScaleAbs(img, alpha=255.0 / max(float(img.max()), 1.0))
        original = original or img.shape[:2]
        frames.append(_prepare(img, size, channels))
    return torch.from_numpy(np.stack(frames)), (int(original[0]), int(original[1])), positions


def to_model_input(frames: Tensor) -> Tensor:
    """uint8 (B, C, H, W) -> float32 in [0, 1]."""
    return frames.float().div_(255.0)
