"""Preparing labelled frames for a model: picking keypoints, flip pairs, the rows with labels, the split.

Training, evaluation and the report all start from here, so they read the same frames the same way.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from keyhead.config import RunConfig
from keyhead.data.checks import check_images
from keyhead.data.dataset import load_split, make_split
from keyhead.data.face import apply_crop
from keyhead.data.formats import load_labels, validate_frames
from keyhead.errors import KeyheadError
from keyhead.types import LabeledFrames

log = logging.getLogger("keyhead")


def flip_pair_indices(frames: LabeledFrames, pairs: list[tuple[str, str]]) -> list[tuple[int, int]]:
    """Name pairs from the config (or the data's own index pairs) -> index pairs; unknown names are errors.

    A 68-point set with no pairs from either source gets the iBUG 300-W pairs.
    """
    from keyhead.data.formats.ibug68 import IBUG68_FLIP_PAIRS, IBUG68_NAMES  # here: the formats import pandas

    lookup = {n: i for i, n in enumerate(frames.keypoint_names)}
    out = list(frames.flip_pairs)
    for a, b in pairs:
        for name in (a, b):
            if name not in lookup:
                raise KeyheadError(f"data.flip_pairs: keypoint {name!r} is not in the labels ({', '.join(lookup)})")
        out.append((lookup[a], lookup[b]))
    if not out and frames.num_keypoints == len(IBUG68_NAMES):
        # Any 68-point set is the iBUG 300-W layout; its left/right pairs are built in.
        out = list(IBUG68_FLIP_PAIRS)
    return sorted(set(out))


def select_keypoints(frames: LabeledFrames, names: list[str] | None) -> LabeledFrames:
    """Keep only the named keypoints (config ``data.keypoints``), in that order."""
    if not names:
        return frames
    lookup = {n: i for i, n in enumerate(frames.keypoint_names)}
    unknown = [n for n in names if n not in lookup]
    if unknown:
        raise KeyheadError(f"data.keypoints: {unknown[0]!r} is not in the labels (known: {', '.join(lookup)})")
    idx = [lookup[n] for n in names]
    remap = {old: new for new, old in enumerate(idx)}
    return LabeledFrames(
        root=frames.root,
        image_paths=frames.image_paths,
        keypoints=frames.keypoints[:, idx],
        keypoint_names=list(names),
        visibility=None if frames.visibility is None else frames.visibility[:, idx],
        boxes=frames.boxes,
        skeleton=[(a, b) for a, b in frames.skeleton if a in names and b in names],
        flip_pairs=[(remap[a], remap[b]) for a, b in frames.flip_pairs if a in remap and b in remap],
        source=frames.source,
    )


def labelled_rows(frames: LabeledFrames) -> np.ndarray:
    """Indices of frames with at least one labelled keypoint."""
    return np.flatnonzero(np.isfinite(frames.keypoints).all(-1).any(-1))


def prepare_data(cfg: RunConfig) -> tuple[LabeledFrames, list[tuple[int, int]]]:
    if not cfg.data.path:
        raise KeyheadError("data.path is not set; point it at your labels (e.g. data.path=path/to/project)")
    frames = select_keypoints(load_labels(cfg.data.path), cfg.data.keypoints)
    validate_frames(frames)
    frames, _ = check_images(frames)  # unreadable images, out-of-image points, changed images (keyhead.data.checks)
    keep = labelled_rows(frames)
    if len(keep) < len(frames):
        log.warning("%d of %d frames have no labelled keypoint and are left out", len(frames) - len(keep), len(frames))
        frames = frames.subset(keep)
    frames = apply_crop(frames, cfg.data.crop)
    flips = flip_pair_indices(frames, cfg.data.flip_pairs)
    if cfg.augment.enabled and cfg.augment.hflip > 0 and not flips:
        log.warning("augment.hflip > 0 but no data.flip_pairs: left/right keypoints will not be swapped on flips")
    return frames, flips


def initial_split(cfg: RunConfig, frames: LabeledFrames) -> dict[str, list[int]]:
    """The split of a new run: ``data.split_file`` when given (the same split for several runs), else random.

    The random split draws images, not rows: every row of an image with several subjects (COCO people) lands in
    the image's split, so no test subject shares its picture with a training one."""
    if not cfg.data.split_file:
        images = list(dict.fromkeys(frames.image_paths))
        if len(images) == len(frames):
            return make_split(len(frames), cfg.data.split, cfg.data.split_seed)
        by_image = make_split(len(images), cfg.data.split, cfg.data.split_seed)
        where = {images[k]: name for name, ks in by_image.items() for k in ks}
        return {name: [i for i, p in enumerate(frames.image_paths) if where[p] == name] for name in by_image}
    if not Path(cfg.data.split_file).is_file():
        raise KeyheadError(f"data.split_file={cfg.data.split_file!r} does not exist; pass a split.json of a run")
    split = load_split(cfg.data.split_file, frames)
    split = {name: split.get(name, []) for name in ("train", "val", "test")}
    if not split["train"]:
        raise KeyheadError(f"data.split_file={cfg.data.split_file!r} has no 'train' images; list some")
    return split


def labels_for_model(path: str | os.PathLike, keypoint_names: list[str]) -> tuple[LabeledFrames, list[tuple[int, int]]]:
    """Read labels to evaluate a model on: its keypoints, in its order, checked by the rules of this module.

    Args:
        path: a label file or folder (any layout ``load_labels`` reads).
        keypoint_names: the model's K keypoint names.

    Returns:
        (frames (N, K, 2) in the model's keypoint order, (W, H) of each frame's image).

    Raises:
        KeyheadError: a keypoint of the model is not in the labels (all names listed), or any check above fails.
    """
    from keyhead.data.formats import load_labels, validate_frames
    from keyhead.data.prepare import select_keypoints

    frames = load_labels(path)
    missing = [n for n in keypoint_names if n not in frames.keypoint_names]
    if missing:
        extra = [n for n in frames.keypoint_names if n not in keypoint_names]
        raise KeyheadError(
            f"{frames.source or path}: the model's keypoint {missing[0]!r} is not in the labels ({len(missing)} of "
            f"{len(keypoint_names)} missing: {', '.join(missing)}; the labels have {', '.join(extra) or 'no others'}); "
            "rename the bodyparts in the label file to the model's names (RUN_DIR/keypoints.txt)"
        )
    frames = select_keypoints(frames, keypoint_names)
    validate_frames(frames)
    return check_images(frames)
