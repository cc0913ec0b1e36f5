"""Finding the image files a command is pointed at (no torch: the ONNX runtime uses it too)."""

from __future__ import annotations

import os
from pathlib import Path

from keyhead.errors import KeyheadError

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
