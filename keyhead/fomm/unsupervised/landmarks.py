"""The standard evaluation of unsupervised keypoints: a linear regressor from discovered keypoints to landmarks.

Fit, on a training subset of labelled frames, the least-squares affine map (weights and a bias) from the detector's
outputs (K keypoints (x, y) in input pixels, optionally the 4K Jacobian entries) to the M labelled landmarks in
original-image pixels; report the error on held-out frames (mean Euclidean pixel error, and normalised by the
inter-ocular distance for 68-point faces or by the labels' box diagonal otherwise). Missing landmarks (NaN) are
left out: every landmark coordinate gets its own least-squares fit over the frames where it is labelled.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from keyhead.errors import KeyheadError
from keyhead.fomm.detector import FommKPDetector
from keyhead.fomm.unsupervised.frames import to_model_input
from keyhead.metrics import bbox_diagonal, interocular

__all__ = ["detector_features", "fit_linear_regressor", "predict_linear", "regression_errors"]


@torch.inference_mode()
def detector_features(
    detector: FommKPDetector, frames: Tensor, batch_size: int = 32, jacobians: bool = False
) -> np.ndarray:
    """Regression features per frame: keypoints in input pixels (x, y) flattened, then Jacobian entries.

    Args:
        detector: the detector (put in eval mode here, mode restored).
        frames: (N, C, H, W) uint8 frames at the detector's input size.
        batch_size: frames per forward pass.
        jacobians: append the 4K Jacobian entries.

    Returns:
        (N, 2K) or (N, 6K) float64.
    """
    was = detector.training
    detector.eval()
    feats = []
    try:
        for i in range(0, len(frames), batch_size):
            out = detector(to_model_input(frames[i : i + batch_size]))
            parts = [detector.to_pixels(out["value"]).flatten(1)]
            if jacobians and "jacobian" in out:
                parts.append(out["jacobian"].flatten(1))
            feats.append(torch.cat(parts, 1).double().cpu())
    finally:
        detector.train(was)
    return torch.cat(feats).numpy()


def fit_linear_regressor(features: np.ndarray, targets: np.ndarray, ridge: float = 0.0) -> np.ndarray:
    """Least-squares affine map from features (N, D) to targets (N, M): weights (D + 1, M), the last row the bias.

    Each target column is fitted on the rows where it is finite. ``ridge`` > 0 adds ridge ** 2 * |W|^2 (bias not
    penalised) for nearly collinear features.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(20, 3)); y = x @ np.ones((3, 2)) + 5
        >>> np.allclose(fit_linear_regressor(x, y)[-1], 5)
        True
    """
    features = np.asarray(features, np.float64)
    targets = np.asarray(targets, np.float64)
    if features.ndim != 2 or targets.ndim != 2 or len(features) != len(targets):
        raise KeyheadError(f"regressor: features {features.shape} and targets {targets.shape} must be (N, D), (N, M)")
    design = np.concatenate([features, np.ones((len(features), 1))], axis=1)
    weights = np.full((design.shape[1], targets.shape[1]), np.nan)
    for m in range(targets.shape[1]):
        rows = np.isfinite(targets[:, m]) & np.isfinite(design).all(1)
        if rows.sum() < 2:
            continue
        a, b = design[rows], targets[rows, m]
        if ridge > 0:
            reg = ridge * np.eye(a.shape[1])[:-1]
            a, b = np.concatenate([a, reg]), np.concatenate([b, np.zeros(len(reg))])
        weights[:, m] = np.linalg.lstsq(a, b, rcond=None)[0]
    return weights


def predict_linear(features: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Apply :func:`fit_linear_regressor`'s weights: (N, D) -> (N, M)."""
    return np.concatenate([features, np.ones((len(features), 1))], axis=1) @ weights


def regression_errors(
    train_features: np.ndarray,
    train_landmarks: np.ndarray,
    test_features: np.ndarray,
    test_landmarks: np.ndarray,
    ridge: float = 0.0,
) -> dict[str, float | int | str]:
    """Fit on the training frames, report errors on the held-out frames (and on the training frames).

    Args:
        train_features, test_features: (N, D) detector features.
        train_landmarks, test_landmarks: (N, M, 2) landmarks in original pixels (x, y), NaN where missing.
        ridge: see :func:`fit_linear_regressor`.

    Returns:
        {"pixel_error" (held-out mean Euclidean px), "rmse_px", "median_px", "nme" (percent of the normaliser),
        "normalizer", "train_pixel_error", "n_train", "n_test", "n_features"}.
    """
    m = train_landmarks.shape[1]
    weights = fit_linear_regressor(train_features, train_landmarks.reshape(len(train_landmarks), -1), ridge)
    out: dict[str, float | int | str] = {}
    for split, feats, truth in (("", test_features, test_landmarks), ("train_", train_features, train_landmarks)):
        pred = predict_linear(feats, weights).reshape(len(feats), m, 2)
        err = np.linalg.norm(pred - truth, axis=-1)
        ok = np.isfinite(err)
        if not ok.any():
            raise KeyheadError("regressor: no labelled landmarks among the held-out frames; use more frames")
        out[f"{split}pixel_error"] = float(err[ok].mean())
        if split == "":
            out["rmse_px"] = float(np.sqrt((err[ok] ** 2).mean()))
            out["median_px"] = float(np.median(err[ok]))
            norm_name = "interocular" if m == 68 else "bbox_diagonal"
            norm = np.asarray(interocular(truth) if m == 68 else bbox_diagonal(truth), np.float64)
            rel = err / np.where(norm > 0, norm, np.nan)[:, None]
            finite = rel[ok & np.isfinite(rel)]
            out["nme"] = float(finite.mean() * 100) if finite.size else float("nan")
            out["normalizer"] = norm_name
    out.update(n_train=len(train_features), n_test=len(test_features), n_features=int(train_features.shape[1]))
    return out
