"""Lightning Pose's heatmap head: PixelShuffle(2) then transposed convolutions up to the heatmap stride."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from keyhead.errors import KeyheadError
from keyhead.models.decoders.functional import log2_int
from keyhead.models.heads.base import Head
from keyhead.registry import HEADS

LP_INIT_GAIN = 0.01  # Lightning Pose's Xavier gain for the upsampling layers


def make_upsampling_layers(
    in_channels: int, num_keypoints: int, n_deconv: int, deconv_channels: int | None, init_gain: float = LP_INIT_GAIN
) -> nn.Sequential:
    """PixelShuffle(2) -> C/4 channels, then ``n_deconv`` ConvTranspose2d(3x3, stride 2) layers C/4 -> K' -> ... -> K.

    ``n_deconv = -1`` means no upsampling at all (a 1x1 projection at the backbone stride); ``0`` means
    PixelShuffle and a 1x1 projection.
    """
    if not init_gain > 0:
        raise KeyheadError(f"model.head_kwargs.init_gain={init_gain!r}: a positive Xavier gain, e.g. 0.01 or 1.0")
    if n_deconv < 0:
        return nn.Sequential(nn.Conv2d(in_channels, num_keypoints, 1))
    if in_channels % 4:
        raise KeyheadError(f"heatmap head: backbone channels {in_channels} must be divisible by 4 for PixelShuffle(2)")
    layers: list[nn.Module] = [nn.PixelShuffle(2)]
    ch = in_channels // 4
    if n_deconv == 0:
        layers.append(nn.Conv2d(ch, num_keypoints, 1))
    mid = deconv_channels or num_keypoints
    for i in range(n_deconv):
        out = num_keypoints if i == n_deconv - 1 else mid
        layers.append(nn.ConvTranspose2d(ch, out, 3, stride=2, padding=1, output_padding=1))
        ch = out
    for m in layers:  # Lightning Pose's initialisation (gain 0.01): small weights, the first heatmaps near uniform
        if isinstance(m, nn.ConvTranspose2d | nn.Conv2d):
            nn.init.xavier_uniform_(m.weight, gain=init_gain)
            nn.init.zeros_(m.bias)
    return nn.Sequential(*layers)


@HEADS.register("heatmap")
class HeatmapHead(Head):
    """Heatmap head of Lightning Pose (``HeatmapHead``), from the deepest backbone feature map.

    Upsampling: PixelShuffle(2), then ``n = log2(backbone stride) - downsample_factor - 1`` transposed
    convolutions (3x3, stride 2, padding 1, output padding 1), channels C/4 -> K -> K. The heatmaps have
    ``input / 2**downsample_factor`` resolution.

    Args:
        feature_info: the backbone's feature maps (channels, stride), shallow to deep.
        num_keypoints: K.
        downsample_factor: heatmap stride is ``2**downsample_factor`` input pixels.
        deconv_channels: channels of intermediate deconvolutions (default K).
        init_gain: Xavier gain of the upsampling layers: 0.01 is Lightning Pose's (default); keyhead's CPU templates
            use 1.0, which trains much faster on short budgets (README, "Choosing a head": the measured effect).

    Shapes:
        features[-1]: (B, C, H/s, W/s) -> logits (B, K, H/2^d, W/2^d).
    """

    output_kind = "heatmap"

    def __init__(
        self,
        feature_info: Sequence,
        num_keypoints: int,
        downsample_factor: int = 2,
        deconv_channels: int | None = None,
        init_gain: float = LP_INIT_GAIN,
    ) -> None:
        super().__init__()
        last = feature_info[-1]
        n_deconv = log2_int(last.stride) - downsample_factor - 1
        if n_deconv < -1:
            raise KeyheadError(
                f"model.downsample_factor={downsample_factor} asks for heatmaps coarser than the backbone stride "
                f"{last.stride}; use downsample_factor <= {log2_int(last.stride)}"
            )
        self.num_keypoints = num_keypoints
        self.downsample_factor = downsample_factor
        self.stride = 2**downsample_factor
        self.upsample = make_upsampling_layers(last.channels, num_keypoints, n_deconv, deconv_channels, init_gain)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.upsample(features[-1])

    def extra_repr(self) -> str:
        return f"num_keypoints={self.num_keypoints}, downsample_factor={self.downsample_factor}"
