"""FOMM detectors as ONNX graphs run by onnxruntime, int8 quantization, and latency measurement.

The exported graph maps images (B, C, H, W) float32 in [0, 1] to ``xy`` (B, K, 2) keypoints in input pixels
(the same mapping as ``FommKPDetector.to_pixels``) and, with Jacobians, ``jacobian`` (B, K, 2, 2). int8 comes
from onnxruntime's quantization: static (QDQ, per-channel int8 weights, uint8 activations calibrated on frames)
and dynamic (int8 weights, activation ranges computed per run).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from keyhead.errors import KeyheadError
from keyhead.evaluation.timing import latency_summary, time_calls
from keyhead.export.onnx import export_graph
from keyhead.fomm.detector import FommKPDetector
from keyhead.io.atomic import atomic_path
from keyhead.runtime.session import ort_session

__all__ = ["OrtDetector", "PixelDetector", "export_fomm_onnx", "measure_latency", "quantize_onnx"]


class PixelDetector(nn.Module):
    """A FOMM detector returning (xy (B, K, 2) in input pixels, jacobian (B, K, 2, 2)) - what is exported."""

    def __init__(self, detector: FommKPDetector) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        out = self.detector(image)
        xy = self.detector.to_pixels(out["value"])
        return (xy, out["jacobian"]) if "jacobian" in out else (xy,)


def export_fomm_onnx(detector: FommKPDetector, path: str | os.PathLike, opset: int = 18) -> Path:
    """Export ``detector`` (eval mode) to ``path`` with a dynamic batch axis; written atomically."""
    detector = detector.eval()
    model = detector.model
    h, w = model.input_size
    example = torch.rand(1, model.backbone.in_channels, h, w, generator=torch.Generator().manual_seed(0))
    wrapper = PixelDetector(detector).eval()
    names = ["xy", "jacobian"] if model.head.jacobian is not None else ["xy"]
    target = Path(path)
    with atomic_path(target) as tmp:
        export_graph(wrapper, example, tmp, "image", names, opset, "the FOMM detector")
    return target


class OrtDetector:
    """An exported FOMM graph in an onnxruntime session: ``(images (B, C, H, W) in [0, 1]) -> xy (B, K, 2)``.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (default: torch's thread count, so eager and ORT timings are comparable).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        # no spin-waiting (ort_session): ORT's busy worker threads would slow the eager models timed beside it
        self.session = ort_session(path, threads or torch.get_num_threads())
        self.path = Path(path)

    def __call__(self, images: Tensor | np.ndarray) -> np.ndarray:
        x = images.numpy() if isinstance(images, Tensor) else images
        return self.session.run(["xy"], {"image": np.ascontiguousarray(x, dtype=np.float32)})[0]


class _FrameReader:
    """onnxruntime calibration data: one frame at a time."""

    def __init__(self, frames: np.ndarray) -> None:
        self.frames = iter(frames)

    def get_next(self) -> dict[str, np.ndarray] | None:
        frame = next(self.frames, None)
        return None if frame is None else {"image": frame[None]}


def quantize_onnx(
    fp32_path: str | os.PathLike, out_path: str | os.PathLike, mode: str, calibration: np.ndarray | None = None
) -> Path:
    """int8 quantization of an exported graph with onnxruntime.

    Args:
        fp32_path: the float graph.
        out_path: where to write the int8 graph (atomically).
        mode: "static" (QDQ, per-channel int8 weights, uint8 activations calibrated with MinMax on ``calibration``)
            or "dynamic" (int8 weights; activation scales computed at run time).
        calibration: (N, C, H, W) float32 frames in [0, 1] for static quantization.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    target = Path(out_path)
    with atomic_path(target.with_suffix(".pre.onnx")) as pre, atomic_path(target) as tmp:
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        if mode == "static":
            if calibration is None or not len(calibration):
                raise KeyheadError("static int8 quantization needs calibration frames")
            quantize_static(
                str(pre),
                str(tmp),
                _FrameReader(calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
        elif mode == "dynamic":
            quantize_dynamic(str(pre), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        else:
            raise KeyheadError(f"int8 mode {mode!r}: choose static or dynamic")
    target.with_suffix(".pre.onnx").unlink(missing_ok=True)
    return target


def measure_latency(
    runners: dict[str, Callable[[], object]], repeats: int = 30, warmup: int = 5
) -> dict[str, dict[str, float]]:
    """Median (and spread) of wall-clock milliseconds per call, the runners interleaved round-robin.

    Interleaving makes every runner see the same machine state (clock, caches, other load); warm-up calls are
    not timed.

    Returns:
        {name: {"median_ms", "p10_ms", "p90_ms", "repeats"}}.
    """
    with torch.inference_mode():
        times = time_calls(runners, repeats, warmup)
    return {name: latency_summary(ms) for name, ms in times.items()}
