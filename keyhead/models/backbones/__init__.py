"""Backbones: image batch (B, C, H, W) -> list of feature maps with their channels and strides.

keyhead's own names (``tiny``, ``efficientnet_lite0..2``) come first; any other name is handed to timm.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from keyhead.models.backbones import (  # noqa: F401  (importing registers them)
    efficientnet_lite,
    fomm,
    simple_cnn,
    tiny,
    unet,
    vit,
)
from keyhead.models.backbones.base import Backbone, FeatureInfo
from keyhead.models.backbones.timm_backbone import TimmBackbone, check_timm_name
from keyhead.models.backbones.tiny import TinyBackbone
from keyhead.registry import BACKBONES

__all__ = ["Backbone", "FeatureInfo", "TimmBackbone", "TinyBackbone", "create_backbone", "list_backbones"]

TIMM_NOTE = "any timm model name also works (timm.list_models()), e.g. resnet18, convnext_tiny, vit_small_patch16_224"


def create_backbone(
    name: str,
    pretrained: bool | str | Path = False,
    in_channels: int = 3,
    out_indices: Sequence[int] | None = None,
    **kwargs: Any,
) -> Backbone:
    """Build a backbone by name.

    Args:
        name: a keyhead backbone (``list_backbones()``) or any timm model name.
        pretrained: False (random init), True (ImageNet weights: offline from an installed package where keyhead
            knows one, else a timm download), or the path of a ``.safetensors`` / ``.pth`` state dict.
        in_channels: input channels C (1 for grayscale; a pretrained RGB stem is summed, not re-initialised).
        out_indices: which feature levels to return (None: all).
        **kwargs: extra constructor arguments (timm's for timm models, ``width`` for ``tiny``).

    Example:
        >>> bb = create_backbone("tiny", in_channels=1)
        >>> bb.out_channels, bb.stride
        (128, 32)
    """
    if name in BACKBONES:
        return BACKBONES.get(name)(pretrained=pretrained, in_channels=in_channels, out_indices=out_indices, **kwargs)
    check_timm_name(name, extra=BACKBONES.names())
    return TimmBackbone(name, pretrained=pretrained, in_channels=in_channels, out_indices=out_indices, **kwargs)


def list_backbones() -> list[str]:
    """keyhead's registered backbone names; ``TIMM_NOTE`` says what else works (any timm model)."""
    return BACKBONES.names()
