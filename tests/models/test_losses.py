from __future__ import annotations

import math

import pytest
import torch

from keyhead.errors import KeyheadError
from keyhead.models.losses import (
    gaussian_nll,
    heatmap_ce,
    heatmap_js,
    heatmap_kl,
    l1,
    laplace_nll,
    loss_spec,
    mse,
    smooth_l1,
)
from keyhead.registry import LOSSES

NAN = float("nan")
HEATMAP_LOSSES = ["heatmap_mse", "heatmap_mse_raw", "bce", "ce", "kl", "js"]
SOFTMAX_LOSSES = ["heatmap_mse", "ce", "kl", "js"]


def _coords() -> tuple[torch.Tensor, torch.Tensor]:
    # One frame, two keypoints: errors (1, -2) on the first, the second unlabelled.
    pred = torch.zeros(1, 2, 2, requires_grad=True)
    target = torch.tensor([[[1.0, -2.0], [NAN, NAN]]])
    return pred, target


def _gaussian_maps(centres: list[tuple[float, float]], h: int = 8, w: int = 9, sigma: float = 2.0) -> torch.Tensor:
    # (1, K, h, w) peak-1 Gaussians at (x, y) pixel centres; off-grid centres keep every value inside (0, 1).
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    maps = [torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2)) for x, y in centres]
    return torch.stack(maps)[None]


def _logits_at_target(name: str, target: torch.Tensor) -> torch.Tensor:
    activation = loss_spec(name).activation
    if activation == "softmax":
        return target.log()
    if activation == "sigmoid":
        return torch.logit(target)
    return target.clone()


# ---------------------------------------------------------------- coordinate losses


@pytest.mark.parametrize(
    ("fn", "kwargs", "expected"),
    [
        # labelled errors |d| = 1 and 2; the NaN keypoint is ignored
        pytest.param(mse, {}, (1 + 4) / 2, id="mse"),
        pytest.param(l1, {}, (1 + 2) / 2, id="l1"),
        # beta 1: both errors are >= beta, so d - 0.5: (0.5 + 1.5) / 2
        pytest.param(smooth_l1, {"beta": 1.0}, (0.5 + 1.5) / 2, id="smooth_l1-beta1"),
        # beta 4: both quadratic, 0.5 d^2 / 4: (0.125 + 0.5) / 2
        pytest.param(smooth_l1, {"beta": 4.0}, (0.125 + 0.5) / 2, id="smooth_l1-beta4"),
    ],
)
def test_coordinate_loss_hand_values(fn, kwargs, expected):
    pred, target = _coords()
    assert fn(pred, target, **kwargs).item() == pytest.approx(expected)


@pytest.mark.parametrize("name", ["mse", "l1", "smooth_l1"], ids=str)
def test_coordinate_loss_missing_targets_give_finite_zero_grad(name):
    pred, target = _coords()
    loss_spec(name).fn(pred, target).backward()
    assert torch.isfinite(pred.grad).all()
    assert (pred.grad[0, 1] == 0).all()
    assert (pred.grad[0, 0] != 0).all()


def test_mse_gradient_hand_values():
    # d/dpred mean((pred - t)^2) over 2 coordinates = (pred - t): (0 - 1, 0 + 2) = (-1, 2)
    pred, target = _coords()
    mse(pred, target).backward()
    torch.testing.assert_close(pred.grad, torch.tensor([[[-1.0, 2.0], [0.0, 0.0]]]))


@pytest.mark.parametrize("name", ["mse", "l1", "smooth_l1"], ids=str)
def test_coordinate_loss_nothing_labelled_is_zero_with_grad(name):
    pred = torch.randn(2, 3, 2, requires_grad=True)
    loss = loss_spec(name).fn(pred, torch.full((2, 3, 2), NAN))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert (pred.grad == 0).all()


def test_coordinate_loss_rejects_heatmaps():
    with pytest.raises(KeyheadError, match=r"\(B, K, 2\)"):
        mse(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4))


# ---------------------------------------------------------------- heatmap losses


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # logits (0, 0) over two pixels, target (1, 0): softmax q = (0.5, 0.5), target distribution p = (1, 0)
        pytest.param("heatmap_mse", 0.25 + 0.25, id="heatmap_mse"),  # sum of squared differences
        pytest.param("heatmap_mse_raw", (1 + 0) / 2, id="heatmap_mse_raw"),  # per-pixel mean
        pytest.param("bce", math.log(2), id="bce"),  # each pixel: -log sigmoid(0) = log 2
        pytest.param("ce", math.log(2), id="ce"),  # -1 * log 0.5
        pytest.param("kl", math.log(2), id="kl"),  # 1 * log(1 / 0.5)
        # m = (0.75, 0.25): KL(p||m) = log(4/3), KL(q||m) = 0.5 log(2/3) + 0.5 log 2 = 0.5 log(4/3)
        pytest.param("js", 0.5 * (math.log(4 / 3) + 0.5 * math.log(4 / 3)), id="js"),
    ],
)
def test_heatmap_loss_hand_values(name, expected):
    logits = torch.zeros(1, 1, 1, 2)
    target = torch.tensor([[[[1.0, 0.0]]]])
    assert loss_spec(name).fn(logits, target, torch.ones(1, 1, dtype=torch.bool)).item() == pytest.approx(expected)


@pytest.mark.parametrize("name", HEATMAP_LOSSES, ids=str)
def test_heatmap_loss_is_minimised_at_target(name):
    target = _gaussian_maps([(3.3, 4.6), (6.2, 1.7)])
    best = _logits_at_target(name, target)
    fn = loss_spec(name).fn
    at_target = fn(best, target)
    torch.manual_seed(0)
    for _ in range(5):
        assert at_target < fn(best + 0.3 * torch.randn_like(best), target)
    if name in ("kl", "js"):
        assert at_target.item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name", HEATMAP_LOSSES, ids=str)
def test_heatmap_loss_ignores_invalid_keypoints_without_nan_grads(name):
    target = _gaussian_maps([(3.3, 4.6), (6.2, 1.7)]).float()
    logits = torch.randn(1, 2, 8, 9)
    alone = loss_spec(name).fn(logits[:, :1], target[:, :1], torch.ones(1, 1, dtype=torch.bool))

    target[0, 1] = NAN  # an unlabelled keypoint, as a codec may mark it
    logits = logits.clone().requires_grad_(True)
    loss = loss_spec(name).fn(logits, target, torch.tensor([[True, False]]))
    torch.testing.assert_close(loss, alone)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert (logits.grad[0, 1] == 0).all()


@pytest.mark.parametrize("name", HEATMAP_LOSSES, ids=str)
def test_heatmap_loss_nothing_valid_is_zero_with_grad(name):
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = loss_spec(name).fn(logits, torch.full((2, 3, 4, 4), NAN), torch.zeros(2, 3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert (logits.grad == 0).all()


@pytest.mark.parametrize("name", SOFTMAX_LOSSES, ids=str)
def test_softmax_losses_do_not_depend_on_target_scale(name):
    target = _gaussian_maps([(3.3, 4.6)])
    logits = torch.randn(1, 1, 8, 9, dtype=torch.float64)
    fn = loss_spec(name).fn
    torch.testing.assert_close(fn(logits, target), fn(logits, 7.0 * target))


@pytest.mark.parametrize("name", HEATMAP_LOSSES, ids=str)
def test_heatmap_loss_gradcheck(name):
    target = _gaussian_maps([(1.2, 2.1), (2.7, 0.4)], h=4, w=5)
    logits = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    valid = torch.tensor([[True, False]])
    assert torch.autograd.gradcheck(lambda x: loss_spec(name).fn(x, target, valid), (logits,))


def test_ce_equals_kl_plus_target_entropy():
    torch.manual_seed(1)
    logits = torch.randn(3, 4, 6, 5, dtype=torch.float64)
    target = torch.rand(3, 4, 6, 5, dtype=torch.float64)
    target[0, 0, 2] = 0.0  # zeros in the target (0 log 0 = 0)
    p = target.flatten(2) / target.flatten(2).sum(-1, keepdim=True)
    entropy = -torch.xlogy(p, p).sum(-1).mean()
    torch.testing.assert_close(heatmap_ce(logits, target), heatmap_kl(logits, target) + entropy)


def test_js_saturates_at_log2_with_finite_grads():
    # disjoint supports: the target is one-hot on pixel 0, the prediction puts all its mass on pixel 3
    target = torch.zeros(1, 1, 2, 2)
    target[0, 0, 0, 0] = 1.0
    logits = torch.zeros(1, 1, 2, 2)
    logits[0, 0, 1, 1] = 200.0
    logits.requires_grad_(True)
    loss = heatmap_js(logits, target)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_heatmap_loss_rejects_mismatched_shapes():
    with pytest.raises(KeyheadError, match="codec"):
        heatmap_kl(torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 16, 16))


# ---------------------------------------------------------------- likelihoods


@pytest.mark.parametrize(
    ("fn", "log_scale", "expected"),
    [
        # error (3, 4), sigma 5: 25 / (2 * 25) + 2 log 5 + log(2 pi) = 0.5 + 3.2189 + 1.8379 = 5.5568
        pytest.param(gaussian_nll, math.log(5), 0.5 + 2 * math.log(5) + math.log(2 * math.pi), id="gaussian"),
        # error (3, 4), b 7: (3 + 4) / 7 + 2 log 7 + 2 log 2 = 1 + 3.8918 + 1.3863 = 6.2781
        pytest.param(laplace_nll, math.log(7), 1 + 2 * math.log(7) + 2 * math.log(2), id="laplace"),
    ],
)
def test_nll_hand_values(fn, log_scale, expected):
    pred = torch.zeros(1, 2, 2)
    target = torch.tensor([[[3.0, 4.0], [NAN, NAN]]])
    log_s = torch.tensor([[log_scale, 0.0]])
    assert fn(pred, log_s, target).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    ("fn", "dist"),
    [
        pytest.param(gaussian_nll, torch.distributions.Normal, id="gaussian"),
        pytest.param(laplace_nll, torch.distributions.Laplace, id="laplace"),
    ],
)
def test_nll_matches_torch_distributions(fn, dist):
    torch.manual_seed(2)
    pred, target = torch.randn(4, 3, 2, dtype=torch.float64), torch.randn(4, 3, 2, dtype=torch.float64)
    log_s = torch.randn(4, 3, dtype=torch.float64)
    reference = -dist(pred, log_s.exp()[..., None]).log_prob(target).sum(-1).mean()
    torch.testing.assert_close(fn(pred, log_s, target), reference)


@pytest.mark.parametrize("fn", [gaussian_nll, laplace_nll], ids=["gaussian", "laplace"])
def test_nll_missing_targets_give_finite_zero_grads(fn):
    pred = torch.randn(2, 3, 2, requires_grad=True)
    log_s = torch.randn(2, 3, requires_grad=True)
    target = torch.randn(2, 3, 2)
    target[0, 1] = NAN
    target[1, 2, 0] = NAN  # half-labelled keypoints are missing too
    fn(pred, log_s, target).backward()
    for grad in (pred.grad, log_s.grad):
        assert torch.isfinite(grad).all()
    assert (pred.grad[0, 1] == 0).all() and (pred.grad[1, 2] == 0).all()
    assert log_s.grad[0, 1] == 0 and log_s.grad[1, 2] == 0
    assert fn(pred, log_s, torch.full_like(target, NAN)).item() == 0.0


def test_nll_rejects_per_coordinate_scale():
    with pytest.raises(KeyheadError, match="isotropic"):
        gaussian_nll(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2), torch.zeros(1, 2, 2))


# ---------------------------------------------------------------- registry


@pytest.mark.parametrize(
    ("name", "kind", "activation"),
    [
        ("mse", "coordinate", None),
        ("smooth_l1", "coordinate", None),
        ("l1", "coordinate", None),
        ("heatmap_mse", "heatmap", "softmax"),
        ("heatmap_mse_raw", "heatmap", "identity"),
        ("bce", "heatmap", "sigmoid"),
        ("ce", "heatmap", "softmax"),
        ("kl", "heatmap", "softmax"),
        ("js", "heatmap", "softmax"),
        ("gaussian_nll", "coordinate_nll", None),
        ("laplace_nll", "coordinate_nll", None),
    ],
    ids=lambda v: str(v),
)
def test_loss_spec_records_kind_and_activation(name, kind, activation):
    spec = loss_spec(name)
    assert (spec.kind, spec.activation) == (kind, activation)
    assert spec.fn is LOSSES.get(name)


@pytest.mark.parametrize("name", LOSSES.names(), ids=str)
def test_every_registered_loss_has_a_spec(name):
    assert loss_spec(name).kind in ("coordinate", "heatmap", "coordinate_nll")


def test_unknown_loss_suggests_close_name():
    with pytest.raises(KeyheadError, match="did you mean 'smooth_l1'"):
        loss_spec("smoth_l1")
