"""Reliability bins, the confidence AUROC at 5 % of the normaliser, and the diagnostic plots."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from keyhead.errors import KeyheadError
from keyhead.evaluation.evaluate import AUROC_THRESHOLD, confidence_errors, evaluate_frames
from keyhead.metrics import reliability_bins
from keyhead.report.diagnostics import plot_curves, plot_heatmap_panels, plot_overlay_grid, plot_reliability
from keyhead.types import Keypoints, LabeledFrames


def test_reliability_bins_counts_accuracy_and_ece():
    conf = np.array([[0.05, 0.15, 0.95, 0.92, np.nan], [0.55, 0.99, 0.91, 0.5, 0.3]])
    err = np.array([[0.2, 0.01, 0.01, 0.02, 0.0], [0.03, 0.2, np.inf, np.nan, 0.1]])
    bins = reliability_bins(conf, err, threshold=0.05, n_bins=10)
    assert bins["edges"][0] == 0.0 and bins["edges"][-1] == 1.0 and len(bins["edges"]) == 11
    assert sum(bins["count"]) == 8  # NaN confidence and NaN error are left out
    assert bins["count"][0] == 1 and bins["count"][1] == 1 and bins["count"][9] == 4
    assert bins["count"][4] == 0 and bins["accuracy"][4] is None  # its only entry (0.5) has no truth
    # top bin: 0.95 ok, 0.92 ok, 0.99 wrong, 0.91 missed (inf: wrong, left out of the mean error)
    assert bins["accuracy"][9] == pytest.approx(0.5)
    assert bins["mean_error"][9] == pytest.approx((0.01 + 0.02 + 0.2) / 3)
    assert bins["mean_confidence"][9] == pytest.approx((0.95 + 0.92 + 0.99 + 0.91) / 4)
    expected_ece = (
        abs(0.0 - 0.05) + abs(1.0 - 0.15) + abs(0.0 - 0.3) + abs(1.0 - 0.55) + 4 * abs(0.5 - bins["mean_confidence"][9])
    ) / 8
    assert bins["ece"] == pytest.approx(expected_ece)


def test_reliability_bins_perfectly_calibrated_has_zero_ece():
    rng = np.random.default_rng(0)
    # every keypoint in bin b has confidence 0.1 b + 0.05 and a fraction 0.1 b + 0.05 of them are right
    conf, err = [], []
    for b in range(10):
        p = 0.1 * b + 0.05
        n_ok = round(p * 200)
        conf += [p] * 200
        err += [0.0] * n_ok + [1.0] * (200 - n_ok)
    order = rng.permutation(len(conf))
    bins = reliability_bins(np.array(conf)[order], np.array(err)[order], 0.05)
    assert bins["ece"] == pytest.approx(0.0, abs=1e-12)
    assert bins["count"] == [200] * 10


def test_reliability_bins_shape_mismatch_is_an_error():
    with pytest.raises(KeyheadError, match="must match"):
        reliability_bins(np.zeros((2, 3)), np.zeros((3, 2)), 0.05)


class _StubModel(torch.nn.Module):
    """Predicts fixed keypoints (input pixels) with fixed confidences, whatever the image."""

    def __init__(self, xy: np.ndarray, conf: np.ndarray, size: int) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.xy, self.conf = torch.tensor(xy, dtype=torch.float32), torch.tensor(conf, dtype=torch.float32)
        self.input_size = (size, size)
        self.backbone = type("B", (), {"in_channels": 3})()
        self.head = type("H", (), {"num_keypoints": xy.shape[0]})()

    def frame_offsets(self) -> list[int]:
        return [0]

    def predict(self, x: torch.Tensor) -> Keypoints:
        return Keypoints(self.xy.expand(len(x), -1, -1).clone(), self.conf.expand(len(x), -1).clone())


def test_confidence_auroc_flags_errors_above_5_percent_of_the_normaliser(tmp_path):
    # a-b are 100 px apart (the normaliser "a,b"): errors of 4 px are good, 6 px bad at 5 %; e-f are 199 px apart.
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((200, 200, 3), np.uint8))
    true = np.array([[[50.0, 100.0], [150.0, 100.0], [100.0, 50.0], [100.0, 150.0], [0.0, 100.0], [199.0, 100.0]]])
    frames = LabeledFrames(tmp_path, ["a.png"], true, list("abcdef"))
    pred = true[0] + np.array([[4.0, 0.0], [0.0, 6.0], [0.0, -4.0], [6.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    conf = np.array([0.95, 0.25, 0.85, 0.35, 0.5, 0.5])  # confident exactly where the error is small
    metrics, _ = evaluate_frames(_StubModel(pred, conf, 200), frames, {"test": [0]}, nme_normalizer="a,b")
    assert AUROC_THRESHOLD == 0.05
    assert metrics["test"]["confidence_auroc"] == 1.0
    assert metrics["test"]["nme"] == pytest.approx(100 * 20 / 6 / 100)
    rel = metrics["test"]["reliability"]
    assert sum(rel["count"]) == 6 and rel["accuracy"][9] == 1.0 and rel["accuracy"][2] == 0.0
    inverted = evaluate_frames(_StubModel(pred, 1 - conf, 200), frames, {"test": [0]}, nme_normalizer="a,b")[0]
    assert inverted["test"]["confidence_auroc"] == 0.0
    rel_err, unit = confidence_errors(frames, [0], pred[None], "a,b")
    assert unit == "x a-b" and np.nanmax(rel_err) == pytest.approx(0.06)
    # with the 199 px normaliser every error is below 5 %: no bad keypoint, so no AUROC (None, not a number)
    wide = evaluate_frames(_StubModel(pred, conf, 200), frames, {"test": [0]}, nme_normalizer="e,f")[0]["test"]
    assert wide["confidence_auroc"] is None


def test_plot_reliability_writes_png(tmp_path):
    rng = np.random.default_rng(1)
    conf = rng.random((20, 5))
    err = np.abs(rng.normal(0, 0.1 * (1.1 - conf)))
    path = plot_reliability(conf, err, tmp_path / "r.png", auroc=0.8, title="t")
    assert path.is_file() and path.stat().st_size > 10_000
    assert plot_reliability(np.full((2, 2), np.nan), np.zeros((2, 2)), tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_plot_heatmap_panels_and_errors(tmp_path):
    maps = np.random.default_rng(0).random((5, 8, 8))
    path = plot_heatmap_panels(np.zeros((32, 32, 1), np.uint8), maps, tmp_path / "h.png", maps, stride=4)
    assert path.is_file()
    path = plot_heatmap_panels(np.zeros((32, 32)), maps, tmp_path / "p.png", keypoints=[0, 4], names=list("abcde"))
    assert path.is_file()
    with pytest.raises(KeyheadError, match="target_maps shape"):
        plot_heatmap_panels(np.zeros((32, 32)), maps, tmp_path / "x.png", maps[:2])
    with pytest.raises(KeyheadError, match="out of range"):
        plot_heatmap_panels(np.zeros((32, 32)), maps, tmp_path / "x.png", keypoints=[7])


def test_plot_curves_and_overlay_grid(tmp_path):
    hist = [
        {"epoch": e, "train_loss": 1.0 / (e + 1), "val_pixel_error": 10 - e, "elapsed_s": 3.0 * e} for e in range(4)
    ]
    assert plot_curves({"a": hist, "b": hist[:2], "empty": []}, tmp_path / "c.png").is_file()
    assert plot_curves({"empty": []}, tmp_path / "none.png") is None
    img = np.zeros((50, 60, 3), np.uint8)
    true = np.array([[10.0, 10.0], [40.0, 30.0], [math.nan, math.nan]])
    grid = plot_overlay_grid(
        [img, img], [true, true], {"m1": [true + 1, true - 1], "m2": [true, true]}, tmp_path / "o.png"
    )
    assert grid.is_file()
    with pytest.raises(KeyheadError, match="same frames"):
        plot_overlay_grid([img], [true], {"m1": [true, true]}, tmp_path / "bad.png")
