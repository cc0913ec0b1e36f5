"""The interchange types of keyhead: predicted keypoints and labelled frames.

Coordinates everywhere are continuous pixel coordinates in (x, y) order, with the centre of pixel
(column i, row j) at (i, j) (the OpenCV / DeepLabCut convention). Missing keypoints are NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from keyhead.errors import KeyheadError


@dataclass
class Keypoints:
    """Decoded keypoints.

    Attributes:
        xy: (B, K, 2) float tensor, (x, y) in input-image pixels.
        confidence: (B, K) float tensor in [0, 1]; higher means more trustworthy.
    """

    xy: torch.Tensor
    confidence: torch.Tensor

    def to(self, device: torch.device | str) -> Keypoints:
        return Keypoints(self.xy.to(device), self.confidence.to(device))

    def numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """Returns (xy (B, K, 2), confidence (B, K)) as float32 NumPy arrays."""
        return self.xy.detach().float().cpu().numpy(), self.confidence.detach().float().cpu().numpy()


@dataclass
class LabeledFrames:
    """A set of labelled images, whatever format they came from.

    Attributes:
        root: folder that ``image_paths`` are relative to (the project folder).
        image_paths: N image paths relative to ``root``, POSIX separators.
        keypoints: (N, K, 2) float32 (x, y) pixel coordinates; NaN where missing.
        keypoint_names: K names.
        visibility: optional (N, K) int8, COCO meaning (0 unlabelled, 1 occluded but labelled, 2 visible).
        boxes: optional (N, 4) float32 (x, y, w, h) box of the subject in pixels (COCO bbox, face box).
        skeleton: pairs of keypoint names to draw as limbs.
        flip_pairs: pairs of keypoint indices swapped by a horizontal flip.
        source: where the labels were read from (a file or folder), for messages.
    """

    root: Path
    image_paths: list[str]
    keypoints: np.ndarray
    keypoint_names: list[str]
    visibility: np.ndarray | None = None
    boxes: np.ndarray | None = None
    skeleton: list[tuple[str, str]] = field(default_factory=list)
    flip_pairs: list[tuple[int, int]] = field(default_factory=list)
    source: str = ""

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.keypoints = np.asarray(self.keypoints, dtype=np.float32)
        n = len(self.image_paths)
        k = len(self.keypoint_names)
        if self.keypoints.shape != (n, k, 2):
            raise KeyheadError(
                f"{self.source or self.root}: keypoints have shape {self.keypoints.shape}, expected ({n}, {k}, 2) "
                "for that many images and keypoint names"
            )
        if self.visibility is not None and self.visibility.shape != (n, k):
            raise KeyheadError(f"{self.source or self.root}: visibility shape {self.visibility.shape} != ({n}, {k})")
        if self.boxes is not None:
            self.boxes = np.asarray(self.boxes, dtype=np.float32)
            if self.boxes.shape != (n, 4):
                raise KeyheadError(f"{self.source or self.root}: boxes shape {self.boxes.shape} != ({n}, 4)")

    def __len__(self) -> int:
        return len(self.image_paths)

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    def path(self, i: int) -> Path:
        """Absolute path of image ``i``."""
        return self.root / self.image_paths[i]

    def subset(self, indices: list[int] | np.ndarray) -> LabeledFrames:
        """The frames at ``indices``, in that order."""
        idx = np.asarray(indices, dtype=np.int64)
        return replace(
            self,
            image_paths=[self.image_paths[i] for i in idx],
            keypoints=self.keypoints[idx],
            visibility=None if self.visibility is None else self.visibility[idx],
            boxes=None if self.boxes is None else self.boxes[idx],
        )


@dataclass
class InstanceFrames:
    """Labelled frames with several subjects (animals, people) each: the multi-instance sibling of LabeledFrames.

    One coordinate convention still (see the module docstring). Row ``i`` holds up to M instances; an absent
    instance is all NaN. ``tracks`` names who each instance is (its identity through the video), when the labels
    say (DeepLabCut's individuals, SLEAP's tracks, COCO's ``track_id``).

    Attributes:
        root: folder that ``image_paths`` are relative to.
        image_paths: N image paths relative to ``root``, POSIX separators.
        keypoints: (N, M, K, 2) float32 (x, y) pixel coordinates; NaN where missing.
        keypoint_names: K names.
        track_names: T identity names (DLC individuals, SLEAP track names); may be empty.
        tracks: (N, M) int64 index into ``track_names``, -1 where an instance has no identity. Default: -1.
        visibility: optional (N, M, K) int8, COCO meaning (0 unlabelled, 1 occluded, 2 visible).
        skeleton: pairs of keypoint names to draw as limbs.
        flip_pairs: pairs of keypoint indices swapped by a horizontal flip.
        frame_indices: optional (N,) int64 frame number of each row in its video (-1 where unknown).
        video_paths: optional N source video paths (absolute, or "" where unknown), e.g. for ``.slp`` labels.
        source: where the labels were read from, for messages.
    """

    root: Path
    image_paths: list[str]
    keypoints: np.ndarray
    keypoint_names: list[str]
    track_names: list[str] = field(default_factory=list)
    tracks: np.ndarray | None = None
    visibility: np.ndarray | None = None
    skeleton: list[tuple[str, str]] = field(default_factory=list)
    flip_pairs: list[tuple[int, int]] = field(default_factory=list)
    frame_indices: np.ndarray | None = None
    video_paths: list[str] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        where = self.source or str(self.root)
        n, k = len(self.image_paths), len(self.keypoint_names)
        self.keypoints = np.asarray(self.keypoints, dtype=np.float32)
        if self.keypoints.ndim != 4 or self.keypoints.shape[0] != n or self.keypoints.shape[2:] != (k, 2):
            raise KeyheadError(
                f"{where}: instance keypoints have shape {self.keypoints.shape}, expected ({n}, M, {k}, 2) "
                "for that many images and keypoint names"
            )
        m = self.keypoints.shape[1]
        if self.tracks is None:
            self.tracks = np.full((n, m), -1, dtype=np.int64)
        self.tracks = np.asarray(self.tracks, dtype=np.int64)
        if self.tracks.shape != (n, m):
            raise KeyheadError(f"{where}: tracks shape {self.tracks.shape} != ({n}, {m})")
        if self.tracks.size and (self.tracks.max() >= len(self.track_names) or self.tracks.min() < -1):
            raise KeyheadError(f"{where}: a track index is outside the {len(self.track_names)} track names")
        if self.visibility is not None and self.visibility.shape != (n, m, k):
            raise KeyheadError(f"{where}: visibility shape {self.visibility.shape} != ({n}, {m}, {k})")
        if self.frame_indices is not None:
            self.frame_indices = np.asarray(self.frame_indices, dtype=np.int64).reshape(n)
        if self.video_paths is not None and len(self.video_paths) != n:
            raise KeyheadError(f"{where}: {len(self.video_paths)} video paths for {n} rows")

    def __len__(self) -> int:
        return len(self.image_paths)

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @property
    def max_instances(self) -> int:
        """M, the instance slots per row."""
        return int(self.keypoints.shape[1])

    def present(self) -> np.ndarray:
        """(N, M) bool: the instance has at least one labelled keypoint."""
        return np.isfinite(self.keypoints).all(-1).any(-1)

    def path(self, i: int) -> Path:
        """Absolute path of image ``i``."""
        return self.root / self.image_paths[i]

    def subset(self, indices: list[int] | np.ndarray) -> InstanceFrames:
        """The rows at ``indices``, in that order."""
        idx = np.asarray(indices, dtype=np.int64)
        return replace(
            self,
            image_paths=[self.image_paths[i] for i in idx],
            keypoints=self.keypoints[idx],
            tracks=self.tracks[idx],
            visibility=None if self.visibility is None else self.visibility[idx],
            frame_indices=None if self.frame_indices is None else self.frame_indices[idx],
            video_paths=None if self.video_paths is None else [self.video_paths[i] for i in idx],
        )

    @classmethod
    def from_single(cls, frames: LabeledFrames, track_name: str = "") -> InstanceFrames:
        """Single-subject frames as one instance per row (tracked as ``track_name`` when given)."""
        names = [track_name] if track_name else []
        return cls(
            root=frames.root,
            image_paths=list(frames.image_paths),
            keypoints=frames.keypoints[:, None],
            keypoint_names=list(frames.keypoint_names),
            track_names=names,
            tracks=np.full((len(frames), 1), 0 if names else -1, dtype=np.int64),
            visibility=None if frames.visibility is None else frames.visibility[:, None],
            skeleton=list(frames.skeleton),
            flip_pairs=list(frames.flip_pairs),
            source=frames.source,
        )


def flip_permutation(num_keypoints: int, flip_pairs: Sequence[tuple[int, int]]) -> list[int]:
    """The keypoint order of a mirrored image: ``perm[j]`` is the keypoint that ``j`` becomes.

    Args:
        num_keypoints: K.
        flip_pairs: index pairs (a, b) swapped by a horizontal flip; each index in at most one pair.

    Returns:
        A permutation of range(K) that is its own inverse.

    Example:
        >>> flip_permutation(4, [(0, 3)])
        [3, 1, 2, 0]
    """
    perm = list(range(num_keypoints))
    seen: set[int] = set()
    for a, b in flip_pairs:
        if not (0 <= a < num_keypoints and 0 <= b < num_keypoints) or a == b:
            raise KeyheadError(f"flip pair ({a}, {b}) is not two different keypoints of 0..{num_keypoints - 1}")
        if a in seen or b in seen:
            raise KeyheadError(f"flip pair ({a}, {b}): a keypoint appears in two pairs; each has one mirror partner")
        seen |= {a, b}
        perm[a], perm[b] = b, a
    return perm
