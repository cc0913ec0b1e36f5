"""Export the ONNX graphs of video prediction (``--runtime onnx``); they are read by :mod:`keyhead.runtime.video_onnx`.

The export needs torch and the model; it runs once per run folder (the graphs are cached in
``RUN_DIR/video_onnx/`` under a fingerprint of the config and weights), so later ``keyhead predict --runtime onnx``
commands start without importing torch. Every export is checked against eager PyTorch on random inputs of a
batch size other than the traced one; a graph that disagrees is refused.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from keyhead.errors import KeyheadError
from keyhead.export.onnx import ExportedKeypointModel, export_graph
from keyhead.io.atomic import atomic_path, atomic_write
from keyhead.models.model import KeypointModel
from keyhead.runtime.video_onnx import FOLDER, VERSION, OnnxVideoNet, fingerprint

#: exported and eager keypoints must agree this closely (input pixels; confidence: this / 10) or the export is refused
TOLERANCE_PX = 0.05
OPSET = 18


class _Features(nn.Module):
    """Images (B, C, H, W) in [0, 1] -> deepest backbone features (B, C', h, w)."""

    def __init__(self, model: KeypointModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.features(image)[-1]


class _Window(nn.Module):
    """Feature windows (B, T, C', h, w) -> (xy (B, K, 2) input px, confidence (B, K)) of the target frames."""

    def __init__(self, model: KeypointModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kp = self.model.decode(self.model.head.forward_window(window), batch_groups=False)
        return kp.xy, kp.confidence


def _export(module: nn.Module, example: torch.Tensor, path: Path, name: str, outputs: list[str]) -> None:
    export_graph(module, example, path, name, outputs, OPSET, "the model's video graph", "; use --runtime torch")


def _check(module: nn.Module, path: Path, name: str, example: torch.Tensor) -> None:
    """Refuse a graph whose outputs differ from eager PyTorch (random input, another batch size than traced)."""
    from keyhead.runtime.session import ort_session

    with torch.inference_mode():
        eager = module(example)
    eager = [t.float().numpy() for t in (eager if isinstance(eager, tuple) else (eager,))]
    got = ort_session(path).run(None, {name: example.numpy()})
    for i, (a, b) in enumerate(zip(eager, got, strict=True)):
        tol = TOLERANCE_PX if i == 0 else TOLERANCE_PX / 10
        if a.shape != b.shape or (np.isnan(a) != np.isnan(b)).any():
            raise KeyheadError(f"the exported video graph {path.name} disagrees with PyTorch; use --runtime torch")
        ok = np.isfinite(a)
        diff = float(np.abs(a - b)[ok].max(initial=0.0))
        if diff > tol * (1 if len(eager) > 1 else max(1.0, float(np.abs(a[ok]).max(initial=0.0)))):
            raise KeyheadError(
                f"the exported video graph {path.name} differs from PyTorch by {diff:.3g}; use --runtime torch"
            )


def export_video_graphs(model: KeypointModel, folder: str | os.PathLike, extra_meta: dict | None = None) -> Path:
    """Export the per-frame (and, for context heads, the window) graphs of ``model`` into ``folder``, checked.

    Args:
        model: the model (any device; exported on CPU from a copy, the model itself is untouched).
        folder: the output folder; ``meta.json`` is written last, so a folder without it is incomplete.
        extra_meta: more keys for ``meta.json`` (the run's fingerprint).

    Returns:
        ``folder``.

    Raises:
        KeyheadError: the model cannot be exported or the graph disagrees with eager PyTorch.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    m = copy.deepcopy(model).cpu().float().eval()
    m.use_channels_last(False)
    offsets = m.frame_offsets()
    h, w = m.input_size
    c = m.backbone.in_channels
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(2, c, h, w, generator=gen)
    probe = torch.rand(3, c, h, w, generator=gen)
    if len(offsets) == 1:
        frame = ExportedKeypointModel(m)
        with atomic_path(folder / "frame.onnx") as tmp:
            _export(frame, images, tmp, "image", ["xy", "confidence"])
            _check(frame, tmp, "image", probe)
    else:
        feats = _Features(m)
        window = _Window(m)
        with torch.inference_mode():
            f = feats(torch.cat([images, probe]))
        windows = f[torch.tensor([[i % 5 for i in range(j, j + len(offsets))] for j in range(5)])].clone()
        with atomic_path(folder / "features.onnx") as tmp:
            _export(feats, images, tmp, "image", ["features"])
            _check(feats, tmp, "image", probe)
        with atomic_path(folder / "window.onnx") as tmp:
            _export(window, windows[:2].contiguous(), tmp, "window", ["xy", "confidence"])
            _check(window, tmp, "window", windows[2:].contiguous())
    meta = {
        "format": "keyhead-video-onnx",
        "version": VERSION,
        "input_size": [h, w],
        "in_channels": c,
        "offsets": offsets,
        "keypoint_names": list(m.keypoint_names),
        "head": type(m.head).__name__,
        "decoder": m.codec.decoder_name,
        **(extra_meta or {}),
    }
    with atomic_write(folder / "meta.json") as fh:
        json.dump(meta, fh, indent=1)
    return folder


def run_video_net(
    run_dir: str | os.PathLike,
    weights: str = "model.safetensors",
    threads: int | None = None,
    backend: str = "onnxruntime",
) -> OnnxVideoNet:
    """The run's float32 video graphs, exported now (and cached in ``RUN_DIR/video_onnx/``) if absent or stale,
    opened in ``backend`` ("onnxruntime" or "openvino") with ``threads`` intra-op threads.

    A run folder that cannot be written to gets its graphs in a temporary folder, exported on every call.
    """
    from keyhead.models.build import load_run
    from keyhead.runtime.video_onnx import cached_video_net

    net = cached_video_net(run_dir, weights, threads, backend)
    if net is not None:
        return net
    model, _ = load_run(run_dir, weights)
    meta = {"fingerprint": fingerprint(run_dir, weights), "weights": weights, "run": str(Path(run_dir).resolve())}
    try:
        folder = export_video_graphs(model, Path(run_dir) / FOLDER, meta)
    except PermissionError:
        return model_video_net(model, threads, backend)
    return OnnxVideoNet(folder, threads, backend)


def model_video_net(model: KeypointModel, threads: int | None = None, backend: str = "onnxruntime") -> OnnxVideoNet:
    """Video graphs of an in-memory model, exported to a temporary folder (not cached)."""
    with tempfile.TemporaryDirectory(prefix="keyhead-video-onnx-") as tmp:
        net = OnnxVideoNet(export_video_graphs(model, tmp), threads, backend)
    return net
