"""The files of a run folder that more than one layer reads: the folder check, the skeleton, the training history.

Torch-free: the ONNX runtime uses it too.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_write
from keyhead.io.structured import read_json

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


def read_history(run_dir: str | os.PathLike) -> list[dict]:
    """The per-epoch rows of ``history.csv`` as floats ([] before the first epoch); a damaged file is a one-line
    error naming the row."""
    path = Path(run_dir) / "history.csv"
    if not path.is_file():
        return []
    rows = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for i, row in enumerate(csv.DictReader(f), start=2):
                if None in row or any(v is None for v in row.values()):
                    raise KeyheadError(f"{path}, row {i}: wrong number of cells; delete the file or train again")
                try:
                    rows.append({k: float(v) if v != "" else float("nan") for k, v in row.items()})
                except ValueError:
                    raise KeyheadError(
                        f"{path}, row {i}: a cell is not a number; delete the file or train again"
                    ) from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise KeyheadError(f"{path}: not a readable CSV ({type(exc).__name__}); delete it or train again") from None
    return rows


def read_skeleton(run_dir: str | os.PathLike) -> list[tuple[str, str]]:
    """The run's skeleton as keypoint-name pairs (``skeleton.json``; [] when the run has none).

    A file that is not a JSON list of name pairs is a one-line error naming it, not a crash in the overlay code.
    """
    path = Path(run_dir) / "skeleton.json"
    if not path.is_file():
        return []
    try:
        pairs = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise KeyheadError(f"{path}: not valid JSON ({type(exc).__name__}); delete it or train the run again") from None
    if not isinstance(pairs, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(n, str) for n in p) for p in pairs
    ):
        raise KeyheadError(f"{path}: expected a list of [name, name] pairs; delete it or train the run again")
    return [(a, b) for a, b in pairs]


def write_skeleton(run_dir: str | os.PathLike, pairs: list[tuple[str, str]]) -> Path:
    """Write ``skeleton.json`` (keypoint-name pairs) atomically."""
    path = Path(run_dir) / "skeleton.json"
    with atomic_write(path) as f:
        json.dump([list(p) for p in pairs], f)
    return path


TOPDOWN_FILE = "topdown.json"  # a multi-animal (top-down) run: animals, crop size, names, identities


def write_topdown(run_dir: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Write the run's top-down record (animals, crop size, anchor, names, identities) as ``topdown.json``."""
    path = Path(run_dir) / TOPDOWN_FILE
    with atomic_write(path) as f:
        json.dump(record, f, indent=1)
    return path


def read_topdown(run_dir: str | os.PathLike) -> dict[str, Any]:
    """A top-down run's record; a one-line error when the folder is not a top-down run or the file is damaged."""
    path = Path(run_dir) / TOPDOWN_FILE
    if not path.is_file():
        raise KeyheadError(f"{run_dir}: no {TOPDOWN_FILE}; it is not a multi-animal (top-down) keyhead run")
    record = read_json(path, TOPDOWN_FILE)
    needed = ("animals", "crop_size", "keypoint_names")
    if not isinstance(record, dict) or any(k not in record for k in needed):
        raise KeyheadError(f"{path}: needs {', '.join(needed)}; the run is damaged, train it again")
    return record


def is_topdown_run(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` is a multi-animal (top-down) run folder."""
    return (Path(run_dir) / TOPDOWN_FILE).is_file()
