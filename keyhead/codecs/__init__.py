"""Codecs: keypoints <-> training targets. The same object makes targets and decodes predictions."""

from keyhead.codecs.coords import CoordCodec
from keyhead.codecs.heatmap import HeatmapCodec

__all__ = ["CoordCodec", "HeatmapCodec"]
