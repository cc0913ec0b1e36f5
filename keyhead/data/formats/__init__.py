"""Label file formats: readers and writers for DeepLabCut / Lightning Pose, COCO, SLEAP and 300-W, plus auto-detection.

``load_labels`` reads one subject per frame (``LabeledFrames``); ``load_instances`` reads several (``InstanceFrames``:
multi-animal DeepLabCut, SLEAP, COCO with several annotations per image), wrapping single-subject layouts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from keyhead.data.formats._common import exists
from keyhead.data.formats.coco import (
    coco_is_multi_instance,
    read_coco,
    read_coco_instances,
    write_coco,
    write_coco_instances,
)
from keyhead.data.formats.dlc import (
    _MULTI_ANIMAL,
    read_dlc_csv,
    read_dlc_h5,
    read_dlc_predictions,
    read_dlc_project,
    write_dlc_csv,
)
from keyhead.data.formats.dlc_multi import (
    read_dlc_multi_csv,
    read_dlc_multi_h5,
    read_dlc_multi_project,
    write_dlc_multi_csv,
    write_dlc_multi_h5,
)
from keyhead.data.formats.ibug68 import IBUG68_FLIP_PAIRS, IBUG68_NAMES
from keyhead.data.formats.pts import read_pts, read_pts_folder, write_pts
from keyhead.data.formats.slp import read_slp, write_slp
from keyhead.errors import KeyheadError
from keyhead.io.hdf import read_pandas_hdf
from keyhead.io.structured import read_yaml
from keyhead.types import InstanceFrames, LabeledFrames

__all__ = [
    "IBUG68_FLIP_PAIRS",
    "IBUG68_NAMES",
    "is_multi_instance",
    "load_instances",
    "load_labels",
    "read_coco",
    "read_coco_instances",
    "read_dlc_csv",
    "read_dlc_h5",
    "read_dlc_multi_csv",
    "read_dlc_multi_h5",
    "read_dlc_multi_project",
    "read_dlc_predictions",
    "read_dlc_project",
    "read_pts",
    "read_pts_folder",
    "read_slp",
    "validate_frames",
    "write_coco",
    "write_coco_instances",
    "write_dlc_csv",
    "write_dlc_multi_csv",
    "write_dlc_multi_h5",
    "write_pts",
    "write_slp",
]

_LAYOUTS = (
    "a Lightning Pose folder (CollectedData.csv at the top), a DeepLabCut project folder (config.yaml and "
    "labeled-data/), a folder of 300-W .pts files beside their images, a DeepLabCut .csv or .h5 table, "
    "a COCO keypoints .json or a SLEAP .slp"
)
_READERS_BY_SUFFIX = {".csv": read_dlc_csv, ".h5": read_dlc_h5, ".hdf5": read_dlc_h5, ".json": read_coco}
_MULTI_READERS_BY_SUFFIX = {
    ".csv": read_dlc_multi_csv,
    ".h5": read_dlc_multi_h5,
    ".hdf5": read_dlc_multi_h5,
    ".json": read_coco_instances,
    ".slp": read_slp,
}


def load_labels(path: str | os.PathLike, **kwargs: Any) -> LabeledFrames:
    """Read labels in whichever supported layout ``path`` is.

    Folders: ``CollectedData.csv`` at the top (Lightning Pose) -> ``read_dlc_csv``; ``config.yaml`` and
    ``labeled-data/`` (DeepLabCut project) -> ``read_dlc_project``; any ``.pts`` inside -> ``read_pts_folder``.
    Files: ``.csv`` -> ``read_dlc_csv``, ``.h5``/``.hdf5`` -> ``read_dlc_h5``, ``.json`` -> ``read_coco``,
    ``.slp`` -> ``read_slp`` when no frame has two instances. Multi-animal labels are refused with a pointer to
    ``load_instances``.

    Args:
        path: a folder or a label file.
        **kwargs: passed to the chosen reader (``root=``, ``image_root=``, ``category=``, ``recursive=``).

    Returns:
        The frames.

    Raises:
        KeyheadError: ``path`` is missing, none of the layouts above, or multi-animal.

    Example:
        >>> frames = load_labels("lightning-pose-mirror-mouse-example")  # doctest: +SKIP
    """
    path = Path(path)
    if path.suffix.lower() == ".slp" and path.is_file():
        return _single(read_slp(path, **kwargs))
    if path.is_dir():
        if (path / "CollectedData.csv").is_file():
            return _with_synth_metadata(read_dlc_csv(path / "CollectedData.csv", **kwargs), path)
        if (path / "config.yaml").is_file() and (path / "labeled-data").is_dir():
            return read_dlc_project(path, **kwargs)
        if next(path.rglob("*.pts"), None) is not None:
            return read_pts_folder(path, **kwargs)
    elif path.suffix.lower() in _READERS_BY_SUFFIX and path.is_file():
        return _READERS_BY_SUFFIX[path.suffix.lower()](path, **kwargs)
    elif not path.exists():
        raise KeyheadError(f"{path}: not found; pass a label file or folder")
    raise KeyheadError(f"{path}: not a label layout keyhead reads; accepted: {_LAYOUTS}")


def _with_synth_metadata(frames: LabeledFrames | InstanceFrames, folder: Path) -> LabeledFrames | InstanceFrames:
    """A dataset made by ``keyhead synth`` records its skeleton and left/right pairs beside the CSV."""
    meta_path = folder / "keyhead_synth.yaml"
    if not meta_path.is_file():
        return frames
    meta = read_yaml(meta_path, "keyhead_synth.yaml") or {}
    if not isinstance(meta, dict):
        raise KeyheadError(f"{meta_path}: expected a mapping (skeleton, flip_pairs); delete it or generate again")
    lookup = {n: i for i, n in enumerate(frames.keypoint_names)}
    pairs = [(a, b) for a, b in meta.get("flip_pairs", []) if a in lookup and b in lookup]
    frames.skeleton = [(a, b) for a, b in meta.get("skeleton", []) if a in lookup and b in lookup]
    frames.flip_pairs = [(lookup[a], lookup[b]) for a, b in pairs]
    return frames


def _single(frames: InstanceFrames) -> LabeledFrames:
    """Instances as single-subject frames, when no row has two."""
    many = np.flatnonzero(frames.present().sum(axis=1) > 1)
    if len(many):
        raise KeyheadError(
            f"{frames.source}: multi-animal labels (row {many[0]} has {frames.present()[many[0]].sum()} instances): "
            f"{_MULTI_ANIMAL}"
        )
    first, rows = frames.present().argmax(axis=1), np.arange(len(frames))  # the row's instance, or slot 0 if none
    return LabeledFrames(
        root=frames.root,
        image_paths=list(frames.image_paths),
        keypoints=frames.keypoints[rows, first],
        keypoint_names=list(frames.keypoint_names),
        visibility=None if frames.visibility is None else frames.visibility[rows, first],
        skeleton=list(frames.skeleton),
        flip_pairs=list(frames.flip_pairs),
        source=frames.source,
    )


def _csv_has_individuals(path: Path) -> bool:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            head = [f.readline() for _ in range(4)]
    except (OSError, UnicodeDecodeError):
        return False
    return any(line.split(",", 1)[0].strip().lower() == "individuals" for line in head)


def _multi_project(folder: Path) -> bool:
    if not ((folder / "config.yaml").is_file() and (folder / "labeled-data").is_dir()):
        return False
    config = read_yaml(folder / "config.yaml", "a DeepLabCut config.yaml")
    return isinstance(config, dict) and bool(config.get("multianimalproject"))


def is_multi_instance(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds multi-animal labels, from a cheap look (header rows, config, file type).

    True for a DeepLabCut / Lightning Pose table (or a folder with ``CollectedData.csv``) with an ``individuals``
    header row, a multi-animal DeepLabCut project (``multianimalproject: true``), a SLEAP ``.slp``, and a COCO file
    in which some image has two or more labelled annotations; False for anything else, including files that do not
    read as their layout (their reader then says what is wrong).

    Example:
        >>> is_multi_instance("clip.slp")  # doctest: +SKIP
        True
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if path.is_dir():
            if (path / "CollectedData.csv").is_file():
                return _csv_has_individuals(path / "CollectedData.csv")
            return _multi_project(path)
        if not path.is_file():
            return False
        if suffix in (".h5", ".hdf5"):
            return "individuals" in read_pandas_hdf(path).columns.names
        if suffix == ".json":
            return coco_is_multi_instance(path)
    except KeyheadError:  # not readable as that layout: its reader says why
        return False
    return suffix == ".slp" or (suffix == ".csv" and _csv_has_individuals(path))


def load_instances(path: str | os.PathLike, **kwargs: Any) -> InstanceFrames:
    """Read labels with several subjects per frame in whichever supported layout ``path`` is.

    Multi-animal layouts: a DeepLabCut / Lightning Pose table with an ``individuals`` row (``read_dlc_multi_csv`` /
    ``read_dlc_multi_h5``; a folder with such a ``CollectedData.csv`` also reads ``keyhead_synth.yaml``), a
    multi-animal DeepLabCut project (``read_dlc_multi_project``), a SLEAP ``.slp`` (``read_slp``) and any COCO
    ``.json`` (``read_coco_instances``: one row per image). Other layouts are read by :func:`load_labels` and wrapped
    with ``InstanceFrames.from_single``.

    Args:
        path: a folder or a label file.
        **kwargs: passed to the chosen reader (``root=``, ``image_root=``, ``category=``, ``frames_dir=``, ...).

    Returns:
        The frames, (N, M, K, 2) keypoints.

    Raises:
        KeyheadError: as the chosen reader.

    Example:
        >>> frames = load_instances("clip.slp")  # doctest: +SKIP
        >>> frames.track_names  # doctest: +SKIP
        ['female', 'male']
    """
    path = Path(path)
    suffix = path.suffix.lower()
    multi_file = suffix in (".slp", ".json") or (suffix in _MULTI_READERS_BY_SUFFIX and is_multi_instance(path))
    if path.is_file() and multi_file:
        return _MULTI_READERS_BY_SUFFIX[suffix](path, **kwargs)
    if path.is_dir() and is_multi_instance(path):
        if (path / "CollectedData.csv").is_file():
            return _with_synth_metadata(read_dlc_multi_csv(path / "CollectedData.csv", **kwargs), path)
        return read_dlc_multi_project(path, **kwargs)
    return InstanceFrames.from_single(load_labels(path, **kwargs))


def validate_frames(frames: LabeledFrames, check_images: bool = True) -> None:
    """Check that frames are usable for training or evaluation.

    Args:
        frames: the frames to check.
        check_images: also check that every image file exists (one ``stat`` per unique path).

    Raises:
        KeyheadError: no frames, an infinite coordinate (named by frame and keypoint), no labelled keypoint at all,
            or missing images (the count and the first few).

    Example:
        >>> validate_frames(load_labels("lightning-pose-mirror-mouse-example"))  # doctest: +SKIP
    """
    where = frames.source or str(frames.root)
    if len(frames) == 0:
        raise KeyheadError(f"{where}: no labelled frames; label some frames or point at the right file")
    infinite = np.argwhere(np.isinf(frames.keypoints))
    if len(infinite):
        i, k, _ = infinite[0]
        raise KeyheadError(
            f"{where}: frame {i} ({frames.image_paths[i]}), keypoint '{frames.keypoint_names[k]}' has an infinite "
            "coordinate; fix the value or leave it empty"
        )
    if np.isnan(frames.keypoints).all():
        raise KeyheadError(f"{where}: none of the {len(frames)} frames has a labelled keypoint; label some keypoints")
    if check_images:
        unique = list(dict.fromkeys(frames.image_paths))
        missing = [p for p in unique if not exists(frames.root / p)]
        if missing:
            raise KeyheadError(
                f"{where}: {len(missing)} of {len(unique)} images not found under {frames.root}, e.g. "
                f"{', '.join(missing[:3])}; copy the images there or pass root= the folder that holds them"
            )
