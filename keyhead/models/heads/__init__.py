"""Keypoint heads: features -> raw output (heatmap logits or coordinates). One file per head."""

from keyhead.models.heads.dynamic import DynamicHead
from keyhead.models.heads.fomm import FommKPHead
from keyhead.models.heads.heatmap import HeatmapHead
from keyhead.models.heads.mhcrnn import MHCRNNHead
from keyhead.models.heads.regression import RegressionHead
from keyhead.models.heads.regression_fc import RegressionFCHead
from keyhead.models.heads.unet import UNetHead
from keyhead.models.heads.vit import ViTFlattenHead, ViTQueryHead

__all__ = [
    "DynamicHead",
    "FommKPHead",
    "HeatmapHead",
    "MHCRNNHead",
    "RegressionFCHead",
    "RegressionHead",
    "UNetHead",
    "ViTFlattenHead",
    "ViTQueryHead",
]
