"""Face crops (the 300-W protocol): the box of each face's landmarks, enlarged by a margin, becomes the model input.

The crop itself is the dataset's box path (:func:`keyhead.data.augment.box_matrix`): this module only decides
which boxes the frames carry. Boxes are (x, y, w, h) with COCO's meaning (pixel i spans [i, i + 1)), so the
box of landmarks at keyhead pixel centres x0..x1 is x = x0 + 0.5, w = x1 - x0 and its centre is (x0 + x1) / 2.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np

from keyhead.data.formats.ibug68 import IBUG68_NAMES
from keyhead.errors import KeyheadError
from keyhead.types import LabeledFrames

CropMode = Literal["auto", "box", "landmarks", "none"]
CROP_MODES = ("auto", "box", "landmarks", "none")


def landmark_boxes(keypoints: np.ndarray) -> np.ndarray:
    """The tight box of each frame's labelled keypoints, as COCO (x, y, w, h).

    Args:
        keypoints: (N, K, 2) (x, y) in original-image pixels, NaN where unlabelled.

    Returns:
        (N, 4) float32 boxes; NaN rows for frames with no labelled keypoint.

    Example:
        >>> landmark_boxes(np.array([[[10.0, 20.0], [30.0, 60.0]]])).tolist()
        [[10.5, 20.5, 20.0, 40.0]]
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[-1] != 2:
        raise KeyheadError(f"keypoints must have shape (N, K, 2), got {kp.shape}")
    labelled = np.isfinite(kp).all(-1)
    lo = np.where(labelled[..., None], kp, np.inf).min(1)
    hi = np.where(labelled[..., None], kp, -np.inf).max(1)
    boxes = np.concatenate([lo + 0.5, hi - lo], axis=1)
    boxes[~labelled.any(1)] = np.nan
    return boxes.astype(np.float32)


def crops_to_landmarks(mode: str, num_keypoints: int, has_boxes: bool = False) -> bool:
    """Whether ``data.crop`` = ``mode`` crops to the landmarks' box: ``landmarks``, or ``auto`` on a 68-point face set
    whose labels carry no boxes of their own."""
    return mode == "landmarks" or (mode == "auto" and not has_boxes and num_keypoints == len(IBUG68_NAMES))


def apply_crop(frames: LabeledFrames, mode: str = "auto") -> LabeledFrames:
    """Frames carrying the boxes that ``data.crop`` asks for (the dataset crops every frame to its box).

    Args:
        frames: the labelled frames.
        mode: ``auto`` keeps the labels' own boxes (COCO ``bbox``), uses the landmarks' box for 68-point faces
            without boxes (300-W protocol), and crops nothing otherwise; ``box`` requires the labels' boxes;
            ``landmarks`` uses the box of each frame's labelled keypoints (the margin is ``data.crop_margin``);
            ``none`` drops boxes and resizes the whole image.

    Returns:
        The frames (a copy when the boxes change).

    Raises:
        KeyheadError: an unknown mode, or ``box`` on labels without boxes.
    """
    if mode not in CROP_MODES:
        raise KeyheadError(f"data.crop={mode!r}: use one of {', '.join(CROP_MODES)}")
    has_boxes = frames.boxes is not None and bool(np.isfinite(frames.boxes).any())
    if mode == "auto" and not crops_to_landmarks(mode, frames.num_keypoints, has_boxes):
        return frames
    if mode == "none":
        return replace(frames, boxes=None) if frames.boxes is not None else frames
    if mode == "box":
        if frames.boxes is None or not np.isfinite(frames.boxes).all():
            where = frames.source or str(frames.root)
            raise KeyheadError(
                f"{where}: data.crop=box but the labels carry no box for every frame; use data.crop=landmarks "
                "(box of the keypoints) or data.crop=none"
            )
        return frames
    return replace(frames, boxes=landmark_boxes(frames.keypoints))
