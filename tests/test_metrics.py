from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from keyhead.errors import KeyheadError
from keyhead.metrics import (
    auc_pck,
    bbox_diagonal,
    bbox_size,
    confidence_auroc,
    evaluate_split,
    interocular,
    mse_normalized,
    nme,
    normalized_errors,
    pck,
    pck_px,
    pixel_error,
    pixel_errors,
    rmse_px,
)

NAN = np.nan


def _pck_case() -> tuple[np.ndarray, np.ndarray]:
    # One frame, 7 keypoints along x; errors 4, 5, 10, 15, 25 px, then a labelled truth with a NaN prediction
    # (a miss) and an unlabelled truth (not judged). With normaliser 100 the relative errors are
    # 0.04, 0.05, 0.10, 0.15, 0.25, miss.
    true = np.zeros((1, 7, 2))
    true[0, 6] = NAN
    pred = np.zeros((1, 7, 2))
    pred[0, :5, 0] = [4, 5, 10, 15, 25]
    pred[0, 5] = NAN
    return pred, true


def _face(n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    true = rng.uniform(0, 200, size=(n, 68, 2))
    true[:, 36] = [50.0, 80.0]
    true[:, 45] = [130.0, 140.0]  # outer eye corners 100 px apart (60-80-100 triangle)
    pred = true + rng.normal(0, 2, size=true.shape)
    return pred, true


def test_pixel_errors_hand_values():
    pred = np.array([[[0, 0], [1, 1], [NAN, NAN], [5, 5]]], dtype=float)
    true = np.array([[[3, 4], [1, 1], [2, 2], [NAN, NAN]]], dtype=float)
    np.testing.assert_array_equal(pixel_errors(pred, true), [[5.0, 0.0, NAN, NAN]])


def test_pixel_error_is_mean_euclidean_and_rmse_is_root_mean_square():
    # errors 3 and 4 px (the NaN keypoint is ignored): mean 3.5, rmse sqrt((9 + 16) / 2) = sqrt(12.5)
    pred = np.array([[[3, 0], [0, 4], [1, 1]]], dtype=float)
    true = np.array([[[0, 0], [0, 0], [NAN, NAN]]], dtype=float)
    assert pixel_error(pred, true) == pytest.approx(3.5)
    assert rmse_px(pred, true) == pytest.approx(math.sqrt(12.5))


def test_pixel_error_with_nothing_labelled_is_nan():
    assert math.isnan(pixel_error(np.zeros((1, 2, 2)), np.full((1, 2, 2), NAN)))


def test_mse_normalized_hand_value():
    # (10 / 100, 5 / 50) = (0.1, 0.1): mean of squares (0.01 + 0.01) / 2 = 0.01; the unlabelled keypoint is ignored
    pred = np.array([[[10, 5], [99, 99]]], dtype=float)
    true = np.array([[[0, 0], [NAN, NAN]]], dtype=float)
    assert mse_normalized(pred, true, [[100, 50]]) == pytest.approx(0.01)


def test_mse_normalized_in_both_conventions():
    """[0, 1] units (x / w) and [-1, 1] units (2 x / w - 1, the units the regression heads train in): 4x apart."""
    pred = np.array([[[10, 5], [40, 20]]], dtype=float)
    true = np.array([[[0, 0], [30, 30]]], dtype=float)
    assert mse_normalized(pred, true, [[100, 50]], units="pm1") == pytest.approx(
        4 * mse_normalized(pred, true, [[100, 50]])
    )
    out = evaluate_split(pred, true, [[100, 50]], ["a", "b"])
    assert out["mse_normalized_pm1"] == pytest.approx(4 * out["mse_normalized"])
    with pytest.raises(KeyheadError, match="units"):
        mse_normalized(pred, true, [[100, 50]], units="percent")


def test_mse_normalized_rejects_bad_sizes():
    with pytest.raises(KeyheadError, match="width, height"):
        mse_normalized(np.zeros((2, 1, 2)), np.zeros((2, 1, 2)), [[100, 50]])


def test_nme_hand_value():
    # frame 0: errors 1 and 3 -> mean 2, / 10 = 0.2; frame 1: error 6 (second truth missing) / 20 = 0.3
    # NME = 100 * (0.2 + 0.3) / 2 = 25 %
    pred = np.array([[[1, 0], [0, 3]], [[6, 0], [0, 0]]], dtype=float)
    true = np.array([[[0, 0], [0, 0]], [[0, 0], [NAN, NAN]]], dtype=float)
    assert nme(pred, true, [10.0, 20.0]) == pytest.approx(25.0)


def test_nme_skips_frames_without_normaliser():
    pred = np.array([[[1, 0]], [[5, 0]]], dtype=float)
    true = np.zeros((2, 1, 2))
    assert nme(pred, true, [10.0, NAN]) == pytest.approx(10.0)


def test_interocular_on_68_point_faces():
    _, true = _face()
    np.testing.assert_allclose(interocular(true), [100.0, 100.0])
    true[1, 45] = NAN
    assert math.isnan(interocular(true)[1])


def test_interocular_needs_enough_keypoints():
    with pytest.raises(KeyheadError, match="68-point"):
        interocular(np.zeros((1, 17, 2)))


def test_bbox_normalisers_hand_values():
    # frame 0: labelled points span x 0..3, y 0..4 -> diagonal 5, sqrt(area) sqrt(12); frame 1: nothing labelled
    true = np.array([[[0, 0], [3, 4], [1, 1], [NAN, NAN]], [[NAN, NAN]] * 4], dtype=float)
    np.testing.assert_allclose(bbox_diagonal(true), [5.0, NAN])
    np.testing.assert_allclose(bbox_size(true), [math.sqrt(12), NAN])


def test_normalized_errors_mark_misses_and_unjudged():
    pred, true = _pck_case()
    rel = normalized_errors(pred, true, [100.0])
    np.testing.assert_allclose(rel, [[0.04, 0.05, 0.10, 0.15, 0.25, np.inf, NAN]])


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [
        pytest.param(0.05, 2 / 6, id="0.05-boundary-inclusive"),  # 0.04, 0.05
        pytest.param(0.1, 3 / 6, id="0.1"),  # + 0.10
        pytest.param(0.2, 4 / 6, id="0.2"),  # + 0.15; 0.25 and the miss fail
        pytest.param(1e9, 5 / 6, id="huge-miss-still-fails"),
    ],
)
def test_pck_thresholds(threshold, expected):
    pred, true = _pck_case()
    result = pck(pred, true, [100.0], thresholds=(threshold,))
    assert result == {f"{threshold:g}": pytest.approx(expected)}


def test_pck_default_keys_and_px_thresholds():
    pred, true = _pck_case()
    assert list(pck(pred, true, [100.0])) == ["0.05", "0.1", "0.2"]
    # in pixels: <= 5 -> 2/6, <= 10 -> 3/6, <= 20 -> 4/6
    assert pck_px(pred, true) == pytest.approx({"5": 2 / 6, "10": 3 / 6, "20": 4 / 6})


def test_pck_with_unjudged_frame_only_is_nan():
    pred, true = _pck_case()
    assert math.isnan(pck(pred, true, [0.0])["0.1"])


def test_auc_pck_hand_value():
    # contributions max(0, 1 - e / 0.1): 1, 0.5, 0, 0, (NaN not judged), 0 for the miss -> 1.5 / 5
    assert auc_pck([0.0, 0.05, 0.1, 0.2, NAN, np.inf], max_threshold=0.1) == pytest.approx(0.3)


def test_auc_pck_matches_integrated_pck_curve():
    errors = np.random.default_rng(3).exponential(0.05, size=200)
    grid = np.linspace(0.0, 0.2, 20001)
    curve = (errors[None, :] <= grid[:, None]).mean(1)
    numeric = float(((curve[1:] + curve[:-1]) / 2 * np.diff(grid)).sum() / 0.2)
    assert auc_pck(errors, 0.2) == pytest.approx(numeric, abs=1e-4)


def _auroc_bruteforce(conf: np.ndarray, err: np.ndarray, thr: float) -> float:
    bad = err > thr
    pos, neg = -conf[bad], -conf[~bad]
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p, q in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_confidence_auroc_hand_value_with_tie():
    # bad: conf 0.5 and 0.1; good: conf 0.9 and 0.5. Pairs (bad, good): (.5,.9) 1, (.5,.5) 0.5, (.1,.9) 1,
    # (.1,.5) 1 -> 3.5 / 4
    assert confidence_auroc([0.9, 0.5, 0.5, 0.1], [1, 10, 1, 10], 5.0) == pytest.approx(0.875)


@pytest.mark.parametrize("seed", [0, 1, 2], ids=lambda s: f"seed{s}")
def test_confidence_auroc_matches_pairwise_bruteforce(seed):
    rng = np.random.default_rng(seed)
    conf = rng.integers(0, 5, size=(6, 5)) / 4.0  # many ties
    err = rng.exponential(5.0, size=(6, 5))
    conf[0, 0] = NAN
    err[1, 1] = NAN
    ok = np.isfinite(conf) & np.isfinite(err)
    expected = _auroc_bruteforce(conf[ok], err[ok], 4.0)
    assert confidence_auroc(conf, err, 4.0) == pytest.approx(expected)
    assert confidence_auroc(conf, err, np.full(err.shape, 4.0)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("confidence", "expected"),
    [
        pytest.param([0.9, 0.8, 0.3, 0.1], 1.0, id="perfect"),  # the two bad keypoints are the least confident
        pytest.param([0.1, 0.3, 0.8, 0.9], 0.0, id="inverse"),
        pytest.param([0.5, 0.5, 0.5, 0.5], 0.5, id="all-tied"),
    ],
)
def test_confidence_auroc_rankings(confidence, expected):
    assert confidence_auroc(confidence, [1.0, 2.0, 8.0, 9.0], 5.0) == pytest.approx(expected)


def test_confidence_auroc_one_class_is_nan():
    assert math.isnan(confidence_auroc([0.1, 0.9], [1.0, 2.0], 5.0))


def _split_case() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    pred, true = _face(3)
    pred[0, 3] = NAN  # a missed prediction
    true[1, 4] = NAN  # an unlabelled truth
    true[:, 7] = NAN  # a keypoint never labelled: its per-keypoint errors are None
    conf = np.random.default_rng(1).uniform(size=(3, 68))
    return pred, true, conf, [f"kp{i}" for i in range(68)]


def test_evaluate_split_keys_and_json():
    pred, true, conf, names = _split_case()
    result = evaluate_split(pred, true, [[200, 200]] * 3, names, confidence=conf, nme_normalizer_name="interocular")
    json.dumps(result, allow_nan=False)
    assert set(result) == {
        "n_frames",
        "n_keypoints_labelled",
        "n_missing_predictions",
        "pixel_error",
        "rmse_px",
        "median_px",
        "mse_normalized",
        "mse_normalized_pm1",
        "nme",
        "pck",
        "pck_px",
        "confidence_auroc",
        "per_keypoint",
    }
    assert result["n_frames"] == 3
    assert result["n_keypoints_labelled"] == 3 * 68 - 1 - 3
    assert result["n_missing_predictions"] == 1
    assert list(result["per_keypoint"]) == names
    assert result["per_keypoint"]["kp7"]["pixel_error"] is None
    assert result["per_keypoint"]["kp7"]["pck"] == {"0.05": None, "0.1": None, "0.2": None}
    assert result["per_keypoint"]["kp3"]["n_missing_predictions"] == 1
    assert result["per_keypoint"]["kp4"]["n_labelled"] == 2
    assert result["nme"] == pytest.approx(nme(pred, true, interocular(true)))
    assert result["pixel_error"] == pytest.approx(pixel_error(pred, true))
    assert result["pck"] == pytest.approx(pck(pred, true, interocular(true)))


def test_evaluate_split_defaults_to_keypoint_bbox_diagonal_without_nme():
    pred, true, _, names = _split_case()
    result = evaluate_split(pred, true, [[200, 200]] * 3, names)
    assert "nme" not in result and "confidence_auroc" not in result
    assert result["pck"] == pytest.approx(pck(pred, true, bbox_diagonal(true)))
    json.dumps(result, allow_nan=False)


def test_evaluate_split_nothing_labelled_is_json_safe():
    result = evaluate_split(np.zeros((2, 2, 2)), np.full((2, 2, 2), NAN), [[10, 10]] * 2, ["a", "b"])
    json.dumps(result, allow_nan=False)
    assert result["pixel_error"] is None and result["pck"]["0.1"] is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"nme_normalizer_name": "interoculr"}, "did you mean 'interocular'", id="normaliser-name"),
        pytest.param({"keypoint_names": ["a"]}, "unique names", id="names"),
        pytest.param({"normalizer": [1.0]}, r"shape \(N,\)", id="normaliser-shape"),
    ],
)
def test_evaluate_split_rejects_bad_arguments(kwargs, match):
    args = {"keypoint_names": ["a", "b"], **kwargs}
    with pytest.raises(KeyheadError, match=match):
        evaluate_split(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), [[10, 10]] * 2, **args)
