"""Finding the files a command is pointed at: images, finished run folders (no torch: the ONNX runtime uses it too)."""

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


RUN_FILES = ("config.yaml", "model.safetensors")  # what every finished keyhead run folder holds


def check_run_dir(run_dir: str | os.PathLike, required: tuple[str, ...] = RUN_FILES) -> Path:
    """``run_dir`` as a Path if it is a finished run folder (holds ``required``), else a KeyheadError (torch-free)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise KeyheadError(f"run folder {run} does not exist; pass the folder `keyhead train` printed")
    missing = [name for name in required if not (run / name).is_file()]
    if missing:
        raise KeyheadError(f"run folder {run} is missing {', '.join(missing)}; it is not a finished keyhead run")
    return run
