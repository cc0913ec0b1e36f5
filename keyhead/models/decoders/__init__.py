"""Decoders: heatmaps -> (x, y) input pixels + confidence. Pure functions in ``functional``, registered here."""

from __future__ import annotations

from keyhead.models.decoders.functional import (
    activate,
    argmax_subpixel,
    calibrated_maxima,
    cells_to_pixels,
    pixels_to_cells,
    soft_argmax,
    spatial_softmax,
    subpixel_maxima,
    window_mass,
)
from keyhead.registry import DECODERS

DECODERS.register("argmax")(argmax_subpixel)
DECODERS.register("soft_argmax")(soft_argmax)
soft_argmax.takes_logits = True  # a temperature softmax of the logits themselves (FOMM, DSNT)
DECODERS.register("subpixel_maxima")(subpixel_maxima)
DECODERS.register("calibrated_maxima")(calibrated_maxima)

__all__ = [
    "activate",
    "argmax_subpixel",
    "calibrated_maxima",
    "cells_to_pixels",
    "pixels_to_cells",
    "soft_argmax",
    "spatial_softmax",
    "subpixel_maxima",
    "window_mass",
]
