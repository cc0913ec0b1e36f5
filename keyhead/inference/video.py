"""Video reading (any codec FFmpeg reads, via PyAV; OpenCV as a fallback) and streaming video prediction.

Prediction never holds the video in memory: frames are decoded, resized and batched in a background thread
while the network runs, each frame's backbone features are computed once and context heads slide their window
over a small store of cached features; rows are appended to ``<stem>.csv.partial`` and renamed at the end, so
an interrupted run resumes where it stopped. ``--runtime onnx`` runs the run's cached ONNX graphs
(:mod:`keyhead.runtime.video_onnx`) without importing torch.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from keyhead.errors import KeyheadError
from keyhead.inference._stream import completed_rows, truncate_rows
from keyhead.io.atomic import atomic_path, atomic_write, make_dir
from keyhead.io.predictions import format_frame_rows, iter_prediction_chunks, prediction_header
from keyhead.io.rundir import RUN_FILES, check_run_dir, read_skeleton
from keyhead.io.video import VIDEO_SUFFIXES, VideoInfo, check_distinct_stems, iter_frames, probe, transcode

__all__ = [
    "VIDEO_SUFFIXES",
    "VideoInfo",
    "VideoPrediction",
    "iter_frames",
    "predict_video",
    "predict_videos",
    "probe",
    "transcode",
]

RUNTIMES = ("torch", "onnx", "openvino", "onnx-int8", "compile", "torch-bf16")
#: runtimes that run the run's cached ONNX video graphs (no torch once the graphs exist)
GRAPH_BACKEND = {"onnx": "onnxruntime", "openvino": "openvino", "onnx-int8": "onnxruntime"}  # who runs the graphs
GRAPH_RUNTIMES = tuple(GRAPH_BACKEND)


@dataclass
class VideoPrediction:
    """Paths and numbers of one predicted video."""

    csv: Path
    summary: Path
    labeled: Path | None
    n_frames: int
    frames_per_second: float
    summary_data: dict[str, Any]


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

    Frames are decoded, resized and batched in a background thread while the network runs; rows are appended
    to ``<stem>.csv.partial`` batch by batch and the file is renamed when the video is done.

    Args:
        model: a :class:`keyhead.models.model.KeypointModel` (on CPU or GPU), or the video graphs of a run
            (:class:`keyhead.runtime.OnnxVideoNet`, which runs without torch; ``runtime`` is then "onnx").
        video: any video FFmpeg reads.
        out_dir: output folder.
        keypoint_names: the K names, in model order (CSV columns).
        batch_size: frames per forward pass.
        runtime: "torch" (eager), "onnx" (onnxruntime runs the network and decoder; a model given here is
            exported to a temporary folder first), "openvino" (the same graphs run by OpenVINO), "onnx-int8"
            (int8 convolutions calibrated on the run's labelled frames, see :mod:`keyhead.export.quantize`;
            run folders only), "compile" (torch.compile) or "torch-bf16" (eager under
            bfloat16 autocast: ~1.8x faster on CPUs with BF16 instructions, but not the same keypoints: on a
            trained model median 0.23 px, 95th percentile 1.6 px from float32, and ambiguous frames can flip).
        labeled_video: also write ``<stem>_labeled.mp4`` with the points drawn.
        threshold: confidence below which points are not drawn in the labelled video.
        skeleton: index pairs drawn as lines in the labelled video.
        scorer: the CSV's scorer row.
        resume: continue an interrupted run from ``<stem>.csv.partial`` instead of starting over.
        max_frames: stop after this many frames (for quick looks).
        progress: show a progress bar with frames/s.
        pca: a Pose PCA to report reconstruction errors with (a semi-supervised run's ``pca.safetensors``).

    Returns:
        The output paths, frame count, prediction speed (frames/s from the first decoded frame to the last
        written row) and the summary.
    """
    from tqdm import tqdm

    from keyhead.inference._stream import BatchReader, FeatureStore, window_indices
    from keyhead.io.images import to_original

    if batch_size < 1:
        raise KeyheadError(f"--batch-size {batch_size}: give a positive number of frames per forward pass")
    info = probe(video)
    net = _video_net(model, runtime)
    out_dir = make_dir(out_dir)
    stem = Path(video).stem
    csv_path, partial = out_dir / f"{stem}.csv", out_dir / f"{stem}.csv.partial"
    header = prediction_header(keypoint_names, scorer)
    done = completed_rows(partial, header) if resume else 0
    if done:
        truncate_rows(partial, header, done)
    else:
        with atomic_write(partial) as f:
            f.write(header)
    offsets = net.offsets
    lo, hi = -min(offsets), max(offsets)
    total = info.n_frames if max_frames is None else min(info.n_frames or max_frames, max_frames)
    bar = tqdm(total=total or None, initial=done, unit="frame", desc=stem, disable=not progress, smoothing=0.1)
    start_decode = max(0, done - lo)
    store = FeatureStore()
    next_out, n_seen, predicted, wh = done, start_decode, 0, None
    t0 = time.perf_counter()
    reader = BatchReader(
        iter_frames(video, net.in_channels, start=start_decode), net.input_size, batch_size, max_frames
    )
    try:
        with open(partial, "a") as sink:

            def emit(xy: np.ndarray, conf: np.ndarray, first: int) -> None:
                nonlocal predicted
                sink.write(format_frame_rows(first, to_original(xy, wh, net.input_size), conf))
                sink.flush()
                predicted += len(xy)
                bar.update(len(xy))

            def run_windows(last: int, final: bool) -> None:
                """Predict every target frame whose window is complete (all of them when ``final``)."""
                nonlocal next_out
                stop = last + 1 if final else last - hi + 1
                for a in range(next_out, stop, batch_size):
                    targets = range(a, min(a + batch_size, stop))
                    xy, conf = net.windows(store.take(window_indices(targets, offsets, last)))
                    emit(xy, conf, a)
                next_out = max(next_out, stop)
                store.drop_before(next_out - lo)

            for first, x, size in reader:
                n_seen, wh = first + len(x), size
                out = net.frames(x)
                if len(offsets) > 1:
                    store.append(first, out)
                    run_windows(n_seen - 1, final=False)
                elif (skip := max(0, done - first)) < len(x):
                    emit(out[0][skip:], out[1][skip:], first + skip)
            if len(offsets) > 1 and len(store):
                run_windows(n_seen - 1, final=True)
    finally:
        reader.close()
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
        batch_size=batch_size,
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


def _video_net(model: Any, runtime: str) -> Any:
    """The network video prediction runs: the given ONNX graphs, or the model eager / compiled / exported."""
    from keyhead.runtime.video_onnx import OnnxVideoNet

    if runtime not in RUNTIMES:
        raise KeyheadError(f"--runtime {runtime!r}: choose {', '.join(RUNTIMES)}")
    if isinstance(model, OnnxVideoNet):
        if runtime not in GRAPH_RUNTIMES:
            raise KeyheadError(f"ONNX video graphs run with runtime {'/'.join(GRAPH_RUNTIMES)}, not {runtime!r}")
        return model
    if runtime == "onnx-int8":
        raise KeyheadError("runtime 'onnx-int8' quantizes a run folder's graphs on its labelled frames: give a run")
    if runtime in GRAPH_RUNTIMES:
        from keyhead.export.video import model_video_net

        return model_video_net(model, backend=GRAPH_BACKEND[runtime])
    from keyhead.inference._stream import TorchVideoNet

    return TorchVideoNet(model, compile=runtime == "compile", bf16=runtime == "torch-bf16")


def open_video_net(run: Path, runtime: str, threads: int | None = None, device: str = "auto") -> Any:
    """The network of a run folder for ``runtime``: the model (torch runtimes) or its cached video graphs
    (ONNX runtimes: exported once into ``RUN_DIR/video_onnx/``, which needs torch; later calls import no torch).

    Args:
        run: a checked run folder.
        runtime: one of :data:`RUNTIMES`.
        threads: intra-op threads of the ONNX runtimes (default: all cores); torch runtimes use torch's setting.
        device: torch runtimes: "auto" (a GPU when there is one), "cpu", "cuda" or "mps"; ONNX runtimes: CPU.
    """
    if runtime not in RUNTIMES:
        raise KeyheadError(f"--runtime {runtime!r}: choose {', '.join(RUNTIMES)}")
    if runtime in GRAPH_RUNTIMES:
        from keyhead.runtime.video_onnx import cached_video_net

        backend, int8 = GRAPH_BACKEND[runtime], runtime == "onnx-int8"
        if backend == "openvino":
            from keyhead.runtime.session import check_openvino

            check_openvino()  # before any export: a missing package is a one-line error in a second
        net = cached_video_net(run, threads=threads, backend=backend, int8=int8)
        if net is None and int8:  # quantized once, on the run's labelled frames (needs torch and the data)
            from keyhead.export.quantize import quantize_run

            quantize_run(run)
            net = cached_video_net(run, threads=threads, int8=True)
        if net is None:
            from keyhead.export.video import run_video_net

            net = run_video_net(run, threads=threads, backend=backend)
        return net
    from keyhead.models.build import load_run

    return load_run(run, device=device)[0]


def _pca_errors(pca: Any, xy: np.ndarray) -> np.ndarray:
    """Per-keypoint Pose PCA reconstruction error (N, K) px of keypoints (N, K, 2), in NumPy (no torch needed);
    the same numbers as :meth:`keyhead.engine.semi.PosePCA.errors`."""
    groups = np.asarray(pca.groups).astype(np.int64)
    mean, comp = np.asarray(pca.mean, np.float64), np.asarray(pca.components, np.float64)
    g, m = groups.shape
    rows = xy[:, groups].reshape(len(xy), g, 2 * m) - mean
    res = np.linalg.norm((rows - rows @ comp @ comp.T).reshape(len(xy), g, m, 2), axis=-1)
    out = np.full(xy.shape[:2], np.nan)
    out[:, groups.reshape(-1)] = res.reshape(len(xy), g * m)
    return out


def load_pca(path: str | os.PathLike) -> Any:
    """A run's ``pca.safetensors`` as NumPy arrays (mean, components, groups, epsilon), for :func:`_pca_errors`."""
    from types import SimpleNamespace

    from safetensors.numpy import load_file

    try:
        arrays = load_file(str(path))
    except Exception:  # safetensors' own error types ("header too large" for a pickle, truncation, ...)
        raise KeyheadError(
            f"{path}: not a readable safetensors file (truncated, or another kind of file); "
            "delete it (the Pose PCA errors are then left out) or train the run again"
        ) from None
    missing = [k for k in ("mean", "components", "groups") if k not in arrays]
    if missing:
        raise KeyheadError(f"{path}: no {', '.join(missing)} array; this is not a keyhead Pose PCA, delete it")
    return SimpleNamespace(**arrays)


def summarise_predictions(csv_path: str | os.PathLike, names: list[str], pca: Any = None) -> dict[str, Any]:
    """Temporal norm (mean per-frame displacement, px), mean confidence and, given the run's Pose PCA
    (:class:`keyhead.engine.semi.PosePCA` or :func:`load_pca`), the mean PCA reconstruction error per keypoint;
    read in chunks."""
    k = len(names)
    pca_sum, pca_n = np.zeros(k), np.zeros(k)
    jump_sum, jump_n = np.zeros(k), np.zeros(k)
    conf_sum, conf_n = np.zeros(k), np.zeros(k)
    prev = None
    for _, xy, conf in iter_prediction_chunks(csv_path):
        seq = xy if prev is None else np.concatenate([prev[None], xy])
        d = np.linalg.norm(np.diff(seq, axis=0), axis=-1)
        ok = np.isfinite(d)
        jump_sum += np.where(ok, d, 0).sum(0)
        jump_n += ok.sum(0)
        if pca is not None:
            err = _pca_errors(pca, xy)
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
    instances: int = 1,
) -> Path:
    """Draw predictions (points above ``threshold``, skeleton lines) on every frame; H.264 MP4, streamed.

    ``instances=M`` reads rows of M animals (a multi-animal table, individuals outermost) and draws each identity
    in its own colour (points and limbs); a single animal gets a colour per keypoint."""
    import av
    from tqdm import tqdm

    info = probe(video)
    colors = _palette(64)
    out = Path(out)
    rows = iter_prediction_chunks(csv_path)
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
                if instances == 1:
                    _draw(img, xy[pos], conf[pos], threshold, skeleton, colors)
                else:
                    from keyhead.report.plots import identity_colours  # matplotlib: not on the torch-free path

                    parts = zip(np.split(xy[pos], instances), np.split(conf[pos], instances), strict=True)
                    for (pts, c), colour in zip(parts, identity_colours(instances), strict=True):
                        _draw(img, pts, c, threshold, skeleton, [colour], colour)
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
    import colorsys

    return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / max(n, 1), 1.0, 1.0)) for i in range(n)]


def _draw(img, xy, conf, threshold, skeleton, colors, limb=(200, 200, 200)) -> None:
    r = max(2, round(min(img.shape[:2]) / 120))
    ok = np.isfinite(xy).all(-1) & (np.nan_to_num(conf) >= threshold)
    for a, b in skeleton or []:
        if ok[a] and ok[b]:
            p, q = xy[a], xy[b]
            cv2.line(img, (round(p[0]), round(p[1])), (round(q[0]), round(q[1])), limb, 1, cv2.LINE_AA)
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
    jobs: int = 1,
    shard: tuple[int, int] | None = None,
    device: str = "auto",
) -> list:
    """Predict every frame of each video (streaming): ``<stem>.csv``, ``<stem>_video.json``, optional labelled MP4.

    The model is loaded from the run folder alone (no training data is read). With ``runtime="onnx"`` the run's
    ONNX graphs are used (exported once into ``RUN_DIR/video_onnx/``, which needs torch; later calls do not
    import torch at all). See :func:`keyhead.inference.video.predict_video` for the other arguments.

    Args:
        jobs: videos predicted at once by worker threads sharing the loaded network (ONNX runtimes: one session
            per worker), the cores split between them (:mod:`keyhead.inference.parallel`); one overall progress
            bar then replaces the per-video bars. Helps when decoding and writing leave cores idle.
        shard: ``(I, N)``: predict only the videos at positions ``pos % N == I`` of all videos sorted by name, so
            that N processes (a cluster job array) share one batch, each writing its own videos' files.

    Returns:
        One :class:`keyhead.inference.video.VideoPrediction` per video (of the shard), in input order.

    Example:
        >>> predict_videos("runs/my_run", ["a.mp4", "b.mp4", "c.mp4"], jobs=2, shard=(0, 2))  # doctest: +SKIP
    """
    from keyhead.inference.parallel import check_jobs, run_workers, select_shard, threads_per_worker, torch_threads

    check_jobs(jobs, runtime)
    check_distinct_stems(videos)
    videos = select_shard(videos, shard)
    run = check_run_dir(run_dir, (*RUN_FILES, "keypoints.txt"))
    if not videos:  # a shard of a job array larger than the batch
        return []
    workers = min(jobs, len(videos))
    threads = threads_per_worker(workers) if workers > 1 else None
    model = open_video_net(run, runtime, threads=threads, device=device)
    names = list(model.keypoint_names)
    index = {n: i for i, n in enumerate(names)}
    skeleton = [(index[a], index[b]) for a, b in read_skeleton(run) if a in index and b in index]
    out = Path(out_dir) if out_dir else run / "predictions"
    pca = load_pca(run / "pca.safetensors") if (run / "pca.safetensors").is_file() else None

    def one(video: str | os.PathLike, net: Any, bar: bool = progress) -> VideoPrediction:
        return predict_video(
            net,
            video,
            out,
            names,
            batch_size=batch_size,
            runtime=runtime,
            labeled_video=labeled_video,
            threshold=threshold,
            skeleton=skeleton,
            resume=resume,
            max_frames=max_frames,
            progress=bar,
            pca=pca,
        )

    if workers == 1:
        return [one(video, model) for video in videos]
    # graph runtimes: a session per worker, each with its own pool of `threads`; torch: one model, its pool split
    graphs = runtime in GRAPH_RUNTIMES
    nets = [model, *(open_video_net(run, runtime, threads=threads) if graphs else model for _ in range(workers - 1))]
    with torch_threads(None if graphs else threads):
        desc = f"{len(videos)} videos, {workers} at once"
        return run_workers(lambda video, net: one(video, net, bar=False), videos, nets, progress, desc)
