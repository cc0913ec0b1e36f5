"""keyhead: keypoint detection as Backbone -> Head -> Decoder, trained and run on CPU or GPU.

Example:
    >>> import torch, keyhead
    >>> model = keyhead.create_model(num_keypoints=5, backbone="tiny", input_size=(64, 64))
    >>> kp = model.predict(torch.rand(1, 3, 64, 64))
    >>> kp.xy.shape, kp.confidence.shape
    (torch.Size([1, 5, 2]), torch.Size([1, 5]))
"""

from __future__ import annotations

import keyhead.backbones  # noqa: F401  (registers backbones)
import keyhead.decoders  # noqa: F401  (registers decoders)
import keyhead.heads  # noqa: F401  (registers heads)
import keyhead.losses  # noqa: F401  (registers losses)
from keyhead.codecs import CoordCodec, HeatmapCodec
from keyhead.config import RunConfig, load_config
from keyhead.data.formats import load_labels
from keyhead.errors import KeyheadError
from keyhead.model import KeypointModel, create_model
from keyhead.run import load_run
from keyhead.types import Keypoints, LabeledFrames

__version__ = "0.1.0"

__all__ = [
    "CoordCodec",
    "HeatmapCodec",
    "KeyheadError",
    "KeypointModel",
    "Keypoints",
    "LabeledFrames",
    "RunConfig",
    "create_model",
    "load_config",
    "load_labels",
    "load_run",
]
