"""DeepLabCut / Lightning Pose label tables: CSV (3 header rows scorer / bodyparts / coords), pandas HDF5, projects.

The CSV and the HDF5 readers both turn their file into one DataFrame with (scorer, bodyparts, coords) MultiIndex
columns and the raw image paths as index, which ``_parse`` reads into ``LabeledFrames``; coordinates are taken as-is
(DeepLabCut already uses pixel centres at integer coordinates).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from keyhead.data.formats._common import relative_image_path, resolve_root
from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_write
from keyhead.io.hdf import read_pandas_hdf
from keyhead.io.predictions import write_prediction_table
from keyhead.io.structured import read_yaml
from keyhead.types import LabeledFrames

_HEADER = ["scorer", "bodyparts", "coords"]
_MULTI_HEADER = ["scorer", "individuals", "bodyparts", "coords"]
_COORDS = ("x", "y", "likelihood", "visibility")
_MULTI_ANIMAL = "read them with load_instances and train them with a multi-animal config"
_BLANK = {"", "nan", "NaN", "NAN"}


class _Table(NamedTuple):
    """A label table as both file formats hand it to ``_parse``.

    Attributes:
        data: (N, C) DataFrame, (scorer, bodyparts, coords) MultiIndex columns, raw image paths as index; cells are
            strings (CSV) or floats (HDF5).
        rows: N locations of the rows for messages, e.g. "row 5".
        columns: C locations of the columns for messages, e.g. "column 3 (nose y)".
    """

    data: pd.DataFrame
    rows: list[str]
    columns: list[str]


def _fmt(v: float) -> str:
    return "" if not np.isfinite(v) else repr(float(v))


def write_dlc_csv(
    frames: LabeledFrames,
    path: str | os.PathLike,
    scorer: str = "keyhead",
    likelihood: np.ndarray | None = None,
) -> Path:
    """Write labels (or predictions) as a DeepLabCut / Lightning Pose CSV, atomically.

    Args:
        frames: the frames; ``image_paths`` become the first column, relative to ``frames.root``.
        path: output CSV path.
        scorer: the first header row's value.
        likelihood: optional (N, K) confidences; when given, each keypoint gets x, y, likelihood columns
            (the DLC prediction layout), else x, y (the labelling layout). Missing values are empty cells.

    Returns:
        The written path.
    """
    if likelihood is not None:
        return write_prediction_table(
            path, frames.image_paths, frames.keypoint_names, frames.keypoints, likelihood, scorer=scorer
        )
    k = frames.num_keypoints
    header = [
        ["scorer"] + [scorer] * (2 * k),
        ["bodyparts"] + [name for name in frames.keypoint_names for _ in "xy"],
        ["coords"] + ["x", "y"] * k,
    ]
    return _write_table(path, header, frames.image_paths, frames.keypoints.reshape(len(frames), -1))


def _write_table(path: str | os.PathLike, header: list[list[str]], paths: list[str], values: np.ndarray) -> Path:
    """A label CSV, atomically: the header rows, then each image path and its (C,) values (NaN: an empty cell)."""
    with atomic_write(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerows(header)
        writer.writerows([p, *map(_fmt, row)] for p, row in zip(paths, values, strict=True))
    return Path(path)


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise KeyheadError(f"{path}: file not found; check the path")


def _csv_table(path: Path, header: list[str] = _HEADER) -> _Table:
    """The table of a CSV whose first rows are ``header`` (``_HEADER``, or ``_MULTI_HEADER`` for multi-animal)."""
    _check_file(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            records = [(i, r) for i, r in enumerate(csv.reader(f), start=1) if any(c.strip() for c in r)]
    except (UnicodeDecodeError, csv.Error) as e:
        raise KeyheadError(f"{path}: not a readable CSV file ({e}); save it as a UTF-8 CSV") from None
    labels = [r[0].strip().lower() for _, r in records[:4]]
    if header == _HEADER and "individuals" in labels:
        raise KeyheadError(f"{path}: multi-animal labels (an 'individuals' header row): {_MULTI_ANIMAL}")
    levels = len(header)
    if labels[:levels] != header:
        raise KeyheadError(
            f"{path}: the first {levels} rows must start with {', '.join(map(repr, header))} (the DeepLabCut header), "
            f"found {labels[:levels]}; export the labels from DeepLabCut or Lightning Pose"
        )
    width = max(len(r) for _, r in records[:levels])
    rows_of_header = [[c.strip() for c in r] + [""] * (width - len(r)) for _, r in records[:levels]]
    # Index columns (image path, or labeled-data / video / image) have empty cells below the scorer row.
    n_index = 1
    while n_index < width and not any(h[n_index] for h in rows_of_header[1:]):
        n_index += 1
    if n_index == width:
        raise KeyheadError(f"{path}: the header has no keypoint columns; each keypoint needs x and y columns")
    paths, cells, rows = [], [], []
    for number, record in records[levels:]:
        if any(c.strip() for c in record[width:]):
            raise KeyheadError(
                f"{path}, row {number}: {len(record)} cells but the header has {width} columns; remove the extra cells"
            )
        record = record[:width] + [""] * (width - len(record))
        paths.append("/".join(c.strip() for c in record[:n_index] if c.strip()))
        cells.append(record[n_index:])
        rows.append(f"row {number}")
    columns = pd.MultiIndex.from_arrays([h[n_index:] for h in rows_of_header], names=header)
    data = pd.DataFrame(cells, index=pd.Index(paths, dtype=object), columns=columns, dtype=object)
    names = [f"column {n_index + j + 1} ({' '.join(c for c in column[1:] if c)})" for j, column in enumerate(columns)]
    return _Table(data, rows, names)


def _h5_table(path: Path, header: list[str] = _HEADER) -> _Table:
    """The table of a pandas HDF5 file whose columns have the levels ``header``."""
    _check_file(path)
    data = read_pandas_hdf(path)
    if header == _HEADER and "individuals" in data.columns.names:
        raise KeyheadError(f"{path}: multi-animal labels (an 'individuals' header row): {_MULTI_ANIMAL}")
    if data.columns.nlevels != len(header):
        raise KeyheadError(
            f"{path}: columns have {data.columns.nlevels} levels {list(data.columns.names)}, expected "
            f"{len(header)} ({', '.join(header)}); export it again from DeepLabCut"
        )
    data = data.copy()
    data.columns = data.columns.set_names(header)
    if isinstance(data.index, pd.MultiIndex):
        paths = ["/".join(str(v) for v in row if str(v)) for row in data.index]
    else:
        paths = [str(v) for v in data.index]
    data.index = pd.Index(paths, dtype=object)
    rows = [f"table row {i + 1}" for i in range(len(data))]
    names = [f"column ({', '.join(map(str, column[1:]))})" for column in data.columns]
    return _Table(data, rows, names)


def _to_float(table: _Table, source: Path) -> np.ndarray:
    """The cells as a (N, C) float64 array; empty cells are NaN, anything else non-numeric is an error."""
    data = table.data
    if all(pd.api.types.is_numeric_dtype(t) for t in data.dtypes):
        return data.to_numpy(dtype=np.float64)
    out = np.full(data.shape, np.nan)
    for i, row in enumerate(data.to_numpy(dtype=object)):
        for j, cell in enumerate(row):
            text = str(cell).strip()
            if text in _BLANK:
                continue
            try:
                out[i, j] = float(text)
            except ValueError:
                raise KeyheadError(
                    f"{source}, {table.rows[i]}, {table.columns[j]}: {text[:20]!r} is not a number; "
                    "write a decimal number, or leave the cell empty for a missing keypoint"
                ) from None
    return out


_Key = tuple[str, ...]


def _gather(
    values: np.ndarray, position: dict[_Key, int], keys: list[_Key], coord: str, source: Path
) -> np.ndarray | None:
    """The (N, K) values of one coord for every keypoint, or None when no keypoint has that coord."""
    present = [(*key, coord) in position for key in keys]
    if not any(present):
        return None
    if not all(present):
        raise KeyheadError(
            f"{source}: keypoint '{' '.join(keys[present.index(False)])}' has no {coord} column while others do; "
            "give every keypoint the same coords"
        )
    return values[:, [position[(*key, coord)] for key in keys]]


class _Columns(NamedTuple):
    """A label table's numbers by keypoint column, before they are arranged into frames.

    Attributes:
        keys: the K keypoint columns in order: (bodypart,) or, in a multi-animal table, (individual, bodypart).
        position: (``*key``, coord) -> the column index, for messages (``table.columns``).
        xy: (N, K, 2) (x, y); NaN where either is missing.
        likelihood: (N, K) float32, or None without likelihood columns.
        visibility: (N, K) int8 (0, 1, 2), or None without visibility columns.
        root: the folder ``paths`` are relative to.
        paths: N image paths relative to ``root``.
    """

    keys: list[_Key]
    position: dict[_Key, int]
    xy: np.ndarray
    likelihood: np.ndarray | None
    visibility: np.ndarray | None
    root: Path
    paths: list[str]


def _positions(table: _Table, source: Path) -> dict[_Key, int]:
    """(individual?, bodypart, coord) -> column index, checking the names and that no column is there twice."""
    position: dict[_Key, int] = {}
    levels = table.data.columns.names[1:-1]
    for j, column in enumerate(table.data.columns):
        *names, coord = (str(c).strip() for c in column[1:])
        coord = coord.lower()
        where = f"{source}, {table.columns[j]}"
        for level, name in zip(levels, names, strict=True):
            if not name:
                noun = "keypoint" if level == "bodyparts" else "individual"
                raise KeyheadError(f"{where}: empty {level} cell; every keypoint column needs its {noun} name")
        if coord not in _COORDS:
            raise KeyheadError(f"{where}: coords {coord!r} is not one of {', '.join(_COORDS)}; fix the coords row")
        key = (*names, coord)
        if key in position:
            first = table.columns[position[key]]
            raise KeyheadError(f"{where}: a second '{' '.join(key)}' column (the first is {first}); remove one")
        position[key] = j
    return position


def _parse_columns(table: _Table, source: Path, root: str | os.PathLike | None) -> _Columns:
    """The numbers and image paths of a label table (single- or multi-animal); see ``read_dlc_csv`` for the rules."""
    position = _positions(table, source)
    keys = list(dict.fromkeys(key[:-1] for key in position))
    for key in keys:
        for coord in ("x", "y"):
            if (*key, coord) not in position:
                raise KeyheadError(
                    f"{source}: keypoint '{' '.join(key)}' has no {coord} column; every keypoint needs x and y"
                )
    values = _to_float(table, source)
    xy = np.stack([_gather(values, position, keys, c, source) for c in ("x", "y")], axis=-1)
    xy[np.isnan(xy).any(axis=-1)] = np.nan
    likelihood = _gather(values, position, keys, "likelihood", source)
    visibility = _gather(values, position, keys, "visibility", source)
    if visibility is not None:
        bad = np.argwhere(np.isfinite(visibility) & ~np.isin(visibility, (0, 1, 2)))
        if len(bad):
            i, k = bad[0]
            raise KeyheadError(
                f"{source}, {table.rows[i]}, {table.columns[position[(*keys[k], 'visibility')]]}: visibility "
                f"{visibility[i, k]:g} is not 0, 1 or 2 (unlabelled, occluded, visible); fix the cell"
            )
        visibility = np.nan_to_num(visibility, nan=0.0).astype(np.int8)
    raw = [str(p) for p in table.data.index]
    root_dir = Path(root).resolve() if root is not None else resolve_root(source.parent, raw[0] if raw else None)
    paths = [relative_image_path(p, root_dir, f"{source}, {table.rows[i]}") for i, p in enumerate(raw)]
    first_row: dict[str, int] = {}
    for i, p in enumerate(paths):
        j = first_row.setdefault(p, i)
        if j != i:
            raise KeyheadError(f"{source}: {table.rows[j]} and {table.rows[i]} both label {p}; keep only one of them")
    return _Columns(
        keys=keys,
        position=position,
        xy=xy,
        likelihood=None if likelihood is None else likelihood.astype(np.float32),
        visibility=visibility,
        root=root_dir,
        paths=paths,
    )


def _parse(table: _Table, source: Path, root: str | os.PathLike | None) -> tuple[LabeledFrames, np.ndarray | None]:
    """Labels, and the (N, K) likelihoods when the table has them; see ``read_dlc_csv`` for the rules."""
    columns = _parse_columns(table, source, root)
    frames = LabeledFrames(
        root=columns.root,
        image_paths=columns.paths,
        keypoints=columns.xy,
        keypoint_names=[key[0] for key in columns.keys],
        visibility=columns.visibility,
        source=str(source),
    )
    return frames, columns.likelihood


def read_dlc_csv(path: str | os.PathLike, root: str | os.PathLike | None = None) -> LabeledFrames:
    """Read a DeepLabCut or Lightning Pose label CSV.

    The file has three header rows (scorer / bodyparts / coords) and then one row per image. The image is named by
    one index column (``labeled-data/img01.png``, Lightning Pose and DeepLabCut < 2.2) or by three (``labeled-data``,
    video folder, image name; DeepLabCut >= 2.2), told apart by their empty bodyparts and coords header cells.
    coords may be ``x, y``, ``x, y, likelihood`` (predictions; likelihood is dropped here, see
    ``read_dlc_predictions``) and may include ``visibility`` (0, 1, 2, kept). Coordinates are taken as-is: (x, y)
    pixels with pixel centres at integers. Empty cells are missing (NaN); a keypoint with only one of x and y is
    missing altogether.

    Args:
        path: the CSV file.
        root: folder the image paths are relative to. Default: the CSV's folder, or the nearest of its (up to 3)
            parent folders in which the first image exists (DeepLabCut's ``labeled-data/<video>/`` tables hold
            paths relative to the project folder).

    Returns:
        The frames; ``keypoints`` is (N, K, 2) with K the bodyparts in column order.

    Raises:
        KeyheadError: a malformed header, a multi-animal table, a non-numeric cell (named by file row and column),
            two rows for one image, or an image path outside ``root``.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> labels = LabeledFrames(d, ["img0.png"], np.array([[[10.0, 20.0]]]), ["nose"])
        >>> read_dlc_csv(write_dlc_csv(labels, f"{d}/CollectedData.csv")).keypoints.tolist()
        [[[10.0, 20.0]]]
    """
    path = Path(path)
    return _parse(_csv_table(path), path, root)[0]


def read_dlc_h5(path: str | os.PathLike, root: str | os.PathLike | None = None) -> LabeledFrames:
    """Read the pandas HDF5 table DeepLabCut saves beside its CSV (``CollectedData_<scorer>.h5``).

    Same rules and result as ``read_dlc_csv``; a 3-level row index (labeled-data, video, image) is joined with ``/``.

    Example:
        >>> frames = read_dlc_h5("Reaching/labeled-data/video1/CollectedData_Mackenzie.h5")  # doctest: +SKIP
    """
    path = Path(path)
    return _parse(_h5_table(path), path, root)[0]


def read_dlc_predictions(
    path: str | os.PathLike, root: str | os.PathLike | None = None
) -> tuple[LabeledFrames, np.ndarray]:
    """Read DeepLabCut-style predictions (coords ``x, y, likelihood``) from a CSV, or an ``.h5``/``.hdf5`` table.

    Args:
        path: the table; rows are images (or video frame numbers, which become the "image paths").
        root: as in ``read_dlc_csv``.

    Returns:
        (frames, likelihood): the predicted (x, y) as ``frames.keypoints`` (N, K, 2), and likelihood (N, K)
        float32, NaN where the cell is empty.

    Example:
        >>> frames, likelihood = read_dlc_predictions("predictions.csv")  # doctest: +SKIP
    """
    path = Path(path)
    table = _h5_table(path) if path.suffix.lower() in (".h5", ".hdf5") else _csv_table(path)
    frames, likelihood = _parse(table, path, root)
    if likelihood is None:
        raise KeyheadError(
            f"{path}: no likelihood columns, so these are labels, not predictions; read them with read_dlc_csv"
        )
    return frames, likelihood


def _load_config(path: Path) -> dict:
    _check_file(path)
    config = read_yaml(path, "a DeepLabCut config.yaml")
    if not isinstance(config, dict):
        raise KeyheadError(f"{path}: expected a YAML mapping with scorer, bodyparts and skeleton")
    return config


def _project_skeleton(config: dict, path: Path, bodyparts: list[str]) -> list[tuple[str, str]]:
    skeleton = config.get("skeleton") or []
    if not isinstance(skeleton, list):
        raise KeyheadError(f"{path}: skeleton must be a list of [bodypart, bodypart] pairs, got {skeleton!r}")
    pairs = []
    for pair in skeleton:
        if not isinstance(pair, list) or len(pair) != 2 or any(str(p) not in bodyparts for p in pair):
            raise KeyheadError(
                f"{path}: skeleton entry {pair!r} is not a pair of bodyparts from {bodyparts}; fix the skeleton list"
            )
        pairs.append((str(pair[0]), str(pair[1])))
    return pairs


def _project_tables(folder: Path, scorer: str) -> list[Path]:
    """``labeled-data/<video>/CollectedData_<scorer>.csv`` (else ``.h5``) of each video folder, in sorted order.

    Raises:
        KeyheadError: no video folder has a table.
    """
    labeled = folder / "labeled-data"
    tables = []
    for video in sorted(p for p in labeled.iterdir() if p.is_dir()) if labeled.is_dir() else []:
        table = video / f"CollectedData_{scorer}.csv"
        if table.is_file() or table.with_suffix(".h5").is_file():
            tables.append(table if table.is_file() else table.with_suffix(".h5"))
    if not tables:
        raise KeyheadError(
            f"{folder}: no labeled-data/*/CollectedData_{scorer}.csv (or .h5); label frames first, "
            "or check 'scorer' in config.yaml"
        )
    return tables


def read_dlc_project(folder: str | os.PathLike) -> LabeledFrames:
    """Read every labelled video folder of a single-animal DeepLabCut project.

    Reads ``config.yaml`` (scorer, bodyparts, skeleton) and ``labeled-data/<video>/CollectedData_<scorer>.csv``
    (the ``.h5`` where the CSV is absent) for each video folder in sorted order, skipping folders without labels.

    Args:
        folder: the project folder (holding ``config.yaml`` and ``labeled-data/``).

    Returns:
        The frames of all videos, concatenated; ``root`` is the project folder and ``skeleton`` comes from the config.

    Raises:
        KeyheadError: a missing or invalid config, a multi-animal project, a table whose bodyparts differ from the
            config's, or no labelled folder at all.

    Example:
        >>> frames = read_dlc_project("openfield-Pranav-2018-10-30")  # doctest: +SKIP
    """
    folder = Path(folder).resolve()
    config_path = folder / "config.yaml"
    config = _load_config(config_path)
    if config.get("multianimalproject"):
        raise KeyheadError(f"{config_path}: a multi-animal project (multianimalproject: true): {_MULTI_ANIMAL}")
    scorer, bodyparts = config.get("scorer"), config.get("bodyparts")
    if not scorer or not isinstance(bodyparts, list) or not bodyparts:
        raise KeyheadError(f"{config_path}: needs 'scorer' and a non-empty 'bodyparts' list; add them")
    bodyparts = [str(b) for b in bodyparts]
    skeleton = _project_skeleton(config, config_path, bodyparts)
    parts = []
    for table in _project_tables(folder, scorer):
        frames = (read_dlc_csv if table.suffix == ".csv" else read_dlc_h5)(table, root=folder)
        if frames.keypoint_names != bodyparts:
            raise KeyheadError(
                f"{table}: bodyparts {frames.keypoint_names} differ from {config_path} bodyparts {bodyparts}; "
                "make them the same names in the same order"
            )
        parts.append(frames)
    visibility = [p.visibility for p in parts]
    return LabeledFrames(
        root=folder,
        image_paths=[path for p in parts for path in p.image_paths],
        keypoints=np.concatenate([p.keypoints for p in parts]),
        keypoint_names=bodyparts,
        visibility=None if any(v is None for v in visibility) else np.concatenate(visibility),
        skeleton=skeleton,
        source=str(folder),
    )
