"""What every keypoint head declares, in one place: the base class of all registered heads.

A head maps backbone features to its raw output. The model and the decoders never probe a head for optional
attributes; they read these declarations, whose defaults describe a single-frame head with a full-grid heatmap
decoded by Lightning Pose's sub-pixel maxima.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

OUTPUT_KINDS = ("heatmap", "coords")


class Head(nn.Module):
    """Base class of keypoint heads.

    Class attributes a head may override:
        output_kind: "heatmap" (logits (B, K, h, w), or (B, N, K, h, w) for N stacked heads, or a dict with
            "heatmaps") or "coords" (normalised coordinates; see :class:`keyhead.models.codecs.CoordCodec`).
        default_decoder: the decoder ``create_model`` uses when the config names none (heatmap heads).
        cell_offset: cells cropped from each border of the ``input / stride`` grid (unpadded last convolution).
        context: frames per input window (1: a single-frame head).
        context_grad: whether the backbone gets gradients through a window's context frames.

    Heatmap heads also set ``self.stride`` (input pixels per heatmap cell) in their constructor.
    """

    output_kind: ClassVar[str] = "heatmap"
    default_decoder: ClassVar[str] = "subpixel_maxima"
    cell_offset: int = 0
    context: int = 1
    context_grad: bool = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.output_kind not in OUTPUT_KINDS:
            raise TypeError(f"{cls.__name__}.output_kind={cls.output_kind!r}: must be one of {OUTPUT_KINDS}")

    @property
    def default_decoder_kwargs(self) -> dict[str, Any]:
        """Arguments for ``default_decoder`` (e.g. a soft-argmax temperature); the config's keys win."""
        return {}

    @property
    def target_index(self) -> int:
        """Position of the predicted frame inside the input window."""
        return 0

    def frame_offsets(self) -> list[int]:
        """Frame offsets of the input window relative to the predicted frame ([0] for a single-frame head)."""
        return [i - self.target_index for i in range(self.context)]
