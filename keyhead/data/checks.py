"""Checks of labelled frames against their images, before any training or evaluation starts.

The rules (documented in the README):

- Every image must exist and be a readable image; a missing, corrupt or truncated file is an error naming it.
- A labelled point outside its image (x outside [-0.5, W - 0.5] or y outside [-0.5, H - 0.5], the pixel-centre
  convention) is treated as missing (NaN), with one warning naming the label file, the image and the keypoint.
- A frame whose labelled points all lie outside its image is refused: its image changed size since it was labelled
  (or the row labels another image).
- A run records the size of every image in ``split.json``; an image whose size differs later (resume, evaluate) is
  refused, since its labels and the model's resize would no longer match.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from keyhead.errors import KeyheadError
from keyhead.types import LabeledFrames

log = logging.getLogger("keyhead")

_SHOWN = 3
MAX_PIXELS = 400 * 10**6  # a 20000 x 20000 image; larger headers are refused before decoding


def image_size(path: str | os.PathLike, where: str = "") -> tuple[int, int]:
    """(width, height) of an image from its header, checked for corruption without decoding the pixels.

    Args:
        path: the image file.
        where: the label file that names it, for messages.

    Raises:
        KeyheadError: the file is missing, not an image, or truncated / corrupt.
    """
    path = Path(path)
    prefix = f"{where}: " if where else ""
    if not path.is_file():
        raise KeyheadError(f"{prefix}image {path} not found; fix the path in the label file or restore the image")
    if path.stat().st_size == 0:
        raise KeyheadError(f"{prefix}image {path} is an empty file (0 bytes); replace it or remove its row")
    size: tuple = ("?", "?")
    try:
        with Image.open(path) as img:
            size, fmt = img.size, img.format
            img.verify()  # PNG: every chunk's CRC and the final IEND; other formats: their structure
        orientation = 1
        if fmt in ("JPEG", "MPO", "TIFF", "WEBP"):
            # OpenCV, which decodes the pixels for training and prediction, applies the EXIF orientation: so here
            with Image.open(path) as img:
                orientation = img.getexif().get(0x0112, 1)
        if int(size[0]) * int(size[1]) > MAX_PIXELS:
            raise Image.DecompressionBombError
        return (int(size[1]), int(size[0])) if orientation in (5, 6, 7, 8) else (int(size[0]), int(size[1]))
    except Image.DecompressionBombError:
        raise KeyheadError(
            f"{prefix}image {path} declares {'x'.join(map(str, size)) if size[0] != '?' else 'more'} pixels, "
            f"more than keyhead reads "
            f"({MAX_PIXELS // 10**6} megapixels); downscale it or remove its row"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        try:
            decoded = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        except cv2.error:
            decoded = None
        if decoded is None:
            raise KeyheadError(
                f"{prefix}image {path} is corrupt, truncated or not an image; replace it or remove its row"
            ) from None
        return int(decoded.shape[1]), int(decoded.shape[0])


def image_sizes(frames: LabeledFrames) -> list[tuple[int, int]]:
    """(W, H) of every frame's image (each unique file read once); errors name the label file and the image."""
    where = frames.source or str(frames.root)
    cache: dict[str, tuple[int, int]] = {}
    for p in frames.image_paths:
        if p not in cache:
            cache[p] = image_size(frames.root / p, where)
    return [cache[p] for p in frames.image_paths]


def check_images(frames: LabeledFrames) -> tuple[LabeledFrames, list[tuple[int, int]]]:
    """Apply the rules of this module: readable images, out-of-image points -> missing, changed images refused.

    Args:
        frames: the labelled frames; keypoints (N, K, 2) in original-image pixels.

    Returns:
        (frames with out-of-image points set to NaN (a copy when any changed), (W, H) of each frame's image).

    Raises:
        KeyheadError: a missing or corrupt image, or a frame whose labelled points all lie outside its image.

    Example:
        >>> frames, sizes = check_images(load_labels("project"))  # doctest: +SKIP
    """
    sizes = image_sizes(frames)
    if not len(frames):
        return frames, sizes
    wh = np.asarray(sizes, dtype=np.float64)[:, None, :]  # (N, 1, 2)
    xy = frames.keypoints.astype(np.float64)
    labelled = np.isfinite(xy).all(-1)
    inside = ((xy >= -0.5) & (xy <= wh - 0.5)).all(-1)
    outside = labelled & ~inside
    if not outside.any():
        return frames, sizes
    where = frames.source or str(frames.root)
    lost = np.flatnonzero(outside.sum(-1) == labelled.sum(-1))
    if len(lost):
        i = int(lost[0])
        w, h = sizes[i]
        k = int(np.flatnonzero(outside[i])[0])
        raise KeyheadError(
            f"{where}: every labelled point of {frames.image_paths[i]} (frame {i}) lies outside its {w}x{h} image "
            f"(e.g. '{frames.keypoint_names[k]}' at ({xy[i, k, 0]:g}, {xy[i, k, 1]:g})); the image changed size "
            "since it was labelled or the row labels another image: restore the image or relabel it"
        )
    cases = np.argwhere(outside)
    shown = "; ".join(
        f"{frames.image_paths[i]} (frame {i}) '{frames.keypoint_names[k]}' at ({xy[i, k, 0]:g}, {xy[i, k, 1]:g}) "
        f"outside {sizes[i][0]}x{sizes[i][1]}"
        for i, k in cases[:_SHOWN]
    )
    more = f" and {len(cases) - _SHOWN} more" if len(cases) > _SHOWN else ""
    log.warning(
        "%s: %d labelled points lie outside their image and are treated as missing: %s%s",
        where,
        len(cases),
        shown,
        more,
    )
    keypoints = frames.keypoints.copy()
    keypoints[outside] = np.nan
    visibility = None if frames.visibility is None else np.where(outside, 0, frames.visibility).astype(np.int8)
    return replace(frames, keypoints=keypoints, visibility=visibility), sizes


def check_recorded_sizes(
    recorded: dict[str, list[int]], frames: LabeledFrames, sizes: list[tuple[int, int]], run: str | os.PathLike
) -> None:
    """Refuse images whose size differs from the one recorded when the run was made.

    Args:
        recorded: image path -> [W, H], from the run's ``split.json`` (``image_sizes``).
        frames: the frames as read now.
        sizes: their (W, H) now, from :func:`check_images`.
        run: the run folder, for messages.

    Raises:
        KeyheadError: naming the first changed image with both sizes.
    """
    for p, (w, h) in zip(frames.image_paths, sizes, strict=True):
        then = recorded.get(p)
        if then is not None and (int(then[0]), int(then[1])) != (w, h):
            raise KeyheadError(
                f"{frames.root / p}: the image is {w}x{h} now but was {then[0]}x{then[1]} when run {run} was "
                "trained; restore the original image (its labels and the run's split refer to it)"
            )
