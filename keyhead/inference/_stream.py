"""Plumbing of streaming video prediction: the frame-reading thread, the eager network, the window store, CSV rows.

Nothing here imports torch at module level: the ``--runtime onnx`` path runs without it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_write
from keyhead.io.images import resize_like_training, to_network_input

_END = object()


class BatchReader:
    """Decode, resize and batch a video's frames in a background thread, overlapping with the network.

    FFmpeg's decoder, its colour conversion, OpenCV's warp and NumPy's conversion release the GIL, so the
    thread runs while the main thread waits for the network. At most ``depth`` batches wait in the queue
    (bounded memory). Errors in the thread (a corrupt or truncated file) are raised in the consumer, after the
    batches before them; :meth:`close` (also on errors in the consumer) stops the thread and closes the file.

    Args:
        frames: (index, uint8 frame (H, W, C)) pairs, e.g. :func:`keyhead.io.video.iter_frames`; closed when done.
        input_size: (h, w) of the model input; frames are resized to it with one bilinear affine warp, pixel
            centres at integer coordinates (as evaluation resizes whole images).
        batch_size: frames per batch (the last batch may be shorter).
        stop: index of the first frame not to read (None: to the end).
        depth: batches decoded ahead.

    Yields:
        (index of the batch's first frame, images (B, C, h, w) float32 in [0, 1], original (width, height)).
    """

    def __init__(
        self,
        frames: Iterator[tuple[int, np.ndarray]],
        input_size: tuple[int, int],
        batch_size: int,
        stop: int | None = None,
        depth: int = 2,
    ) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(frames, input_size, batch_size, stop), name="keyhead-video-reader", daemon=True
        )
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, frames: Iterator, input_size: tuple[int, int], batch_size: int, stop: int | None) -> None:
        h, w = input_size
        try:
            with contextlib.closing(frames):
                buf, n, first, wh = None, 0, 0, None
                for i, frame in frames:
                    if self._stop.is_set() or (stop is not None and i >= stop):
                        break
                    if wh is None:
                        wh = (frame.shape[1], frame.shape[0])
                    elif (frame.shape[1], frame.shape[0]) != wh:
                        raise KeyheadError(
                            f"frame {i} is {frame.shape[1]}x{frame.shape[0]} but the video started at {wh[0]}x{wh[1]}; "
                            "re-encode it at one size (ffmpeg -i IN -vf scale=W:H OUT)"
                        )
                    if buf is None:
                        buf, first = np.empty((batch_size, h, w, frame.shape[2]), np.uint8), i
                    buf[n] = resize_like_training(frame, input_size)[0]
                    n += 1
                    if n == batch_size:
                        if not self._put((first, to_network_input(buf[:n]), wh)):
                            return
                        buf, n = None, 0
                if n and not self._stop.is_set():
                    self._put((first, to_network_input(buf[:n]), wh))
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(exc)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray, tuple[int, int]]]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop the thread (it finishes the frame in hand) and wait for it; safe to call twice."""
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> BatchReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TorchVideoNet:
    """A :class:`keyhead.models.model.KeypointModel` behind the interface of :class:`keyhead.runtime.OnnxVideoNet`.

    Args:
        model: the model (CPU or GPU), put in eval mode.
        compile: run the per-frame part through ``torch.compile``.
        bf16: run the network under bfloat16 autocast (CPUs with AVX-512 BF16 / AMX, GPUs); the decoder runs in
            float32. ~1.8x faster on the project's 2-core AMD EPYC, but a precision trade-off: on a trained
            heatmap model keypoints move by a median 0.23 px (95th percentile 1.6 px; ambiguous frames can flip
            to another peak), bench/results/video.json "bf16_deviation".
    """

    def __init__(self, model: Any, compile: bool = False, bf16: bool = False) -> None:
        import torch

        self._torch = torch
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.input_size = tuple(model.input_size)
        self.in_channels = model.backbone.in_channels
        self.keypoint_names = list(model.keypoint_names)
        self.offsets = model.frame_offsets()
        self.bf16 = bf16
        fn = model.features if len(self.offsets) > 1 else model
        self._fn = torch.compile(fn, dynamic=False) if compile else fn

    def _precision(self) -> Any:
        if not self.bf16:
            return contextlib.nullcontext()
        return self._torch.autocast(self.device.type, dtype=self._torch.bfloat16)

    def _keypoints(self, raw: Any) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(raw, dict):
            raw = {k: v.float() for k, v in raw.items()}
        kp = self.model.decode(raw.float() if hasattr(raw, "float") else raw)
        return kp.xy.float().cpu().numpy(), kp.confidence.float().cpu().numpy()

    def frames(self, x: np.ndarray) -> Any:
        """Images (B, C, H, W) float32 in [0, 1] -> (xy (B, K, 2) input px, confidence (B, K)), or the deepest
        features (B, C', h, w) (a tensor on the model's device) for context heads."""
        with self._torch.inference_mode():
            t = self._torch.from_numpy(x).to(self.device, non_blocking=True)
            with self._precision():
                out = self._fn(t)
            return out[-1] if len(self.offsets) > 1 else self._keypoints(out)

    def windows(self, feats: Any) -> tuple[np.ndarray, np.ndarray]:
        """Feature windows (B, T, C', h, w) -> xy (B, K, 2) input px and confidence (B, K) of the target frames."""
        with self._torch.inference_mode():
            with self._precision():
                out = self.model.head.forward_window(feats)
            return self._keypoints(out)


class FeatureStore:
    """Deepest features of consecutive frames ``[base, base + n)`` (NumPy array or torch tensor), for windows."""

    def __init__(self) -> None:
        self.base = 0
        self.data: Any = None

    def __len__(self) -> int:
        return 0 if self.data is None else len(self.data)

    def append(self, first: int, feats: Any) -> None:
        if self.data is None or len(self.data) == 0:
            self.base, self.data = first, feats
        elif isinstance(feats, np.ndarray):
            self.data = np.concatenate([self.data, feats])
        else:
            import torch

            self.data = torch.cat([self.data, feats])

    def drop_before(self, index: int) -> None:
        k = max(0, index - self.base)
        if k:
            self.data, self.base = self.data[k:], self.base + k

    def take(self, idx: np.ndarray) -> Any:
        """Features of the frames ``idx`` (B, T) -> (B, T, C', h, w)."""
        local = idx - self.base
        if isinstance(self.data, np.ndarray):
            return self.data[local]
        import torch

        return self.data[torch.from_numpy(local).to(self.data.device)]


def window_indices(targets: range, offsets: list[int], last: int) -> np.ndarray:
    """(len(targets), T) frame indices of each target's window; frames before 0 or after ``last`` repeat the edge."""
    t = np.arange(targets.start, targets.stop)[:, None] + np.asarray(offsets)[None]
    return np.clip(t, 0, last)


def completed_rows(partial: os.PathLike, header: str) -> int:
    """Frames already written to a partial CSV with this header (0 if absent or from another model)."""
    if not os.path.isfile(partial):
        return 0
    with open(partial) as f:
        head = "".join(f.readline() for _ in range(header.count("\n")))
        if head != header:
            return 0
        rows = f.read().split("\n")
    complete = [r for r in rows[:-1] if r]  # the last piece may be a row cut short by the interruption
    n = 0
    for r in complete:
        if not r.startswith(f"{n},"):
            break
        n += 1
    return n


def truncate_rows(partial: Path, header: str, n_rows: int) -> None:
    """Keep the header and the first ``n_rows`` complete rows of a partial CSV (a row cut short is dropped)."""
    with open(partial) as f:
        lines = f.read().split("\n")
    skip = header.count("\n")
    with atomic_write(partial) as f:
        f.write(header + "".join(line + "\n" for line in lines[skip : skip + n_rows]))
