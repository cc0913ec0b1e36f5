"""Finding the files a command is pointed at: images, finished run folders (no torch: the ONNX runtime uses it too)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from keyhead.errors import KeyheadError

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


def read_history(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "history.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
