"""Confidence calibration methods compared on finished runs: fitted on each run's validation split, judged on its test.

For every run folder given (default: the accuracy benchmark's runs, ``bench/runs/accuracy/*``), the best weights
predict the validation and test frames once with raw confidences; each method is fitted on the validation
keypoints (keyhead's rule: right when the error is at most 5 % of the frame's normaliser) and applied to the test
keypoints: ``none`` (raw), ``isotonic`` (keyhead's map as ``calibration.json`` stores it) and ``platt`` (Platt
scaling, a logistic fit on the logit, applied directly). Per run and pooled over every run's test keypoints: the
expected calibration error (ECE, 10 bins), the Brier score and the AUROC.

Writes bench/results/calibration.json.

Usage:
    .venv/bin/python bench/calibration.py                                   # the accuracy benchmark's runs
    .venv/bin/python bench/calibration.py bench/runs/accuracy_lr1e-3_2026-12-06/*
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import write_section

from keyhead.data.dataset import load_split
from keyhead.data.face import apply_crop
from keyhead.data.prepare import labels_for_model
from keyhead.evaluation.evaluate import AUROC_THRESHOLD, confidence_errors, evaluate_frames
from keyhead.metrics import confidence_auroc, reliability_bins
from keyhead.models.build import load_run
from keyhead.models.calibration import ConfidenceCalibration

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "calibration.json"
METHODS = ("none", "isotonic", "platt")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))  # no overflow for any z


def platt_fit(x: np.ndarray, y: np.ndarray, iterations: int = 50) -> tuple[float, float]:
    """Platt scaling: logistic regression of ``y`` (0/1) on logit(``x``), with Platt's smoothed targets
    ((n+ + 1) / (n+ + 2) and 1 / (n- + 2)) that keep a fit on a few dozen points from saturating.

    Two parameters instead of the isotonic fit's free staircase: the literature's choice for small calibration sets
    (Niculescu-Mizil and Caruana, 2005), measured here against keyhead's isotonic map. The slope is held at >= 0 (a
    confidence that ranks backwards gets a constant map).

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


def platt_map(confidence: np.ndarray, correct: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Platt scaling fitted on (confidence, correct), applied to new confidences directly (no knots)."""
    a, b = platt_fit(confidence, correct)

    def apply(c: np.ndarray) -> np.ndarray:
        c = np.clip(c, 1e-4, 1.0 - 1e-4)
        return _sigmoid(a * np.log(c / (1.0 - c)) + b)

    return apply


def raw_predictions(run: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Raw confidences and relative errors (error / normaliser) of the run's val and test keypoints, labelled only."""
    model, cfg = load_run(run)
    model.calibration = None
    frames = apply_crop(labels_for_model(cfg.data.path, model.keypoint_names)[0], cfg.data.crop)
    splits = {k: v for k, v in load_split(run / "split.json", frames).items() if k in ("val", "test")}
    _, preds = evaluate_frames(
        model,
        frames,
        splits,
        cfg.data.nme_normalizer,
        cfg.train.batch_size,
        crop_margin=cfg.data.crop_margin,
        context_frames=cfg.data.context_frames,
        context_video=cfg.data.context_video,
    )
    out = {}
    for name, (xy, conf) in preds.items():
        rel, _ = confidence_errors(frames, splits[name], xy, cfg.data.nme_normalizer)
        labelled = ~np.isnan(rel)
        out[name] = (conf[labelled].astype(np.float64), rel[labelled])
    return out


def scores(conf: np.ndarray, rel: np.ndarray) -> dict:
    right = rel <= AUROC_THRESHOLD
    return {
        "ece": reliability_bins(conf, rel, AUROC_THRESHOLD)["ece"],
        "brier": float(np.mean((np.clip(conf, 0, 1) - right) ** 2)),
        "auroc": confidence_auroc(conf, rel, AUROC_THRESHOLD),
        "mean_confidence": float(conf.mean()),
        "fraction_right": float(right.mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", type=Path, help="run folders (default: bench/runs/accuracy/*)")
    ap.add_argument("--section", default="accuracy_runs", help="section of calibration.json to write")
    args = ap.parse_args()
    runs = args.runs or sorted(p for p in (HERE / "runs" / "accuracy").iterdir() if (p / "metrics.json").is_file())
    if not runs:
        sys.exit("[bench] no finished runs given or found in bench/runs/accuracy")
    rows, pooled = [], {m: ([], []) for m in METHODS}
    for run in runs:
        print(f"[bench] {run}", flush=True)
        preds = raw_predictions(run)
        (vc, vr), (tc, tr) = preds["val"], preds["test"]
        row = {"run": str(run), "val_keypoints": len(vc), "test_keypoints": len(tc)}
        maps = {
            "none": lambda c: c,
            "isotonic": ConfidenceCalibration.fit(vc, vr <= AUROC_THRESHOLD).numpy,  # keyhead's (calibration.json)
            "platt": platt_map(vc, vr <= AUROC_THRESHOLD),
        }
        for method in METHODS:
            mapped = maps[method](tc)
            row[method] = scores(mapped, tr)
            pooled[method][0].append(mapped)
            pooled[method][1].append(tr)
        rows.append(row)
        line = ", ".join(f"{m} ECE {row[m]['ece']:.3f} AUROC {row[m]['auroc']:.3f}" for m in METHODS)
        print(f"[bench]   {line}", flush=True)
    payload = {
        "error_threshold": AUROC_THRESHOLD,
        "runs": rows,
        "pooled_test": {m: scores(np.concatenate(c), np.concatenate(r)) for m, (c, r) in pooled.items()},
        "mean_over_runs": {m: {k: float(np.mean([r[m][k] for r in rows])) for k in ("ece", "brier")} for m in METHODS},
    }
    write_section(RESULTS, args.section, payload)
    for m in METHODS:
        print(f"[bench] {m}: pooled {payload['pooled_test'][m]}, mean over runs {payload['mean_over_runs'][m]}")


if __name__ == "__main__":
    main()
