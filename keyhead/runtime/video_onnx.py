"""The ONNX graphs of a run for ``keyhead predict RUN_DIR VIDEO --runtime onnx``, run without torch.

A run's video graphs live in ``RUN_DIR/video_onnx/`` (written once by :mod:`keyhead.export.video`, which needs
torch; later runs only read them):

- single-frame heads: ``frame.onnx``, images (B, C, H, W) float32 in [0, 1] -> ``xy`` (B, K, 2) in input pixels
  and ``confidence`` (B, K) (backbone, head and decoder in one graph);
- context heads (``mhcrnn``): ``features.onnx``, images -> deepest features (B, C', h, w), computed once per
  frame, and ``window.onnx``, feature windows (B, T, C', h, w) -> ``xy``, ``confidence`` of the target frames;
- ``meta.json``: input size, channels, keypoint names, the window's frame offsets, and a fingerprint of the
  run's config and weights: graphs of other weights are never used (they are exported again);
- ``--runtime onnx-int8``: ``frame.int8.onnx`` (or ``features.int8.onnx``), the per-frame graph with int8
  convolutions calibrated on the run's own labelled frames, and ``int8.json``, its fingerprint and the measured
  keypoint deviation from the float32 graph (written by :mod:`keyhead.export.quantize`, only within tolerance).

``--runtime openvino`` runs the same graphs with OpenVINO instead of onnxruntime (compiled graphs cached in
``openvino_cache/``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from keyhead.errors import KeyheadError
from keyhead.runtime.session import graph_session

FOLDER = "video_onnx"
#: bump when the layout of the graphs or of meta.json changes: older caches are then exported again
VERSION = 1
#: the run files a cache depends on (hashed into its fingerprint)
SOURCES = ("config.yaml", "keypoints.txt", "calibration.json")
#: the quantized per-frame graph's record (fingerprint, tolerance, measured deviation)
INT8_META = "int8.json"


def fingerprint(run_dir: str | os.PathLike, weights: str = "model.safetensors") -> str:
    """SHA-256 of the cache version, the run's config, keypoint names and weights (~0.05 s for ResNet-18)."""
    run = Path(run_dir)
    digest = hashlib.sha256(f"keyhead-video-onnx-{VERSION}:{weights}".encode())
    for name in (*SOURCES, weights):
        path = run / name
        digest.update(name.encode())
        if path.is_file():
            with open(path, "rb") as f:
                digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


class OnnxVideoNet:
    """A run's video graphs (see the module docstring) behind the interface video prediction uses.

    Args:
        folder: a ``video_onnx`` folder holding ``meta.json`` and the graphs.
        threads: intra-op threads (default: all cores).
        backend: "onnxruntime" or "openvino".
        int8: run the int8 per-frame graph (``frame.int8.onnx`` / ``features.int8.onnx``) instead of float32.

    Attributes:
        input_size: (H, W) of the model input.
        in_channels: C, 3 (RGB) or 1 (gray).
        offsets: the window's frame offsets relative to the target frame ([0] for single-frame heads).
        keypoint_names: K names, in output order.
    """

    def __init__(
        self, folder: str | os.PathLike, threads: int | None = None, backend: str = "onnxruntime", int8: bool = False
    ) -> None:
        self.folder = Path(folder)
        self.meta = read_meta(self.folder)
        if self.meta is None:
            raise KeyheadError(f"{self.folder}/meta.json is missing or unreadable; delete {self.folder} and rerun")
        self.input_size = (int(self.meta["input_size"][0]), int(self.meta["input_size"][1]))
        self.in_channels = int(self.meta["in_channels"])
        self.offsets = [int(o) for o in self.meta["offsets"]]
        self.keypoint_names = [str(n) for n in self.meta["keypoint_names"]]
        suffix = ".int8.onnx" if int8 else ".onnx"
        if len(self.offsets) > 1:
            self._features = graph_session(self.folder / f"features{suffix}", threads, backend)
            self._window = graph_session(self.folder / "window.onnx", threads, backend)
        else:
            self._frame = graph_session(self.folder / f"frame{suffix}", threads, backend)

    def frames(self, x: np.ndarray) -> Any:
        """Images (B, C, H, W) float32 in [0, 1] -> (xy (B, K, 2) input px, confidence (B, K)) for single-frame
        heads, deepest features (B, C', h, w) for context heads."""
        if len(self.offsets) > 1:
            return self._features.run(None, {"image": x})[0]
        xy, conf = self._frame.run(None, {"image": x})
        return xy, conf

    def windows(self, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feature windows (B, T, C', h, w) -> xy (B, K, 2) input px and confidence (B, K) of the target frames."""
        xy, conf = self._window.run(None, {"window": np.ascontiguousarray(feats, dtype=np.float32)})
        return xy, conf


def read_meta(folder: str | os.PathLike, name: str = "meta.json") -> dict[str, Any] | None:
    """``meta.json`` (or another JSON record) of a cache folder, or None if absent or unreadable."""
    path = Path(folder) / name
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def frame_graph(meta: dict[str, Any], int8: bool = False) -> str:
    """The file name of the per-frame graph of a cache (``frame`` or ``features``, float32 or int8)."""
    return ("features" if len(meta.get("offsets", [0])) > 1 else "frame") + (".int8.onnx" if int8 else ".onnx")


def cached_video_net(
    run_dir: str | os.PathLike,
    weights: str = "model.safetensors",
    threads: int | None = None,
    backend: str = "onnxruntime",
    int8: bool = False,
) -> OnnxVideoNet | None:
    """The run's video graphs if they were exported (and, for ``int8``, quantized) from its current config and
    weights, else None."""
    folder = Path(run_dir) / FOLDER
    meta = read_meta(folder)
    fp = fingerprint(run_dir, weights)
    if meta is None or meta.get("version") != VERSION or meta.get("fingerprint") != fp:
        return None
    graphs = [frame_graph(meta)] + (["window.onnx"] if len(meta.get("offsets", [0])) > 1 else [])
    if int8:
        record = read_meta(folder, INT8_META)
        if record is None or record.get("fingerprint") != fp:
            return None
        graphs.append(frame_graph(meta, int8=True))
    if not all((folder / g).is_file() for g in graphs):
        return None
    return OnnxVideoNet(folder, threads, backend, int8)
