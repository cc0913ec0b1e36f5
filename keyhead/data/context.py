"""Context frames for video heads: the neighbours of a labelled frame, by frame number or from its video.

Lightning Pose's convention: a labelled frame ``labeled-data/<session>/img0123.png`` has its context frames
``img0121.png .. img0125.png`` in the same folder. A neighbour that does not exist falls back to the nearest
existing frame towards the labelled one (so the first frame of a folder repeats itself as its past). When the
folder holds no neighbours but the session's video is known (``videos/<session>.<ext>`` in a DLC / Lightning
Pose project, or ``data.context_video``), the neighbours are read from the video at ``frame number + offset``.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import numpy as np

from keyhead.errors import KeyheadError
from keyhead.io.video import VIDEO_SUFFIXES

_FRAME = re.compile(r"^(?P<prefix>.*?)(?P<num>\d+)(?P<ext>\.[A-Za-z0-9]+)$")


def frame_number(path: str) -> int | None:
    """The frame number in a file name such as ``img0123.png`` (None if it has none)."""
    m = _FRAME.match(Path(path).name)
    return int(m["num"]) if m else None


@functools.lru_cache(maxsize=256)
def _listing(folder: str) -> frozenset[str]:
    try:
        return frozenset(os.listdir(folder))
    except OSError:
        return frozenset()


def neighbour_paths(root: str | os.PathLike, rel: str, offsets: list[int]) -> list[str]:
    """Relative paths of the frames at ``offsets`` around ``rel`` (same folder, by frame number).

    A missing neighbour is replaced by the nearest existing frame between it and ``rel``.

    Example:
        >>> neighbour_paths("/nonexistent", "labeled-data/img05.png", [-1, 0, 1])
        ['labeled-data/img05.png', 'labeled-data/img05.png', 'labeled-data/img05.png']
    """
    m = _FRAME.match(Path(rel).name)
    if m is None:
        return [rel] * len(offsets)
    parent = Path(rel).parent
    files = _listing(str(Path(root) / parent))
    n, width = int(m["num"]), len(m["num"])

    def name(k: int) -> str:
        return f"{m['prefix']}{k:0{width}d}{m['ext']}"

    out = []
    for off in offsets:
        k = n + off
        while k != n and name(k) not in files:
            k -= 1 if off > 0 else -1
        out.append(str(parent / name(k)) if str(parent) != "." else name(k))
    return out


def has_neighbours(root: str | os.PathLike, rel: str) -> bool:
    """Whether the folder of ``rel`` holds a frame numbered next to it."""
    n = frame_number(rel)
    if n is None:
        return False
    paths = neighbour_paths(root, rel, [-1, 1])
    return any(p != rel for p in paths)


def find_video(root: str | os.PathLike, rel: str, explicit: str | None = None) -> Path | None:
    """The video a labelled frame was extracted from: ``explicit``, or ``<project>/videos/<session>.*``."""
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise KeyheadError(f"data.context_video={explicit}: no such file; give the video the frames come from")
        return p
    session = Path(rel).parent.name
    root = Path(root)
    for base in (root, root.parent):
        for ext in VIDEO_SUFFIXES:
            cand = base / "videos" / f"{session}{ext}"
            if session and cand.is_file():
                return cand
    return None


class VideoFrames:
    """Random access to frames of a video by index, decoding each needed frame once (PyAV, any codec).

    Frames are read in one sequential pass over the requested indices (sorted), which is far cheaper than one
    seek per frame for the handful of windows a labelled set needs.
    """

    def __init__(self, path: str | os.PathLike, in_channels: int = 3) -> None:
        self.path = Path(path)
        self.in_channels = in_channels
        self._frames: dict[int, np.ndarray] = {}

    def load(self, indices: set[int]) -> None:
        """Decode the frames with these indices (clipped to the video) into memory."""
        from keyhead.io.video import iter_frames

        want = {i for i in indices if i >= 0} - set(self._frames)
        if not want:
            return
        last = max(want)
        for i, frame in iter_frames(self.path, self.in_channels):
            if i in want:
                self._frames[i] = frame
            if i >= last:
                break

    def get(self, index: int) -> np.ndarray | None:
        return self._frames.get(index)


def _thumb(path: Path) -> np.ndarray | None:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        return None
    return cv2.resize(img, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)


def neighbour_similarity(root: str | os.PathLike, rels: list[str], sample: int = 24, seed: int = 0) -> float | None:
    """How much numbered neighbours differ from a labelled frame, relative to unrelated frames of its folder.

    The ratio of the median mean-absolute difference (64x64 grey thumbnails) between a labelled frame and its
    +-1 neighbours on disk to that between the frame and a random other labelled frame of the same folder.
    Consecutive video frames give a small ratio (~0.1-0.4); frames that are merely numbered consecutively
    (e.g. hand-picked frames renamed ``img00..img92``) give ~1. None when no labelled frame has a neighbour.
    """
    rng = np.random.default_rng(seed)
    by_folder: dict[str, list[str]] = {}
    for rel in rels:
        by_folder.setdefault(str(Path(rel).parent), []).append(rel)
    cands = [r for r in rels if frame_number(r) is not None and has_neighbours(root, r)]
    if not cands:
        return None
    near, far = [], []
    for rel in rng.permutation(cands)[:sample].tolist():
        others = [o for o in by_folder[str(Path(rel).parent)] if o != rel]
        paths = [p for p in neighbour_paths(root, rel, [-1, 1]) if p != rel]
        if not others or not paths:
            continue
        a = _thumb(Path(root) / rel)
        b = _thumb(Path(root) / paths[0])
        c = _thumb(Path(root) / others[int(rng.integers(len(others)))])
        if a is None or b is None or c is None:
            continue
        near.append(float(np.abs(a - b).mean()))
        far.append(float(np.abs(a - c).mean()))
    if not near or np.median(far) <= 0:
        return None
    return float(np.median(near) / np.median(far))


STATIC_RATIO = 0.7


def context_source(
    root: str | os.PathLike, rels: list[str], mode: str = "auto", video: str | None = None
) -> tuple[str, str]:
    """Where a video head's context windows come from: ("frames" | "static", reason).

    ``frames``: numbered neighbours on disk, else the session's video (:meth:`ImageCache.window`).
    ``static``: the labelled frame alone, broadcast to the window by the model (one backbone pass per sample).
    ``auto`` picks ``frames`` when ``video`` is given or the neighbours on disk look like consecutive video
    frames (:func:`neighbour_similarity` below :data:`STATIC_RATIO`) or a session video exists, else ``static``.
    """
    if mode in ("frames", "static"):
        return mode, f"data.context_frames={mode}"
    if mode != "auto":
        raise KeyheadError(f"data.context_frames={mode!r}: use auto, frames or static")
    if video:
        return "frames", f"data.context_video={video}"
    ratio = neighbour_similarity(root, rels)
    if ratio is None and any(frame_number(r) is not None and has_neighbours(root, r) for r in rels):
        return "frames", "numbered neighbours on disk (too few labelled frames per folder to check them)"
    if ratio is not None:
        if ratio < STATIC_RATIO:
            return "frames", f"numbered neighbours look like consecutive video frames (difference ratio {ratio:.2f})"
        return "static", (
            f"the labelled frames are numbered consecutively but their neighbours differ from them as much as "
            f"unrelated frames do (difference ratio {ratio:.2f} >= {STATIC_RATIO}), so they are not video context"
        )
    if any(frame_number(r) is not None and find_video(root, r) is not None for r in rels):
        return "frames", "context frames are read from the session videos"
    return "static", "no neighbouring frames on disk and no session video"
