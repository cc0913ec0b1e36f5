"""The prediction table, read and written in one place (torch-free, pandas-free).

keyhead writes predictions as DeepLabCut's CSV layout: three header rows (``scorer``, ``bodyparts``, ``coords``),
then one row per image or video frame with ``x, y, likelihood`` per keypoint; an empty cell is a missing value.
Image predictions, smoothing and ensembles write full precision (:func:`write_prediction_table`); streamed video
predictions append rows of 4 decimals (:func:`format_frame_rows`) after :func:`prediction_header`.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_write

COORDS = ("x", "y", "likelihood")


def _header_rows(names: list[str], scorer: str) -> list[list[str]]:
    return [
        ["scorer"] + [scorer] * (len(COORDS) * len(names)),
        ["bodyparts"] + [n for n in names for _ in COORDS],
        ["coords"] + list(COORDS) * len(names),
    ]


def prediction_header(names: list[str], scorer: str = "keyhead") -> str:
    """The three header rows of a streamed prediction table, as CSV text ending in a newline."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(_header_rows(names, scorer))
    return buf.getvalue()


def _cell(v: float) -> str:
    return repr(float(v)) if np.isfinite(v) else ""


def write_prediction_table(
    path: str | os.PathLike,
    rows: list[str],
    names: list[str],
    xy: np.ndarray,
    confidence: np.ndarray,
    scorer: str = "keyhead",
) -> Path:
    """Write a prediction table atomically (full precision; NaN -> empty cell).

    Args:
        path: the CSV to write.
        rows: N row labels (image paths or frame numbers).
        names: K keypoint names.
        xy: (N, K, 2) keypoints; confidence: (N, K).
    """
    with atomic_write(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerows(_header_rows(names, scorer))
        for i, row in enumerate(rows):
            writer.writerow(
                [row] + [_cell(v) for j in range(len(names)) for v in (xy[i, j, 0], xy[i, j, 1], confidence[i, j])]
            )
    return Path(path)


def format_frame_rows(start: int, xy: np.ndarray, conf: np.ndarray) -> str:
    """Table rows ``frame,x,y,likelihood,...`` of consecutive video frames (4 decimals; missing: empty field).

    Args:
        start: the first row's frame number.
        xy: (N, K, 2) (x, y) in original pixels.
        conf: (N, K) confidence.
    """
    n, k = conf.shape
    vals = np.concatenate([xy.astype(np.float64), conf.astype(np.float64)[..., None]], axis=-1).reshape(n, 3 * k)
    fmt = "%d," + ",".join(["%.4f"] * (3 * k))
    finite = np.isfinite(vals).all(1)
    lines = []
    for j, row in enumerate(vals.tolist()):
        if finite[j]:
            lines.append(fmt % (start + j, *row))
        else:
            lines.append(f"{start + j}," + ",".join(f"{v:.4f}" if math.isfinite(v) else "" for v in row))
    return "\n".join(lines) + "\n"


def is_prediction_table(path: str | os.PathLike) -> bool:
    """True for a CSV whose third header row is ``coords`` with ``likelihood`` columns (predictions, not labels)."""
    path = Path(path)
    if path.suffix.lower() != ".csv" or not path.is_file():
        return False
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            head = [next(reader, []) for _ in range(3)]
    except (UnicodeDecodeError, csv.Error, OSError):
        return False
    return bool(head[2]) and head[2][0].strip().lower() == "coords" and "likelihood" in {c.strip() for c in head[2]}


def read_prediction_table(path: str | os.PathLike) -> tuple[list[str], list[str], np.ndarray, np.ndarray, str]:
    """Read a prediction table, checking its layout.

    Returns:
        (row labels (N,) e.g. frame numbers or image paths, K keypoint names, xy (N, K, 2) with NaN for empty cells,
        likelihood (N, K) with NaN for empty cells, the scorer).

    Raises:
        KeyheadError: a missing file, a wrong header, a keypoint without x / y / likelihood, or a non-number cell.
    """
    path = Path(path)
    if not path.is_file():
        raise KeyheadError(f"{path}: prediction CSV not found; pass the CSV written by keyhead predict")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise KeyheadError(f"{path}: not a readable CSV ({type(exc).__name__}); pass the CSV keyhead wrote") from None
    if len(rows) < 3 or [r[0].strip().lower() for r in rows[:3]] != ["scorer", "bodyparts", "coords"]:
        raise KeyheadError(f"{path}: not a DeepLabCut prediction CSV (3 header rows scorer/bodyparts/coords)")
    parts, coords = [c.strip() for c in rows[1][1:]], [c.strip().lower() for c in rows[2][1:]]
    names = list(dict.fromkeys(parts))
    col = {(p, c): j for j, (p, c) in enumerate(zip(parts, coords, strict=False))}
    for n in names:
        for c in COORDS:
            if (n, c) not in col:
                raise KeyheadError(f"{path}: keypoint '{n}' has no {c} column; a prediction table has x, y, likelihood")
    order = [col[n, c] for n in names for c in COORDS]
    values = np.full((len(rows) - 3, len(order)), np.nan)
    for i, r in enumerate(rows[3:]):
        cells = r[1:]
        for j, src in enumerate(order):
            cell = cells[src].strip() if src < len(cells) else ""
            if cell:
                try:
                    values[i, j] = float(cell)
                except ValueError:
                    raise KeyheadError(
                        f"{path}, row {i + 4}: {parts[src]} {coords[src]} {cell[:20]!r} is not a number; "
                        "leave the cell empty for a missing value"
                    ) from None
    v = values.reshape(len(values), len(names), 3)
    scorer = rows[0][1].strip() if len(rows[0]) > 1 else "keyhead"
    return [r[0] for r in rows[3:]], names, v[..., :2].copy(), v[..., 2].copy(), scorer


def iter_prediction_chunks(
    path: str | os.PathLike, chunksize: int = 5000
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Stream a (long) prediction table keyhead wrote: (row labels (n,), xy (n, K, 2), likelihood (n, K)) chunks.

    Row labels are ints when every label of the chunk is a frame number. No layout checks beyond the header
    rows (use :func:`read_prediction_table` for a table from elsewhere).
    """
    with open(path, newline="") as f:
        reader = csv.reader(f)
        for _ in range(3):
            next(reader, None)
        labels: list[str] = []
        rows: list[list[float]] = []
        for row in reader:
            if not row:
                continue
            labels.append(row[0])
            rows.append([float(v) if v else math.nan for v in row[1:]])
            if len(rows) == chunksize:
                yield _chunk(labels, rows)
                labels, rows = [], []
        if rows:
            yield _chunk(labels, rows)


def _chunk(labels: list[str], rows: list[list[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        lab = np.array([int(v) for v in labels])
    except ValueError:
        lab = np.array(labels)
    arr = np.array(rows, dtype=np.float64)
    arr = arr.reshape(len(arr), arr.shape[1] // 3, 3)
    return lab, arr[..., :2], arr[..., 2]
