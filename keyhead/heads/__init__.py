"""Keypoint heads: features -> raw output (heatmap logits or coordinates). One file per head."""

from keyhead.heads.fomm import FommKPHead
from keyhead.heads.heatmap import HeatmapHead
from keyhead.heads.regression import RegressionHead

__all__ = ["FommKPHead", "HeatmapHead", "RegressionHead"]
