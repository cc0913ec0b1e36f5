"""Confidence calibration: the isotonic fit, the map in torch and NumPy, and the real path (train -> evaluate ->
calibration.json -> every prediction calibrated)."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch

from keyhead.config import TrainConfig
from keyhead.errors import KeyheadError
from keyhead.metrics import reliability_bins
from keyhead.models.calibration import ConfidenceCalibration, isotonic_fit, load_calibration, platt_fit


def _brute_isotonic(y: np.ndarray) -> np.ndarray:
    """Least-squares non-decreasing fit by brute force over the block structure (small n): the reference."""
    n = len(y)
    best, best_cost = None, np.inf
    for mask in range(1 << (n - 1)):
        cuts = [0] + [i + 1 for i in range(n - 1) if mask >> i & 1] + [n]
        fit = np.concatenate([np.full(b - a, y[a:b].mean()) for a, b in pairwise(cuts)])
        if np.all(np.diff(fit) >= -1e-12):
            cost = ((fit - y) ** 2).sum()
            if cost < best_cost - 1e-12:
                best, best_cost = fit, cost
    return best


@pytest.mark.parametrize("seed", range(5))
def test_isotonic_fit_is_the_least_squares_monotone_fit(seed: int):
    rng = np.random.default_rng(seed)
    x = rng.random(9)
    y = (rng.random(9) < x).astype(float)
    xs, fitted = isotonic_fit(x, y)
    assert np.all(np.diff(xs) >= 0) and np.all(np.diff(fitted) >= 0)
    np.testing.assert_allclose(fitted, _brute_isotonic(y[np.argsort(x, kind="stable")]), atol=1e-12)


def test_calibration_makes_overconfident_scores_honest_and_keeps_the_ranking():
    rng = np.random.default_rng(0)
    truth = rng.random(4000)  # the real probability of being right
    conf = truth**0.25  # an over-confident score: 0.84 where the truth is 0.5
    right = rng.random(4000) < truth
    err = np.where(right, 0.0, 1.0)
    cal = ConfidenceCalibration.fit(conf[:2000], right[:2000])
    raw_ece = reliability_bins(conf[2000:], err[2000:], 0.5)["ece"]
    cal_ece = reliability_bins(cal.numpy(conf[2000:]), err[2000:], 0.5)["ece"]
    assert raw_ece > 0.2 and cal_ece < 0.05, (raw_ece, cal_ece)
    mapped = cal.numpy(np.sort(conf))
    assert np.all(np.diff(mapped) > 0)  # strictly increasing: the AUROC's ranking kept
    # torch (the model's decode, ONNX-exportable ops) and NumPy give the same map
    c = torch.linspace(0, 1, 101)
    np.testing.assert_allclose(cal(c).numpy(), cal.numpy(c.numpy()), atol=1e-6)


@pytest.mark.parametrize("method", ["isotonic", "platt"])
@pytest.mark.parametrize("seed", range(3))
def test_a_map_fitted_on_few_points_keeps_the_ranking_exactly(seed: int, method: str):
    """Fitted on 40 validation keypoints (a small project's val split), the isotonic fit has long flat steps; the map
    must still be strictly increasing, so every keypoint's rank, and the AUROC, are the raw confidence's."""
    from keyhead.metrics import confidence_auroc

    rng = np.random.default_rng(seed)
    truth = rng.random(440)  # 40 to fit on, 400 to test on
    conf = truth**0.5
    err = np.where(rng.random(440) < truth, 0.0, 1.0)
    cal = ConfidenceCalibration.fit(conf[:40], err[:40] == 0, method=method)
    assert cal.info["method"] == method and np.all(np.diff(cal.values) > 0)
    test_conf, test_err = conf[40:].astype(np.float32), err[40:]
    assert confidence_auroc(cal.numpy(test_conf), test_err, 0.5) == confidence_auroc(test_conf, test_err, 0.5)
    c = torch.as_tensor(np.sort(test_conf))
    assert torch.all(torch.diff(cal(c)) >= 0) and len(torch.unique(cal(c))) == len(torch.unique(c))


def test_platt_fit_is_the_cross_entropy_optimum_and_recovers_the_true_map():
    """Newton with step halving: the gradient of the cross-entropy against Platt's smoothed targets is zero at the
    fit, and on 4000 points drawn from sigmoid(3 logit(c) + 1) the fit is near (3, 1)."""
    rng = np.random.default_rng(0)
    c = rng.uniform(0.01, 0.99, 4000)
    logit = np.log(c / (1 - c))
    y = rng.random(4000) < 1 / (1 + np.exp(-(3 * logit + 1)))
    a, b = platt_fit(c, y)
    assert abs(a - 3) < 0.3 and abs(b - 1) < 0.2, (a, b)
    t = np.where(y, (y.sum() + 1) / (y.sum() + 2), 1 / ((~y).sum() + 2))
    p = 1 / (1 + np.exp(-(a * logit + b)))
    np.testing.assert_allclose([((p - t) * logit).sum(), (p - t).sum()], [0, 0], atol=1e-6)
    # confidences clustered near 1 that rank nothing: a constant map, no divergence
    a, b = platt_fit(np.full(150, 0.99) - rng.random(150) * 0.02, rng.random(150) < 0.9)
    assert a >= 0 and np.isfinite(b)


def test_platt_calibrates_a_small_validation_split_better_than_the_staircase():
    """40 validation keypoints whose true map is a sigmoid of the logit (Platt's family), 2000 held out, 5 draws:
    both maps make the confidences honester than raw, Platt's two parameters more than the isotonic staircase."""
    ece = {"raw": [], "isotonic": [], "platt": []}
    for seed in range(5):
        rng = np.random.default_rng(seed)
        conf = rng.uniform(0.05, 0.95, 2040)
        truth = 1 / (1 + np.exp(-(0.6 * np.log(conf / (1 - conf)) - 0.8)))  # over-confident
        err = np.where(rng.random(2040) < truth, 0.0, 1.0)
        ece["raw"].append(reliability_bins(conf[40:], err[40:], 0.5)["ece"])
        for m in ("isotonic", "platt"):
            cal = ConfidenceCalibration.fit(conf[:40], err[:40] == 0, method=m)
            ece[m].append(reliability_bins(cal.numpy(conf[40:]), err[40:], 0.5)["ece"])
    mean = {k: float(np.mean(v)) for k, v in ece.items()}
    assert mean["platt"] < mean["isotonic"] < mean["raw"] and mean["platt"] < mean["raw"] / 2, mean
    with pytest.raises(KeyheadError, match="use auto, isotonic or platt"):
        ConfidenceCalibration.fit(conf[:40], err[:40] == 0, method="beta")


def test_auto_picks_platt_below_a_thousand_points_and_isotonic_above():
    """``auto`` (the default): Platt's two parameters where the validation split is small, the isotonic staircase
    where it has the points a free shape needs (Niculescu-Mizil and Caruana's threshold, ~1000); the choice is
    written down."""
    from keyhead.models.calibration import AUTO_ISOTONIC_FROM

    rng = np.random.default_rng(0)
    for n, chosen in ((AUTO_ISOTONIC_FROM - 1, "platt"), (AUTO_ISOTONIC_FROM, "isotonic")):
        conf = rng.random(n)
        cal = ConfidenceCalibration.fit(conf, rng.random(n) < conf, method="auto")
        assert cal.info["method"] == chosen and cal.info["requested"] == "auto" and cal.info["n_points"] == n
    assert TrainConfig().calibration == "auto"


def test_nothing_to_calibrate_against_gives_none():
    assert ConfidenceCalibration.fit(np.linspace(0, 1, 50), np.ones(50, bool)) is None
    assert ConfidenceCalibration.fit(np.linspace(0, 1, 5), np.array([0, 1, 0, 1, 1], bool)) is None  # too few


@pytest.mark.parametrize(
    "payload",
    [
        {"knots": [0, 1], "values": [0.9, 0.1]},  # decreasing
        {"knots": [0, 0.5], "values": [0.1, 0.2]},  # does not reach 1
        {"knots": [0, 1], "values": [0.1]},  # lengths differ
        {"values": [0.1, 0.2]},  # no knots
        {"knots": [0, 1], "values": [0.1, 2.0]},  # not a probability
    ],
)
def test_a_bad_calibration_file_is_a_clear_error(tmp_path: Path, payload: dict):
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(KeyheadError, match="calibration.json"):
        load_calibration(path)


def test_training_fits_it_on_val_and_every_prediction_uses_it(run_dir: Path):
    """The real path: `keyhead train` wrote calibration.json from the val split; metrics.json reports calibrated
    and raw confidence figures; load_run applies the same map the evaluation applied."""
    from keyhead.models.build import load_run

    path = run_dir / "calibration.json"
    assert path.is_file()
    cal = load_calibration(path)
    assert cal.info["fitted_on"] == "val" and cal.info["n_points"] > 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["calibration"]["fitted_on"] == "val"
    for split in metrics["splits"].values():
        assert set(split["raw_confidence"]) == {"confidence_auroc", "ece"}
    model, _ = load_run(run_dir)
    assert model.calibration is not None
    x = torch.rand(2, model.backbone.in_channels, *model.input_size)
    calibrated = model.predict(x).confidence
    model.calibration = None
    raw = model.predict(x).confidence
    np.testing.assert_allclose(calibrated.numpy(), cal.numpy(raw.numpy()), atol=1e-5)


def test_flip_tta_calibrates_the_averaged_raw_confidence_as_evaluation_does():
    from keyhead.models.model import create_model
    from keyhead.models.tta import flip_predict

    torch.manual_seed(0)
    model = create_model(num_keypoints=2, backbone="tiny", input_size=(64, 64)).eval()
    x = torch.rand(2, 3, 64, 64)
    raw = flip_predict(model, x, [(0, 1)])
    model.calibration = ConfidenceCalibration(np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.2, 1.0]))
    calibrated = flip_predict(model, x, [(0, 1)])
    assert model.calibration is not None  # put back
    torch.testing.assert_close(calibrated.xy, raw.xy)
    torch.testing.assert_close(calibrated.confidence, model.calibration(raw.confidence))


def test_the_onnx_graph_carries_the_calibration(tmp_path: Path):
    import onnxruntime as ort

    from keyhead.export.onnx import ExportedKeypointModel, export_graph
    from keyhead.models.model import create_model

    torch.manual_seed(0)
    model = create_model(num_keypoints=3, backbone="tiny", input_size=(64, 64)).eval()
    model.calibration = ConfidenceCalibration(np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.2, 1.0]))
    wrapper = ExportedKeypointModel(model)
    x = torch.rand(2, 3, 64, 64)
    export_graph(wrapper, x, tmp_path / "m.onnx", "image", ["xy", "confidence"], 18, "test model")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    _, conf = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        calibrated = wrapper(x)[1]
        model.calibration = None
        raw = wrapper(x)[1]
    np.testing.assert_allclose(conf, calibrated.numpy(), atol=1e-6)
    assert (raw - calibrated).abs().max() > 1e-3  # the map did something


def test_a_run_trained_with_the_defaults_gets_the_auto_choice(run_dir: Path):
    """The real path: `keyhead train` with the default train.calibration (auto) fits Platt on a small validation
    split, and calibration.json / metrics.json say which method auto chose."""
    cal = load_calibration(run_dir / "calibration.json")
    assert cal.info["requested"] == "auto" and cal.info["method"] == "platt" and len(cal.knots) == 201
    assert json.loads((run_dir / "metrics.json").read_text())["calibration"]["method"] == "platt"


def test_train_calibration_platt_through_keyhead_evaluate(run_copy: Path, capsys):
    """The real path: a run whose config says train.calibration: platt gets a Platt map from `keyhead evaluate`
    (calibration.json, metrics.json), and the model loaded from the run applies it."""
    import yaml

    from keyhead.models.build import load_run
    from tests.cli_helpers import cli

    cfg = yaml.safe_load((run_copy / "config.yaml").read_text())
    cfg["train"]["calibration"] = "platt"
    (run_copy / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run_copy / "calibration.json").unlink()
    code, _, err = cli(capsys, "evaluate", run_copy, "--no-progress")
    assert code == 0, err
    cal = load_calibration(run_copy / "calibration.json")
    assert cal.info["method"] == "platt" and len(cal.knots) == 201 and np.all(np.diff(cal.values) > 0)
    assert json.loads((run_copy / "metrics.json").read_text())["calibration"]["method"] == "platt"
    model, _ = load_run(run_copy)
    np.testing.assert_allclose(model.calibration.values, cal.values)
