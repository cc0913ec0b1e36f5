"""A keypoint model is Backbone -> Head -> Decoder (a codec), and nothing more."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from keyhead.errors import KeyheadError
from keyhead.models.calibration import ConfidenceCalibration
from keyhead.models.codecs import CentroidCodec, CoordCodec, HeatmapCodec
from keyhead.models.heads.base import Head
from keyhead.registry import BACKBONES, HEADS
from keyhead.types import Keypoints


class KeypointModel(nn.Module):
    """Backbone + head + codec.

    ``model(x)`` returns the head's raw output for the loss; ``model.predict(x)`` returns decoded
    :class:`Keypoints` in input pixels under ``torch.inference_mode()``.

    Args:
        backbone: a :class:`keyhead.models.backbones.Backbone` (feature maps + feature_info, mean, std).
        head: a registered :class:`keyhead.models.heads.base.Head` (it declares its output kind, window, decoder).
        codec: the codec that makes the head's targets and decodes its output.
        keypoint_names: K names, in head output order.

    Shapes:
        x: (B, C, H, W) float images in [0, 1] (normalised inside with the backbone's mean/std).
    """

    def __init__(self, backbone: nn.Module, head: Head, codec: HeatmapCodec | CoordCodec, keypoint_names: list[str]):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.codec = codec
        self.keypoint_names = list(keypoint_names)
        self.channels_last = False
        self.calibration: ConfidenceCalibration | None = None  # fitted on the validation split (calibration.json)
        c = backbone.in_channels
        self.register_buffer(
            "mean", torch.tensor(backbone.mean, dtype=torch.float32).view(1, c, 1, 1), persistent=False
        )
        self.register_buffer("std", torch.tensor(backbone.std, dtype=torch.float32).view(1, c, 1, 1), persistent=False)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.codec.input_size

    def use_channels_last(self, enabled: bool = True) -> KeypointModel:
        """Keep weights and inputs in NHWC memory layout: convolutions run ~20% faster on CPU (oneDNN) and GPU."""
        self.channels_last = enabled
        return self.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone(x)

    @property
    def context(self) -> int:
        """Frames per input window (1 for single-frame heads; e.g. 5 for ``mhcrnn``)."""
        return int(self.head.context)

    def frame_offsets(self) -> list[int]:
        """Offsets of the input window's frames from the predicted one ([0] for single-frame heads)."""
        return list(self.head.frame_offsets())

    def forward(self, x: torch.Tensor) -> Any:
        """Raw head output. ``x`` is (B, C, H, W), or a frame window (B, T, C, H, W) / (B, V, T, C, H, W).

        A window of one frame (T = 1) given to a video head is a static window: the frame's features are
        computed once and repeated over the head's window (labelled frames without video context).
        """
        if x.ndim == 4:
            return self.head(self.features(x))
        lead = x.shape[:-3]
        frames = x.flatten(0, x.ndim - 4)
        t_dim = x.ndim - 4
        if x.shape[t_dim] == 1 and self.context > 1:  # a static window: one backbone pass, broadcast to T frames
            size = (*lead[:t_dim], self.context)
            return self.head([f.unflatten(0, lead).expand(*size, *f.shape[1:]) for f in self.features(frames)])
        if self.training and not self.head.context_grad and torch.is_grad_enabled():
            feats = self._window_features_detached(x)
        else:
            feats = self.features(frames)
        return self.head([f.unflatten(0, lead) for f in feats])

    def _window_features_detached(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Window features (frames flattened) where only the target frame carries gradients.

        Running the backbone without autograd on the context frames makes a training step of a 5-frame head
        cost ~2.3x a single-frame step instead of ~5x; the head still learns from the context.
        """
        t_dim = x.ndim - 4
        t, target = x.shape[t_dim], self.head.target_index
        rest = [i for i in range(t) if i != target]
        with torch.no_grad():
            context = self.features(x[..., rest, :, :, :].flatten(0, t_dim))
        live = self.features(x.select(t_dim, target).flatten(0, t_dim - 1))
        out = []
        for c, f in zip(context, live, strict=True):
            c = c.unflatten(0, (-1, t - 1))
            out.append(torch.cat([c[:, :target], f[:, None], c[:, target:]], dim=1).flatten(0, 1))
        return out

    def decode(self, raw: Any, batch_groups: bool = True) -> Keypoints:
        """The head's raw output -> keypoints; ``batch_groups=False`` keeps the graph batch-independent (export).

        With a ``calibration`` (:mod:`keyhead.models.calibration`) the confidences are the calibrated ones."""
        kp = self.codec.decode(raw, batch_groups=batch_groups)
        if self.calibration is not None:
            kp = Keypoints(kp.xy, self.calibration(kp.confidence))
        return kp

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> Keypoints:
        """Decoded keypoints (B, K, 2) in input pixels and confidence (B, K)."""
        was_training = self.training
        self.eval()
        try:
            return self.decode(self(x))
        finally:
            self.train(was_training)


def create_model(
    num_keypoints: int | None = None,
    backbone: str = "resnet18",
    head: str = "heatmap",
    input_size: tuple[int, int] = (256, 256),
    in_channels: int = 3,
    pretrained: bool | str = False,
    loss: str = "kl",
    decoder: str | None = None,
    downsample_factor: int = 2,
    sigma: float = 1.25,
    target: str = "gaussian",
    head_kwargs: dict[str, Any] | None = None,
    decoder_kwargs: dict[str, Any] | None = None,
    keypoint_names: list[str] | None = None,
    backbone_kwargs: dict[str, Any] | None = None,
    centroids: int | None = None,
) -> KeypointModel:
    """Build a keypoint model from registered parts.

    Backbones and heads whose constructor takes ``input_size`` (a ViT's position grid, a flatten head's input
    width) receive the model's (H, W); ``backbone_kwargs`` / ``head_kwargs`` go to their constructors.
    ``decoder=None`` takes the head's suggestion (``head.default_decoder`` / ``default_decoder_kwargs``, e.g.
    ``fomm_kp``: soft_argmax at the head's temperature), else ``subpixel_maxima``; a named decoder always wins.
    ``centroids=M`` makes an instance-centre model (top-down stage 1): a heatmap head with ONE output map whose M
    strongest peaks are the M keypoints (:class:`~keyhead.models.codecs.CentroidCodec`).

    Example:
        >>> m = create_model(num_keypoints=4, backbone="tiny", input_size=(64, 64))
        >>> m.predict(torch.rand(2, 3, 64, 64)).xy.shape
        torch.Size([2, 4, 2])
    """
    from keyhead.models.backbones import create_backbone
    from keyhead.models.losses import loss_spec

    if keypoint_names is None:
        if num_keypoints is None:
            raise KeyheadError("create_model needs num_keypoints or keypoint_names")
        keypoint_names = [f"kp{i}" for i in range(num_keypoints)]
    elif num_keypoints is not None and num_keypoints != len(keypoint_names):
        raise KeyheadError(f"num_keypoints={num_keypoints} but {len(keypoint_names)} keypoint names were given")
    k = len(keypoint_names)
    bb_kwargs = dict(backbone_kwargs or {})
    if backbone in BACKBONES and _takes(BACKBONES.get(backbone), "input_size"):
        bb_kwargs.setdefault("input_size", tuple(input_size))
    try:
        bb = create_backbone(backbone, pretrained=pretrained, in_channels=in_channels, **bb_kwargs)
    except TypeError as exc:
        raise KeyheadError(f"model.backbone_kwargs for backbone {backbone!r}: {exc}") from None
    head_cls = HEADS.get(head)
    if not (isinstance(head_cls, type) and issubclass(head_cls, Head)):
        raise KeyheadError(f"head {head!r} is not a keyhead.models.heads.base.Head subclass; derive it from Head")
    kwargs = dict(head_kwargs or {})
    if _takes(head_cls, "input_size"):
        kwargs.setdefault("input_size", tuple(input_size))
    if head_cls.output_kind == "heatmap":
        kwargs.setdefault("downsample_factor", downsample_factor)
    if centroids is not None and head_cls.output_kind != "heatmap":
        raise KeyheadError(f"model.centroids needs a heatmap head; head {head!r} outputs {head_cls.output_kind}")
    try:
        head_mod = head_cls(bb.feature_info, 1 if centroids is not None else k, **kwargs)
    except TypeError as exc:
        raise KeyheadError(f"model.head_kwargs for head {head!r}: {exc}") from None
    spec = loss_spec(loss)
    if spec.kind != {"heatmap": "heatmap", "coords": "coordinate"}[head_cls.output_kind]:
        raise KeyheadError(
            f"model.loss={loss!r} is a {spec.kind} loss but head {head!r} outputs {head_cls.output_kind}; "
            f"choose a {head_cls.output_kind} loss"
        )
    if decoder is None:
        decoder = head_mod.default_decoder
        decoder_kwargs = {**head_mod.default_decoder_kwargs, **(decoder_kwargs or {})}
    if centroids is not None:
        codec: HeatmapCodec | CoordCodec = CentroidCodec(
            input_size, head_mod.stride, centroids, sigma, spec.activation, offset=head_mod.cell_offset
        )
    elif head_cls.output_kind == "heatmap":
        codec = HeatmapCodec(
            input_size,
            head_mod.stride,
            sigma,
            spec.activation,
            decoder,
            decoder_kwargs,
            offset=head_mod.cell_offset,
            target=target,
        )
    else:
        codec = CoordCodec(input_size, **(decoder_kwargs or {}))
    return KeypointModel(bb, head_mod, codec, keypoint_names)


def _takes(fn: Any, name: str) -> bool:
    """Whether the constructor or factory ``fn`` has a parameter called ``name``."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
