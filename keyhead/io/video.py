"""Video files without torch: probing, transcoding, decoding frames (PyAV, OpenCV as a fallback) and resizing them
exactly as training resized its images.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_path

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")  # what keyhead reads as video


@dataclass
class VideoInfo:
    """What a video says about itself (``n_frames`` and ``fps`` are the container's claims; may be 0)."""

    path: Path
    width: int
    height: int
    fps: float
    n_frames: int
    codec: str


def check_distinct_stems(videos: list[str | os.PathLike]) -> None:
    """Refuse videos whose outputs would overwrite each other: ``<stem>.csv`` is named after the file name alone.

    Raises:
        KeyheadError: two inputs share a stem (``a/session.mp4`` and ``b/session.avi``), or one video is given twice.
    """
    seen: dict[str, Path] = {}
    for video in map(Path, videos):
        if video.stem in seen:
            raise KeyheadError(
                f"{seen[video.stem]} and {video}: videos with the same name would write the same {video.stem}.csv; "
                "predict them into different --out folders or rename one"
            )
        seen[video.stem] = video


def probe(path: str | os.PathLike) -> VideoInfo:
    """Open a video and read its size, frame rate, frame count and codec; one-line errors if unreadable."""
    import av

    path = Path(path)
    if not path.is_file():
        raise KeyheadError(f"video {path} does not exist")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise KeyheadError(f"{path} has no video stream; give a video file (mp4, avi, mov, mkv, ...)")
            s = container.streams.video[0]
            fps = float(s.average_rate or s.guessed_rate or 0.0)
            n = int(s.frames or 0)
            if n == 0 and s.duration and s.time_base and fps:
                n = int(round(float(s.duration * s.time_base) * fps))
            return VideoInfo(path, s.codec_context.width, s.codec_context.height, fps, n, s.codec_context.name)
    except KeyheadError:
        raise
    except Exception as exc:  # PyAV raises its own error types for every FFmpeg failure
        raise KeyheadError(f"video {path} cannot be read ({type(exc).__name__}: {exc}); is it a video file?") from None


def transcode(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    codec: str = "mjpeg",
    container: str | None = "avi",
    pix_fmt: str = "yuvj420p",
    max_frames: int | None = None,
) -> Path:
    """Re-encode a video with FFmpeg's libraries (e.g. to an MJPEG AVI, or H.264 MP4 with codec="libx264",
    container="mp4", pix_fmt="yuv420p"); keeps size and frame rate. Returns ``dst``."""
    import av

    info = probe(src)
    dst = Path(dst)
    with atomic_path(dst) as tmp, av.open(str(src)) as inp, av.open(str(tmp), "w", format=container) as out:
        s_in = inp.streams.video[0]
        s_out = out.add_stream(codec, rate=s_in.average_rate or 30)
        s_out.width, s_out.height, s_out.pix_fmt = info.width, info.height, pix_fmt
        for i, frame in enumerate(inp.decode(s_in)):
            if max_frames is not None and i >= max_frames:
                break
            for packet in s_out.encode(frame.reformat(format=pix_fmt)):
                out.mux(packet)
        for packet in s_out.encode():
            out.mux(packet)
    return dst


def _to_channels(frame: np.ndarray, in_channels: int) -> np.ndarray:
    if in_channels == 1:
        return frame[..., None] if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)[..., None]
    return frame


def iter_frames(path: str | os.PathLike, in_channels: int = 3, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (index, frame) for every decoded frame from ``start``: uint8 (H, W, C), RGB or grayscale.

    PyAV decodes with FFmpeg's threads (any codec, variable frame rate: frames come in presentation order,
    indexed by their position); if PyAV cannot open the file, OpenCV is tried.
    """
    import av

    path = Path(path)
    fmt = "gray" if in_channels == 1 else "rgb24"
    try:
        container = av.open(str(path))
    except Exception:
        yield from _iter_frames_cv2(path, in_channels, start)
        return
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if i < start:
                continue
            yield i, _to_channels(frame.to_ndarray(format=fmt), in_channels)
    except av.error.FFmpegError as exc:
        raise KeyheadError(f"video {path}: decoding failed ({exc}); the file may be truncated or corrupt") from None
    finally:
        container.close()


def _iter_frames_cv2(path: Path, in_channels: int, start: int) -> Iterator[tuple[int, np.ndarray]]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise KeyheadError(f"video {path} cannot be opened by PyAV or OpenCV; is it a video file?")
    try:
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            if i >= start:
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                yield i, _to_channels(rgb, in_channels)
            i += 1
    finally:
        cap.release()
