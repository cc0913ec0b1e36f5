"""A small keypoint-driven warping generator (FOMM's dense motion network + occlusion-aware generator, scaled down).

Given a source frame S and keypoints / Jacobians of S and of a driving frame D (image-normalised (x, y), see
``keyhead.fomm.unsupervised.tps``), it predicts D from S:

1. Sparse motions: for every keypoint k, the first-order approximation of the backward motion D -> S around it,
   T_k(z) = kp_S,k + J_S,k J_D,k^-1 (z - kp_D,k), plus the identity (background): (B, K + 1, h, w, 2).
2. Dense motion: a small hourglass sees, per motion, the source warped by it and the difference of Gaussian blobs
   at kp_D and kp_S, and predicts soft masks (softmax over K + 1) that mix the sparse motions into one dense
   backward flow, and an occlusion map.
3. Generator: an encoder of S, its features warped by the dense flow and multiplied by the occlusion map, a
   decoder back to an image (sigmoid, [0, 1]).

first-order-model does this at full resolution with VGG perceptual losses; here everything runs on images of
``image_size`` (e.g. 64x64) and the reconstruction loss is a multi-scale L1 on image pyramids
(:func:`pyramid_l1`), since no VGG weights can be downloaded offline.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from keyhead.fomm.unsupervised.tps import image_grid, inverse_2x2
from keyhead.models.backbones.fomm import AntiAliasInterpolation2d, DownBlock2d, Hourglass, UpBlock2d

__all__ = ["DenseMotion", "WarpGenerator", "pyramid_l1", "sparse_motions"]


def gaussian_blobs(kp: Tensor, h: int, w: int, variance: float = 0.01) -> Tensor:
    """exp(-|z - kp|^2 / (2 variance)) on the image-normalised grid: kp (B, K, 2) -> (B, K, h, w)."""
    grid = image_grid(h, w, kp.device, kp.dtype)
    diff = grid.view(1, 1, h, w, 2) - kp.view(*kp.shape[:2], 1, 1, 2)
    return torch.exp(-0.5 * (diff**2).sum(-1) / variance)


def sparse_motions(
    h: int, w: int, kp_source: Tensor, kp_driving: Tensor, jac_source: Tensor | None, jac_driving: Tensor | None
) -> Tensor:
    """Backward motions D -> S per keypoint and the identity: (B, K + 1, h, w, 2), image-normalised (x, y).

    Motion 0 is the identity (background); motion k + 1 is kp_S,k + J_S,k J_D,k^-1 (z - kp_D,k).
    """
    b, k, _ = kp_source.shape
    grid = image_grid(h, w, kp_source.device, kp_source.dtype).view(1, 1, h, w, 2)
    rel = grid - kp_driving.view(b, k, 1, 1, 2)
    if jac_source is not None and jac_driving is not None:
        jac = jac_source @ inverse_2x2(jac_driving)
        rel = torch.einsum("bkij,bkhwj->bkhwi", jac, rel)
    motions = rel + kp_source.view(b, k, 1, 1, 2)
    return torch.cat([grid.expand(b, 1, h, w, 2), motions], dim=1)


class DenseMotion(nn.Module):
    """Masks over K + 1 sparse motions and an occlusion map from an hourglass.

    Args:
        num_kp: K.
        channels: image channels C.
        block_expansion, num_blocks, max_features: the hourglass (FOMM: 64, 5, 1024; small here).
        kp_variance: variance of the keypoint Gaussians in image-normalised units (FOMM: 0.01).

    Shapes:
        source (B, C, h, w) -> {"deformation": (B, h, w, 2), "occlusion": (B, 1, h, w), "mask": (B, K + 1, h, w)}.
    """

    def __init__(
        self,
        num_kp: int,
        channels: int = 3,
        block_expansion: int = 16,
        num_blocks: int = 3,
        max_features: int = 128,
        kp_variance: float = 0.01,
    ) -> None:
        super().__init__()
        self.num_kp = num_kp
        self.kp_variance = kp_variance
        in_features = (num_kp + 1) * (channels + 1)
        self.hourglass = Hourglass(block_expansion, in_features, num_blocks, max_features)
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_kp + 1, kernel_size=7, padding=3)
        self.occlusion = nn.Conv2d(self.hourglass.out_filters, 1, kernel_size=7, padding=3)

    def forward(
        self,
        source: Tensor,
        kp_source: Tensor,
        kp_driving: Tensor,
        jac_source: Tensor | None = None,
        jac_driving: Tensor | None = None,
    ) -> dict[str, Tensor]:
        b, c, h, w = source.shape
        k = self.num_kp
        motions = sparse_motions(h, w, kp_source, kp_driving, jac_source, jac_driving)
        heat = gaussian_blobs(kp_driving, h, w, self.kp_variance) - gaussian_blobs(kp_source, h, w, self.kp_variance)
        heat = torch.cat([torch.zeros_like(heat[:, :1]), heat], dim=1).unsqueeze(2)
        repeated = source.unsqueeze(1).expand(b, k + 1, c, h, w).reshape(b * (k + 1), c, h, w)
        deformed = F.grid_sample(repeated, motions.reshape(b * (k + 1), h, w, 2), align_corners=True)
        x = torch.cat([heat, deformed.view(b, k + 1, c, h, w)], dim=2).view(b, -1, h, w)
        features = self.hourglass(x)
        mask = F.softmax(self.mask(features), dim=1)
        deformation = (motions * mask.unsqueeze(-1)).sum(dim=1)
        return {"deformation": deformation, "occlusion": torch.sigmoid(self.occlusion(features)), "mask": mask}


class ResBlock(nn.Module):
    """BN -> ReLU -> conv3x3 -> BN -> ReLU -> conv3x3, plus the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class WarpGenerator(nn.Module):
    """Reconstruct the driving frame from the source frame and both frames' keypoints.

    Args:
        num_kp: K.
        channels: C.
        image_size: (h, w) the generator works at; inputs are resized to it (anti-aliased).
        block_expansion: encoder width (FOMM: 64).
        num_down_blocks: encoder depth (FOMM: 2).
        num_res_blocks: bottleneck residual blocks (FOMM: 6).
        motion_scale: the dense motion network runs at this fraction of ``image_size`` (FOMM: 0.25).

    Shapes:
        source (B, C, H, W) in [0, 1], keypoints (B, K, 2) image-normalised, Jacobians (B, K, 2, 2) ->
        {"prediction": (B, C, h, w), "deformation": (B, h', w', 2), "occlusion": (B, 1, h', w'), "mask": ...}.
    """

    def __init__(
        self,
        num_kp: int,
        channels: int = 3,
        image_size: tuple[int, int] = (64, 64),
        block_expansion: int = 32,
        num_down_blocks: int = 2,
        num_res_blocks: int = 2,
        motion_scale: float = 0.5,
    ) -> None:
        super().__init__()
        self.image_size = tuple(image_size)
        self.motion_scale = motion_scale
        self.dense_motion = DenseMotion(num_kp, channels)
        self.first = nn.Sequential(
            nn.Conv2d(channels, block_expansion, 7, padding=3), nn.BatchNorm2d(block_expansion), nn.ReLU()
        )
        widths = [block_expansion * 2**i for i in range(num_down_blocks + 1)]
        self.down_blocks = nn.ModuleList(DownBlock2d(widths[i], widths[i + 1]) for i in range(num_down_blocks))
        self.bottleneck = nn.Sequential(*(ResBlock(widths[-1]) for _ in range(num_res_blocks)))
        self.up_blocks = nn.ModuleList(UpBlock2d(widths[i + 1], widths[i]) for i in reversed(range(num_down_blocks)))
        self.final = nn.Conv2d(block_expansion, channels, 7, padding=3)

    def resize(self, image: Tensor, size: tuple[int, int]) -> Tensor:
        if tuple(image.shape[-2:]) == size:
            return image
        return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)

    def forward(
        self,
        source: Tensor,
        kp_source: Tensor,
        kp_driving: Tensor,
        jac_source: Tensor | None = None,
        jac_driving: Tensor | None = None,
    ) -> dict[str, Tensor]:
        source = self.resize(source, self.image_size)
        h, w = self.image_size
        small = self.resize(source, (max(1, round(h * self.motion_scale)), max(1, round(w * self.motion_scale))))
        motion = self.dense_motion(small, kp_source, kp_driving, jac_source, jac_driving)
        out = self.first(source)
        for block in self.down_blocks:
            out = block(out)
        deformation = motion["deformation"].permute(0, 3, 1, 2)
        # the flow holds align_corners=True coordinates: resampling it the same way keeps the identity exact
        deformation = F.interpolate(deformation, size=out.shape[-2:], mode="bilinear", align_corners=True)
        out = F.grid_sample(out, deformation.permute(0, 2, 3, 1), align_corners=True)
        occlusion = F.interpolate(motion["occlusion"], size=out.shape[-2:], mode="bilinear", align_corners=False)
        out = self.bottleneck(out * occlusion)
        for block in self.up_blocks:
            out = block(out)
        return {"prediction": torch.sigmoid(self.final(out)), **motion}

    def warp_source(self, source: Tensor, deformation: Tensor) -> Tensor:
        """The source image (B, C, H, W) warped by a dense backward flow (B, h, w, 2) (image-normalised)."""
        flow = deformation.permute(0, 3, 1, 2)
        flow = F.interpolate(flow, size=source.shape[-2:], mode="bilinear", align_corners=True)
        return F.grid_sample(source, flow.permute(0, 2, 3, 1), align_corners=True)


def pyramid_l1(prediction: Tensor, target: Tensor, scales: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125)) -> Tensor:
    """Mean absolute error summed over an image pyramid (anti-aliased downsampling), a stand-in for FOMM's
    multi-scale VGG perceptual loss: (B, C, H, W) x 2 -> scalar."""
    total = prediction.new_zeros(())
    for s in scales:
        if s == 1.0:
            p, t = prediction, target
        else:
            down = AntiAliasInterpolation2d(prediction.shape[1], s).to(prediction)
            p, t = down(prediction), down(target)
        total = total + (p - t).abs().mean()
    return total
