"""The one way keyhead opens an onnxruntime session (CPU; no torch import, for torch-free prediction)."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["ort_session"]


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
