"""Lightning Pose's multi-head convolutional recurrent head (``HeatmapMHCRNNHead``) for video context.

A window of T frames goes through the backbone once per frame (shared weights); a single-frame head decodes
the target frame and a multi-frame head runs a bidirectional (or, for live use, causal) convolutional
recurrence over the window. Both give heatmap logits of the target frame and both are supervised; at
prediction the codec takes, per keypoint, the more confident of the two.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from keyhead.errors import KeyheadError
from keyhead.models.decoders.functional import log2_int
from keyhead.models.heads.base import Head
from keyhead.models.heads.heatmap import LP_INIT_GAIN, make_upsampling_layers
from keyhead.registry import HEADS


def _deconv(in_ch: int, out_ch: int) -> nn.ConvTranspose2d:
    """ConvTranspose2d(3x3, stride 2, padding 1, output padding 1): doubles h and w."""
    layer = nn.ConvTranspose2d(in_ch, out_ch, 3, stride=2, padding=1, output_padding=1)
    nn.init.xavier_uniform_(layer.weight, gain=1.0)
    nn.init.zeros_(layer.bias)
    return layer


class UpsamplingCRNN(nn.Module):
    """The multi-frame head: per-frame upsampling, then a linear convolutional recurrence over the window.

    Per frame: PixelShuffle(2) (C -> C/4 channels, 2x resolution); with ``upsampling_factor`` 2 one more
    transposed convolution to K channels. The recurrence (forward, and backward unless causal) is
    ``x = W(frame_0); x = W(frame_t) + H(x)`` where W is a transposed convolution to K maps at the heatmap
    resolution and H a per-keypoint grouped Conv2d(K -> 16K, 2x2, stride 2) then ConvTranspose2d(16K -> K,
    2x2, stride 2). Output: the mean of the forward and backward states (the forward state alone if causal).

    Args:
        in_channels: backbone channels C (divisible by 4).
        num_keypoints: K.
        upsampling_factor: 2 (an extra transposed convolution before the recurrence) or 1.
        causal: only the forward recurrence (past frames predict the last one).
        hidden_per_keypoint: channels per keypoint inside H (16 in Lightning Pose).

    Shapes:
        features: (B, T, C, h, w) -> logits (B, K, h * 2 * upsampling_factor * 2, ...).
    """

    def __init__(
        self,
        in_channels: int,
        num_keypoints: int,
        upsampling_factor: int = 2,
        causal: bool = False,
        hidden_per_keypoint: int = 16,
    ) -> None:
        super().__init__()
        if upsampling_factor not in (1, 2):
            raise KeyheadError(f"model.head_kwargs.upsampling_factor={upsampling_factor}: must be 1 or 2")
        if in_channels % 4:
            raise KeyheadError(f"mhcrnn head: backbone channels {in_channels} must be divisible by 4")
        k = num_keypoints
        self.upsampling_factor = upsampling_factor
        self.causal = causal
        self.shuffle = nn.PixelShuffle(2)
        rnn_in = in_channels // 4
        self.pre = _deconv(rnn_in, k) if upsampling_factor == 2 else nn.Identity()
        if upsampling_factor == 2:
            rnn_in = k
        self.w_f = _deconv(rnn_in, k)
        self.h_f = self._hidden(k, hidden_per_keypoint)
        if not causal:
            self.w_b = _deconv(rnn_in, k)
            self.h_b = self._hidden(k, hidden_per_keypoint)

    @staticmethod
    def _hidden(k: int, per_kp: int) -> nn.Sequential:
        down = nn.Conv2d(k, k * per_kp, 2, stride=2, groups=k)
        up = nn.ConvTranspose2d(k * per_kp, k, 2, stride=2, groups=k)
        for m in (down, up):
            nn.init.xavier_uniform_(m.weight, gain=1.0)
            nn.init.zeros_(m.bias)
        return nn.Sequential(down, up)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, t = features.shape[:2]
        frames = self.pre(self.shuffle(features.flatten(0, 1)))
        frames = frames.unflatten(0, (b, t))
        x_f = self.w_f(frames[:, 0])
        for i in range(1, t):
            x_f = self.w_f(frames[:, i]) + self.h_f(x_f)
        if self.causal:
            return x_f
        x_b = self.w_b(frames[:, t - 1])
        for i in range(t - 2, -1, -1):
            x_b = self.w_b(frames[:, i]) + self.h_b(x_b)
        return (x_f + x_b) / 2


@HEADS.register("mhcrnn")
class MHCRNNHead(Head):
    """Multi-head CRNN heatmap head (Lightning Pose ``HeatmapMHCRNNHead``), with a configurable window.

    The model feeds it the deepest backbone features of a frame window; the target frame is the centre of
    the window (``t - T//2 .. t + T//2``), or the last frame in causal mode (``t - T + 1 .. t``).

    Args:
        feature_info: the backbone's feature maps (channels, stride), shallow to deep.
        num_keypoints: K (all views together when ``num_views`` > 1).
        downsample_factor: heatmap stride is ``2**downsample_factor`` pixels (2 in Lightning Pose).
        upsampling_factor: 2 for stride-32 CNN backbones, 1 for stride-16 ones (ViTs); default: from the stride.
        context: window length T (5 in Lightning Pose; odd unless causal).
        causal: predict the last frame of the window from past frames only (live use).
        num_views: V camera views folded into the batch (``is_multiview``); each view has K / V keypoints and
            the view outputs are concatenated along K in view order.
        context_grad: back-propagate into the backbone through the context frames too (Lightning Pose does);
            by default only the target frame's features carry gradients, which makes a training step ~2x
            cheaper for a 5-frame window.
        init_gain: Xavier gain of the single-frame head's upsampling layers (Lightning Pose: 0.01).

    Shapes:
        features[-1]: (B, T, C, h, w), or (B, V, T, C, h, w) with views ->
        logits (B, 2, K, H/2^d, W/2^d): index 0 the single-frame head, 1 the multi-frame head.
    """

    output_kind = "heatmap"
    num_heads = 2
    # create_model's decoder when the config names none: each keypoint takes the more confident head, and
    # subpixel_maxima's confidence saturates near 1 for both, which makes the choice arbitrary (mirror-mouse:
    # 9.15 -> 8.40 px test error, temporal norm 17.5 -> 15.2 px on test_vid.mp4 with the calibrated one)
    default_decoder = "calibrated_maxima"

    def __init__(
        self,
        feature_info: Sequence,
        num_keypoints: int,
        downsample_factor: int = 2,
        upsampling_factor: int | None = None,
        context: int = 5,
        causal: bool = False,
        num_views: int = 1,
        context_grad: bool = False,
        init_gain: float = LP_INIT_GAIN,
    ) -> None:
        super().__init__()
        last = feature_info[-1]
        n_deconv = log2_int(last.stride) - downsample_factor - 1
        if n_deconv < 1 or n_deconv > 2:
            raise KeyheadError(
                f"mhcrnn head: backbone stride {last.stride} with model.downsample_factor={downsample_factor} needs "
                f"{n_deconv} upsampling steps after PixelShuffle; it supports 1 or 2 (e.g. stride 32 or 16 with "
                "downsample_factor 2)"
            )
        if upsampling_factor is None:
            upsampling_factor = 2 if n_deconv == 2 else 1
        if upsampling_factor != 2 ** (n_deconv - 1):
            raise KeyheadError(
                f"mhcrnn head: upsampling_factor={upsampling_factor} does not fit backbone stride {last.stride} and "
                f"downsample_factor={downsample_factor}; use {2 ** (n_deconv - 1)}"
            )
        if context < 1 or (not causal and context % 2 == 0):
            raise KeyheadError(
                f"model.head_kwargs.context={context}: the window must be >= 1 frames and odd unless causal=true"
            )
        if num_views < 1 or num_keypoints % num_views:
            raise KeyheadError(f"mhcrnn head: {num_keypoints} keypoints cannot be split into num_views={num_views}")
        self.num_keypoints = num_keypoints
        self.downsample_factor = downsample_factor
        self.stride = 2**downsample_factor
        self.context = context
        self.causal = causal
        self.num_views = num_views
        self.context_grad = context_grad
        k = num_keypoints // num_views
        self.single = make_upsampling_layers(last.channels, k, n_deconv, None, init_gain)
        self.multi = UpsamplingCRNN(last.channels, k, upsampling_factor, causal)

    @property
    def target_index(self) -> int:
        """Position of the predicted frame inside the window."""
        return self.context - 1 if self.causal else self.context // 2

    def frame_offsets(self) -> list[int]:
        """Frame offsets of the window relative to the target frame, e.g. [-2, -1, 0, 1, 2]."""
        return [i - self.target_index for i in range(self.context)]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.forward_window(features[-1])

    def forward_window(self, window: torch.Tensor) -> torch.Tensor:
        """Logits (B, 2, K, h, w) from deepest features of a window (B, T, C, h, w) or (B, V, T, C, h, w)."""
        views = window.ndim == 6
        if views:
            b, v = window.shape[:2]
            window = window.flatten(0, 1)
        if window.ndim != 5 or window.shape[1] != self.context:
            raise KeyheadError(
                f"mhcrnn head expects a window of {self.context} frames (B, T, C, h, w); got {tuple(window.shape)}"
            )
        single = self.single(window[:, self.target_index])
        multi = self.multi(window)
        out = torch.stack([single, multi], dim=1)
        if views:
            out = out.unflatten(0, (b, v)).permute(0, 2, 1, 3, 4, 5).flatten(2, 3)
        return out

    def extra_repr(self) -> str:
        return (
            f"num_keypoints={self.num_keypoints}, downsample_factor={self.downsample_factor}, "
            f"context={self.context}, causal={self.causal}, num_views={self.num_views}"
        )
