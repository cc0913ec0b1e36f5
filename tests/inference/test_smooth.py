"""Confidence-aware temporal smoothing: noise falls, low-confidence gaps are interpolated, CSVs round-trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from keyhead.cli import main
from keyhead.errors import KeyheadError
from keyhead.inference.smoothing import savgol_smooth, smooth_predictions, smooth_trajectories
from keyhead.io.predictions import read_prediction_table, write_prediction_table

T = 300
GAP = slice(120, 135)


def trajectory(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two keypoints on smooth paths, 2 px noise, and a 15-frame low-confidence stretch of +40 px outliers."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)
    truth = np.stack(
        [
            np.stack([100 + 30 * np.sin(t / 15), 80 + 20 * np.cos(t / 11)], -1),
            np.stack([50 + 0.2 * t, 60 + 10 * np.sin(t / 25)], -1),
        ],
        axis=1,
    )
    noisy = truth + rng.normal(0, 2.0, truth.shape)
    conf = np.clip(rng.normal(0.9, 0.05, (T, 2)), 0, 1)
    noisy[GAP] += 40.0
    conf[GAP] = 0.1
    noisy[200, 1] = np.nan  # a missing point
    return truth, noisy, conf


def err(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a - b, axis=-1)


@pytest.mark.parametrize("method", ["kalman", "savgol"])
def test_noise_falls_and_gap_is_interpolated(method: str):
    truth, noisy, conf = trajectory()
    smoothed = smooth_trajectories(noisy, conf, method, min_confidence=0.5)
    good = np.ones(T, bool)
    good[GAP] = False
    before = np.nanmean(err(noisy, truth)[good])
    after = np.mean(err(smoothed, truth)[good])
    assert np.isfinite(smoothed).all()
    assert after < 0.6 * before  # ~2.5 px -> ~1 px
    assert err(noisy, truth)[GAP].min() > 35  # the outliers ...
    assert err(smoothed, truth)[GAP].max() < 10  # ... are replaced by interpolation
    assert err(smoothed, truth)[200, 1] < 5


def test_confidence_is_respected():
    """Without the threshold, low-confidence outliers still pull the Kalman track less than confident ones."""
    truth, noisy, conf = trajectory()
    weighted = smooth_trajectories(noisy, conf, "kalman", min_confidence=0.0)
    trusted = smooth_trajectories(noisy, np.full_like(conf, 0.9), "kalman", min_confidence=0.0)
    assert err(weighted, truth)[GAP].mean() < 0.5 * err(trusted, truth)[GAP].mean()


def test_savgol_parameters_and_long_gaps():
    z = np.arange(30, dtype=float)[:, None]
    c = np.ones_like(z)
    c[5:20] = 0.0  # longer than the window: linear interpolation between smoothed frames
    out = savgol_smooth(z, c, window=5, order=2)
    np.testing.assert_allclose(out[:, 0], z[:, 0], atol=1e-6)  # a line is kept exactly
    with pytest.raises(KeyheadError, match="window"):
        savgol_smooth(z, c, window=4)


def test_csv_round_trip_and_cli(tmp_path: Path):
    truth, noisy, conf = trajectory()
    src = write_prediction_table(tmp_path / "vid.csv", [str(i) for i in range(T)], ["a", "b"], noisy, conf, "me")
    main(["smooth", str(src), "--method", "kalman", "--min-confidence", "0.5"])
    rows, names, xy, lik, scorer = read_prediction_table(tmp_path / "vid_smoothed.csv")
    assert rows == [str(i) for i in range(T)] and names == ["a", "b"] and scorer == "me"
    np.testing.assert_allclose(lik, conf.astype(np.float32), rtol=1e-6)  # the likelihood is kept
    assert np.mean(err(xy, truth)) < 1.5
    out = smooth_predictions(src, tmp_path / "s.csv", "savgol", 0.5, window=11, order=3)
    assert read_prediction_table(out)[2].shape == (T, 2, 2)
    with pytest.raises(KeyheadError, match="choose"):
        smooth_predictions(src, tmp_path / "x.csv", method="median")
    with pytest.raises(KeyheadError, match="replace the input"):
        smooth_predictions(src, src)
    (tmp_path / "bad.csv").write_text("scorer,a\nbodyparts,n\ncoords,x\n0,1\n")
    with pytest.raises(KeyheadError, match="no y column"):
        read_prediction_table(tmp_path / "bad.csv")
