"""Codecs: keypoints <-> training targets. The same object makes targets and decodes predictions."""

from keyhead.models.codecs.centroid import CentroidCodec
from keyhead.models.codecs.coords import CoordCodec
from keyhead.models.codecs.heatmap import HeatmapCodec

__all__ = ["CentroidCodec", "CoordCodec", "HeatmapCodec"]
