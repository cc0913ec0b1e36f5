"""Identity tracking of several animals through a video: who is who from frame to frame.

Each track keeps the animal's last pose and a constant-velocity Kalman filter on its centroid (x, y, vx, vy) in
image pixels. In a new frame every track is moved by the filter's predicted centroid motion, then the poses are
matched to the tracks by the Hungarian algorithm (scipy's ``linear_sum_assignment``) on a cost: the mean keypoint
distance over shared keypoints (pixels), or 1 - OKS. The motion model is what keeps two animals apart where their
paths cross: matched against where each animal *will* be rather than where it was, the crossing animals do not
swap. Tracks that find no pose age and survive ``max_age`` frames (short occlusions), then are dropped.

With ``max_tracks=N`` (the user knows there are N animals) the identities are exactly 0..N-1: at most the N
highest-scoring poses of a frame are kept, and a pose no track claims takes a free identity, else the identity of
a track that found no pose in this frame (the nearest by centroid; the animal is taken to have reappeared there).
Without it every unclaimed pose opens a new track with the next unused id.

Poses are (K, 2) arrays of (x, y) pixels with NaN where a keypoint is missing; the finite keypoints are used and
a pose without any is ignored (id -1). NumPy and SciPy only; deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from keyhead.errors import KeyheadError
from keyhead.multimetrics import default_sigmas, instance_distances, keypoint_areas, oks, optimal_assignment

COSTS = ("distance", "oks")


class ConstantVelocityKalman:
    """Kalman filter on a 2-D point moving at constant velocity, one step per frame.

    State (x, y, vx, vy) in pixels and pixels/frame; the process noise is a white acceleration of std
    ``process_noise`` (pixels/frame^2), the measurement noise std ``measurement_noise`` (pixels).

    Example:
        >>> kf = ConstantVelocityKalman(np.array([0.0, 0.0]))
        >>> for t in range(1, 6):
        ...     _ = kf.predict()
        ...     kf.update(np.array([2.0 * t, 0.0]))
        >>> np.round(kf.predict(), 1)  # where it will be next frame
        array([12.,  0.])
    """

    def __init__(
        self,
        xy: np.ndarray,
        process_noise: float = 1.0,
        measurement_noise: float = 2.0,
        initial_speed_std: float = 50.0,
    ) -> None:
        self.x = np.array([xy[0], xy[1], 0.0, 0.0])
        self.P = np.diag([measurement_noise**2] * 2 + [initial_speed_std**2] * 2)
        self.F = np.eye(4)
        self.F[0, 2] = self.F[1, 3] = 1.0
        self.H = np.eye(2, 4)
        per_axis = np.array([[0.25, 0.5], [0.5, 1.0]]) * process_noise**2  # G G^T, G = (dt^2 / 2, dt)
        self.Q = np.zeros((4, 4))
        for axis in (0, 1):
            self.Q[np.ix_([axis, axis + 2], [axis, axis + 2])] = per_axis
        self.R = np.eye(2) * measurement_noise**2

    def predict(self) -> np.ndarray:
        """Advance one frame; returns the predicted (x, y)."""
        self.x = self.F @ self.x
        self.P = self.F @ self.P @ self.F.T + self.Q
        return self.x[:2].copy()

    def update(self, xy: np.ndarray) -> None:
        """Correct the state with a measured (x, y)."""
        s = self.H @ self.P @ self.H.T + self.R
        gain = np.linalg.solve(s, self.H @ self.P).T  # P H^T S^-1 (S and P symmetric)
        self.x = self.x + gain @ (xy - self.H @ self.x)
        self.P = (np.eye(4) - gain @ self.H) @ self.P

    def __repr__(self) -> str:
        return f"ConstantVelocityKalman(x={np.round(self.x, 2).tolist()})"


def _centroid(pose: np.ndarray) -> np.ndarray:
    ok = np.isfinite(pose).all(-1)
    return pose[ok].mean(0)


@dataclass
class _Track:
    id: int
    pose: np.ndarray  # (K, 2) last seen pose, keypoints missing since filled in from earlier frames
    kf: ConstantVelocityKalman
    anchor: np.ndarray  # (2,) the filter's centroid right after the last update
    unseen: int = 0  # frames since the last match

    def predicted_pose(self, motion: bool) -> np.ndarray:
        return self.pose + (self.kf.x[:2] - self.anchor) if motion else self.pose

    def observe(self, pose: np.ndarray) -> None:
        seen, known = np.isfinite(pose).all(-1), np.isfinite(self.pose).all(-1)
        shared = seen & known
        # keypoints missing now keep their old place, moved with the keypoints that are seen
        shift = (pose[shared] - self.pose[shared]).mean(0) if shared.any() else self.kf.x[:2] - self.anchor
        self.pose = np.where(seen[:, None], pose, self.pose + shift)
        self.kf.update(_centroid(self.pose))
        self.anchor = self.kf.x[:2].copy()
        self.unseen = 0


class Tracker:
    """Online multi-animal identity tracker: one call per frame, returns each pose's track id.

    Args:
        max_tracks: the number of animals N, if known: never more than N identities (0..N-1) exist, see the
            module docstring. None: new tracks open for unmatched poses.
        max_age: frames a track survives without a matching pose before it is dropped.
        cost: ``"distance"`` (mean keypoint distance in pixels between a pose and the track's motion-predicted
            pose, over shared keypoints) or ``"oks"`` (1 - OKS, the track's predicted pose as truth; with the
            default sigmas OKS falls to ~0 once a pose is more than ~0.1 sqrt(area) off, so all far pairs tie:
            prefer ``"distance"`` for fast animals or pass larger ``sigmas``).
        max_cost: a pose and a track costing more are not matched (pixels for ``"distance"``, in [0, 1] for
            ``"oks"``); None: no limit, so poses always extend existing tracks first.
        motion: move tracks by the Kalman-predicted centroid motion before matching; False matches against the
            last pose (a no-motion nearest-pose tracker).
        sigmas: (K,) OKS sigmas for ``cost="oks"``; default :func:`keyhead.multimetrics.default_sigmas`.
        process_noise: Kalman acceleration std (pixels/frame^2).
        measurement_noise: Kalman centroid measurement std (pixels).

    Example:
        >>> tracker = Tracker(max_tracks=2)
        >>> a, b = np.zeros((1, 2)), np.full((1, 2), 50.0)
        >>> tracker.update(np.stack([a, b]), np.array([0.9, 0.8])).tolist()
        [0, 1]
        >>> tracker.update(np.stack([b + 1, a + 1]), np.array([0.9, 0.8])).tolist()
        [1, 0]
    """

    def __init__(
        self,
        max_tracks: int | None = None,
        max_age: int = 30,
        cost: str = "distance",
        max_cost: float | None = None,
        motion: bool = True,
        sigmas: np.ndarray | None = None,
        process_noise: float = 1.0,
        measurement_noise: float = 2.0,
    ) -> None:
        if max_tracks is not None and (not isinstance(max_tracks, int | np.integer) or max_tracks < 1):
            raise KeyheadError(f"max_tracks must be a positive number of animals or None, got {max_tracks!r}")
        if not isinstance(max_age, int | np.integer) or max_age < 0:
            raise KeyheadError(f"max_age must be a number of frames >= 0, got {max_age!r}")
        if cost not in COSTS:
            raise KeyheadError(f"cost must be one of {', '.join(COSTS)}, got {cost!r}")
        if max_cost is not None and not max_cost >= 0:
            raise KeyheadError(f"max_cost must be >= 0 or None, got {max_cost!r}")
        self.max_tracks = None if max_tracks is None else int(max_tracks)
        self.max_age = int(max_age)
        self.cost = cost
        self.max_cost = max_cost
        self.motion = motion
        self.sigmas = sigmas
        self.process_noise = process_noise
        self.measurement_noise = measurement_noise
        self.tracks: list[_Track] = []
        self.num_keypoints: int | None = None
        self._next_id = 0

    def __repr__(self) -> str:
        return (
            f"Tracker(max_tracks={self.max_tracks}, max_age={self.max_age}, cost={self.cost!r}, "
            f"max_cost={self.max_cost}, motion={self.motion}, live_tracks={len(self.tracks)})"
        )

    def reset(self) -> None:
        """Forget every track (a new video)."""
        self.tracks, self.num_keypoints, self._next_id = [], None, 0

    def _validate(self, poses: np.ndarray, scores: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        arr = np.asarray(poses, dtype=np.float64)
        if arr.size == 0 and (arr.ndim != 3 or arr.shape[0] == 0):
            arr = np.empty((0, self.num_keypoints or 0, 2))
        elif arr.ndim != 3 or arr.shape[-1] != 2:
            raise KeyheadError(f"poses must have shape (P, K, 2) with (x, y) pixel coordinates, got {arr.shape}")
        elif self.num_keypoints is not None and arr.shape[1] != self.num_keypoints:
            raise KeyheadError(f"poses have {arr.shape[1]} keypoints but earlier frames had {self.num_keypoints}")
        sc = np.ones(arr.shape[0]) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
        if sc.shape != (arr.shape[0],):
            raise KeyheadError(f"scores must have shape (P,) = ({arr.shape[0]},), one per pose, got {sc.shape}")
        if arr.shape[0]:
            self.num_keypoints = arr.shape[1]
        return arr, np.nan_to_num(sc, nan=-np.inf)

    def _costs(self, poses: np.ndarray) -> np.ndarray:
        """(C, T) cost of each candidate pose against each track's predicted pose."""
        predicted = np.stack([t.predicted_pose(self.motion) for t in self.tracks])
        if self.cost == "distance":
            return instance_distances(poses, predicted)
        sigmas = default_sigmas(poses.shape[1]) if self.sigmas is None else self.sigmas
        areas = np.maximum(np.nan_to_num(keypoint_areas(predicted), nan=1.0), 1.0)  # a 1-keypoint box has area 0
        return 1.0 - oks(poses, predicted, sigmas, areas)

    def _open(self, track_id: int, pose: np.ndarray) -> _Track:
        kf = ConstantVelocityKalman(_centroid(pose), self.process_noise, self.measurement_noise)
        return _Track(track_id, pose.copy(), kf, kf.x[:2].copy())

    def update(self, poses: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
        """Assign track ids to one frame's poses.

        Args:
            poses: (P, K, 2) (x, y) pixels, NaN where missing; P may be 0.
            scores: (P,) instance scores (higher = keep first when ``max_tracks`` caps the count); default ones.

        Returns:
            (P,) int64 track ids; -1 for a pose without finite keypoints or beyond the ``max_tracks`` best.
        """
        poses, scores = self._validate(poses, scores)
        ids = np.full(poses.shape[0], -1, dtype=np.int64)
        valid = np.flatnonzero(np.isfinite(poses).all(-1).any(-1))
        cand = valid[np.argsort(-scores[valid], kind="stable")][: self.max_tracks]
        for track in self.tracks:
            track.kf.predict()
        seen: set[int] = set()  # ids of the tracks that found a pose in this frame
        if self.tracks and cand.size:
            rows, cols = optimal_assignment(self._costs(poses[cand]), self.max_cost)
            for r, c in zip(rows, cols, strict=True):
                self.tracks[c].observe(poses[cand[r]])
                ids[cand[r]] = self.tracks[c].id
                seen.add(self.tracks[c].id)
        rest = [int(i) for i in cand if ids[i] < 0]  # by descending score
        if self.max_tracks is None:
            new_ids = range(self._next_id, self._next_id + len(rest))
            self._next_id += len(rest)
        else:
            used = {t.id for t in self.tracks}
            new_ids = [n for n in range(self.max_tracks) if n not in used]
        for i, track_id in zip(rest, new_ids, strict=False):
            self.tracks.append(self._open(track_id, poses[i]))
            ids[i] = track_id
            seen.add(track_id)
        self._take_over(poses, [i for i in rest if ids[i] < 0], ids, seen)
        for track in self.tracks:
            track.unseen += track.id not in seen
        self.tracks = sorted((t for t in self.tracks if t.unseen <= self.max_age), key=lambda t: t.id)
        return ids

    def seed(self, poses: np.ndarray, ids: np.ndarray) -> None:
        """Start from known identities (resuming a video from its last written frame): one track per pose.

        Args:
            poses: (P, K, 2) (x, y) pixels of the animals of the last frame.
            ids: (P,) their track ids (below ``max_tracks`` when it is set).
        """
        poses, _ = self._validate(poses, None)
        self.reset()
        self.num_keypoints = poses.shape[1] if len(poses) else None
        for pose, track_id in zip(poses, np.asarray(ids, dtype=np.int64), strict=True):
            if np.isfinite(pose).all(-1).any() and (self.max_tracks is None or 0 <= track_id < self.max_tracks):
                self.tracks.append(self._open(int(track_id), pose))
        self.tracks.sort(key=lambda t: t.id)
        self._next_id = max((t.id + 1 for t in self.tracks), default=0)

    def _take_over(self, poses: np.ndarray, rest: list[int], ids: np.ndarray, seen: set[int]) -> None:
        """With all N identities in use, unclaimed poses take over tracks that found no pose in this frame."""
        idle = [n for n, t in enumerate(self.tracks) if t.id not in seen]
        if not rest or not idle:
            return
        centres = np.stack([_centroid(poses[i]) for i in rest])
        predicted = np.stack([self.tracks[n].kf.x[:2] for n in idle])
        rows, cols = optimal_assignment(np.linalg.norm(centres[:, None] - predicted[None], axis=-1))
        for r, c in zip(rows, cols, strict=True):
            track_id = self.tracks[idle[c]].id
            self.tracks[idle[c]] = self._open(track_id, poses[rest[r]])
            ids[rest[r]] = track_id
            seen.add(track_id)


def track_sequence(
    poses_per_frame: Sequence[np.ndarray], scores_per_frame: Sequence[np.ndarray] | None = None, **kwargs
) -> list[np.ndarray]:
    """Track a whole sequence with a fresh :class:`Tracker`.

    Args:
        poses_per_frame: per frame, (P_t, K, 2) (x, y) pixels, NaN where missing.
        scores_per_frame: per frame, (P_t,) instance scores; default ones.
        **kwargs: :class:`Tracker` arguments (``max_tracks``, ``max_age``, ``cost``, ``max_cost``, ...).

    Returns:
        Per frame, (P_t,) int64 track ids (-1: not tracked).

    Example:
        >>> frames = [np.array([[[0.0, 0.0]], [[50.0, 0.0]]]), np.array([[[51.0, 0.0]], [[1.0, 0.0]]])]
        >>> [ids.tolist() for ids in track_sequence(frames, max_tracks=2)]
        [[0, 1], [1, 0]]
    """
    if scores_per_frame is not None and len(scores_per_frame) != len(poses_per_frame):
        raise KeyheadError(
            f"scores_per_frame has {len(scores_per_frame)} frames but poses_per_frame has {len(poses_per_frame)}"
        )
    tracker = Tracker(**kwargs)
    scores = scores_per_frame if scores_per_frame is not None else [None] * len(poses_per_frame)
    return [tracker.update(p, s) for p, s in zip(poses_per_frame, scores, strict=True)]
