"""Random thin-plate-spline warps and FOMM's equivariance losses (value and Jacobian terms).

Coordinates here are *image-normalised*: (x, y) in [-1, 1] with -1 / 1 at the centres of the first / last pixel
(``grid_sample(..., align_corners=True)``'s meaning), so a warp of the frame and a warp of its keypoints agree
exactly. A warp T maps a point z of the warped frame Y to the point T(z) of the original frame X
(``Y(z) = X(T(z))``, what ``grid_sample`` does): T(z) = A z + b + sum_c w_c * r_c(z)^2 log r_c(z), with r_c the
L1 distance to control point c, as in first-order-model's ``Transform``.

The equivariance terms (Siarohin et al. 2019, eq. 9-10) for a detector kp(.) and jacobian J(.):
    L_value = mean |kp(X) - T(kp(Y))|
    L_jacobian = mean |I - J(X)^-1 (dT(kp(Y)) J(Y))|
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["TPSWarp", "equivariance_losses", "image_grid", "inverse_2x2"]


def image_grid(h: int, w: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """(h, w, 2) grid of image-normalised (x, y): x_j = 2 j / (w - 1) - 1, y_i = 2 i / (h - 1) - 1."""
    x = torch.linspace(-1, 1, w, device=device, dtype=dtype)
    y = torch.linspace(-1, 1, h, device=device, dtype=dtype)
    return torch.stack((x.view(1, w).expand(h, w), y.view(h, 1).expand(h, w)), dim=-1)


def inverse_2x2(m: Tensor) -> Tensor:
    """Closed-form inverse of (..., 2, 2) matrices (faster and steadier than ``torch.inverse`` for 2x2)."""
    a, b, c, d = m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1]
    det = a * d - b * c
    det = torch.where(det.abs() < 1e-6, torch.full_like(det, 1e-6) * torch.sign(det + 1e-12), det)
    return torch.stack((torch.stack((d, -b), -1), torch.stack((-c, a), -1)), -2) / det[..., None, None]


class TPSWarp:
    """A batch of random warps: affine noise plus a thin-plate spline on a control grid (FOMM's ``Transform``).

    Args:
        batch_size: B warps.
        sigma_affine: std of the noise added to the identity 2x3 affine matrix (FOMM: 0.05).
        sigma_tps: std of the spline weights (FOMM: 0.005).
        points_tps: control grid side (FOMM: 5, so 25 control points).
        generator: torch random generator (seeded for reproducible warps).
        theta: optional fixed (B, 2, 3) affine matrices instead of random ones.
        weights: optional fixed (B, points_tps**2) spline weights.
    """

    def __init__(
        self,
        batch_size: int,
        sigma_affine: float = 0.05,
        sigma_tps: float = 0.005,
        points_tps: int = 5,
        generator: torch.Generator | None = None,
        theta: Tensor | None = None,
        weights: Tensor | None = None,
    ) -> None:
        eye = torch.eye(2, 3).expand(batch_size, 2, 3)
        if theta is None:
            theta = eye + sigma_affine * torch.randn(batch_size, 2, 3, generator=generator)
        self.theta = theta
        self.control = image_grid(points_tps, points_tps).reshape(-1, 2)
        if weights is None:
            weights = sigma_tps * torch.randn(batch_size, points_tps**2, generator=generator)
        self.weights = weights
        self.batch_size = batch_size

    def warp_coordinates(self, xy: Tensor) -> Tensor:
        """T(z) for points (B, N, 2) in image-normalised (x, y) -> (B, N, 2)."""
        theta = self.theta.to(xy)
        out = xy @ theta[:, :, :2].transpose(1, 2) + theta[:, None, :, 2]
        r = (xy.unsqueeze(2) - self.control.to(xy).view(1, 1, -1, 2)).abs().sum(-1)
        spline = (r**2 * torch.log(r + 1e-6) * self.weights.to(xy).unsqueeze(1)).sum(-1, keepdim=True)
        return out + spline

    def jacobian(self, xy: Tensor) -> Tensor:
        """dT/dz at points (B, N, 2) -> (B, N, 2, 2) (rows: d T_x, d T_y), differentiable (create_graph)."""
        with torch.enable_grad():
            z = xy if xy.requires_grad else xy.detach().requires_grad_(True)
            t = self.warp_coordinates(z)
            gx = torch.autograd.grad(t[..., 0].sum(), z, create_graph=True)[0]
            gy = torch.autograd.grad(t[..., 1].sum(), z, create_graph=True)[0]
        return torch.stack((gx, gy), dim=-2)

    def warp_frame(self, frame: Tensor) -> Tensor:
        """The warped frame Y(z) = X(T(z)): (B, C, H, W) -> (B, C, H, W), reflection padding."""
        b, _, h, w = frame.shape
        grid = image_grid(h, w, frame.device, frame.dtype).reshape(1, h * w, 2).expand(b, h * w, 2)
        grid = self.warp_coordinates(grid).view(b, h, w, 2)
        return F.grid_sample(frame, grid, padding_mode="reflection", align_corners=True)


def equivariance_losses(
    kp_x: Tensor, jac_x: Tensor | None, kp_y: Tensor, jac_y: Tensor | None, warp: TPSWarp
) -> dict[str, Tensor]:
    """FOMM's equivariance terms for keypoints of a frame X and of its warp Y = X o T.

    Args:
        kp_x: (B, K, 2) keypoints of X, image-normalised (x, y).
        jac_x: (B, K, 2, 2) Jacobians of X, or None.
        kp_y: (B, K, 2) keypoints of Y.
        jac_y: (B, K, 2, 2) Jacobians of Y, or None.
        warp: the warp T with Y(z) = X(T(z)).

    Returns:
        {"equivariance_value": scalar, and with Jacobians "equivariance_jacobian": scalar} (unweighted means).
    """
    out = {"equivariance_value": (kp_x - warp.warp_coordinates(kp_y)).abs().mean()}
    if jac_x is not None and jac_y is not None:
        transformed = warp.jacobian(kp_y) @ jac_y
        value = inverse_2x2(jac_x) @ transformed
        eye = torch.eye(2, device=value.device, dtype=value.dtype)
        out["equivariance_jacobian"] = (eye - value).abs().mean()
    return out
