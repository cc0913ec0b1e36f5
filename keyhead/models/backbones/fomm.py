"""The First Order Motion Model's keypoint-detector trunk: anti-alias downsampling and an hourglass (U-Net).

Siarohin et al., "First Order Motion Model for Image Animation" (NeurIPS 2019), ``modules/util.py`` and
``modules/keypoint_detector.py`` of first-order-model. The vox-256 configuration: the image (B, 3, 256, 256) in
[0, 1] is blurred and subsampled to 64x64 (``AntiAliasInterpolation2d``, scale 0.25), then an ``Hourglass``
(block_expansion 32, 5 blocks, max_features 1024) returns 32 decoder channels concatenated with its input:
(B, 35, 64, 64), 14,129,568 parameters.

Module names follow first-order-model (``down``, ``predictor.encoder.down_blocks.i.conv`` / ``norm``,
``predictor.decoder.up_blocks.i.conv`` / ``norm``), so a FOMM ``kp_detector`` state dict loads as it is. FOMM
calls ``F.relu`` and ``F.interpolate`` inline; here they are ``nn.ReLU`` / ``nn.Upsample`` modules (no parameters,
same arithmetic) so that ``keyhead profile`` can time them per block.

Light variants (``keyhead compress``): ``separable=True`` replaces every hourglass 3x3 convolution by a depthwise
3x3 followed by a pointwise 1x1 (:class:`SeparableConv2d`, ~1/9 of the multiply-adds for wide layers), and
``strided_antialias=True`` computes the anti-alias blur only at the kept pixels (a stride-``1/scale`` convolution:
the same numbers as blurring everything and subsampling, 1/16 of the work at scale 0.25).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from keyhead.errors import KeyheadError
from keyhead.models.backbones.base import Backbone, FeatureInfo
from keyhead.models.weights import read_weights_file, state_dict_of
from keyhead.registry import BACKBONES


def anti_alias_kernel(scale: float) -> tuple[Tensor, float]:
    """FOMM's Gaussian low-pass kernel for downsampling by ``scale``.

    sigma = (1 / scale - 1) / 2 and size = 2 * round(4 * sigma) + 1; the kernel is normalised to sum 1.

    Returns:
        (kernel (size, size), sigma).

    Example:
        >>> k, sigma = anti_alias_kernel(0.25)
        >>> tuple(k.shape), sigma, round(float(k.sum()), 6)
        ((13, 13), 1.5, 1.0)
    """
    sigma = (1 / scale - 1) / 2
    size = 2 * round(sigma * 4) + 1
    mean = (size - 1) / 2
    g = torch.exp(-((torch.arange(size, dtype=torch.float32) - mean) ** 2) / (2 * sigma**2))
    kernel = g[:, None] * g[None, :]
    return kernel / kernel.sum(), sigma


class AntiAliasInterpolation2d(nn.Module):
    """Gaussian blur (depthwise, zero padding) then every ``1/scale``-th pixel, as in first-order-model.

    Args:
        channels: C.
        scale: output / input size (0.25: 256 -> 64).

    Shapes:
        (B, C, H, W) -> (B, C, ceil(H * scale), ceil(W * scale)).
    """

    def __init__(self, channels: int, scale: float, strided: bool = False) -> None:
        super().__init__()
        self.strided = strided
        kernel, self.sigma = anti_alias_kernel(scale)
        self.kernel_size = kernel.shape[-1]
        self.ka = self.kernel_size // 2
        self.kb = self.ka - 1 if self.kernel_size % 2 == 0 else self.ka
        self.register_buffer("weight", kernel.view(1, 1, *kernel.shape).repeat(channels, 1, 1, 1))
        self.groups = channels
        self.scale = scale
        self.int_inv_scale = int(1 / scale)

    def forward(self, x: Tensor) -> Tensor:
        if self.scale == 1.0:
            return x
        out = F.pad(x, (self.ka, self.kb, self.ka, self.kb))
        if self.strided:
            return F.conv2d(out, weight=self.weight, groups=self.groups, stride=self.int_inv_scale)
        out = F.conv2d(out, weight=self.weight, groups=self.groups)
        return out[:, :, :: self.int_inv_scale, :: self.int_inv_scale]

    def extra_repr(self) -> str:
        return (
            f"channels={self.groups}, scale={self.scale}, sigma={self.sigma}, kernel_size={self.kernel_size}, "
            f"strided={self.strided}"
        )


class SeparableConv2d(nn.Sequential):
    """Depthwise k x k convolution (one filter per input channel) then a pointwise 1x1 convolution.

    A drop-in for ``nn.Conv2d(in_features, out_features, k, padding=padding)``: C_in * k^2 + C_in * C_out
    multiply-adds per pixel instead of C_in * C_out * k^2.

    Shapes:
        (B, C_in, H, W) -> (B, C_out, H + 2 * padding - k + 1, W + 2 * padding - k + 1).
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, padding: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_features, in_features, kernel_size, padding=padding, groups=in_features, bias=False),
            nn.Conv2d(in_features, out_features, 1),
        )
        self.in_channels, self.out_channels = in_features, out_features


def _conv(in_features: int, out_features: int, kernel_size: int, padding: int, separable: bool) -> nn.Module:
    if separable:
        return SeparableConv2d(in_features, out_features, kernel_size, padding)
    return nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding)


class DownBlock2d(nn.Module):
    """conv (3x3, padding 1) -> BatchNorm2d -> ReLU -> AvgPool2d(2): (B, C_in, H, W) -> (B, C_out, H/2, W/2)."""

    def __init__(
        self, in_features: int, out_features: int, kernel_size: int = 3, padding: int = 1, separable: bool = False
    ) -> None:
        super().__init__()
        self.conv = _conv(in_features, out_features, kernel_size, padding, separable)
        self.norm = nn.BatchNorm2d(out_features, affine=True)
        self.relu = nn.ReLU()
        self.pool = nn.AvgPool2d(kernel_size=(2, 2))

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.relu(self.norm(self.conv(x))))


class UpBlock2d(nn.Module):
    """nearest upsample x2 -> conv (3x3, padding 1) -> BatchNorm2d -> ReLU: (B, C_in, H, W) -> (B, C_out, 2H, 2W)."""

    def __init__(
        self, in_features: int, out_features: int, kernel_size: int = 3, padding: int = 1, separable: bool = False
    ) -> None:
        super().__init__()
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = _conv(in_features, out_features, kernel_size, padding, separable)
        self.norm = nn.BatchNorm2d(out_features, affine=True)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.norm(self.conv(self.upsample(x))))


class Encoder(nn.Module):
    """``num_blocks`` DownBlock2d, block i with min(max_features, block_expansion * 2**(i+1)) channels.

    ``forward`` returns [input, block 1 output, ..., block n output] (the skips the Decoder consumes).
    """

    def __init__(
        self,
        block_expansion: int,
        in_features: int,
        num_blocks: int = 3,
        max_features: int = 256,
        separable: bool = False,
    ) -> None:
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock2d(
                in_features if i == 0 else min(max_features, block_expansion * (2**i)),
                min(max_features, block_expansion * (2 ** (i + 1))),
                separable=separable,
            )
            for i in range(num_blocks)
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    """``num_blocks`` UpBlock2d, each output concatenated with the matching encoder skip (the last with the input).

    Output channels: block_expansion + in_features.
    """

    def __init__(
        self,
        block_expansion: int,
        in_features: int,
        num_blocks: int = 3,
        max_features: int = 256,
        separable: bool = False,
    ) -> None:
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            in_filters = (1 if i == num_blocks - 1 else 2) * min(max_features, block_expansion * (2 ** (i + 1)))
            blocks.append(UpBlock2d(in_filters, min(max_features, block_expansion * (2**i)), separable=separable))
        self.up_blocks = nn.ModuleList(blocks)
        self.out_filters = block_expansion + in_features

    def forward(self, skips: list[Tensor]) -> Tensor:
        skips = list(skips)
        out = skips.pop()
        for block in self.up_blocks:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return out


class Hourglass(nn.Module):
    """FOMM's U-Net: Encoder then Decoder with skip concatenation.

    Shapes:
        (B, in_features, H, W) -> (B, block_expansion + in_features, H, W); H and W divisible by 2**num_blocks.
    """

    def __init__(
        self,
        block_expansion: int,
        in_features: int,
        num_blocks: int = 3,
        max_features: int = 256,
        separable: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features, separable)
        self.decoder = Decoder(block_expansion, in_features, num_blocks, max_features, separable)
        self.out_filters = self.decoder.out_filters
        self.num_blocks = num_blocks

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


def read_fomm_state(path: str | os.PathLike) -> dict[str, Tensor]:
    """The ``kp_detector`` state dict of a first-order-model checkpoint (``vox-cpk.pth.tar``) or a bare one.

    ``.safetensors`` files, and ``torch.save`` files when trusted (``keyhead.models.weights``), are accepted; a
    full FOMM checkpoint's ``kp_detector`` entry is taken, otherwise the file must be the detector's state dict itself.
    """
    p = Path(path)
    if not p.is_file():
        raise KeyheadError(f"FOMM weights file {p} does not exist (give the path of vox-cpk.pth.tar or a state dict)")
    return state_dict_of(read_weights_file(p), f"{p} (a FOMM checkpoint with a 'kp_detector' entry or a state dict)")


def load_checked(module: nn.Module, state: dict[str, Tensor], what: str, settings: str) -> None:
    """``load_state_dict`` that reports missing, unexpected and mis-shaped tensors as one KeyheadError."""
    own = module.state_dict()
    # checkpoints from torch < 0.4.1 have no BatchNorm num_batches_tracked; the module keeps its own counter
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        raise KeyheadError(
            f"{what} do not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]}, shape mismatch "
            f"{shapes[:3]}); check {settings}"
        )
    module.load_state_dict(state, strict=False)


class FommHourglassBackbone(Backbone):
    """AntiAliasInterpolation2d + Hourglass: one feature map of ``block_expansion + C`` channels at stride 1/scale.

    FOMM feeds images in [0, 1] unnormalised, so ``mean`` is 0 and ``std`` is 1.

    Args:
        in_channels: C (FOMM's ``num_channels``).
        block_expansion: channels of the first down block / last up block (vox-256: 32).
        num_blocks: down (and up) blocks (vox-256: 5).
        max_features: channel cap (vox-256: 1024).
        scale_factor: anti-alias downsampling factor (vox-256: 0.25); 1 skips it.
        separable: depthwise-separable hourglass convolutions (a light student; not FOMM's).
        strided_antialias: blur only at the kept pixels (same output, less work; not FOMM's code).

    Shapes:
        (B, C, H, W) -> [(B, block_expansion + C, H * scale, W * scale)]; H * scale divisible by 2**num_blocks.

    Example:
        >>> bb = FommHourglassBackbone()
        >>> [tuple(f.shape) for f in bb(torch.rand(1, 3, 256, 256))]
        [(1, 35, 64, 64)]
    """

    def __init__(
        self,
        in_channels: int = 3,
        block_expansion: int = 32,
        num_blocks: int = 5,
        max_features: int = 1024,
        scale_factor: float = 0.25,
        separable: bool = False,
        strided_antialias: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(in_channels, int) or in_channels < 1:
            raise KeyheadError(
                f"backbone 'fomm_hourglass': in_channels must be a positive integer, got {in_channels!r}"
            )
        inv = 1 / scale_factor
        if not 0 < scale_factor <= 1 or abs(inv - round(inv)) > 1e-9:
            raise KeyheadError(
                f"backbone 'fomm_hourglass': scale_factor must be 1/n for an integer n >= 1 (e.g. 0.25), "
                f"got {scale_factor}"
            )
        self.in_channels = in_channels
        self.scale_factor = scale_factor
        self.down = (
            AntiAliasInterpolation2d(in_channels, scale_factor, strided_antialias)
            if scale_factor != 1
            else nn.Identity()
        )
        self.predictor = Hourglass(block_expansion, in_channels, num_blocks, max_features, separable)
        self.feature_info = [FeatureInfo(self.predictor.out_filters, round(inv))]
        self.mean, self.std = (0.0,) * in_channels, (1.0,) * in_channels

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.down(x)
        multiple = 2**self.predictor.num_blocks
        if x.shape[-2] % multiple or x.shape[-1] % multiple:
            need = multiple * self.stride
            raise KeyheadError(
                f"backbone 'fomm_hourglass': input {tuple(x.shape[-2:])} after anti-aliasing must be divisible by "
                f"{multiple}; use an input size that is a multiple of {need} (e.g. 256x256)"
            )
        return [self.predictor(x)]

    def profile_layout(self) -> dict[str, dict]:
        """Stages and blocks for ``keyhead profile``, named as in seed 003 (paths relative to this module)."""
        n = self.predictor.num_blocks
        return {
            "stages": {"anti_alias": ["down"], "hourglass": ["predictor"]},
            "blocks": {
                "encoder": [(f"down_sampling_{i + 1}", f"predictor.encoder.down_blocks.{i}") for i in range(n)],
                "decoder": [(f"upsampling_{i + 1}", f"predictor.decoder.up_blocks.{i}") for i in range(n)],
            },
            "block_total": ("hour_glass", "predictor"),
        }

    def extra_repr(self) -> str:
        return f"scale_factor={self.scale_factor}, {super().extra_repr()}"


@BACKBONES.register("fomm_hourglass")
def create_fomm_hourglass(
    pretrained: bool | str | Path = False,
    in_channels: int = 3,
    out_indices: Sequence[int] | None = None,
    block_expansion: int = 32,
    num_blocks: int = 5,
    max_features: int = 1024,
    scale_factor: float = 0.25,
    separable: bool = False,
    strided_antialias: bool = False,
) -> FommHourglassBackbone:
    """The FOMM KPDetector trunk (vox-256 defaults); ``pretrained`` may be the path of a FOMM checkpoint."""
    if out_indices not in (None, [0], (0,), [-1], (-1,)):
        raise KeyheadError(f"backbone 'fomm_hourglass' returns one feature map; out_indices {out_indices} is invalid")
    bb = FommHourglassBackbone(
        in_channels, block_expansion, num_blocks, max_features, scale_factor, separable, strided_antialias
    )
    if pretrained is True:
        raise KeyheadError(
            "backbone 'fomm_hourglass' has no installed weights; pass pretrained=PATH of a first-order-model "
            "checkpoint (vox-cpk.pth.tar) or pretrained=False"
        )
    if pretrained:
        state = {k: v for k, v in read_fomm_state(pretrained).items() if k.startswith(("predictor.", "down."))}
        if isinstance(bb.down, nn.Identity):
            state.pop("down.weight", None)
        load_checked(bb, state, f"{pretrained}: FOMM weights", "block_expansion, num_blocks, max_features, in_channels")
    return bb
