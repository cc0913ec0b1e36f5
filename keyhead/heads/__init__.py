"""Keypoint heads: features -> raw output (heatmap logits or coordinates). One file per head."""

from keyhead.heads.dynamic import DynamicHead
from keyhead.heads.fomm import FommKPHead
from keyhead.heads.heatmap import HeatmapHead
from keyhead.heads.mhcrnn import MHCRNNHead
from keyhead.heads.regression import RegressionHead
from keyhead.heads.regression_fc import RegressionFCHead
from keyhead.heads.unet import UNetHead
from keyhead.heads.vit import ViTFlattenHead, ViTQueryHead

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
