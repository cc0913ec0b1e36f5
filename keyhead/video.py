"""Video reading (any codec FFmpeg reads, via PyAV; OpenCV as a fallback) and streaming video prediction.

Prediction never holds the video in memory: frames are decoded, batched and predicted as they come, each
frame's backbone features are computed once and context heads slide their window over a small ring of
cached features; rows are appended to ``<stem>.csv.partial`` and renamed at the end, so an interrupted run
resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from keyhead.data.context import VIDEO_EXTS
from keyhead.errors import KeyheadError
from keyhead.utils.io import atomic_path, atomic_write

__all__ = [
    "VIDEO_EXTS",
    "VideoInfo",
    "VideoPrediction",
    "iter_frames",
    "predict_video",
    "predict_videos",
    "probe",
    "transcode",
]


@dataclass
class VideoInfo:
    """What a video says about itself (``n_frames`` and ``fps`` are the container's claims; may be 0)."""

    path: Path
    width: int
    height: int
    fps: float
    n_frames: int
    codec: str


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


def resize_like_training(frame: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """Resize a whole frame (H, W, C) to the model input exactly as evaluation does (one bilinear affine warp)."""
    from keyhead.data.augment import resize_matrix, warp

    h, w = input_size
    return warp(frame, resize_matrix((frame.shape[1], frame.shape[0]), (w, h)), (w, h))


def dlc_header(scorer: str, names: list[str]) -> str:
    """The three header rows of a DeepLabCut predictions CSV (x, y, likelihood per keypoint)."""
    cols = [(n, c) for n in names for c in ("x", "y", "likelihood")]
    return (
        "scorer," + ",".join(scorer for _ in cols) + "\n"
        "bodyparts," + ",".join(n for n, _ in cols) + "\n"
        "coords," + ",".join(c for _, c in cols) + "\n"
    )


def _format_rows(start: int, xy: np.ndarray, conf: np.ndarray) -> str:
    lines = []
    for j in range(len(xy)):
        vals = np.concatenate([xy[j], conf[j][:, None]], axis=1).ravel()
        lines.append(f"{start + j}," + ",".join(f"{v:.4f}" if np.isfinite(v) else "" for v in vals))
    return "\n".join(lines) + "\n"


def _completed_rows(partial: Path, header: str) -> int:
    """Frames already written to a partial CSV with this header (0 if absent or from another model)."""
    if not partial.is_file():
        return 0
    with open(partial) as f:
        head = "".join(f.readline() for _ in range(3))
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


def _truncate_to(partial: Path, header: str, n_rows: int) -> None:
    with open(partial) as f:
        lines = f.read().split("\n")
    keep = header + "".join(line + "\n" for line in lines[3 : 3 + n_rows])
    with atomic_write(partial) as f:
        f.write(keep)


@dataclass
class VideoPrediction:
    """Paths and numbers of one predicted video."""

    csv: Path
    summary: Path
    labeled: Path | None
    n_frames: int
    frames_per_second: float
    summary_data: dict[str, Any]


class _Predictor:
    """Frames (uint8, original size) -> keypoints in original pixels, with a context window if the head has one."""

    def __init__(self, model: Any, runtime: str = "torch", device: str = "cpu") -> None:
        import torch

        self.torch = torch
        self.model = model.eval()
        self.device = device
        self.input_size = model.input_size
        self.in_channels = model.backbone.in_channels
        head = model.head
        self.offsets = head.frame_offsets() if hasattr(head, "frame_offsets") and model.context > 1 else [0]
        self.runtime = runtime
        self._net = None
        if runtime == "onnx":
            self._net = _OnnxFrameNet(model, features_only=len(self.offsets) > 1)
        elif runtime == "compile":
            self._compiled = torch.compile(model.features if len(self.offsets) > 1 else model, dynamic=False)
        elif runtime != "torch":
            raise KeyheadError(f"--runtime {runtime!r}: choose torch, onnx or compile")

    def prepare(self, frames: list[np.ndarray]) -> Any:
        batch = np.stack([resize_like_training(f, self.input_size) for f in frames]).transpose(0, 3, 1, 2)
        return self.torch.from_numpy(np.ascontiguousarray(batch)).to(self.device).float().div_(255.0)

    def frame_outputs(self, x: Any) -> Any:
        """Per-frame network output: head logits (single-frame heads) or deepest features (context heads)."""
        torch = self.torch
        with torch.inference_mode():
            if self.runtime == "onnx":
                return torch.from_numpy(self._net(x.cpu().numpy()))
            fn = self._compiled if self.runtime == "compile" else None
            if len(self.offsets) > 1:
                return (fn(x) if fn else self.model.features(x))[-1]
            return fn(x) if fn else self.model(x)

    def decode_frames(self, outputs: Any) -> tuple[np.ndarray, np.ndarray]:
        with self.torch.inference_mode():
            kp = self.model.decode(outputs)
        return kp.xy.float().cpu().numpy(), kp.confidence.float().cpu().numpy()

    def decode_windows(self, windows: Any) -> tuple[np.ndarray, np.ndarray]:
        with self.torch.inference_mode():
            kp = self.model.decode(self.model.head.forward_window(windows))
        return kp.xy.float().cpu().numpy(), kp.confidence.float().cpu().numpy()


class _OnnxFrameNet:
    """The per-frame part of a model exported to ONNX and run by onnxruntime (the ``--runtime onnx`` path)."""

    def __init__(self, model: Any, features_only: bool) -> None:
        import tempfile

        import onnxruntime as ort
        import torch

        class Net(torch.nn.Module):
            def __init__(self, m: Any) -> None:
                super().__init__()
                self.m = m

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.m.features(x)[-1] if features_only else self.m(x)

        h, w = model.input_size
        dummy = torch.rand(2, model.backbone.in_channels, h, w)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "frame_net.onnx"
            torch.onnx.export(
                Net(model).eval(),
                (dummy,),
                str(path),
                input_names=["image"],
                output_names=["out"],
                dynamic_axes={"image": {0: "batch"}, "out": {0: "batch"}},
                dynamo=False,
                opset_version=17,
            )
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"image": x.astype(np.float32)})[0]


def predict_video(
    model: Any,
    video: str | os.PathLike,
    out_dir: str | os.PathLike,
    keypoint_names: list[str],
    batch_size: int = 16,
    runtime: str = "torch",
    labeled_video: bool = False,
    threshold: float = 0.5,
    skeleton: list[tuple[int, int]] | None = None,
    scorer: str = "keyhead",
    resume: bool = True,
    max_frames: int | None = None,
    progress: bool = True,
    pca: Any = None,
) -> VideoPrediction:
    """Predict every frame of a video, streaming; write ``<stem>.csv`` (DLC format) and ``<stem>_video.json``.

    Args:
        model: a :class:`keyhead.model.KeypointModel` (on CPU or GPU).
        video: any video FFmpeg reads.
        out_dir: output folder.
        keypoint_names: the K names, in model order (CSV columns).
        batch_size: frames per forward pass.
        runtime: "torch" (eager), "onnx" (onnxruntime runs the per-frame network) or "compile" (torch.compile).
        labeled_video: also write ``<stem>_labeled.mp4`` with the points drawn.
        threshold: confidence below which points are not drawn in the labelled video.
        skeleton: index pairs drawn as lines in the labelled video.
        scorer: the CSV's scorer row.
        resume: continue an interrupted run from ``<stem>.csv.partial`` instead of starting over.
        max_frames: stop after this many frames (for quick looks).
        progress: show a progress bar with frames/s.
        pca: a Pose PCA to report reconstruction errors with (a semi-supervised run's ``pca.safetensors``).

    Returns:
        The output paths, frame count, prediction speed and the summary.
    """
    import torch
    from tqdm import tqdm

    info = probe(video)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(video).stem
    csv_path, partial = out_dir / f"{stem}.csv", out_dir / f"{stem}.csv.partial"
    header = dlc_header(scorer, keypoint_names)
    device = str(next(model.parameters()).device)
    pred = _Predictor(model, runtime, device)
    done = _completed_rows(partial, header) if resume else 0
    if done:
        _truncate_to(partial, header, done)
    else:
        with atomic_write(partial) as f:
            f.write(header)
    offsets = pred.offsets
    lo, hi = -min(offsets), max(offsets)
    total = info.n_frames if max_frames is None else min(info.n_frames or max_frames, max_frames)
    bar = tqdm(total=total or None, initial=done, unit="frame", desc=stem, disable=not progress, smoothing=0.1)
    start_decode = max(0, done - lo)
    feats: deque = deque()  # (index, features (C, h, w)) of frames [next_out - lo, ...]
    next_out = done
    n_seen = start_decode
    t0 = time.perf_counter()
    predicted = 0
    wh: tuple[int, int] | None = None

    def emit(xy: np.ndarray, conf: np.ndarray, first: int) -> None:
        nonlocal predicted
        sx, sy = wh[0] / pred.input_size[1], wh[1] / pred.input_size[0]
        xy = xy.copy()
        xy[..., 0] = (xy[..., 0] + 0.5) * sx - 0.5
        xy[..., 1] = (xy[..., 1] + 0.5) * sy - 0.5
        with open(partial, "a") as f:
            f.write(_format_rows(first, xy, conf))
        predicted += len(xy)
        bar.update(len(xy))

    def flush_windows(last_index: int | None) -> None:
        """Predict every frame whose window is available (all of them once ``last_index`` is known)."""
        nonlocal next_out
        if not feats:
            return
        newest = feats[-1][0]
        first_cached = feats[0][0]
        first_target, ready = next_out, []
        while next_out <= newest and (last_index is not None or next_out + hi <= newest):
            # frames before the first or after the last repeat the edge frame
            ready.append([min(max(next_out + o, first_cached), newest) for o in offsets])
            next_out += 1
            if len(ready) == batch_size:
                _run(ready, first_target)
                first_target, ready = next_out, []
        if ready:
            _run(ready, first_target)
        while feats and feats[0][0] < next_out - lo:
            feats.popleft()

    def _run(windows: list[list[int]], first_target: int) -> None:
        base = feats[0][0]
        win = torch.stack([torch.stack([feats[i - base][1] for i in w]) for w in windows])
        xy, conf = pred.decode_windows(win)
        emit(xy, conf, first_target)

    try:
        batch: list[np.ndarray] = []
        first_in_batch = start_decode
        frames = iter_frames(video, pred.in_channels, start=start_decode)
        for i, frame in frames:
            if max_frames is not None and i >= max_frames:
                break
            if wh is None:
                wh = (frame.shape[1], frame.shape[0])
            batch.append(frame)
            n_seen = i + 1
            if len(batch) == batch_size:
                _process(pred, batch, first_in_batch, offsets, feats, emit, flush_windows, done)
                first_in_batch += len(batch)
                batch = []
        if batch:
            _process(pred, batch, first_in_batch, offsets, feats, emit, flush_windows, done)
        if len(offsets) > 1:
            flush_windows(n_seen - 1)
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0
    if n_seen == 0 or wh is None and done == 0:
        partial.unlink(missing_ok=True)
        raise KeyheadError(f"video {video} has no decodable frames; check the file (ffprobe {video})")
    os.replace(partial, csv_path)
    summary = summarise_predictions(csv_path, keypoint_names, pca)
    summary.update(
        video=str(video),
        fps=info.fps,
        n_frames=n_seen,
        width=info.width,
        height=info.height,
        codec=info.codec,
        runtime=runtime,
        resumed_from_frame=done,
        prediction_seconds=round(elapsed, 3),
        frames_per_second=round(predicted / elapsed, 2) if elapsed > 0 else None,
    )
    summary_path = out_dir / f"{stem}_video.json"
    with atomic_write(summary_path) as f:
        json.dump(summary, f, indent=1)
    labeled = None
    if labeled_video:
        labeled = write_labeled_video(video, csv_path, out_dir / f"{stem}_labeled.mp4", threshold, skeleton, progress)
    fps = summary["frames_per_second"] or 0.0
    return VideoPrediction(csv_path, summary_path, labeled, n_seen, fps, summary)


def _process(pred, batch, first, offsets, feats, emit, flush_windows, done) -> None:
    x = pred.prepare(batch)
    out = pred.frame_outputs(x)
    if len(offsets) == 1:
        skip = max(0, done - first)
        xy, conf = pred.decode_frames(out[skip:]) if skip < len(batch) else (None, None)
        if xy is not None:
            emit(xy, conf, first + skip)
        return
    for j in range(len(batch)):
        feats.append((first + j, out[j]))
    flush_windows(None)


def read_predictions(csv_path: str | os.PathLike, names: list[str] | None = None, chunksize: int = 5000):
    """Yield (frame indices (n,), xy (n, K, 2), confidence (n, K)) chunks of a DLC predictions CSV."""
    import pandas as pd

    for chunk in pd.read_csv(csv_path, header=[0, 1, 2], index_col=0, chunksize=chunksize):
        values = chunk.to_numpy(dtype=np.float64)
        k = values.shape[1] // 3
        arr = values.reshape(len(values), k, 3)
        yield chunk.index.to_numpy(), arr[..., :2], arr[..., 2]


def summarise_predictions(csv_path: str | os.PathLike, names: list[str], pca: Any = None) -> dict[str, Any]:
    """Temporal norm (mean per-frame displacement, px), mean confidence and, given the run's Pose PCA
    (:class:`keyhead.engine.semi.PosePCA`), the mean PCA reconstruction error per keypoint; read in chunks."""
    import torch

    k = len(names)
    pca_sum, pca_n = np.zeros(k), np.zeros(k)
    jump_sum, jump_n = np.zeros(k), np.zeros(k)
    conf_sum, conf_n = np.zeros(k), np.zeros(k)
    prev = None
    for _, xy, conf in read_predictions(csv_path):
        seq = xy if prev is None else np.concatenate([prev[None], xy])
        d = np.linalg.norm(np.diff(seq, axis=0), axis=-1)
        ok = np.isfinite(d)
        jump_sum += np.where(ok, d, 0).sum(0)
        jump_n += ok.sum(0)
        if pca is not None:
            err = pca.errors(torch.as_tensor(xy, dtype=torch.float32)).numpy()
            okp = np.isfinite(err)
            pca_sum += np.where(okp, err, 0).sum(0)
            pca_n += okp.sum(0)
        okc = np.isfinite(conf)
        conf_sum += np.where(okc, conf, 0).sum(0)
        conf_n += okc.sum(0)
        prev = xy[-1]
    tn = jump_sum / np.maximum(jump_n, 1)
    mc = conf_sum / np.maximum(conf_n, 1)
    out: dict[str, Any] = {}
    if pca is not None:
        pe = pca_sum / np.maximum(pca_n, 1)
        covered = pca_n > 0
        out["pca_error_px"] = float(pe[covered].mean()) if covered.any() else None
        out["pca_error_per_keypoint"] = {n: float(v) for n, v, c in zip(names, pe, covered, strict=True) if c}
    return out | {
        "temporal_norm_px": float(tn.mean()),
        "temporal_norm_per_keypoint": {n: float(v) for n, v in zip(names, tn, strict=True)},
        "mean_confidence": float(mc.mean()),
        "confidence_per_keypoint": {n: float(v) for n, v in zip(names, mc, strict=True)},
    }


def write_labeled_video(
    video: str | os.PathLike,
    csv_path: str | os.PathLike,
    out: str | os.PathLike,
    threshold: float = 0.5,
    skeleton: list[tuple[int, int]] | None = None,
    progress: bool = True,
) -> Path:
    """Draw predictions (points above ``threshold``, skeleton lines) on every frame; H.264 MP4, streamed."""
    import av
    from tqdm import tqdm

    info = probe(video)
    colors = _palette(64)
    out = Path(out)
    rows = read_predictions(csv_path)
    idx, xy, conf = next(rows)
    pos = 0
    with atomic_path(out) as tmp:
        container = av.open(str(tmp), mode="w", format="mp4")
        stream = container.add_stream("libx264", rate=round(info.fps) if info.fps >= 1 else 30)
        stream.width, stream.height = info.width + info.width % 2, info.height + info.height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        bar = tqdm(total=info.n_frames or None, unit="frame", desc="labelled video", disable=not progress)
        try:
            for _, frame in iter_frames(video, 3):
                while pos >= len(idx):
                    try:
                        idx, xy, conf = next(rows)
                    except StopIteration:
                        idx = None
                        break
                    pos = 0
                if idx is None:
                    break
                img = np.ascontiguousarray(frame)
                if img.shape[1] != stream.width or img.shape[0] != stream.height:
                    img = cv2.copyMakeBorder(
                        img, 0, stream.height - img.shape[0], 0, stream.width - img.shape[1], cv2.BORDER_CONSTANT
                    )
                _draw(img, xy[pos], conf[pos], threshold, skeleton, colors)
                pos += 1
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    container.mux(packet)
                bar.update(1)
            for packet in stream.encode():
                container.mux(packet)
        finally:
            bar.close()
            container.close()
    return out


def _palette(n: int) -> list[tuple[int, int, int]]:
    import matplotlib

    cmap = matplotlib.colormaps["hsv"]
    return [tuple(int(255 * c) for c in cmap(i / max(n, 1))[:3]) for i in range(n)]


def _draw(img, xy, conf, threshold, skeleton, colors) -> None:
    r = max(2, round(min(img.shape[:2]) / 120))
    ok = np.isfinite(xy).all(-1) & (np.nan_to_num(conf) >= threshold)
    for a, b in skeleton or []:
        if ok[a] and ok[b]:
            p, q = xy[a], xy[b]
            cv2.line(img, (round(p[0]), round(p[1])), (round(q[0]), round(q[1])), (200, 200, 200), 1, cv2.LINE_AA)
    for j in np.flatnonzero(ok):
        cv2.circle(img, (round(xy[j, 0]), round(xy[j, 1])), r, colors[j % len(colors)], -1, cv2.LINE_AA)


def predict_videos(
    run_dir: str | os.PathLike,
    videos: list[str | os.PathLike],
    out_dir: str | os.PathLike | None = None,
    batch_size: int = 16,
    runtime: str = "torch",
    labeled_video: bool = False,
    threshold: float = 0.5,
    resume: bool = True,
    max_frames: int | None = None,
    progress: bool = True,
) -> list:
    """Predict every frame of each video (streaming): ``<stem>.csv``, ``<stem>_video.json``, optional labelled MP4.

    The model is loaded from the run folder alone (no training data is read). See
    :func:`keyhead.video.predict_video` for the arguments.

    Returns:
        One :class:`keyhead.video.VideoPrediction` per video.
    """
    from keyhead.run import load_run

    model, _ = load_run(run_dir)
    skeleton_file = Path(run_dir) / "skeleton.json"
    pairs = json.loads(skeleton_file.read_text()) if skeleton_file.is_file() else []
    index = {n: i for i, n in enumerate(model.keypoint_names)}
    skeleton = [(index[a], index[b]) for a, b in pairs if a in index and b in index]
    out = Path(out_dir) if out_dir else Path(run_dir) / "predictions"
    pca = None
    if (Path(run_dir) / "pca.safetensors").is_file():
        from keyhead.engine.semi import PosePCA

        pca = PosePCA.load(Path(run_dir) / "pca.safetensors")
    results = []
    for video in videos:
        res = predict_video(
            model,
            video,
            out,
            model.keypoint_names,
            batch_size=batch_size,
            runtime=runtime,
            labeled_video=labeled_video,
            threshold=threshold,
            skeleton=skeleton,
            resume=resume,
            max_frames=max_frames,
            progress=progress,
            pca=pca,
        )
        results.append(res)
    return results
