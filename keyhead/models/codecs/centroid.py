"""Instance centres as one confidence map with several peaks (the first stage of top-down multi-animal pose)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from keyhead.models.codecs.heatmap import HeatmapCodec
from keyhead.models.decoders.functional import cells_to_pixels
from keyhead.types import Keypoints


def find_peaks(maps: torch.Tensor, max_peaks: int, radius: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Local maxima of single-channel maps with non-maximum suppression, refined to sub-cell positions.

    A cell is a peak when it equals the maximum of its (2r+1) x (2r+1) neighbourhood; the ``max_peaks`` highest are
    kept and each is refined by a parabola through the log-values of its 3x3 neighbours (exact for a Gaussian peak).

    Args:
        maps: (B, 1, h, w) non-negative confidence maps.
        max_peaks: P, peaks returned per map.
        radius: NMS neighbourhood radius in cells.

    Returns:
        (uv (B, P, 2) peak positions in cells (u, v), value (B, P) map value at each peak), highest value first.

    Example:
        >>> m = torch.zeros(1, 1, 8, 8); m[0, 0, 2, 5] = 1.0; m[0, 0, 6, 1] = 0.5
        >>> find_peaks(m, 2)[0].tolist()
        [[[5.0, 2.0], [1.0, 6.0]]]
    """
    b, _, h, w = maps.shape
    pooled = F.max_pool2d(maps, 2 * radius + 1, stride=1, padding=radius)
    peaks = torch.where(maps >= pooled, maps, torch.zeros_like(maps)).flatten(1)
    value, idx = peaks.topk(min(max_peaks, h * w), dim=1)
    v, u = (idx // w).float(), (idx % w).float()
    padded = F.pad(maps.clamp_min(0), (1, 1, 1, 1))[:, 0]
    offsets = torch.tensor([-1.0, 0.0, 1.0], device=maps.device)
    rows = (v.long()[..., None] + 1 + offsets.long()).clamp(0, h + 1)  # (B, P, 3) in the padded map
    cols = (u.long()[..., None] + 1 + offsets.long()).clamp(0, w + 1)
    batch = torch.arange(b, device=maps.device)[:, None, None, None]
    window = padded[batch, rows[..., :, None], cols[..., None, :]]  # (B, P, 3, 3)
    log = window.clamp_min(1e-6).log()
    du = _parabola_vertex(log[..., 1, 0], log[..., 1, 1], log[..., 1, 2])
    dv = _parabola_vertex(log[..., 0, 1], log[..., 1, 1], log[..., 2, 1])
    uv = torch.stack([u + du, v + dv], dim=-1)
    if uv.shape[1] < max_peaks:  # a map smaller than max_peaks cells
        pad = max_peaks - uv.shape[1]
        uv = torch.cat([uv, uv.new_zeros(b, pad, 2)], dim=1)
        value = torch.cat([value, value.new_zeros(b, pad)], dim=1)
    return uv, value


def _parabola_vertex(left: torch.Tensor, mid: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Offset in (-0.5, 0.5) of the vertex of the parabola through three equally spaced values (exact for the log of
    a Gaussian)."""
    curvature = left - 2 * mid + right
    offset = 0.5 * (left - right) / torch.where(curvature < -1e-6, curvature, torch.full_like(curvature, -1e6))
    return offset.clamp(-0.5, 0.5)


class CentroidCodec(HeatmapCodec):
    """Up to M instance centres <-> one Gaussian confidence map (SLEAP's centroid model; peak 1 at each centre).

    ``encode`` draws every labelled centre of a frame into the same map (the maximum where Gaussians overlap);
    ``decode`` returns the M highest local maxima, ordered left to right among those above ``threshold`` (the
    order the training labels use, so the validation pixel error compares like with like), then by value; the
    confidence is the map's value at the peak.

    Args:
        input_size: (H, W) of the model input in pixels.
        stride: input pixels per map cell.
        max_instances: M, centres decoded per image.
        sigma: Gaussian standard deviation in cells.
        activation: how head logits become maps ("identity" for an MSE-trained map, "sigmoid" for BCE).
        threshold: peaks below this value are ordered after the others (and dropped by the top-down predictor).
        offset: cells cropped from each border (see :class:`HeatmapCodec`).

    Example:
        >>> codec = CentroidCodec((64, 64), stride=4, max_instances=2, sigma=1.0, activation="identity")
        >>> t, valid = codec.encode(torch.tensor([[[10.0, 20.0], [40.0, 30.0]]]))
        >>> t.shape, valid.shape
        (torch.Size([1, 1, 16, 16]), torch.Size([1, 1]))
        >>> codec.decode(t).xy.round().tolist()
        [[[10.0, 20.0], [40.0, 30.0]]]
    """

    kind = "heatmap"

    def __init__(
        self,
        input_size: tuple[int, int],
        stride: int,
        max_instances: int,
        sigma: float = 2.0,
        activation: str = "identity",
        threshold: float = 0.2,
        offset: int = 0,
    ) -> None:
        super().__init__(input_size, stride, sigma, activation, decoder="argmax", offset=offset)
        if max_instances < 1:
            raise ValueError(f"max_instances must be >= 1, got {max_instances}")
        self.max_instances = int(max_instances)
        self.threshold = float(threshold)

    def encode(self, xy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, M, 2) centres in input pixels (NaN: no instance) -> (targets (B, 1, h, w), valid (B, 1) all True).

        Every frame is a valid target, also one without instances (an empty map teaches the background)."""
        maps, _ = super().encode(xy)
        return maps.amax(dim=1, keepdim=True), torch.ones(xy.shape[0], 1, dtype=torch.bool, device=xy.device)

    def decode(self, logits: torch.Tensor | dict[str, torch.Tensor], batch_groups: bool = True) -> Keypoints:
        """Logits (B, 1, h, w) -> the M strongest centres (B, M, 2) in input pixels and their map values (B, M)."""
        if isinstance(logits, dict):
            logits = logits["heatmaps"]
        maps = self.maps(logits.float())
        uv, value = find_peaks(maps, self.max_instances)
        xy = cells_to_pixels(uv + self.offset, self.stride)
        strong = value >= self.threshold
        # strong peaks first, left to right; then weak ones by value
        order = torch.argsort(torch.where(strong, xy[..., 0], 1e9 - value), dim=1)
        xy = xy.gather(1, order[..., None].expand(-1, -1, 2))
        return Keypoints(xy, value.gather(1, order).clamp(0, 1))

    def __repr__(self) -> str:
        return (
            f"CentroidCodec(input_size={self.input_size}, stride={self.stride}, max_instances={self.max_instances}, "
            f"sigma={self.sigma}, activation={self.activation!r}, threshold={self.threshold})"
        )
