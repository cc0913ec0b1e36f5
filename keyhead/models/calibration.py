"""Confidence calibration: a monotone map, fitted on the validation split, that makes a confidence a probability.

A decoder's confidence ranks keypoints (low = likely wrong) but its value is not a probability: a heatmap peak of
0.3 may be right 90 % of the time. After training, keyhead fits "this keypoint is right" (error <= 5 % of the
frame's normaliser, the threshold the AUROC uses) on the validation split's confidences: by default (``auto``)
Platt scaling (two parameters, steady on a few dozen keypoints) below ``AUTO_ISOTONIC_FROM`` keypoints and an
isotonic regression (pool-adjacent-violators) from there on (``train.calibration: isotonic`` or ``platt`` forces
one), stored as a piecewise-linear map on fixed knots in ``calibration.json`` beside the weights.
:class:`KeypointModel.decode` applies it, so every prediction path (images, videos, flip TTA, the ONNX graphs) gives
calibrated confidences. The map is strictly increasing (the isotonic values blended with 1 %
of the identity), so the ranking (the AUROC) is the raw confidence's; what changes is the expected calibration
error (ECE). A JSON file holds only numbers: nothing in it can execute.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_write

CALIBRATION_FILE = "calibration.json"  # beside the weights in a run folder
N_KNOTS = 21  # knots at 0, 0.05, ..., 1
PLATT_KNOTS = 201  # a sigmoid needs finer knots than a staircase: 0, 0.005, ..., 1
MIN_POINTS = 20  # fewer validation keypoints than this: no calibration (kept raw)
# Weight of the identity blended into the isotonic values. An isotonic fit on the 36-200 validation keypoints of a
# small project is a staircase; its flat steps tie every keypoint they cover, and ties cost AUROC (mirror-mouse split
# 44: 0.83 raw, 0.75 after a flat map). The blend makes the map strictly increasing, so the ranking is the raw
# confidence's; it moves any calibrated value by at most 0.01.
IDENTITY_BLEND = 0.01
# ``auto`` (the default) fits the isotonic staircase from this many validation keypoints on, Platt scaling below:
# the threshold Niculescu-Mizil and Caruana (2005) found, and keyhead's 19 benchmark runs agree (bench/calibration.py:
# test ECE mean 0.058 auto, 0.059 Platt, 0.095 isotonic; Platt ahead on 8 of the 9 runs with under 100 val keypoints).
AUTO_ISOTONIC_FROM = 1000


def isotonic_fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares non-decreasing fit of ``y`` on ``x`` (pool adjacent violators).

    Returns:
        (x sorted, fitted values at those x), both float64.

    Example:
        >>> isotonic_fit(np.array([0.1, 0.2, 0.3]), np.array([1.0, 0.0, 1.0]))[1].tolist()
        [0.5, 0.5, 1.0]
    """
    order = np.argsort(x, kind="stable")
    xs, ys = np.asarray(x, np.float64)[order], np.asarray(y, np.float64)[order]
    means: list[float] = []
    weights: list[float] = []
    for v in ys:
        means.append(float(v))
        weights.append(1.0)
        while len(means) > 1 and means[-2] > means[-1]:
            w = weights[-2] + weights[-1]
            m = (means[-2] * weights[-2] + means[-1] * weights[-1]) / w
            means[-2:], weights[-2:] = [m], [w]
    fitted = np.repeat(means, np.asarray(weights, dtype=np.int64))
    return xs, fitted


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))  # no overflow for any z


def platt_fit(x: np.ndarray, y: np.ndarray, iterations: int = 50) -> tuple[float, float]:
    """Platt scaling: logistic regression of ``y`` (0/1) on logit(``x``), with Platt's smoothed targets
    ((n+ + 1) / (n+ + 2) and 1 / (n- + 2)) that keep a fit on a few dozen points from saturating.

    Two parameters instead of the isotonic fit's free staircase: the literature's choice for small calibration sets
    (Niculescu-Mizil and Caruana, 2005). The slope is held at >= 0 (a confidence that ranks backwards gets a
    constant map).

    Returns:
        (a, b) with p = sigmoid(a * logit(x) + b).

    Example:
        >>> a, b = platt_fit(np.array([0.2, 0.4, 0.6, 0.8] * 5), np.array([0, 0, 1, 1] * 5))
        >>> a > 0 and abs(b) < 1e-6
        True
    """
    c = np.clip(np.asarray(x, np.float64), 1e-4, 1.0 - 1e-4)
    f = np.log(c / (1.0 - c))
    y = np.asarray(y, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    t = np.where(y, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))

    def loss(a: float, b: float) -> float:  # the cross-entropy against the smoothed targets
        return float((np.logaddexp(0.0, a * f + b) - t * (a * f + b)).sum())

    a, b = 0.0, float(np.log(t.mean() / (1.0 - t.mean())))  # start from the constant map
    for _ in range(iterations):  # Newton's method with step halving on the (convex) cross-entropy
        p = _sigmoid(a * f + b)
        w = p * (1.0 - p)
        grad = np.array([((p - t) * f).sum(), (p - t).sum()])
        hess = np.array([[(w * f * f).sum(), (w * f).sum()], [(w * f).sum(), w.sum()]]) + 1e-9 * np.eye(2)
        step, current = np.linalg.solve(hess, grad), loss(a, b)
        while loss(a - step[0], b - step[1]) > current and np.abs(step).max() > 1e-12:
            step = step / 2.0
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-10:
            break
    if a < 0:
        a, b = 0.0, float(np.log(t.mean() / (1.0 - t.mean())))
    return float(a), float(b)


class ConfidenceCalibration:
    """A monotone piecewise-linear map of confidences on fixed knots (torch and NumPy, the same arithmetic).

    Args:
        knots: increasing positions in [0, 1], the first 0 and the last 1.
        values: non-decreasing values in [0, 1] at the knots.
        info: what it was fitted on (kept in ``calibration.json``).
    """

    def __init__(self, knots: np.ndarray, values: np.ndarray, info: dict | None = None) -> None:
        self.knots = np.asarray(knots, dtype=np.float64)
        self.values = np.asarray(values, dtype=np.float64)
        self.info = dict(info or {})

    @classmethod
    def fit(
        cls, confidence: np.ndarray, correct: np.ndarray, method: str = "auto", **info
    ) -> ConfidenceCalibration | None:
        """Fit of ``correct`` (bool) on ``confidence`` by ``method``: ``isotonic``, ``platt`` (:func:`platt_fit`) or
        ``auto`` (isotonic from ``AUTO_ISOTONIC_FROM`` points on, Platt below; ``info`` records the choice);
        None with fewer than ``MIN_POINTS`` finite pairs or when every keypoint is right (or every one wrong):
        nothing to calibrate against."""
        if method not in ("auto", "isotonic", "platt"):
            raise KeyheadError(f"calibration method {method!r}: use auto, isotonic or platt")
        c, ok = np.asarray(confidence, np.float64).ravel(), np.asarray(correct, bool).ravel()
        keep = np.isfinite(c)
        c, ok = np.clip(c[keep], 0.0, 1.0), ok[keep]
        if c.size < MIN_POINTS or ok.all() or not ok.any():
            return None
        info = {**info, "requested": method}
        if method == "auto":
            method = "isotonic" if c.size >= AUTO_ISOTONIC_FROM else "platt"
        if method == "platt":
            a, b = platt_fit(c, ok)
            knots = np.linspace(0.0, 1.0, PLATT_KNOTS)
            k = np.clip(knots, 1e-4, 1.0 - 1e-4)
            values = _sigmoid(a * np.log(k / (1.0 - k)) + b)
            info = {**info, "platt_a_b": [a, b]}
        else:
            xs, fitted = isotonic_fit(c, ok.astype(np.float64))
            knots = np.linspace(0.0, 1.0, N_KNOTS)
            # one value per distinct confidence (the mean over ties), linear between them, ends held flat
            unique, inverse = np.unique(xs, return_inverse=True)
            per_x = np.bincount(inverse, weights=fitted) / np.bincount(inverse)
            values = np.interp(knots, unique, per_x)
        values = np.clip(np.maximum.accumulate(values), 0.0, 1.0)
        values = (1.0 - IDENTITY_BLEND) * values + IDENTITY_BLEND * knots  # strictly increasing: no ties made
        return cls(knots, values, {**info, "method": method, "n_points": int(c.size)})

    def numpy(self, confidence: np.ndarray) -> np.ndarray:
        c = np.asarray(confidence, dtype=np.float64)
        out = np.interp(np.clip(c, 0.0, 1.0), self.knots, self.values)
        return np.where(np.isfinite(c), out, c).astype(np.asarray(confidence).dtype, copy=False)

    def __call__(self, confidence: torch.Tensor) -> torch.Tensor:
        """The same map in torch, as a sum of clamped ramps (elementwise ops only: exports to ONNX)."""
        k = torch.as_tensor(self.knots, dtype=confidence.dtype, device=confidence.device)
        v = torch.as_tensor(self.values, dtype=confidence.dtype, device=confidence.device)
        slopes = (v[1:] - v[:-1]) / (k[1:] - k[:-1])
        c = confidence.clamp(0.0, 1.0).unsqueeze(-1)
        ramps = torch.minimum(torch.clamp(c - k[:-1], min=0.0), k[1:] - k[:-1])
        return v[0] + (ramps * slopes).sum(-1)

    def save(self, path: str | os.PathLike) -> None:
        payload = {"method": "isotonic", **self.info, "knots": self.knots.tolist(), "values": self.values.tolist()}
        with atomic_write(path) as f:
            json.dump(payload, f, indent=1)


def load_calibration(path: str | os.PathLike) -> ConfidenceCalibration | None:
    """Read ``calibration.json`` (None if absent); a clear error if it is not a valid monotone map."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        payload = json.loads(p.read_text(encoding="utf-8"))
        knots = np.asarray(payload["knots"], dtype=np.float64)
        values = np.asarray(payload["values"], dtype=np.float64)
    except (OSError, ValueError, KeyError, TypeError):
        raise KeyheadError(f"{p}: not a calibration map (knots, values); delete it and run keyhead evaluate") from None
    ok = (
        knots.ndim == 1
        and knots.shape == values.shape
        and knots.size >= 2
        and np.isfinite(knots).all()
        and np.isfinite(values).all()
        and (np.diff(knots) > 0).all()
        and (np.diff(values) >= 0).all()
        and knots[0] == 0.0
        and knots[-1] == 1.0
        and values.min() >= 0.0
        and values.max() <= 1.0
    )
    if not ok:
        raise KeyheadError(
            f"{p}: knots must rise from 0 to 1 and values must be non-decreasing in [0, 1]; delete it and run "
            "keyhead evaluate RUN to fit it again"
        )
    info = {k: v for k, v in payload.items() if k not in ("knots", "values")}
    return ConfidenceCalibration(knots, values, info)
