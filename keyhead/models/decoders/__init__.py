"""Decoders: heatmaps -> (x, y) input pixels + confidence. Pure functions in ``functional``, registered here.

A registered :class:`Decoder` states what its function needs, so the codec never checks a decoder's name:
``takes_logits`` (a temperature softmax of the raw logits, not of the activated maps) and ``pyramid`` (it
upsamples the maps once per stride level, so the codec passes ``upsample_steps`` from the stride and
``batch_groups``, the convolution grouping: ``True`` is faster in eager PyTorch, ``False`` exports to ONNX
with a dynamic batch axis; both give the same numbers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from keyhead.models.decoders.functional import (
    activate,
    argmax_subpixel,
    calibrated_maxima,
    cells_to_pixels,
    entropy_maxima,
    pixels_to_cells,
    soft_argmax,
    spatial_softmax,
    subpixel_maxima,
    window_mass,
)
from keyhead.registry import DECODERS


@dataclass(frozen=True)
class Decoder:
    """A registered decoder: ``fn(maps, stride=..., **kwargs) -> (xy (B, K, 2), confidence (B, K))``.

    ``positions_of`` names the decoder whose positions this one returns (only its confidence differs): a run
    trained with one can be decoded by the other with the same weights and the same pixel errors.
    """

    fn: Callable
    takes_logits: bool = False
    pyramid: bool = False
    positions_of: str | None = None


DECODERS.register("argmax")(Decoder(argmax_subpixel))
DECODERS.register("soft_argmax")(Decoder(soft_argmax, takes_logits=True))  # FOMM's gaussian2kp, DSNT
DECODERS.register("subpixel_maxima")(Decoder(subpixel_maxima, pyramid=True))
DECODERS.register("calibrated_maxima")(Decoder(calibrated_maxima, pyramid=True, positions_of="subpixel_maxima"))
DECODERS.register("entropy_maxima")(Decoder(entropy_maxima, pyramid=True, positions_of="subpixel_maxima"))

__all__ = [
    "Decoder",
    "activate",
    "argmax_subpixel",
    "calibrated_maxima",
    "cells_to_pixels",
    "entropy_maxima",
    "pixels_to_cells",
    "soft_argmax",
    "spatial_softmax",
    "subpixel_maxima",
    "window_mass",
]
