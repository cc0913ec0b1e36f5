"""keyhead: keypoint detection as Backbone -> Head -> Decoder, trained and run on CPU or GPU.

Example:
    >>> import torch, keyhead
    >>> model = keyhead.create_model(num_keypoints=5, backbone="tiny", input_size=(64, 64))
    >>> kp = model.predict(torch.rand(1, 3, 64, 64))
    >>> kp.xy.shape, kp.confidence.shape
    (torch.Size([1, 5, 2]), torch.Size([1, 5]))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from keyhead.errors import KeyheadError

# Public names -> the module that defines them. They are imported on first use (PEP 562), so that
# ``import keyhead`` stays light: the ONNX prediction path (keyhead.runtime) runs without torch installed.
_LAZY = {
    "CoordCodec": "keyhead.models.codecs",
    "HeatmapCodec": "keyhead.models.codecs",
    "RunConfig": "keyhead.config",
    "load_config": "keyhead.config",
    "load_labels": "keyhead.data.formats",
    "KeypointModel": "keyhead.models.model",
    "create_model": "keyhead.models.model",
    "load_run": "keyhead.models.build",
    "Keypoints": "keyhead.types",
    "LabeledFrames": "keyhead.types",
    "convert_labels": "keyhead.data.formats.convert",
    "export_onnx": "keyhead.export.onnx",
    "OnnxKeypointModel": "keyhead.runtime",
    "predict_ensemble": "keyhead.inference.ensembles",
    "smooth_predictions": "keyhead.inference.smoothing",
    "write_report": "keyhead.report.html",
    "compare": "keyhead.compare",
    "cross_validate": "keyhead.crossval",
    "flip_predict": "keyhead.models.tta",
    "CentroidCodec": "keyhead.models.codecs",
    "InstanceFrames": "keyhead.types",
    "load_instances": "keyhead.data.formats",
    "TopDownPredictor": "keyhead.topdown.predict",
    "train_topdown": "keyhead.topdown.train",
    "Tracker": "keyhead.inference.tracking",
}

if TYPE_CHECKING:
    from keyhead.compare import compare
    from keyhead.config import RunConfig, load_config
    from keyhead.crossval import cross_validate
    from keyhead.data.formats import load_instances, load_labels
    from keyhead.data.formats.convert import convert_labels
    from keyhead.export.onnx import export_onnx
    from keyhead.inference.ensembles import predict_ensemble
    from keyhead.inference.smoothing import smooth_predictions
    from keyhead.inference.tracking import Tracker
    from keyhead.models.build import load_run
    from keyhead.models.codecs import CentroidCodec, CoordCodec, HeatmapCodec
    from keyhead.models.model import KeypointModel, create_model
    from keyhead.models.tta import flip_predict
    from keyhead.report.html import write_report
    from keyhead.runtime import OnnxKeypointModel
    from keyhead.topdown.predict import TopDownPredictor
    from keyhead.topdown.train import train_topdown
    from keyhead.types import InstanceFrames, Keypoints, LabeledFrames


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'keyhead' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__version__ = "0.1.0"

__all__ = [
    "CentroidCodec",
    "CoordCodec",
    "HeatmapCodec",
    "InstanceFrames",
    "KeyheadError",
    "KeypointModel",
    "Keypoints",
    "LabeledFrames",
    "OnnxKeypointModel",
    "RunConfig",
    "TopDownPredictor",
    "Tracker",
    "compare",
    "convert_labels",
    "create_model",
    "cross_validate",
    "export_onnx",
    "flip_predict",
    "load_config",
    "load_instances",
    "load_labels",
    "load_run",
    "predict_ensemble",
    "smooth_predictions",
    "train_topdown",
    "write_report",
]
