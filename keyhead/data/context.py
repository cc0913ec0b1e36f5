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

_FRAME = re.compile(r"^(?P<prefix>.*?)(?P<num>\d+)(?P<ext>\.[A-Za-z0-9]+)$")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


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
        for ext in VIDEO_EXTS:
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
        from keyhead.video import iter_frames

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


def model_offsets(model: object) -> list[int] | None:
    """Frame offsets of a model's context window (None for single-frame heads)."""
    head = getattr(model, "head", None)
    if head is None or not hasattr(head, "frame_offsets") or getattr(model, "context", 1) <= 1:
        return None
    return list(head.frame_offsets())
