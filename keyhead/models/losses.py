"""Training losses: coordinate regression, heatmaps and coordinate likelihoods; pure, batched, NaN-aware.

Every loss is registered in ``LOSSES`` together with its kind, which says how the engine calls it:

- ``"coordinate"``: ``fn(pred (B, K, 2), target (B, K, 2)) -> scalar``; (x, y) in any consistent space,
  NaN in ``target`` marks a missing label.
- ``"heatmap"``: ``fn(logits (B, K, h, w), target (B, K, h, w), valid (B, K) bool | None) -> scalar``.
  Heatmap losses also record the activation that turns the head's logits into the maps decoders read
  (``"softmax"`` over the h*w pixels, ``"sigmoid"`` per pixel, or ``"identity"``); see :func:`loss_spec`.
- ``"coordinate_nll"``: ``fn(pred (B, K, 2), log_scale (B, K), target (B, K, 2)) -> scalar``.

Missing labels are selected away with ``torch.where`` before any arithmetic that could produce NaN, so they
contribute nothing and leave every ``.grad`` finite. Each loss returns a 0-dim tensor that stays connected to
the prediction; it is 0 (with a zero gradient) when nothing in the batch is labelled.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from keyhead.errors import KeyheadError
from keyhead.registry import LOSSES

LossKind = Literal["coordinate", "heatmap", "coordinate_nll"]
Activation = Literal["softmax", "sigmoid", "identity"]

_SPEC_ATTR = "_keyhead_loss_kind"


@dataclass(frozen=True)
class LossSpec:
    """A registered loss and how to use it.

    Attributes:
        fn: the loss function.
        kind: ``"coordinate"``, ``"heatmap"`` or ``"coordinate_nll"`` (the call signature, see module doc).
        activation: for heatmap losses, what turns logits into the maps decoders read (``"softmax"``,
            ``"sigmoid"`` or ``"identity"``); None for the other kinds.
    """

    fn: Callable[..., Tensor]
    kind: LossKind
    activation: Activation | None = None


def loss_kind(kind: LossKind, activation: Activation | None = None) -> Callable[[Callable], Callable]:
    """Decorator that records a loss's kind (and, for heatmap losses, its activation) on the function.

    Put it under ``@LOSSES.register(name)``; :func:`loss_spec` reads it back.
    """
    if (kind == "heatmap") != (activation is not None):
        raise ValueError(f"a {kind} loss must {'' if kind == 'heatmap' else 'not '}name an activation")

    def deco(fn: Callable) -> Callable:
        setattr(fn, _SPEC_ATTR, (kind, activation))
        return fn

    return deco


def loss_spec(name: str) -> LossSpec:
    """Looks up a registered loss by name.

    Args:
        name: registry name, e.g. ``"smooth_l1"`` or ``"kl"``.

    Returns:
        The function with its kind and activation.

    Raises:
        KeyheadError: the name is unknown (the message suggests close names).

    Example:
        >>> spec = loss_spec("kl")
        >>> spec.kind, spec.activation
        ('heatmap', 'softmax')
    """
    fn = LOSSES.get(name)
    if not hasattr(fn, _SPEC_ATTR):
        raise KeyheadError(f"loss {name!r} was registered without @loss_kind(...); add it so its kind is known")
    kind, activation = getattr(fn, _SPEC_ATTR)
    return LossSpec(fn, kind, activation)


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / mask.sum().clamp(min=1)


def _check_coords(pred: Tensor, target: Tensor, loss: str) -> None:
    if pred.ndim != 3 or pred.shape[-1] != 2 or pred.shape != target.shape:
        raise KeyheadError(
            f"loss {loss!r} expects pred and target of shape (B, K, 2), got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}; use a coordinate head with this loss, or a heatmap loss for heatmap heads"
        )


def _fill_missing(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    # Missing targets are replaced by the (detached) prediction so the elementwise loss there is a finite 0.
    mask = torch.isfinite(target)
    return torch.where(mask, target, pred.detach()), mask


@LOSSES.register("mse")
@loss_kind("coordinate")
def mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over labelled coordinates.

    Args:
        pred: (B, K, 2) predicted (x, y).
        target: (B, K, 2) true (x, y), NaN where missing.

    Returns:
        0-dim tensor: mean of (pred - target)^2 over the finite target coordinates.

    Example:
        >>> mse(torch.zeros(1, 2, 2), torch.tensor([[[1.0, 2.0], [float("nan")] * 2]]))
        tensor(2.5000)
    """
    _check_coords(pred, target, "mse")
    target, mask = _fill_missing(pred, target)
    return _masked_mean((pred - target).square(), mask)


@LOSSES.register("l1")
@loss_kind("coordinate")
def l1(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error over labelled coordinates.

    Args:
        pred: (B, K, 2) predicted (x, y).
        target: (B, K, 2) true (x, y), NaN where missing.

    Returns:
        0-dim tensor: mean of |pred - target| over the finite target coordinates.
    """
    _check_coords(pred, target, "l1")
    target, mask = _fill_missing(pred, target)
    return _masked_mean((pred - target).abs(), mask)


@LOSSES.register("smooth_l1")
@loss_kind("coordinate")
def smooth_l1(pred: Tensor, target: Tensor, beta: float = 1.0) -> Tensor:
    """Smooth L1 (Huber / beta) over labelled coordinates, as ``torch.nn.SmoothL1Loss`` (seed 001's regressor).

    Per coordinate with d = |pred - target|: 0.5 d^2 / beta if d < beta, else d - 0.5 beta.

    Args:
        pred: (B, K, 2) predicted (x, y).
        target: (B, K, 2) true (x, y), NaN where missing.
        beta: where the quadratic part turns linear (same units as the coordinates); 0 gives L1.

    Returns:
        0-dim tensor: mean over the finite target coordinates.
    """
    _check_coords(pred, target, "smooth_l1")
    target, mask = _fill_missing(pred, target)
    return _masked_mean(F.smooth_l1_loss(pred, target, reduction="none", beta=beta), mask)


def _heatmap_inputs(logits: Tensor, target: Tensor, valid: Tensor | None, loss: str) -> tuple[Tensor, Tensor]:
    if logits.ndim != 4 or logits.shape != target.shape:
        raise KeyheadError(
            f"loss {loss!r} expects logits and target heatmaps of the same shape (B, K, h, w), got "
            f"{tuple(logits.shape)} and {tuple(target.shape)}; check the codec's heatmap size against the head's"
        )
    if valid is None:
        valid = torch.isfinite(target).flatten(2).all(-1)
    elif valid.shape != logits.shape[:2]:
        raise KeyheadError(f"loss {loss!r}: valid has shape {tuple(valid.shape)}, expected {tuple(logits.shape[:2])}")
    valid = valid.to(torch.bool)
    keep = valid[..., None, None] & torch.isfinite(target)
    target = torch.where(keep, target.to(logits.dtype), torch.zeros((), dtype=logits.dtype, device=logits.device))
    return target, valid


def _as_distribution(target: Tensor) -> Tensor:
    # (B, K, h*w), each row summing to 1 (all-zero rows stay zero rather than becoming 0/0).
    flat = target.flatten(2)
    return flat / flat.sum(-1, keepdim=True).clamp(min=torch.finfo(flat.dtype).tiny)


@LOSSES.register("heatmap_mse")
@loss_kind("heatmap", activation="softmax")
def heatmap_mse(logits: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Lightning Pose's heatmap MSE: spatial softmax of the logits against the target normalised to sum 1.

    Per keypoint this is the per-pixel mean squared difference multiplied by h*w, i.e. the sum of squared
    differences over the h*w pixels (Lightning Pose's convention). Both maps sum to 1, so a plain per-pixel mean
    would shrink like 1 / (h*w) as the heatmap grows; the h*w factor keeps the loss's scale (and so a good
    learning rate) comparable between heatmap resolutions.

    Args:
        logits: (B, K, h, w) raw head output.
        target: (B, K, h, w) non-negative target maps (e.g. Gaussians), any overall scale.
        valid: (B, K) bool, False for keypoints without a label; None means "target is finite".

    Returns:
        0-dim tensor averaged over valid keypoints.
    """
    target, valid = _heatmap_inputs(logits, target, valid, "heatmap_mse")
    prob = logits.flatten(2).softmax(-1)
    per_kp = (prob - _as_distribution(target)).square().sum(-1)
    return _masked_mean(per_kp, valid)


@LOSSES.register("heatmap_mse_raw")
@loss_kind("heatmap", activation="identity")
def heatmap_mse_raw(logits: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Per-pixel MSE between the raw maps and unnormalised (peak 1) Gaussian targets (seed 001's U-Net MSE).

    Args:
        logits: (B, K, h, w) raw head output, read directly as heatmaps.
        target: (B, K, h, w) target maps with peak 1.
        valid: (B, K) bool, False for keypoints without a label; None means "target is finite".

    Returns:
        0-dim tensor: per-pixel mean per keypoint, averaged over valid keypoints.
    """
    target, valid = _heatmap_inputs(logits, target, valid, "heatmap_mse_raw")
    per_kp = (logits - target).square().flatten(2).mean(-1)
    return _masked_mean(per_kp, valid)


@LOSSES.register("bce")
@loss_kind("heatmap", activation="sigmoid")
def heatmap_bce(logits: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Per-pixel binary cross-entropy with logits against peak-1 Gaussian targets in [0, 1].

    Args:
        logits: (B, K, h, w) raw head output; sigmoid(logits) are the heatmaps.
        target: (B, K, h, w) target maps in [0, 1].
        valid: (B, K) bool, False for keypoints without a label; None means "target is finite".

    Returns:
        0-dim tensor: per-pixel mean per keypoint, averaged over valid keypoints.
    """
    target, valid = _heatmap_inputs(logits, target, valid, "bce")
    per_kp = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(2).mean(-1)
    return _masked_mean(per_kp, valid)


@LOSSES.register("ce")
@loss_kind("heatmap", activation="softmax")
def heatmap_ce(logits: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Spatial-softmax cross-entropy: -sum_pixels p * log_softmax(logits), p the target normalised to sum 1.

    Equals :func:`heatmap_kl` plus the entropy of p, so it has the same gradient but never reaches 0.

    Args:
        logits: (B, K, h, w) raw head output.
        target: (B, K, h, w) non-negative target maps, any overall scale.
        valid: (B, K) bool, False for keypoints without a label; None means "target is finite".

    Returns:
        0-dim tensor in nats, averaged over valid keypoints.
    """
    target, valid = _heatmap_inputs(logits, target, valid, "ce")
    per_kp = -(_as_distribution(target) * logits.flatten(2).log_softmax(-1)).sum(-1)
    return _masked_mean(per_kp, valid)


@LOSSES.register("kl")
@loss_kind("heatmap", activation="softmax")
def heatmap_kl(logits: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """KL(p || softmax(logits)) over the h*w pixels, p the target normalised to sum 1 (0 log 0 = 0).

    Args:
        logits: (B, K, h, w) raw head output.
        target: (B, K, h, w) non-negative target maps, any overall scale.
        valid: (B, K) bool, False for keypoints without a label; None means "target is finite".

    Returns:
        0-dim tensor in nats, averaged over valid keypoints; 0 exactly when softmax(logits) == p.
    """
    target, valid = _heatmap_inputs(logits, target, valid, "kl")
    p = _as_distribution(target)
    per_kp = (torch.xlogy(p, p) - p * logits.flatten(2).log_softmax(-1)).sum(-1)
    return _masked_mean(per_kp, valid)


@LOSSES.register("js")
@loss_kind("heatmap", activation="softmax")
def heatmap_js(logits: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Jensen-Shannon divergence between p (target normalised to sum 1) and q = softmax(logits).

    JS = 0.5 KL(p || m) + 0.5 KL(q || m) with m = (p + q) / 2, in nats, so 0 <= JS <= ln 2. log m is computed
    as logaddexp(log p, log q) - ln 2 with log p clamped at the smallest normal float, which keeps every term and
    gradient finite where p or q is 0.

    Args:
        logits: (B, K, h, w) raw head output.
        target: (B, K, h, w) non-negative target maps, any overall scale.
        valid: (B, K) bool, False for keypoints without a label; None means "target is finite".

    Returns:
        0-dim tensor in nats, averaged over valid keypoints.
    """
    target, valid = _heatmap_inputs(logits, target, valid, "js")
    p = _as_distribution(target)
    log_p = p.clamp(min=torch.finfo(p.dtype).tiny).log()
    log_q = logits.flatten(2).log_softmax(-1)
    log_m = torch.logaddexp(log_p, log_q) - math.log(2.0)
    per_kp = 0.5 * (p * (log_p - log_m) + log_q.exp() * (log_q - log_m)).sum(-1)
    return _masked_mean(per_kp, valid)


def _nll_inputs(pred: Tensor, log_scale: Tensor, target: Tensor, loss: str) -> tuple[Tensor, Tensor]:
    _check_coords(pred, target, loss)
    if log_scale.shape != pred.shape[:2]:
        raise KeyheadError(
            f"loss {loss!r}: the log-scale has shape {tuple(log_scale.shape)}, expected (B, K) = "
            f"{tuple(pred.shape[:2])} (one isotropic scale per keypoint)"
        )
    labelled = torch.isfinite(target).all(-1)
    return torch.where(labelled[..., None], target, pred.detach()), labelled


@LOSSES.register("gaussian_nll")
@loss_kind("coordinate_nll")
def gaussian_nll(pred: Tensor, log_sigma: Tensor, target: Tensor) -> Tensor:
    """Negative log-likelihood of the target under an isotropic 2-D Gaussian around the prediction.

    Per keypoint, with d the (x, y) error and sigma = exp(log_sigma):
    |d|^2 / (2 sigma^2) + 2 log sigma + log(2 pi) (the constant is kept, so the value is a true NLL in nats).

    Args:
        pred: (B, K, 2) predicted (x, y).
        log_sigma: (B, K) predicted log standard deviation, same units as the coordinates.
        target: (B, K, 2) true (x, y), NaN where missing.

    Returns:
        0-dim tensor averaged over labelled keypoints.

    Example:
        >>> gaussian_nll(torch.zeros(1, 1, 2), torch.zeros(1, 1), torch.tensor([[[1.0, 1.0]]]))
        tensor(2.8379)
    """
    target, labelled = _nll_inputs(pred, log_sigma, target, "gaussian_nll")
    sq = (pred - target).square().sum(-1)
    nll = 0.5 * sq * torch.exp(-2.0 * log_sigma) + 2.0 * log_sigma + math.log(2.0 * math.pi)
    return _masked_mean(nll, labelled)


@LOSSES.register("laplace_nll")
@loss_kind("coordinate_nll")
def laplace_nll(pred: Tensor, log_b: Tensor, target: Tensor) -> Tensor:
    """Negative log-likelihood of the target under a Laplace distribution around the prediction.

    x and y are independent Laplace variables sharing the scale b = exp(log_b); per keypoint:
    (|dx| + |dy|) / b + 2 log b + 2 log 2 (nats).

    Args:
        pred: (B, K, 2) predicted (x, y).
        log_b: (B, K) predicted log scale, same units as the coordinates.
        target: (B, K, 2) true (x, y), NaN where missing.

    Returns:
        0-dim tensor averaged over labelled keypoints.
    """
    target, labelled = _nll_inputs(pred, log_b, target, "laplace_nll")
    abs_sum = (pred - target).abs().sum(-1)
    nll = abs_sum * torch.exp(-log_b) + 2.0 * log_b + 2.0 * math.log(2.0)
    return _masked_mean(nll, labelled)
