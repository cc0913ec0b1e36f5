"""Multi-animal DeepLabCut / Lightning Pose label tables: header rows scorer / individuals / bodyparts / coords.

The tables are parsed by ``dlc.py``'s readers (one header level more); here their keypoint columns are arranged as
individuals x bodyparts. Row ``i`` of the result holds one instance slot per individual, in header order: slot ``m``
is individual ``m`` (``tracks[i, m] = m``) where any of its keypoints is labelled, else all NaN with track -1.
DeepLabCut's "unique bodyparts" (individual ``single``: an arena corner, a food port) are not an animal and are
dropped with a warning.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from keyhead.data.formats.dlc import (
    _MULTI_HEADER,
    _csv_table,
    _h5_table,
    _load_config,
    _parse_columns,
    _project_skeleton,
    _project_tables,
    _Table,
    _write_table,
)
from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_path
from keyhead.io.predictions import UNIQUE, individual_grid, write_prediction_table
from keyhead.types import InstanceFrames


def _parse_multi(table: _Table, source: Path, root: str | os.PathLike | None) -> InstanceFrames:
    columns = _parse_columns(table, source, root)
    where = [table.columns[columns.position[(*key, "x")]] for key in columns.keys]
    individuals, bodyparts, order = individual_grid(columns.keys, str(source), where)
    xy = columns.xy[:, order]  # (N, M, K, 2)
    present = np.isfinite(xy).all(-1).any(-1)
    return InstanceFrames(
        root=columns.root,
        image_paths=columns.paths,
        keypoints=xy,
        keypoint_names=bodyparts,
        track_names=individuals,
        tracks=np.where(present, np.arange(len(individuals))[None], -1),
        visibility=None if columns.visibility is None else columns.visibility[:, order],
        source=str(source),
    )


def read_dlc_multi_csv(path: str | os.PathLike, root: str | os.PathLike | None = None) -> InstanceFrames:
    """Read a multi-animal DeepLabCut (or Lightning Pose) label CSV.

    Four header rows (scorer / individuals / bodyparts / coords), then one row per image; index columns, coords,
    missing cells and image paths follow ``read_dlc_csv``'s rules.

    Args:
        path: the CSV file.
        root: folder the image paths are relative to (default as in ``read_dlc_csv``).

    Returns:
        The frames: ``keypoints`` (N, M, K, 2) with M the individuals in header order (``track_names``) and K the
        first individual's bodyparts; ``tracks[:, m]`` is m where individual m is labelled, else -1.

    Raises:
        KeyheadError: a malformed header, an individual's or an individual + bodypart's columns twice, an individual
            missing bodyparts that others have, a row with too many cells, or a non-number cell (named by file, row
            and column).

    Example:
        >>> frames = read_dlc_multi_csv("tri-mouse/labeled-data/video/CollectedData_Daniel.csv")  # doctest: +SKIP
        >>> frames.keypoints.shape  # (N, 3 mice, 12 bodyparts, 2)  # doctest: +SKIP
    """
    path = Path(path)
    return _parse_multi(_csv_table(path, _MULTI_HEADER), path, root)


def read_dlc_multi_h5(path: str | os.PathLike, root: str | os.PathLike | None = None) -> InstanceFrames:
    """Read the pandas HDF5 table of a multi-animal DeepLabCut project (columns scorer / individuals / bodyparts /
    coords); same rules and result as ``read_dlc_multi_csv``.

    Example:
        >>> frames = read_dlc_multi_h5("tri-mouse/labeled-data/video/CollectedData_Daniel.h5")  # doctest: +SKIP
    """
    path = Path(path)
    return _parse_multi(_h5_table(path, _MULTI_HEADER), path, root)


def _names(config: dict, key: str, path: Path) -> list[str]:
    value = config.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise KeyheadError(f"{path}: '{key}' must be a list of names; fix config.yaml")
    return [str(v) for v in value]


def read_dlc_multi_project(folder: str | os.PathLike) -> InstanceFrames:
    """Read every labelled video folder of a multi-animal DeepLabCut project (``multianimalproject: true``).

    Reads ``config.yaml`` (scorer, individuals, multianimalbodyparts, skeleton) and
    ``labeled-data/<video>/CollectedData_<scorer>.csv`` (the ``.h5`` where the CSV is absent) for each video folder in
    sorted order.

    Args:
        folder: the project folder (holding ``config.yaml`` and ``labeled-data/``).

    Returns:
        The frames of all videos: M = the config's individuals (``track_names``), K its multianimalbodyparts;
        ``root`` is the project folder.

    Raises:
        KeyheadError: a missing or invalid config, a table whose bodyparts differ from the config's or with an
            individual the config does not list, or no labelled folder.

    Example:
        >>> frames = read_dlc_multi_project("tri-mouse-Daniel-2019-08-19")  # doctest: +SKIP
    """
    folder = Path(folder).resolve()
    config_path = folder / "config.yaml"
    config = _load_config(config_path)
    scorer = config.get("scorer")
    individuals = _names(config, "individuals", config_path)
    bodyparts = _names(config, "multianimalbodyparts", config_path)
    if not scorer or not individuals or not bodyparts:
        raise KeyheadError(
            f"{config_path}: a multi-animal project needs 'scorer', 'individuals' and 'multianimalbodyparts'; add them"
        )
    skeleton = _project_skeleton(config, config_path, bodyparts)
    parts = []
    for table in _project_tables(folder, scorer):
        frames = (read_dlc_multi_csv if table.suffix == ".csv" else read_dlc_multi_h5)(table, root=folder)
        if frames.keypoint_names != bodyparts:
            raise KeyheadError(
                f"{table}: bodyparts {frames.keypoint_names} differ from {config_path} multianimalbodyparts "
                f"{bodyparts}; make them the same names in the same order"
            )
        unknown = [name for name in frames.track_names if name not in individuals]
        if unknown:
            raise KeyheadError(
                f"{table}: individual '{unknown[0]}' is not in {config_path} individuals; add it there or rename it"
            )
        slots = [individuals.index(name) for name in frames.track_names]
        xy = np.full((len(frames), len(individuals), len(bodyparts), 2), np.nan, dtype=np.float32)
        xy[:, slots] = frames.keypoints
        visibility = None
        if frames.visibility is not None:
            visibility = np.zeros(xy.shape[:3], dtype=np.int8)
            visibility[:, slots] = frames.visibility
        parts.append((frames, xy, visibility))
    present = np.concatenate([np.isfinite(xy).all(-1).any(-1) for _, xy, _ in parts])
    visibilities = [v for _, _, v in parts]
    return InstanceFrames(
        root=folder,
        image_paths=[p for frames, _, _ in parts for p in frames.image_paths],
        keypoints=np.concatenate([xy for _, xy, _ in parts]),
        keypoint_names=bodyparts,
        track_names=individuals,
        tracks=np.where(present, np.arange(len(individuals))[None], -1),
        visibility=None if any(v is None for v in visibilities) else np.concatenate(visibilities),
        skeleton=skeleton,
        source=str(folder),
    )


def identity_blocks(frames: InstanceFrames) -> tuple[list[str], np.ndarray]:
    """The individuals of a multi-animal table for these frames, and which one each instance is.

    Individuals are ``track_names`` (made unique) when there are any, plus ``animal<j>`` blocks for instances without
    a track (as many as the most untracked instances of one row); without track names, ``animal0..animal{M-1}``,
    one per instance slot.

    Returns:
        (B individual names, (N, M) block of each instance slot, -1 where the slot holds no instance).

    Raises:
        KeyheadError: two instances of one row on the same track.
    """
    present = frames.present()
    n, m = present.shape
    if not frames.track_names:
        return [f"animal{j}" for j in range(m)], np.where(present, np.arange(m)[None], -1)
    names: list[str] = []
    for name in frames.track_names:
        unique, j = name or "track", 2
        while unique in names or unique == UNIQUE:
            unique, j = f"{name}-{j}", j + 1
        names.append(unique)
    tracks = np.where(present, frames.tracks, -1)
    untracked = present & (tracks < 0)
    block = tracks.copy()
    block[untracked] = len(names) + (np.cumsum(untracked, axis=1) - 1)[untracked]
    for i in range(n):
        taken = block[i][block[i] >= 0]
        if len(set(taken.tolist())) < len(taken):
            t = int(next(t for t in taken if (taken == t).sum() > 1))
            raise KeyheadError(
                f"{frames.source}: row {i} ({frames.image_paths[i]}) has two instances on track '{names[t]}'; "
                "give each instance its own track"
            )
    extra = int(untracked.sum(axis=1).max(initial=0))
    j = 0
    while extra:
        if f"animal{j}" not in names:
            names.append(f"animal{j}")
            extra -= 1
        j += 1
    return names, block


def _scatter(values: np.ndarray, block: np.ndarray, count: int, fill: float = np.nan) -> np.ndarray:
    """Per-instance values (N, M, ...) placed in their individuals' blocks: (N, count, ...)."""
    out = np.full((len(values), count, *values.shape[2:]), fill, dtype=np.float64)
    rows, slots = np.nonzero(block >= 0)
    out[rows, block[rows, slots]] = values[rows, slots]
    return out


def write_dlc_multi_csv(
    frames: InstanceFrames,
    path: str | os.PathLike,
    scorer: str = "keyhead",
    likelihood: np.ndarray | None = None,
) -> Path:
    """Write multi-animal labels (or predictions) as a multi-animal DeepLabCut CSV, atomically.

    Args:
        frames: the frames; ``image_paths`` become the first column, relative to ``frames.root``.
        path: output CSV path.
        scorer: the first header row's value.
        likelihood: optional (N, M, K) confidences; when given, each keypoint gets x, y, likelihood columns.

    Returns:
        The written path. Individuals are as :func:`identity_blocks` says; missing values are empty cells.

    Example:
        >>> import tempfile
        >>> frames = InstanceFrames(".", ["a.png"], np.arange(8.0).reshape(1, 2, 2, 2), ["nose", "tail"])
        >>> read_dlc_multi_csv(write_dlc_multi_csv(frames, f"{tempfile.mkdtemp()}/t.csv")).track_names
        ['animal0', 'animal1']
    """
    names, block = identity_blocks(frames)
    xy = _scatter(frames.keypoints, block, len(names))
    if likelihood is not None:
        lik = _scatter(np.asarray(likelihood), block, len(names))
        return write_prediction_table(path, frames.image_paths, frames.keypoint_names, xy, lik, scorer, names)
    k = frames.num_keypoints
    header = [
        ["scorer"] + [scorer] * (2 * k * len(names)),
        ["individuals"] + [name for name in names for _ in range(2 * k)],
        ["bodyparts"] + [b for b in frames.keypoint_names for _ in "xy"] * len(names),
        ["coords"] + ["x", "y"] * k * len(names),
    ]
    return _write_table(path, header, frames.image_paths, xy.reshape(len(frames), -1))


def write_h5_table(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """A DeepLabCut HDF5 table (pandas ``format="table"``, key ``df_with_missing``), written atomically."""
    with atomic_path(path) as tmp:
        table.to_hdf(tmp, key="df_with_missing", mode="w", format="table")
    return Path(path)


def write_dlc_multi_h5(frames: InstanceFrames, path: str | os.PathLike, scorer: str = "keyhead") -> Path:
    """A multi-animal DeepLabCut HDF5 label table: (scorer, individuals, bodyparts, coords) columns, image-path rows.

    Individuals are as :func:`identity_blocks` says; missing keypoints are NaN. Read it with ``read_dlc_multi_h5``.
    """
    names, block = identity_blocks(frames)
    xy = _scatter(frames.keypoints, block, len(names))
    columns = pd.MultiIndex.from_product([[scorer], names, frames.keypoint_names, ["x", "y"]], names=_MULTI_HEADER)
    index = pd.Index(frames.image_paths, dtype=object)
    return write_h5_table(pd.DataFrame(xy.reshape(len(frames), -1), index=index, columns=columns), path)
