"""The First Order Motion Model's keypoint head: 7x7 heatmap convolution, temperature softmax, gaussian2kp, Jacobians.

first-order-model's ``KPDetector`` after its hourglass (vox-256: K = 10, temperature 0.1, pad 0, Jacobians on):
``kp`` Conv2d(C -> K, 7x7, padding=pad) gives logits (B, K, 58, 58) from the (B, 35, 64, 64) features; a softmax
over the pixels of logits / temperature gives heatmaps, whose expectation over a [-1, 1] grid is the keypoint
(``gaussian2kp``); ``jacobian`` Conv2d(C -> 4 * maps, 7x7) starts at the identity (weight 0, bias [1, 0, 0, 1])
and J_k = sum over pixels of heatmap_k * map_k.

The head's ``forward`` returns the logits, so keyhead's codec, losses and decoders treat it like any heatmap
head (supervised training on labelled keypoints). ``fomm_outputs`` returns FOMM's own dictionary.

Coordinates: FOMM's grid x_j = 2 j / (w - 1) - 1 spans the centres of the w = 58 heatmap cells. keyhead maps cell
u of this map to input pixel (u + offset + 0.5) * stride - 0.5 with offset = 3 (the unpadded 7x7 convolution
crops 3 cells per side of the 64x64 feature grid) and stride 4, so a FOMM value x is at input pixel
((x + 1) / 2 * (w - 1) + offset + 0.5) * stride - 0.5 (``fomm_to_pixels``): 13.5 ... 241.5 at 256x256. FOMM's
generator instead reads the same value as a point of the whole image, (x + 1) / 2 * (W - 1) = 0 ... 255; the two
agree at the centre and differ by up to 13.5 px at the border.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from keyhead.errors import KeyheadError
from keyhead.models.heads.base import Head
from keyhead.registry import HEADS


def make_coordinate_grid(h: int, w: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32):
    """FOMM's grid (h, w, 2) of (x, y) with x_j = 2 j / (w - 1) - 1 and y_i = 2 i / (h - 1) - 1.

    Example:
        >>> make_coordinate_grid(3, 5)[2, 4].tolist()
        [1.0, 1.0]
    """
    x = 2 * (torch.arange(w, device=device, dtype=dtype) / (w - 1)) - 1
    y = 2 * (torch.arange(h, device=device, dtype=dtype) / (h - 1)) - 1
    return torch.stack((x.view(1, w).expand(h, w), y.view(h, 1).expand(h, w)), dim=-1)


def temperature_softmax(logits: Tensor, temperature: float) -> Tensor:
    """Softmax over the pixels of each map of logits / temperature: (B, K, h, w) -> (B, K, h, w), sums 1."""
    b, k, h, w = logits.shape
    return F.softmax(logits.reshape(b, k, h * w) / temperature, dim=2).reshape(b, k, h, w)


def gaussian2kp(heatmap: Tensor) -> Tensor:
    """FOMM's soft-argmax: the expectation of :func:`make_coordinate_grid` under each heatmap.

    Args:
        heatmap: (B, K, h, w) maps that sum to 1.

    Returns:
        (B, K, 2) (x, y) in [-1, 1] over the cell centres of the map.

    Example:
        >>> m = torch.zeros(1, 1, 5, 5); m[0, 0, 1, 4] = 1.0
        >>> gaussian2kp(m).tolist()
        [[[1.0, -0.5]]]
    """
    grid = make_coordinate_grid(heatmap.shape[2], heatmap.shape[3], heatmap.device, heatmap.dtype)
    return (heatmap.unsqueeze(-1) * grid).sum(dim=(2, 3))


def pool_jacobians(heatmap: Tensor, jacobian_map: Tensor) -> Tensor:
    """J_k = sum over pixels of heatmap_k * map_k, as a 2x2 matrix.

    Args:
        heatmap: (B, K, h, w) normalised heatmaps.
        jacobian_map: (B, 4 * M, h, w) with M = K (one map per keypoint) or 1 (shared).

    Returns:
        (B, K, 2, 2).
    """
    b, k, h, w = heatmap.shape
    maps = jacobian_map.reshape(b, -1, 4, h, w)
    return (heatmap.unsqueeze(2) * maps).sum(dim=(-2, -1)).view(b, k, 2, 2)


def fomm_to_pixels(value: Tensor, heatmap_size: tuple[int, int], stride: int, offset: int) -> Tensor:
    """FOMM keypoint values (B, K, 2) in [-1, 1] over the heatmap's cells -> keyhead input pixels (x, y)."""
    h, w = heatmap_size
    size = value.new_tensor([w - 1, h - 1])
    return ((value + 1) / 2 * size + offset + 0.5) * stride - 0.5


def pixels_to_fomm(xy: Tensor, heatmap_size: tuple[int, int], stride: int, offset: int) -> Tensor:
    """Inverse of :func:`fomm_to_pixels`."""
    h, w = heatmap_size
    size = xy.new_tensor([w - 1, h - 1])
    return ((xy + 0.5) / stride - 0.5 - offset) / size * 2 - 1


HEAD_SEPARABLE = (True, False, "jacobian")  # the values of FommKPHead's ``separable``


def _conv7(in_channels: int, out_channels: int, pad: int, separable: bool) -> nn.Module:
    if separable:
        return nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 7, padding=pad, groups=in_channels, bias=False),
            nn.Conv2d(in_channels, out_channels, 1),
        )
    return nn.Conv2d(in_channels, out_channels, kernel_size=(7, 7), padding=pad)


class Gaussian2Kp(nn.Module):
    """Temperature softmax then :func:`gaussian2kp`: logits (B, K, h, w) -> (heatmap, value (B, K, 2) in [-1, 1])."""

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, logits: Tensor) -> tuple[Tensor, Tensor]:
        heatmap = temperature_softmax(logits, self.temperature)
        return heatmap, gaussian2kp(heatmap)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class JacobianPool(nn.Module):
    """:func:`pool_jacobians` as a module (so ``keyhead profile`` times it)."""

    def forward(self, heatmap: Tensor, jacobian_map: Tensor) -> Tensor:
        return pool_jacobians(heatmap, jacobian_map)


@HEADS.register("fomm_kp")
class FommKPHead(Head):
    """FOMM ``KPDetector``'s head on the hourglass features (parameter names as first-order-model: kp, jacobian).

    Args:
        feature_info: backbone feature maps; the deepest is used (``fomm_hourglass``: 35 channels, stride 4).
        num_keypoints: K (FOMM's ``num_kp``; vox-256: 10).
        temperature: softmax temperature of ``fomm_outputs`` (vox-256: 0.1). ``keyhead.fomm.detector.kp_detector``
            and the ``fomm_kp`` config give the soft_argmax decoder the same value.
        pad: padding of the 7x7 convolutions (vox-256: 0, so the maps are 6 cells smaller than the features).
        estimate_jacobian: build the Jacobian convolution.
        single_jacobian_map: one Jacobian map shared by all keypoints instead of one per keypoint.
        downsample_factor: keyhead's heatmap stride setting; must equal log2 of the feature stride if given.
        separable: depthwise 7x7 + pointwise 1x1 instead of the full 7x7 keypoint and Jacobian convolutions (a light
            student for ``keyhead compress``; the Jacobian's pointwise layer keeps the identity initialisation);
            ``"jacobian"``: only the Jacobian's (4 K maps: most of the head's work), a full keypoint convolution.

    Shapes:
        features[-1]: (B, C, H/s, W/s) -> logits (B, K, H/s - 2 * cell_offset, W/s - 2 * cell_offset).
    """

    output_kind = "heatmap"

    def __init__(
        self,
        feature_info: Sequence,
        num_keypoints: int,
        temperature: float = 0.1,
        pad: int = 0,
        estimate_jacobian: bool = True,
        single_jacobian_map: bool = False,
        downsample_factor: int | None = None,
        separable: bool | str = False,
    ) -> None:
        super().__init__()
        last = feature_info[-1]
        if separable not in HEAD_SEPARABLE:
            raise KeyheadError(f"head 'fomm_kp': separable must be true, false or 'jacobian', got {separable!r}")
        separable = "jacobian" if separable == "jacobian" else bool(separable)
        if downsample_factor is not None and 2**downsample_factor != last.stride:
            raise KeyheadError(
                f"head 'fomm_kp' predicts at the backbone stride {last.stride}, but model.downsample_factor="
                f"{downsample_factor} asks for stride {2**downsample_factor}; set model.downsample_factor="
                f"{last.stride.bit_length() - 1}"
            )
        if not 0 <= pad <= 3:
            raise KeyheadError(f"head 'fomm_kp': pad must be in 0..3 for its 7x7 convolutions, got {pad}")
        if temperature <= 0:
            raise KeyheadError(f"head 'fomm_kp': temperature must be > 0, got {temperature}")
        self.num_keypoints = num_keypoints
        self.stride = last.stride
        self.pad = pad
        self.cell_offset = 7 // 2 - pad
        self.separable = separable
        self.kp = _conv7(last.channels, num_keypoints, pad, separable is True)
        self.keypoints = Gaussian2Kp(temperature)
        self.single_jacobian_map = single_jacobian_map
        if estimate_jacobian:
            self.num_jacobian_maps = 1 if single_jacobian_map else num_keypoints
            self.jacobian: nn.Module | None = _conv7(last.channels, 4 * self.num_jacobian_maps, pad, bool(separable))
            last_conv = self.jacobian[-1] if separable else self.jacobian
            nn.init.zeros_(last_conv.weight)
            with torch.no_grad():
                last_conv.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0] * self.num_jacobian_maps))
            self.jacobian_pool: JacobianPool | None = JacobianPool()
        else:
            self.num_jacobian_maps = 0
            self.jacobian = None
            self.jacobian_pool = None

    default_decoder = "soft_argmax"  # create_model's decoder when the config names none: FOMM's gaussian2kp

    @property
    def temperature(self) -> float:
        return self.keypoints.temperature

    @property
    def default_decoder_kwargs(self) -> dict[str, float]:
        """The soft-argmax at the head's own temperature, so decoding equals ``fomm_outputs``' keypoints."""
        return {"temperature": self.temperature}

    def forward(self, features: list[Tensor]) -> Tensor:
        return self.kp(features[-1])

    def fomm_outputs(self, features: list[Tensor]) -> dict[str, Tensor]:
        """FOMM's detector output.

        Returns:
            {"value": (B, K, 2) (x, y) in [-1, 1] over the heatmap cells, "heatmap": (B, K, h, w) normalised,
            "logits": (B, K, h, w), and with Jacobians "jacobian": (B, K, 2, 2)}.
        """
        feature_map = features[-1]
        logits = self.kp(feature_map)
        heatmap, value = self.keypoints(logits)
        out = {"value": value, "heatmap": heatmap, "logits": logits}
        if self.jacobian is not None:
            out["jacobian"] = self.jacobian_pool(heatmap, self.jacobian(feature_map))
        return out

    def profile_layout(self) -> dict[str, dict]:
        """Stages for ``keyhead profile`` (seed 003's names), paths relative to this module."""
        stages = {"heatmap_keypoint": ["kp", "keypoints"]}
        if self.jacobian is not None:
            stages["jacobian"] = ["jacobian", "jacobian_pool"]
        return {"stages": stages, "blocks": {}}

    def extra_repr(self) -> str:
        return (
            f"num_keypoints={self.num_keypoints}, temperature={self.temperature}, pad={self.pad}, "
            f"num_jacobian_maps={self.num_jacobian_maps}, separable={self.separable}"
        )
