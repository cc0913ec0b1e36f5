"""The one way keyhead opens an ONNX graph for the CPU: onnxruntime, or OpenVINO for ``--runtime openvino`` (no torch
import, for torch-free prediction)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from keyhead.errors import KeyheadError

__all__ = ["BACKENDS", "check_openvino", "graph_session", "ort_session"]


def ort_session(path: str | os.PathLike, threads: int | None = None) -> Any:
    """An onnxruntime CPU session: all graph optimisations, one intra-op pool of ``threads`` (default: all cores),
    sequential execution, and no spin-waiting worker threads, which would otherwise keep the cores busy after each
    call and take them from whatever runs next (a frame-decoding thread, an eager model timed beside it)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads or os.cpu_count() or 1
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


BACKENDS = ("onnxruntime", "openvino")


def check_openvino() -> Any:
    """The openvino module, or a one-line error saying how to get it."""
    try:
        import openvino
    except ImportError:
        raise KeyheadError(
            "--runtime openvino needs the openvino package: pip install openvino (or keyhead[openvino]), "
            "or use --runtime onnx"
        ) from None
    return openvino


class _OpenVinoSession:
    """An ONNX graph compiled by OpenVINO for the CPU, called like an onnxruntime session (``run(None, feed)``)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        ov = check_openvino()
        core = ov.Core()
        # compiled graphs are cached beside the ONNX file: later start-ups skip OpenVINO's graph compilation
        core.set_property({"CACHE_DIR": str(Path(path).parent / "openvino_cache")})
        # f32 always: on CPUs with AMX / AVX-512 BF16 OpenVINO would otherwise compute in bfloat16 (other keypoints)
        cores = os.cpu_count() or 1
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads or cores,
            "INFERENCE_PRECISION_HINT": "f32",
        }
        if threads and threads < cores:  # several sessions side by side (--jobs): pinned, all would share core 0
            config["ENABLE_CPU_PINNING"] = False  # (2 sessions of 1 thread: 27.5 -> 52.5 frames/s on 2 cores)
        self._compiled = core.compile_model(str(path), "CPU", config)
        self._request = self._compiled.create_infer_request()
        self._outputs = list(self._compiled.outputs)

    def run(self, _names: Any, feed: dict[str, Any]) -> list[Any]:
        result = self._request.infer(feed)  # outputs are copied (share_outputs=False): later calls cannot overwrite
        return [result[o] for o in self._outputs]


def graph_session(path: str | os.PathLike, threads: int | None = None, backend: str = "onnxruntime") -> Any:
    """A CPU session of an ONNX graph in ``backend`` ("onnxruntime" or "openvino"), called as ``run(None, feed)``."""
    if backend == "openvino":
        return _OpenVinoSession(path, threads)
    if backend != "onnxruntime":
        raise KeyheadError(f"ONNX backend {backend!r}: choose {', '.join(BACKENDS)}")
    return ort_session(path, threads)
