"""The prediction table, read and written in one place (torch-free, pandas-free).

keyhead writes predictions as DeepLabCut's CSV layout: three header rows (``scorer``, ``bodyparts``, ``coords``),
then one row per image or video frame with ``x, y, likelihood`` per keypoint; an empty cell is a missing value.
Image predictions, smoothing and ensembles write full precision (:func:`write_prediction_table`); streamed video
predictions append rows of 4 decimals (:func:`format_frame_rows`) after :func:`prediction_header`.

Several animals per frame take DeepLabCut's multi-animal layout: a fourth header row, ``individuals`` (second, after
``scorer``), and ``x, y, likelihood`` columns per individual and keypoint, individual by individual
(``prediction_header(names, individuals=...)``, :func:`format_instance_rows`, :func:`read_multi_prediction_table`).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_write

log = logging.getLogger("keyhead")

COORDS = ("x", "y", "likelihood")
HEADER = ["scorer", "bodyparts", "coords"]
MULTI_HEADER = ["scorer", "individuals", "bodyparts", "coords"]
UNIQUE = "single"  # DeepLabCut's individual for the "unique bodyparts" of a multi-animal project


def _header_rows(names: list[str], scorer: str, individuals: list[str] | None = None) -> list[list[str]]:
    per = len(COORDS) * len(names)
    rows = [["scorer"] + [scorer] * (per * len(individuals or [""]))]
    if individuals is not None:
        rows.append(["individuals"] + [ind for ind in individuals for _ in range(per)])
    rows.append(["bodyparts"] + [n for n in names for _ in COORDS] * len(individuals or [""]))
    rows.append(["coords"] + list(COORDS) * len(names) * len(individuals or [""]))
    return rows


def prediction_header(names: list[str], scorer: str = "keyhead", individuals: list[str] | None = None) -> str:
    """The header rows of a streamed prediction table, as CSV text ending in a newline.

    Args:
        names: K keypoint names.
        scorer: the first row's value.
        individuals: M animal names for a multi-animal table (4 rows: scorer / individuals / bodyparts / coords,
            columns individual by individual); None for one animal (3 rows).

    Example:
        >>> prediction_header(["nose"], individuals=["a", "b"]).splitlines()[1]
        'individuals,a,a,a,b,b,b'
    """
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(_header_rows(names, scorer, individuals))
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
    individuals: list[str] | None = None,
) -> Path:
    """Write a prediction table atomically (full precision; NaN -> empty cell).

    Args:
        path: the CSV to write.
        rows: N row labels (image paths or frame numbers).
        names: K keypoint names.
        xy: (N, K, 2) keypoints, or (N, M, K, 2) with ``individuals``; confidence: (N, K), or (N, M, K).
        scorer: the first header row's value.
        individuals: M animal names: a multi-animal table (see :func:`prediction_header`).
    """
    n = len(rows)
    xy = np.asarray(xy).reshape(n, -1, 2)
    confidence = np.asarray(confidence).reshape(n, -1)
    with atomic_write(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerows(_header_rows(names, scorer, individuals))
        for i, row in enumerate(rows):
            writer.writerow(
                [row] + [_cell(v) for j in range(xy.shape[1]) for v in (xy[i, j, 0], xy[i, j, 1], confidence[i, j])]
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


def format_instance_rows(start: int, xy: np.ndarray, conf: np.ndarray) -> str:
    """Multi-animal table rows (4 decimals; missing: empty field), to follow ``prediction_header(..., individuals)``.

    Args:
        start: the first row's frame number.
        xy: (M, K, 2) (x, y) in original pixels of one frame, or (N, M, K, 2) of N consecutive frames; an absent
            animal is all NaN.
        conf: (M, K) confidence, or (N, M, K).

    Example:
        >>> format_instance_rows(7, np.zeros((2, 1, 2)), np.ones((2, 1)))
        '7,0.0000,0.0000,1.0000,0.0000,0.0000,1.0000\\n'
    """
    conf = np.asarray(conf)
    if conf.ndim == 2:
        xy, conf = np.asarray(xy)[None], conf[None]
    n = len(conf)
    return format_frame_rows(start, np.asarray(xy).reshape(n, -1, 2), conf.reshape(n, -1))


def _head(path: Path, n: int) -> list[list[str]]:
    """The first ``n`` rows of a CSV (shorter rows as empty lists); [] for a file that is not a readable CSV."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            return [next(reader, []) for _ in range(n)]
    except (UnicodeDecodeError, csv.Error, OSError):
        return []


def _first(row: list[str]) -> str:
    return row[0].strip().lower() if row else ""


def is_prediction_table(path: str | os.PathLike) -> bool:
    """True for a CSV whose ``coords`` header row (third, or fourth after ``individuals``) has ``likelihood``."""
    path = Path(path)
    if path.suffix.lower() != ".csv" or not path.is_file():
        return False
    head = _head(path, 4)
    coords = next((r for r in head[2:] if _first(r) == "coords"), None) if head else None
    return coords is not None and "likelihood" in {c.strip() for c in coords}


def is_multi_prediction_table(path: str | os.PathLike) -> bool:
    """True for a prediction table with an ``individuals`` header row (several animals per row)."""
    return is_prediction_table(path) and _first(_head(Path(path), 2)[1]) == "individuals"


def individual_grid(
    keys: list[tuple[str, str]], where: str, columns: list[str]
) -> tuple[list[str], list[str], np.ndarray]:
    """Arrange multi-animal keypoint columns as individuals x bodyparts (DeepLabCut's ``single`` is dropped).

    Args:
        keys: (individual, bodypart) of each keypoint column group, in column order, each once.
        where: the file, for messages.
        columns: where each key's first column is, for messages (e.g. "column 7 (mouse2 tail x)").

    Returns:
        (M individuals in header order, K bodyparts in the first individual's order, (M, K) index into ``keys``).

    Raises:
        KeyheadError: an individual's columns in two separate blocks, or an individual whose bodyparts differ from
            the first individual's (an inconsistent header).
    """
    unique = [bp for ind, bp in keys if ind == UNIQUE]
    if unique:
        log.warning(
            "%s: dropping the unique bodyparts %s (individual 'single'); keyhead reads animals only",
            where,
            ", ".join(unique[:8]),
        )
    index = {key: i for i, key in enumerate(keys) if key[0] != UNIQUE}
    order = list(index)
    if not order:
        raise KeyheadError(f"{where}: no individual but '{UNIQUE}' has keypoint columns; label the animals")
    for i in range(1, len(order)):
        name = order[i][0]
        if name != order[i - 1][0] and any(key[0] == name for key in order[:i]):
            raise KeyheadError(
                f"{where}, {columns[index[order[i]]]}: a second block of individual '{name}'; keep each individual's "
                "columns together, once"
            )
    individuals = list(dict.fromkeys(ind for ind, _ in order))
    bodyparts = [bp for ind, bp in order if ind == individuals[0]]
    for name in individuals[1:]:
        own = [bp for ind, bp in order if ind == name]
        missing = [bp for bp in bodyparts if (name, bp) not in index]
        extra = [bp for bp in own if bp not in bodyparts]
        if missing or extra:
            what = f"has no '{missing[0]}'" if missing else f"has a '{extra[0]}'"
            raise KeyheadError(
                f"{where}, {columns[index[name, own[0]]]}: individual '{name}' {what} bodypart while "
                f"'{individuals[0]}' {'has' if missing else 'has not'}; give every individual the same bodyparts"
            )
    return individuals, bodyparts, np.array([[index[ind, bp] for bp in bodyparts] for ind in individuals])


def _read_table(path: Path, header: list[str]) -> tuple[list[list[str]], list[tuple[str, ...]], list[str], np.ndarray]:
    """A prediction table's rows, keypoint keys (the header cells between scorer and coords) and (N, K, 3) values.

    Returns:
        (the non-empty CSV rows, K keys in column order, where each key's first column is, values (N, K, 3) of
        x, y, likelihood with NaN for empty cells).
    """
    if not path.is_file():
        raise KeyheadError(f"{path}: prediction CSV not found; pass the CSV written by keyhead predict")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise KeyheadError(f"{path}: not a readable CSV ({type(exc).__name__}); pass the CSV keyhead wrote") from None
    levels = len(header)
    if len(rows) < levels or [r[0].strip().lower() for r in rows[:levels]] != header:
        multi = header == HEADER and len(rows) > 1 and _first(rows[1]) == "individuals"
        hint = "; it has an individuals row: read it with read_multi_prediction_table" if multi else ""
        raise KeyheadError(f"{path}: not a DeepLabCut prediction CSV ({levels} header rows {'/'.join(header)}){hint}")
    width = len(rows[levels - 1]) - 1
    cells = [[c.strip() for c in r[1:]] + [""] * (width - len(r) + 1) for r in rows[1 : levels - 1]]
    keyed = [tuple(level[j] for level in cells) for j in range(width)]
    coords = [c.strip().lower() for c in rows[levels - 1][1:]]
    col = {(*key, c): j for j, (key, c) in enumerate(zip(keyed, coords, strict=True))}
    keys = list(dict.fromkeys(keyed))
    for key in keys:
        for c in COORDS:
            if (*key, c) not in col:
                raise KeyheadError(
                    f"{path}: keypoint '{' '.join(key)}' has no {c} column; a prediction table has x, y, likelihood"
                )
    order = [col[(*key, c)] for key in keys for c in COORDS]
    values = np.full((len(rows) - levels, len(order)), np.nan)
    for i, r in enumerate(rows[levels:]):
        row = r[1:]
        for j, src in enumerate(order):
            cell = row[src].strip() if src < len(row) else ""
            if cell:
                try:
                    values[i, j] = float(cell)
                except ValueError:
                    raise KeyheadError(
                        f"{path}, row {i + levels + 1}: {' '.join(keyed[src])} {coords[src]} {cell[:20]!r} is not a "
                        "number; leave the cell empty for a missing value"
                    ) from None
    where = [f"column {col[(*key, 'x')] + 2}" for key in keys]
    return rows, keys, where, values.reshape(len(values), len(keys), 3)


def read_prediction_table(path: str | os.PathLike) -> tuple[list[str], list[str], np.ndarray, np.ndarray, str]:
    """Read a prediction table, checking its layout.

    Returns:
        (row labels (N,) e.g. frame numbers or image paths, K keypoint names, xy (N, K, 2) with NaN for empty cells,
        likelihood (N, K) with NaN for empty cells, the scorer).

    Raises:
        KeyheadError: a missing file, a wrong header, a keypoint without x / y / likelihood, or a non-number cell.
    """
    rows, keys, _, v = _read_table(Path(path), HEADER)
    scorer = rows[0][1].strip() if len(rows[0]) > 1 else "keyhead"
    return [r[0] for r in rows[3:]], [key[0] for key in keys], v[..., :2].copy(), v[..., 2].copy(), scorer


def read_multi_prediction_table(
    path: str | os.PathLike,
) -> tuple[list[str], list[str], list[str], np.ndarray, np.ndarray]:
    """Read a multi-animal prediction table (header rows scorer / individuals / bodyparts / coords).

    Returns:
        (row labels (N,), M individuals in header order, K keypoint names, xy (N, M, K, 2) and likelihood (N, M, K)
        with NaN for empty cells).

    Raises:
        KeyheadError: a missing file, a wrong header, an individual whose keypoints differ from the others', a
            keypoint without x / y / likelihood, or a non-number cell.

    Example:
        >>> rows, individuals, names, xy, likelihood = read_multi_prediction_table("video.csv")  # doctest: +SKIP
    """
    path = Path(path)
    rows, keys, where, v = _read_table(path, MULTI_HEADER)
    individuals, names, order = individual_grid(keys, str(path), where)
    v = v[:, order]
    return [r[0] for r in rows[4:]], individuals, names, v[..., :2].copy(), v[..., 2].copy()


def iter_prediction_chunks(
    path: str | os.PathLike, chunksize: int = 5000
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Stream a (long) prediction table keyhead wrote: (row labels (n,), xy (n, K, 2), likelihood (n, K)) chunks.

    A multi-animal table streams the same way, its M individuals' keypoints side by side (K = M x keypoints).

    Row labels are ints when every label of the chunk is a frame number. No layout checks beyond the header
    rows (use :func:`read_prediction_table` for a table from elsewhere).
    """
    with open(path, newline="") as f:
        reader = csv.reader(f)
        for head in reader:  # scorer / [individuals /] bodyparts / coords
            if head[:1] == ["coords"]:
                break
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
