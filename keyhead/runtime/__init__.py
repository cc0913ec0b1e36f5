"""Light prediction runtimes: exported models run without PyTorch (onnxruntime + NumPy + OpenCV only).

Nothing in this package imports torch; ``keyhead predict --runtime onnx`` goes through it.
"""

from __future__ import annotations

from keyhead.runtime.onnx_predict import OnnxKeypointModel, predict_images_onnx, resolve_onnx

__all__ = ["OnnxKeypointModel", "predict_images_onnx", "resolve_onnx"]
