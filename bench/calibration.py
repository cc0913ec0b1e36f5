"""Confidence calibration methods compared on finished runs: fitted on each run's validation split, judged on its test.

For every run folder given (default: the accuracy benchmark's runs, ``bench/runs/accuracy/*``), the best weights
predict the validation and test frames once with raw confidences; each method is fitted on the validation
keypoints (keyhead's rule: right when the error is at most 5 % of the frame's normaliser) and applied to the test
keypoints: ``none`` (raw), ``isotonic``, ``platt`` (Platt scaling: a logistic fit on the logit) and ``auto`` (the
default: Platt below 1000 validation keypoints, isotonic from there), each as keyhead's ``calibration.json`` stores
it (``train.calibration``). Per run and pooled over every run's test keypoints: the
expected calibration error (ECE, 10 bins), the Brier score and the AUROC.

Writes bench/results/calibration.json.

Usage:
    .venv/bin/python bench/calibration.py                                   # the accuracy benchmark's runs
    .venv/bin/python bench/calibration.py bench/runs/accuracy_lr1e-3_2026-12-06/*
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from _common import write_section

from keyhead.evaluation.evaluate import AUROC_THRESHOLD, confidence_errors, evaluate_frames, run_frames
from keyhead.metrics import confidence_auroc, reliability_bins
from keyhead.models.build import load_run
from keyhead.models.calibration import ConfidenceCalibration

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "calibration.json"
METHODS = ("none", "isotonic", "platt", "auto")


def raw_predictions(run: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Raw confidences and relative errors (error / normaliser) of the run's val and test keypoints, labelled only."""
    model, cfg = load_run(run)
    model.calibration = None
    frames, splits = run_frames(run, cfg, model.keypoint_names)
    splits = {k: v for k, v in splits.items() if k in ("val", "test")}
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
        for method in METHODS:
            cal = None if method == "none" else ConfidenceCalibration.fit(vc, vr <= AUROC_THRESHOLD, method=method)
            mapped = tc if cal is None else cal.numpy(tc)  # the map as calibration.json stores it
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
