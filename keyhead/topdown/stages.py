"""Multi-instance labels -> the two single-instance datasets of top-down pose, and the run's top-down record.

Stage 1 (instance centres): one row per frame, the frame's instance centres as keypoints ``instance0..`` ordered
left to right (the order :class:`~keyhead.models.codecs.CentroidCodec` decodes in). Stage 2 (pose): one row per
labelled instance, with a square box of ``crop_size`` pixels centred on the instance's centre; the existing
single-instance pipeline crops every row to its box (``data.crop=box``), so any registered head trains on it.
"""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np

from keyhead.config import RunConfig
from keyhead.errors import KeyheadError
from keyhead.types import InstanceFrames, LabeledFrames

log = logging.getLogger("keyhead")


def instance_centres(frames: InstanceFrames, anchor: str | None = None) -> np.ndarray:
    """Each instance's centre (N, M, 2) in image pixels, NaN for absent instances.

    The centre is the ``anchor`` keypoint where it is labelled (SLEAP's anchor part), else the centre of the box of
    the instance's labelled keypoints.
    """
    kp = frames.keypoints.astype(np.float64)
    with warnings.catch_warnings():  # absent instances are all-NaN slices
        warnings.simplefilter("ignore", RuntimeWarning)
        centres = (np.nanmin(kp, axis=2) + np.nanmax(kp, axis=2)) / 2
    if anchor is not None:
        if anchor not in frames.keypoint_names:
            raise KeyheadError(
                f"topdown.anchor={anchor!r} is not a keypoint of the labels ({', '.join(frames.keypoint_names)})"
            )
        a = kp[:, :, frames.keypoint_names.index(anchor)]
        centres = np.where(np.isfinite(a).all(-1, keepdims=True), a, centres)
    return centres.astype(np.float32)


def auto_crop_size(frames: InstanceFrames, centres: np.ndarray) -> int:
    """Crop side in pixels: 1.2 x twice the farthest labelled keypoint from its centre, rounded up to 32 (>= 64)."""
    d = np.abs(frames.keypoints - centres[:, :, None]).max(-1)
    reach = float(np.nanmax(d)) if np.isfinite(d).any() else 32.0
    return max(64, int(math.ceil(2 * reach * 1.2 / 32) * 32))


def centroid_frames(frames: InstanceFrames, centres: np.ndarray) -> LabeledFrames:
    """Stage 1 rows: every frame, its centres ordered left to right as keypoints ``instance0..`` (NaN after)."""
    order = np.argsort(np.where(np.isfinite(centres[..., 0]), centres[..., 0], np.inf), axis=1, kind="stable")
    sorted_centres = np.take_along_axis(centres, order[..., None], axis=1)
    return LabeledFrames(
        root=frames.root,
        image_paths=list(frames.image_paths),
        keypoints=sorted_centres,
        keypoint_names=[f"instance{m}" for m in range(frames.max_instances)],
        source=frames.source,
    )


def crop_frames(frames: InstanceFrames, centres: np.ndarray, crop_size: int) -> LabeledFrames:
    """Stage 2 rows: one per labelled instance, boxed by a ``crop_size`` square centred on its centre."""
    rows, cols = np.nonzero(frames.present() & np.isfinite(centres).all(-1))
    half = crop_size / 2
    boxes = np.column_stack(
        [centres[rows, cols, 0] + 0.5 - half, centres[rows, cols, 1] + 0.5 - half, np.full((len(rows), 2), crop_size)]
    )
    return LabeledFrames(
        root=frames.root,
        image_paths=[frames.image_paths[i] for i in rows],
        keypoints=frames.keypoints[rows, cols],
        keypoint_names=list(frames.keypoint_names),
        visibility=None if frames.visibility is None else frames.visibility[rows, cols],
        boxes=boxes,
        skeleton=list(frames.skeleton),
        flip_pairs=list(frames.flip_pairs),
        source=frames.source,
    )


def crop_box(centres: np.ndarray, crop_size: int) -> np.ndarray:
    """(P, 4) (x, y, w, h) boxes of ``crop_size`` squares centred on (P, 2) centres (as :func:`crop_frames`)."""
    half = crop_size / 2
    return np.column_stack([centres + 0.5 - half, np.full((len(centres), 2), float(crop_size))])


def read_instances(cfg: RunConfig) -> InstanceFrames:
    """The config's multi-instance labels: the chosen keypoints, frames with at least one labelled instance."""
    from keyhead.data.formats import load_instances

    frames = load_instances(cfg.data.path)
    if cfg.data.keypoints:
        missing = [n for n in cfg.data.keypoints if n not in frames.keypoint_names]
        if missing:
            raise KeyheadError(f"data.keypoints: {missing[0]!r} is not a keypoint of {frames.source or cfg.data.path}")
        idx = [frames.keypoint_names.index(n) for n in cfg.data.keypoints]
        remap = {old: new for new, old in enumerate(idx)}
        frames = InstanceFrames(
            root=frames.root,
            image_paths=frames.image_paths,
            keypoints=frames.keypoints[:, :, idx],
            keypoint_names=list(cfg.data.keypoints),
            track_names=frames.track_names,
            tracks=frames.tracks,
            visibility=None if frames.visibility is None else frames.visibility[:, :, idx],
            skeleton=[(a, b) for a, b in frames.skeleton if a in cfg.data.keypoints and b in cfg.data.keypoints],
            flip_pairs=[(remap[a], remap[b]) for a, b in frames.flip_pairs if a in remap and b in remap],
            frame_indices=frames.frame_indices,
            video_paths=frames.video_paths,
            source=frames.source,
        )
    keep = np.flatnonzero(frames.present().any(1))
    if not len(keep):
        raise KeyheadError(f"{frames.source or cfg.data.path}: no frame has a labelled instance; label some animals")
    if len(keep) < len(frames):
        log.warning("%d of %d frames have no labelled instance and are left out", len(frames) - len(keep), len(frames))
    return frames.subset(keep)
