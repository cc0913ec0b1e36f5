"""Multi-animal metrics against hand-computed cases: OKS, matching, COCO mAP, CLEAR MOT and IDF1."""

from __future__ import annotations

import math

import numpy as np
import pytest

from keyhead.errors import KeyheadError
from keyhead.multimetrics import (
    DEFAULT_SIGMA,
    default_sigmas,
    instance_distances,
    instance_errors,
    keypoint_areas,
    match_instances,
    oks,
    oks_map,
    optimal_assignment,
    tracking_metrics,
)

NAN = np.nan
# a 2-keypoint truth whose bounding box is 10 x 10 px: with sigma 0.025, e = d^2 / 0.0025 / 100 / 2 = 2 d^2
GT = np.array([[[0.0, 0.0], [10.0, 10.0]]])


def shifted(inst: np.ndarray, dx: float, dy: float = 0.0) -> np.ndarray:
    return inst + np.array([dx, dy])


# --- OKS -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "expected"),
    [
        pytest.param(GT, 1.0, id="exact"),
        pytest.param(np.array([[[0.0, 0.0], [11.0, 10.0]]]), (1 + math.exp(-2.0)) / 2, id="one-px-off"),
        pytest.param(np.array([[[0.0, 1.0], [10.0, 9.0]]]), math.exp(-2.0), id="both-one-px-off"),
        pytest.param(np.array([[[0.0, 0.0], [NAN, NAN]]]), 0.5, id="missing-prediction-scores-zero"),
    ],
)
def test_oks_hand_checked(pred, expected):
    assert oks(pred, GT)[0, 0] == pytest.approx(expected, rel=1e-12)


def test_oks_counts_only_labelled_truth_keypoints_and_takes_sigmas_and_areas():
    gt = np.array([[[0.0, 0.0], [10.0, 10.0], [NAN, NAN]]])
    pred = np.array([[[0.0, 0.0], [11.0, 10.0], [500.0, 500.0]]])  # the unlabelled third keypoint is ignored
    assert oks(pred, gt)[0, 0] == pytest.approx((1 + math.exp(-2.0)) / 2)
    # e = 1 / (2 * 0.05)^2 / 400 / 2 = 1 / 8
    got = oks(pred, gt, sigmas=[0.05, 0.05, 0.05], areas=[400.0])[0, 0]
    assert got == pytest.approx((1 + math.exp(-1 / 8)) / 2)


def test_oks_matrix_shape_and_unlabelled_truth():
    gt = np.concatenate([GT, np.full((1, 2, 2), NAN)])
    pred = np.stack([GT[0], shifted(GT[0], 100.0), shifted(GT[0], 1.0)])
    s = oks(pred, gt)
    assert s.shape == (3, 2)
    assert np.isnan(s[:, 1]).all()
    assert s[0, 0] == 1.0 and s[1, 0] == pytest.approx(0.0, abs=1e-12) and s[2, 0] == pytest.approx(math.exp(-2))
    assert oks(np.empty((0, 2, 2)), GT).shape == (0, 1)
    assert oks(GT, []).shape == (1, 0)


def test_defaults():
    np.testing.assert_array_equal(default_sigmas(3), [DEFAULT_SIGMA] * 3)
    areas = keypoint_areas(np.array([[[0, 0], [4, 2], [NAN, 9]], [[NAN, NAN], [NAN, NAN], [NAN, NAN]]]))
    np.testing.assert_array_equal(areas, [8.0, NAN])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"sigmas": [0.1]}, "sigmas", id="sigmas-wrong-length"),
        pytest.param({"areas": [1.0, 2.0]}, "areas", id="areas-wrong-length"),
    ],
)
def test_oks_bad_input(kwargs, match):
    with pytest.raises(KeyheadError, match=match):
        oks(GT, GT, **kwargs)


def test_bad_shapes_raise():
    with pytest.raises(KeyheadError, match=r"\(N, K, 2\)"):
        oks(np.zeros((2, 2)), GT)
    with pytest.raises(KeyheadError, match="keypoints"):
        instance_distances(np.zeros((1, 3, 2)), GT)


# --- matching and instance errors -------------------------------------------------------------------------


def test_instance_distances_use_shared_keypoints():
    pred = np.array([[[3.0, 4.0], [NAN, NAN]], [[NAN, NAN], [NAN, NAN]]])
    gt = np.array([[[0.0, 0.0], [1.0, 1.0]], [[NAN, NAN], [5.0, 5.0]]])
    d = instance_distances(pred, gt)
    assert d[0, 0] == 5.0
    assert np.isnan(d[0, 1]) and np.isnan(d[1]).all()  # no keypoint in common


def test_match_instances_recovers_a_permutation():
    gt = np.stack([shifted(GT[0], 100.0 * i) for i in range(4)])
    perm = np.array([2, 0, 3, 1])
    pi, gi = match_instances(gt[perm] + 0.5, gt)
    np.testing.assert_array_equal(gi, perm[pi])


def test_match_instances_prefers_more_matches_then_max_distance():
    gt = np.array([[[0.0, 0.0]], [[10.0, 0.0]]])
    pred = np.array([[[9.0, 0.0]], [[20.0, 0.0]]])  # nearest pairing would leave pred 1 out
    pi, gi = match_instances(pred, gt)
    assert list(zip(pi.tolist(), gi.tolist(), strict=True)) == [(0, 0), (1, 1)]
    pi, gi = match_instances(pred, gt, max_distance=5.0)
    assert list(zip(pi.tolist(), gi.tolist(), strict=True)) == [(0, 1)]


def test_match_instances_never_pairs_without_shared_keypoints():
    pred = np.array([[[NAN, NAN], [1.0, 1.0]]])
    gt = np.array([[[0.0, 0.0], [NAN, NAN]]])
    assert match_instances(pred, gt)[0].size == 0
    assert match_instances([], gt)[0].size == 0


def test_optimal_assignment_all_infeasible():
    rows, cols = optimal_assignment(np.full((2, 3), np.inf))
    assert rows.size == cols.size == 0


def test_instance_errors_hand_checked():
    gt0 = np.array([[[0.0, 0.0], [10.0, 0.0]], [[100.0, 0.0], [110.0, 0.0]]])
    pred0 = np.array([[[103.0, 4.0], [110.0, 1.0]], [[0.0, 2.0], [NAN, NAN]], [[500.0, 500.0], [510.0, 500.0]]])
    gt1 = np.array([[[0.0, 0.0], [NAN, NAN]], [[NAN, NAN], [NAN, NAN]]])  # one labelled animal + padding
    preds, gts = [pred0, np.empty((0, 2, 2))], [gt0, gt1]
    r = instance_errors(preds, gts, max_distance=50.0)
    # frame 0: pred 0 <-> gt 1 (errors 5, 1), pred 1 <-> gt 0 (error 2), pred 2 too far; frame 1: one miss
    assert (r["n_frames"], r["n_gt"], r["n_pred"]) == (2, 3, 3)
    assert (r["n_matched"], r["n_missed"], r["n_false"]) == (2, 1, 1)
    assert r["mean_px"] == pytest.approx(8 / 3)
    assert r["median_px"] == 2.0
    assert r["per_keypoint_px"] == pytest.approx([3.5, 1.0])
    no_limit = instance_errors(preds, gts)
    assert no_limit["n_matched"] == 2 and no_limit["n_false"] == 1  # 3 preds for 2 truths


def test_instance_errors_nothing_to_score():
    r = instance_errors([[]], [[]])
    assert r["n_gt"] == r["n_matched"] == 0 and math.isnan(r["mean_px"])
    with pytest.raises(KeyheadError, match="frames"):
        instance_errors([GT, GT], [GT])


# --- COCO keypoint mAP ------------------------------------------------------------------------------------

AP_HIT = (51 + 50 * 2 / 3) / 101  # TP, FP, TP: precision 1 up to recall 0.5 (51 points), 2/3 above (50 points)
AP_MISS = 51 / 101  # TP, FP, FP: precision 1 up to recall 0.5, nothing above


def gt_pair() -> np.ndarray:
    return np.stack([GT[0], shifted(GT[0], 100.0, 100.0)])


def pred_with_oks(target: float, base: np.ndarray) -> np.ndarray:
    """``base`` with its second keypoint moved so that OKS = target (area 100, sigma 0.025: e = 2 d^2)."""
    d = math.sqrt(-math.log(2 * target - 1) / 2)
    out = base.copy()
    out[1, 0] += d
    return out


def test_map_is_one_for_perfect_predictions():
    gts = [gt_pair(), np.empty((0, 2, 2)), np.concatenate([GT, np.full((1, 2, 2), NAN)])]  # padding is ignored
    preds = [g[np.isfinite(g).all((1, 2))] for g in gts]
    scores = [np.linspace(1, 0.5, len(p)) for p in preds]
    r = oks_map(preds, scores, gts)
    assert r["mAP"] == 1.0 and r["AP50"] == 1.0 and r["AP75"] == 1.0 and r["AR"] == 1.0
    assert r["n_gt"] == 3 and r["n_pred"] == 3
    assert r["thresholds"] == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]


def test_map_hand_computed_partial_case():
    gt = gt_pair()
    p2 = pred_with_oks(0.72, gt[1])
    assert oks(p2[None], gt[1:])[0, 0] == pytest.approx(0.72)
    preds = np.stack([gt[0], shifted(gt[0], 300.0), p2])  # exact, far away (a false positive), OKS 0.72
    r = oks_map([preds], [np.array([0.9, 0.8, 0.7])], [gt])
    # the third detection is a hit at OKS 0.50 .. 0.70 (5 thresholds), a false positive at 0.75 .. 0.95
    np.testing.assert_allclose(r["AP"], [AP_HIT] * 5 + [AP_MISS] * 5)
    assert r["mAP"] == pytest.approx((AP_HIT + AP_MISS) / 2)
    assert r["AP50"] == pytest.approx(AP_HIT) and r["AP75"] == pytest.approx(AP_MISS)
    assert r["AR"] == pytest.approx(0.75)
    np.testing.assert_allclose(r["recall"], [1.0] * 5 + [0.5] * 5)


def test_map_matches_greedily_by_score():
    """COCOeval lets the higher-scoring detection take the truth even when a lower-scoring one fits better."""
    gt = GT.copy()
    preds = np.stack([pred_with_oks(0.82, gt[0]), gt[0]])
    r = oks_map([preds], [np.array([0.9, 0.5])], [gt])
    # OKS 0.50 .. 0.80: TP then FP -> AP 1; 0.85 .. 0.95: FP then TP -> precision 1/2 at every recall
    np.testing.assert_allclose(r["AP"], [1.0] * 7 + [0.5] * 3)
    assert r["mAP"] == pytest.approx(0.85)
    assert r["AR"] == 1.0


def test_map_sorts_scores_across_frames_and_caps_detections():
    gt = GT.copy()
    far = shifted(gt[0], 500.0)[None]
    # frame 0's false positive outranks frame 1's hit: FP, TP, TP -> precision 1/2 at recall 1/2, 2/3 at 1
    r = oks_map([np.concatenate([gt, far]), gt], [np.array([0.5, 0.95]), np.array([0.9])], [gt, gt])
    assert r["AP50"] == pytest.approx((51 * 2 / 3 + 50 * 2 / 3) / 101)
    capped = oks_map([np.concatenate([far, gt])], [np.array([0.9, 0.8])], [gt], max_detections=1)
    assert capped["AP50"] == 0.0 and capped["n_pred"] == 1


def test_map_without_truth_is_nan_and_bad_scores_raise():
    r = oks_map([GT], [np.array([1.0])], [np.empty((0, 2, 2))])
    assert math.isnan(r["mAP"]) and math.isnan(r["AR"])
    with pytest.raises(KeyheadError, match="scores of frame 0"):
        oks_map([GT], [np.array([1.0, 2.0])], [GT])
    with pytest.raises(KeyheadError, match="areas of frame 0"):
        oks_map([GT], [np.array([1.0])], [GT], areas=[np.array([1.0, 2.0])])


# --- tracking: CLEAR MOT and IDF1 -------------------------------------------------------------------------

A = np.array([[0.0, 0.0], [10.0, 0.0]])  # two animals 100 px apart; predictions are 5 px off ((3, 4))
B = A + np.array([0.0, 100.0])
OFF = np.array([3.0, 4.0])


def frame(ids: list[int], poses: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return np.array(ids, dtype=np.int64), np.array(poses, dtype=np.float64).reshape(len(ids), 2, 2)


def switched_sequence() -> tuple[list, list]:
    """6 frames; predicted ids 1/2 follow truths 10/20, then swap from frame 4; a miss and a false positive."""
    gt = [frame([10, 20], [A, B]) for _ in range(6)]
    pred = []
    for t in range(6):
        ids = [1, 2] if t < 4 else [2, 1]
        poses = [A + OFF, B + OFF]
        if t == 1:
            ids, poses = [1], [A + OFF]  # truth 20 is missed
        if t == 5:
            ids, poses = [*ids, 3], [*poses, A + 500.0]  # an invented animal
        pred.append(frame(ids, poses))
    return pred, gt


def test_tracking_metrics_hand_computed():
    pred, gt = switched_sequence()
    m = tracking_metrics(pred, gt, threshold=10.0)
    assert (m["num_gt"], m["num_pred"], m["num_matches"]) == (12, 12, 11)
    assert (m["num_switches"], m["num_misses"], m["num_false_positives"]) == (2, 1, 1)
    assert m["mota"] == pytest.approx(1 - 4 / 12)
    assert m["motp"] == pytest.approx(5.0)
    # global assignment 10 <-> 1 (frames 0-3) and 20 <-> 2 (frames 0, 2, 3): IDTP 7 of 12 on each side
    assert (m["idtp"], m["idfp"], m["idfn"]) == (7, 5, 5)
    assert (
        m["idf1"] == pytest.approx(14 / 24) and m["idp"] == pytest.approx(7 / 12) and m["idr"] == pytest.approx(7 / 12)
    )
    assert (m["num_gt_tracks"], m["num_pred_tracks"], m["num_frames"]) == (2, 3, 6)


def test_tracking_metrics_perfect_and_threshold():
    gt = [frame([0, 1], [A, B]) for _ in range(3)]
    pred = [frame([5, 6], [A + OFF, B + OFF]) for _ in range(3)]
    m = tracking_metrics(pred, gt, threshold=5.0)
    assert m["mota"] == 1.0 and m["idf1"] == 1.0 and m["num_switches"] == 0 and m["motp"] == 5.0
    tight = tracking_metrics(pred, gt, threshold=4.9)  # nothing within 4.9 px: every truth missed
    assert tight["num_misses"] == 6 and tight["num_false_positives"] == 6 and tight["mota"] == -1.0
    assert tight["idf1"] == 0.0 and math.isnan(tight["motp"])


def test_tracking_metrics_keeps_last_frames_correspondence():
    """CLEAR MOT keeps a still-valid match from the previous frame even where Hungarian would swap."""
    gt = [frame([0, 1], [A, A + 4.0]), frame([0, 1], [A, A + 4.0])]
    pred = [frame([7, 8], [A, A + 4.0]), frame([7, 8], [A + 3.0, A - 0.5])]
    m = tracking_metrics(pred, gt, threshold=7.0)  # Hungarian alone would pair 7 with 1 and 8 with 0
    assert m["num_switches"] == 0 and m["num_matches"] == 4


def test_tracking_metrics_ignores_padding_and_negative_ids():
    gt = [frame([0, -1, 1], [A, B + 50.0, np.full((2, 2), NAN)])]
    pred = [frame([-1, 4], [A, A])]
    m = tracking_metrics(pred, gt, threshold=1.0)
    assert (m["num_gt"], m["num_pred"], m["num_matches"]) == (1, 1, 1)


@pytest.mark.parametrize(
    ("pred", "gt", "threshold", "match"),
    [
        pytest.param([frame([0, 0], [A, B])], [frame([0], [A])], 1.0, "twice", id="duplicate-id"),
        pytest.param([frame([0], [A])], [frame([0], [A])], 0.0, "threshold", id="zero-threshold"),
        pytest.param([frame([0], [A])], [frame([0], [A])] * 2, 1.0, "frames", id="frame-count"),
        pytest.param([(np.array([0, 1]), A[None])], [frame([0], [A])], 1.0, "ids", id="ids-shape"),
        pytest.param([A], [frame([0], [A])], 1.0, r"pred_tracks\[0\]", id="not-a-pair"),
    ],
)
def test_tracking_metrics_bad_input(pred, gt, threshold, match):
    with pytest.raises(KeyheadError, match=match):
        tracking_metrics(pred, gt, threshold)
