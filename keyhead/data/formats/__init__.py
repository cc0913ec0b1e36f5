"""Label file formats: readers and writers for DeepLabCut / Lightning Pose, COCO and 300-W, plus auto-detection."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from keyhead.data.formats._common import exists
from keyhead.data.formats.coco import read_coco, write_coco
from keyhead.data.formats.dlc import read_dlc_csv, read_dlc_h5, read_dlc_predictions, read_dlc_project, write_dlc_csv
from keyhead.data.formats.ibug68 import IBUG68_FLIP_PAIRS, IBUG68_NAMES
from keyhead.data.formats.pts import read_pts, read_pts_folder, write_pts
from keyhead.errors import KeyheadError
from keyhead.io.structured import read_yaml
from keyhead.types import LabeledFrames

__all__ = [
    "IBUG68_FLIP_PAIRS",
    "IBUG68_NAMES",
    "load_labels",
    "read_coco",
    "read_dlc_csv",
    "read_dlc_h5",
    "read_dlc_predictions",
    "read_dlc_project",
    "read_pts",
    "read_pts_folder",
    "validate_frames",
    "write_coco",
    "write_dlc_csv",
    "write_pts",
]

_LAYOUTS = (
    "a Lightning Pose folder (CollectedData.csv at the top), a DeepLabCut project folder (config.yaml and "
    "labeled-data/), a folder of 300-W .pts files beside their images, a DeepLabCut .csv or .h5 table, "
    "or a COCO keypoints .json"
)
_READERS_BY_SUFFIX = {".csv": read_dlc_csv, ".h5": read_dlc_h5, ".hdf5": read_dlc_h5, ".json": read_coco}


def load_labels(path: str | os.PathLike, **kwargs: Any) -> LabeledFrames:
    """Read labels in whichever supported layout ``path`` is.

    Folders: ``CollectedData.csv`` at the top (Lightning Pose) -> ``read_dlc_csv``; ``config.yaml`` and
    ``labeled-data/`` (DeepLabCut project) -> ``read_dlc_project``; any ``.pts`` inside -> ``read_pts_folder``.
    Files: ``.csv`` -> ``read_dlc_csv``, ``.h5``/``.hdf5`` -> ``read_dlc_h5``, ``.json`` -> ``read_coco``.

    Args:
        path: a folder or a label file.
        **kwargs: passed to the chosen reader (``root=``, ``image_root=``, ``category=``, ``recursive=``).

    Returns:
        The frames.

    Raises:
        KeyheadError: ``path`` is missing or none of the layouts above.

    Example:
        >>> frames = load_labels("lightning-pose-mirror-mouse-example")  # doctest: +SKIP
    """
    path = Path(path)
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


def _with_synth_metadata(frames: LabeledFrames, folder: Path) -> LabeledFrames:
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
