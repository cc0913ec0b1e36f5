"""int8 video graphs (``keyhead predict RUN VIDEO --runtime onnx-int8``): static quantization of the per-frame graph,
calibrated on the run's own labelled frames and refused when its keypoints move too far from the float32 graph.

onnxruntime's static quantizer (QDQ format, per-channel int8 weights, uint8 activations) rewrites the convolutions
and matrix products of the cached per-frame graph (``video_onnx/frame.onnx``, or ``features.onnx`` of a context
head); the decoder stays in float32. Activation ranges come from the run's training frames, resized as video
prediction resizes; the keypoints of every other labelled frame (validation and test, or all when there are few)
are then compared with the float32 graph's in original-image pixels. Above ``tolerance_px`` (mean of the per-keypoint
distances) nothing is written and a one-line error gives the numbers.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_path, atomic_write
from keyhead.io.images import read_image, resize_like_training, to_network_input, to_original
from keyhead.io.rundir import RUN_FILES, check_run_dir
from keyhead.runtime.video_onnx import FOLDER, INT8_META, OnnxVideoNet, fingerprint, frame_graph, read_meta

__all__ = ["TOLERANCE_PX", "quantize_run"]

#: default refusal threshold: mean int8 - float32 keypoint distance over the checked frames, original-image pixels
TOLERANCE_PX = 2.0
#: at most this many training frames calibrate the activation ranges
CALIBRATION_FRAMES = 64
QUANTIZED_OPS = ["Conv", "MatMul", "Gemm"]


def _frame_inputs(root: Path, paths: list[str], input_size: tuple[int, int], channels: int) -> tuple[np.ndarray, list]:
    """Whole images resized as video prediction resizes them: (N, C, h, w) float32 in [0, 1] and each (w, h)."""
    xs, sizes = [], []
    for p in paths:
        img = read_image(root / p, channels)
        sizes.append((img.shape[1], img.shape[0]))
        x, _ = resize_like_training(img, input_size)
        xs.append(to_network_input(np.asarray(x).reshape(*input_size, channels)))
    return np.stack(xs), sizes


def _keypoints(net: OnnxVideoNet, x: np.ndarray, sizes: list, batch: int = 8) -> np.ndarray:
    """Original-pixel keypoints (N, K, 2); a context head sees a still window (the frame at every offset)."""
    out = []
    for a in range(0, len(x), batch):
        res = net.frames(x[a : a + batch])
        if len(net.offsets) > 1:
            res = net.windows(np.repeat(res[:, None], len(net.offsets), axis=1))
        out.extend(to_original(xy, wh, net.input_size) for xy, wh in zip(res[0], sizes[a : a + batch], strict=True))
    return np.stack(out)


def _run_frames(run: Path, names: list[str]) -> tuple[Path, list[str], list[str], np.ndarray]:
    """The run's labelled frames: (root, calibration paths (train), check paths (val + test, or all), the labels
    (M, K, 2) of the check paths, NaN where missing)."""
    from keyhead.config import load_config
    from keyhead.data.prepare import labels_for_model

    cfg = load_config(run / "config.yaml")
    try:
        frames, _ = labels_for_model(cfg.data.path, names)
    except KeyheadError as exc:
        raise KeyheadError(
            f"int8 calibration reads the run's labelled frames ({cfg.data.path}), which failed: {exc}"
        ) from None
    split = json.loads((run / "split.json").read_text()) if (run / "split.json").is_file() else {}
    unique = list(dict.fromkeys(frames.image_paths))
    train = [p for p in dict.fromkeys(split.get("train", [])) if p in set(unique)] or unique
    held = [p for p in dict.fromkeys(split.get("val", []) + split.get("test", [])) if p in set(unique)]
    if len(held) < 8:
        held = unique
    rng = np.random.default_rng(0)
    train = [train[i] for i in sorted(rng.permutation(len(train))[:CALIBRATION_FRAMES])]
    row = {p: i for i, p in reversed(list(enumerate(frames.image_paths)))}
    return frames.root, train, held, np.asarray(frames.keypoints, np.float64)[[row[p] for p in held]]


def quantize_run(
    run_dir: str | os.PathLike, tolerance_px: float = TOLERANCE_PX, progress: bool = True
) -> dict[str, Any]:
    """Quantize a run's per-frame video graph to int8 (see the module docstring); returns the ``int8.json`` record.

    Args:
        run_dir: a trained single-animal run folder whose labelled data is still where ``config.yaml`` says.
        tolerance_px: the largest mean keypoint deviation from float32 accepted, original-image pixels.
        progress: print what is being done.

    Raises:
        KeyheadError: the labelled frames cannot be read, or the int8 graph moves keypoints beyond the tolerance
            (nothing is written then).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from keyhead.export.video import run_video_net

    if not tolerance_px > 0:
        raise KeyheadError(f"--int8-tolerance {tolerance_px}: give a positive number of pixels")
    run = check_run_dir(run_dir, (*RUN_FILES, "keypoints.txt"))
    t0 = time.perf_counter()
    names = [n for n in (run / "keypoints.txt").read_text().splitlines() if n]
    root, calib_paths, check_paths, truth = _run_frames(run, names)  # first: missing data fails in a second
    fp32 = run_video_net(run)
    folder = run / FOLDER
    meta = read_meta(folder) or {}
    if progress:
        print(f"keyhead: int8: calibrating on {len(calib_paths)} training frames, checking {len(check_paths)} frames")
    calib, _ = _frame_inputs(root, calib_paths, fp32.input_size, fp32.in_channels)

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(np.array_split(calib, max(1, len(calib) // 8)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {"image": np.ascontiguousarray(batch)}

    name = frame_graph(meta, int8=True)
    with tempfile.TemporaryDirectory(prefix="keyhead-int8-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(folder / frame_graph(meta)), str(pre), skip_symbolic_shape=True)
        q = Path(tmp) / name
        common = dict(
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=QUANTIZED_OPS,
        )
        # ranges at the 99.9th percentile of each activation: on the demo model 0.98 px median / 7.4 px 95th
        # percentile deviation, against 1.44 / 9.9 px with min-max ranges; an activation of (nearly) one value has
        # no histogram, and min-max ranges are then the fallback
        calibration = "percentile 99.9"
        try:
            pct = {"calibrate_method": CalibrationMethod.Percentile, "extra_options": {"CalibPercentile": 99.9}}
            quantize_static(str(pre), str(q), _Reader(), **common, **pct)
        except ValueError:
            calibration = "min-max"
            quantize_static(str(pre), str(q), _Reader(), **common, calibrate_method=CalibrationMethod.MinMax)
        for other in ("meta.json", "window.onnx"):  # the int8 graph opened beside what it needs, to be checked
            if (folder / other).is_file():
                shutil.copyfile(folder / other, Path(tmp) / other)
        x, sizes = _frame_inputs(root, check_paths, fp32.input_size, fp32.in_channels)
        ref = _keypoints(fp32, x, sizes)
        got = _keypoints(OnnxVideoNet(tmp, int8=True), x, sizes)
        record = _deviation(ref, got)
        err = {k: np.linalg.norm(v - truth, axis=-1) for k, v in (("float32", ref), ("int8", got))}
        record["label_error_px"] = {k: round(float(np.nanmean(v)), 4) for k, v in err.items() if np.isfinite(v).any()}
        record.update(
            fingerprint=fingerprint(run),
            graph=name,
            tolerance_px=tolerance_px,
            calibration=calibration,
            calibration_frames=len(calib_paths),
            checked_frames=len(check_paths),
            quantized_ops=QUANTIZED_OPS,
            seconds=round(time.perf_counter() - t0, 1),
        )
        if record["mean_px"] > tolerance_px:
            raise KeyheadError(
                f"{run}: the int8 graph moves keypoints by {record['mean_px']:.2f} px on average (95th percentile "
                f"{record['p95_px']:.2f} px) from float32 on {len(check_paths)} labelled frames, above the tolerance "
                f"{tolerance_px:g} px; use --runtime onnx, or keyhead export RUN --format onnx-int8 --int8-tolerance PX"
            )
        with atomic_path(folder / name) as dst:
            os.replace(q, dst)
    with atomic_write(folder / INT8_META) as f:
        json.dump(record, f, indent=1)
    if progress:
        print(
            f"keyhead: int8: {folder / name}: deviation from float32 mean {record['mean_px']:.3f} px, "
            f"median {record['median_px']:.3f} px, "
            f"95th percentile {record['p95_px']:.3f} px, max {record['max_px']:.3f} px"
        )
    return record


def _deviation(ref: np.ndarray, got: np.ndarray) -> dict[str, Any]:
    """Median / 95th percentile / max distance (px) between the float32 and int8 keypoints."""
    d = np.linalg.norm(got - ref, axis=-1)
    d = d[np.isfinite(d)]
    if not d.size:
        return {"mean_px": 0.0, "median_px": 0.0, "p95_px": 0.0, "max_px": 0.0}
    stats = {"mean_px": d.mean(), "median_px": np.median(d), "p95_px": np.percentile(d, 95), "max_px": d.max()}
    return {k: round(float(v), 4) for k, v in stats.items()}
