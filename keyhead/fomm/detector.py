"""The First Order Motion Model keypoint detector (vox-256), assembled from keyhead parts.

``kp_detector()`` builds first-order-model's ``KPDetector`` as backbone ``fomm_hourglass`` + head ``fomm_kp`` +
the soft-argmax decoder at the same temperature. The returned :class:`FommKPDetector` answers like FOMM
(``detector(x)`` -> value, jacobian, heatmap) and holds a regular :class:`keyhead.KeypointModel` (``.model``)
that trains on labelled keypoints and predicts input pixels like every keyhead model. With the vox-256 trunk that
model is the same as ``create_model(num_keypoints=10, backbone="fomm_hourglass", head="fomm_kp")`` (the head
suggests the soft-argmax decoder at its temperature) and the ``fomm_kp`` config template; the trunk's width, depth
and scale are ``backbone_kwargs`` there (``keyhead fomm-train`` and ``keyhead compress`` write them).

Example:
    >>> import torch
    >>> det = kp_detector()
    >>> out = det(torch.rand(1, 3, 256, 256))
    >>> tuple(out["value"].shape), tuple(out["jacobian"].shape), tuple(out["heatmap"].shape)
    ((1, 10, 2), (1, 10, 2, 2), (1, 10, 58, 58))
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from torch import Tensor, nn

from keyhead.errors import KeyheadError
from keyhead.models.backbones import create_backbone
from keyhead.models.backbones.fomm import load_checked, read_fomm_state
from keyhead.models.codecs import HeatmapCodec
from keyhead.models.heads.fomm import FommKPHead, fomm_to_pixels, pixels_to_fomm
from keyhead.models.losses import loss_spec
from keyhead.models.model import KeypointModel

__all__ = ["FommKPDetector", "kp_detector", "load_fomm_state_dict"]


class FommKPDetector(nn.Module):
    """FOMM's ``KPDetector`` interface over a keyhead model with a ``fomm_kp`` head.

    Args:
        model: a :class:`KeypointModel` whose head is ``fomm_kp``.

    Shapes:
        x: (B, C, H, W) images in [0, 1] -> {"value": (B, K, 2) in [-1, 1], "jacobian": (B, K, 2, 2),
        "heatmap": (B, K, h, w), "logits": (B, K, h, w)}.
    """

    def __init__(self, model: KeypointModel) -> None:
        super().__init__()
        if not hasattr(model.head, "fomm_outputs"):
            raise KeyheadError(f"FommKPDetector needs a model with head 'fomm_kp', got {type(model.head).__name__}")
        self.model = model

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.model.head.fomm_outputs(self.model.features(x))

    def to_pixels(self, value: Tensor) -> Tensor:
        """FOMM values (B, K, 2) in [-1, 1] -> input pixels (x, y), the mapping keyhead's codec decodes with."""
        codec = self.model.codec
        return fomm_to_pixels(value, codec.heatmap_size, codec.stride, codec.offset)

    def to_fomm(self, xy: Tensor) -> Tensor:
        """Input pixels (B, K, 2) -> FOMM values in [-1, 1] (inverse of :meth:`to_pixels`)."""
        codec = self.model.codec
        return pixels_to_fomm(xy, codec.heatmap_size, codec.stride, codec.offset)


def kp_detector(
    num_kp: int = 10,
    num_channels: int = 3,
    block_expansion: int = 32,
    max_features: int = 1024,
    num_blocks: int = 5,
    temperature: float = 0.1,
    estimate_jacobian: bool = True,
    scale_factor: float = 0.25,
    single_jacobian_map: bool = False,
    pad: int = 0,
    input_size: tuple[int, int] = (256, 256),
    weights: str | os.PathLike | None = None,
) -> FommKPDetector:
    """Build FOMM's keypoint detector; the defaults are first-order-model's ``config/vox-256.yaml``.

    Args:
        num_kp: K keypoints.
        num_channels: image channels C.
        block_expansion: hourglass width.
        max_features: hourglass channel cap.
        num_blocks: hourglass depth.
        temperature: heatmap softmax temperature (head and soft-argmax decoder).
        estimate_jacobian: predict the 2x2 Jacobian per keypoint.
        scale_factor: anti-alias downsampling before the hourglass.
        single_jacobian_map: one Jacobian map shared by all keypoints.
        pad: padding of the 7x7 keypoint and Jacobian convolutions.
        input_size: (H, W) of the images.
        weights: optional first-order-model checkpoint (``vox-cpk.pth.tar``) or state dict file to load.
    """
    backbone = create_backbone(
        "fomm_hourglass",
        in_channels=num_channels,
        block_expansion=block_expansion,
        num_blocks=num_blocks,
        max_features=max_features,
        scale_factor=scale_factor,
    )
    head = FommKPHead(
        backbone.feature_info,
        num_kp,
        temperature=temperature,
        pad=pad,
        estimate_jacobian=estimate_jacobian,
        single_jacobian_map=single_jacobian_map,
    )
    codec = HeatmapCodec(
        input_size,
        head.stride,
        activation=loss_spec("kl").activation,
        decoder="soft_argmax",
        decoder_kwargs={"temperature": temperature},
        offset=head.cell_offset,
    )
    model = KeypointModel(backbone, head, codec, [f"kp{i}" for i in range(num_kp)])
    if weights is not None:
        load_fomm_state_dict(model, read_fomm_state(weights))
    return FommKPDetector(model)


def load_fomm_state_dict(model: KeypointModel, state: Mapping[str, Tensor]) -> None:
    """Load a first-order-model ``kp_detector`` state dict into a keyhead FOMM model.

    FOMM's ``down.*`` and ``predictor.*`` go to the backbone, ``kp.*`` and ``jacobian.*`` to the head.
    """
    mapped = {}
    for key, value in state.items():
        part = "backbone" if key.startswith(("down.", "predictor.")) else "head"
        mapped[f"{part}.{key}"] = value
    load_checked(
        model,
        mapped,
        "FOMM weights",
        "num_kp, block_expansion, num_blocks, max_features, estimate_jacobian and single_jacobian_map",
    )
