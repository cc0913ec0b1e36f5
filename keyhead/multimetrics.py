"""Multi-animal metrics: OKS, optimal instance matching, COCO keypoint mAP, and tracking (CLEAR MOT, IDF1).

NumPy in, Python floats and dicts out. An instance is a (K, 2) array of (x, y) image pixels with NaN where a
keypoint is missing; a frame holds (N, K, 2) instances. Instances without a single finite keypoint are padding
(absent animals, as in :class:`keyhead.types.InstanceFrames`) and are ignored everywhere. A keypoint is finite
when both its coordinates are. Metrics with nothing to score are NaN.

Distances between two instances are the mean Euclidean distance (pixels) over the keypoints both have; two
instances with no keypoint in common cannot be matched.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from keyhead.errors import KeyheadError

ArrayLike = np.ndarray | Sequence

# SLEAP's OKS (sleap.nn.evals.compute_oks) uses one standard deviation of 0.025 for every node of a skeleton
# without COCO's per-keypoint sigmas, with the area of the truth's keypoint bounding box as scale. We use the same
# so numbers compare with SLEAP's for animals; COCO's human sigmas run from 0.025 (eyes) to 0.107 (hips).
DEFAULT_SIGMA = 0.025
# COCOeval's thresholds: OKS 0.50:0.05:0.95 and 101 recall points for the interpolated precision.
OKS_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
COCO_MAX_DETECTIONS = 20  # COCOeval's maxDets for keypoints: per image, by descending score


def _instances(a: ArrayLike, name: str, k: int | None = None) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.size == 0 and (arr.ndim != 3 or arr.shape[0] == 0):
        return np.empty((0, k or (arr.shape[1] if arr.ndim == 3 else 0), 2))
    if arr.ndim != 3 or arr.shape[-1] != 2:
        raise KeyheadError(f"{name} must have shape (N, K, 2) with (x, y) pixel coordinates, got {arr.shape}")
    if k is not None and arr.shape[1] != k:
        raise KeyheadError(f"{name} has {arr.shape[1]} keypoints per instance but {k} were expected")
    return arr


def _pair(pred: ArrayLike, gt: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(P, K, 2) and (G, K, 2) with one K; an empty side (e.g. ``[]``) takes the other's K."""
    k = _num_keypoints([gt], [pred])
    return _instances(pred, "pred", k), _instances(gt, "gt", k)


def _present(instances: np.ndarray) -> np.ndarray:
    """(N,) True where an instance has at least one finite keypoint."""
    return np.isfinite(instances).all(-1).any(-1)


def _num_keypoints(*frames: Sequence[ArrayLike]) -> int | None:
    for seq in frames:
        for a in seq:
            arr = np.asarray(a, dtype=np.float64)
            if arr.ndim == 3 and arr.shape[0] > 0:
                return arr.shape[1]
    return None


def _per_frame(values: Sequence, n: int, name: str) -> None:
    if len(values) != n:
        raise KeyheadError(f"{name} has {len(values)} frames but the ground truth has {n}; pass one entry per frame")


def default_sigmas(num_keypoints: int) -> np.ndarray:
    """Per-keypoint OKS sigmas for a skeleton without COCO-style measured sigmas (SLEAP's choice).

    Args:
        num_keypoints: K.

    Returns:
        (K,) float64, all :data:`DEFAULT_SIGMA` (0.025).

    Example:
        >>> default_sigmas(2)
        array([0.025, 0.025])
    """
    return np.full(int(num_keypoints), DEFAULT_SIGMA)


def keypoint_areas(gt: ArrayLike) -> np.ndarray:
    """Area (pixels^2) of each instance's keypoint bounding box: the OKS scale for keypoint-only labels.

    Args:
        gt: (G, K, 2) (x, y) pixels, NaN where missing.

    Returns:
        (G,) float64 width * height over the finite keypoints; NaN for an instance with none.
    """
    gt = _instances(gt, "gt")
    ok = np.isfinite(gt).all(-1, keepdims=True)
    lo = np.where(ok, gt, np.inf).min(1)
    hi = np.where(ok, gt, -np.inf).max(1)
    with np.errstate(invalid="ignore"):
        area = np.prod(hi - lo, axis=-1)
    return np.where(_present(gt), area, np.nan)


def oks(pred: ArrayLike, gt: ArrayLike, sigmas: ArrayLike | None = None, areas: ArrayLike | None = None) -> np.ndarray:
    """COCO object keypoint similarity between every prediction and every truth, as pycocotools computes it.

    For keypoint k with distance d_k (pixels): e_k = d_k^2 / (2 sigma_k)^2 / (area + eps) / 2, and
    OKS = mean over the truth's labelled keypoints of exp(-e_k). A truth keypoint that is NaN is not counted; a
    predicted keypoint that is NaN where the truth is labelled counts as exp(-e) = 0 (as in SLEAP).

    Args:
        pred: (P, K, 2) predicted (x, y) pixels.
        gt: (G, K, 2) true (x, y) pixels, NaN where unlabelled.
        sigmas: (K,) per-keypoint sigmas; default :func:`default_sigmas` (0.025 each).
        areas: (G,) object areas in pixels^2 (COCO: segmentation area); default :func:`keypoint_areas`, the
            area of the truth's keypoint bounding box (SLEAP's choice for keypoint-only labels).

    Returns:
        (P, G) float64 in [0, 1]; NaN in a column whose truth has no labelled keypoint.

    Example:
        >>> gt = np.array([[[0.0, 0.0], [10.0, 10.0]]])  # area 100
        >>> float(oks(gt, gt)[0, 0])
        1.0
    """
    pred, gt = _pair(pred, gt)
    k = gt.shape[1]
    sig = default_sigmas(k) if sigmas is None else np.asarray(sigmas, dtype=np.float64)
    if sig.shape != (k,):
        raise KeyheadError(f"sigmas must have shape (K,) = ({k},), one per keypoint, got {sig.shape}")
    area = keypoint_areas(gt) if areas is None else np.asarray(areas, dtype=np.float64)
    if area.shape != (gt.shape[0],):
        raise KeyheadError(f"areas must have shape (G,) = ({gt.shape[0]},), one per true instance, got {area.shape}")
    labelled = np.isfinite(gt).all(-1)  # (G, K)
    d2 = ((pred[:, None] - gt[None]) ** 2).sum(-1)  # (P, G, K)
    e = d2 / ((2 * sig) ** 2) / (area[None, :, None] + np.spacing(1)) / 2
    sim = np.where(labelled[None] & np.isfinite(e), np.exp(-np.where(np.isfinite(e), e, 0.0)), 0.0)
    n = labelled.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, sim.sum(-1) / n, np.nan)


def instance_distances(pred: ArrayLike, gt: ArrayLike) -> np.ndarray:
    """Mean keypoint distance between every pair of instances, over the keypoints both have.

    Args:
        pred: (P, K, 2) (x, y) pixels, NaN where missing.
        gt: (G, K, 2) (x, y) pixels, NaN where missing.

    Returns:
        (P, G) float64 pixels; NaN where a pair shares no finite keypoint.

    Example:
        >>> instance_distances([[[0.0, 0.0], [0.0, 0.0]]], [[[3.0, 4.0], [np.nan, np.nan]]])
        array([[5.]])
    """
    pred, gt = _pair(pred, gt)
    d = np.hypot(pred[:, None, :, 0] - gt[None, :, :, 0], pred[:, None, :, 1] - gt[None, :, :, 1])  # (P, G, K)
    ok = np.isfinite(d)
    n = ok.sum(-1)
    return np.where(n > 0, np.where(ok, d, 0.0).sum(-1) / np.maximum(n, 1), np.nan)


def optimal_assignment(cost: np.ndarray, max_cost: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian matching that leaves out infeasible pairs (cost NaN or inf, or above ``max_cost``).

    The most pairs are matched first, then the total cost is the lowest (infeasible pairs get a cost larger
    than all feasible ones together, and are dropped from the answer).

    Args:
        cost: (R, C) costs, NaN or inf where a pair may not be matched.
        max_cost: pairs costing more are not matched; None: no limit.

    Returns:
        (rows, cols): (M,) int64 indices of the matched pairs, rows ascending.

    Example:
        >>> optimal_assignment(np.array([[1.0, 0.0], [np.nan, 5.0]]), max_cost=4.0)
        (array([0]), array([1]))
    """
    cost = np.asarray(cost, dtype=np.float64)
    feasible = np.isfinite(cost)
    if max_cost is not None:
        feasible &= cost <= max_cost
    if not feasible.any():
        return np.empty(0, np.int64), np.empty(0, np.int64)
    big = 2.0 * np.abs(cost[feasible]).sum() + 1.0
    rows, cols = linear_sum_assignment(np.where(feasible, cost, big))
    keep = feasible[rows, cols]
    return rows[keep].astype(np.int64), cols[keep].astype(np.int64)


def match_instances(pred: ArrayLike, gt: ArrayLike, max_distance: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one matching of predicted to true instances on mean keypoint distance.

    Pairs with no keypoint in common (so also all-NaN padding) or farther apart than ``max_distance`` are never
    matched; among the rest, as many pairs as possible are matched, then with the lowest total distance.

    Args:
        pred: (P, K, 2) predicted (x, y) pixels.
        gt: (G, K, 2) true (x, y) pixels, NaN where unlabelled.
        max_distance: largest mean keypoint distance (pixels) of a match; None: no limit.

    Returns:
        (pred_idx, gt_idx): (M,) int64 indices into ``pred`` and ``gt`` of the matched pairs.

    Example:
        >>> gt = np.array([[[0.0, 0.0]], [[10.0, 0.0]]])
        >>> match_instances(gt[::-1] + 1.0, gt)
        (array([0, 1]), array([1, 0]))
    """
    rows, cols = optimal_assignment(instance_distances(pred, gt), max_distance)
    return rows, cols


def instance_errors(preds: Sequence[ArrayLike], gts: Sequence[ArrayLike], max_distance: float | None = None) -> dict:
    """Pixel errors of matched instances over frames, and how many instances were missed or invented.

    Each frame's instances are matched with :func:`match_instances`; errors pool every finite keypoint of every
    matched pair.

    Args:
        preds: per frame, (P_i, K, 2) predicted (x, y) pixels.
        gts: per frame, (G_i, K, 2) true (x, y) pixels, NaN where unlabelled.
        max_distance: largest mean keypoint distance (pixels) of a match; None: no limit.

    Returns:
        ``{"n_frames", "n_gt", "n_pred", "n_matched", "n_missed" (true instances unmatched), "n_false" (predicted
        instances unmatched), "mean_px", "median_px" (mean / median Euclidean keypoint error of matched pairs),
        "per_keypoint_px" (K means)}``; errors are NaN where nothing was scored.

    Example:
        >>> r = instance_errors([np.array([[[3.0, 4.0]]])], [np.array([[[0.0, 0.0]]])])
        >>> r["mean_px"], r["n_matched"]
        (5.0, 1)
    """
    _per_frame(preds, len(gts), "preds")
    k = _num_keypoints(gts, preds) or 0
    errors, n_gt, n_pred = [], 0, 0
    for p, g in zip(preds, gts, strict=True):
        g, p = _instances(g, "gt", k), _instances(p, "pred", k)
        pi, gi = match_instances(p, g, max_distance)
        errors.append(np.hypot(*(p[pi] - g[gi]).transpose(2, 0, 1)))
        n_gt += int(_present(g).sum())
        n_pred += int(_present(p).sum())
    err = np.concatenate(errors) if errors else np.empty((0, k))
    n_matched = err.shape[0]
    flat = err[np.isfinite(err)]
    with np.errstate(invalid="ignore"):
        counts = np.isfinite(err).sum(0)
        per_kp = np.where(counts > 0, np.where(np.isfinite(err), err, 0.0).sum(0) / np.maximum(counts, 1), np.nan)
    return {
        "n_frames": len(gts),
        "n_gt": n_gt,
        "n_pred": n_pred,
        "n_matched": n_matched,
        "n_missed": n_gt - n_matched,
        "n_false": n_pred - n_matched,
        "mean_px": float(flat.mean()) if flat.size else math.nan,
        "median_px": float(np.median(flat)) if flat.size else math.nan,
        "per_keypoint_px": [float(v) for v in per_kp],
    }


def _greedy_oks_matches(similarity: np.ndarray) -> np.ndarray:
    """COCOeval's matching in one image: (D, G) OKS of score-sorted detections -> (T, D) true-positive flags."""
    n_det, n_gt = similarity.shape
    tp = np.zeros((len(OKS_THRESHOLDS), n_det), dtype=bool)
    for t, thr in enumerate(OKS_THRESHOLDS):
        taken = np.zeros(n_gt, dtype=bool)
        for d in range(n_det):
            # the highest-OKS free truth with OKS >= threshold; ties go to the last one, as in COCOeval's loop
            cand = np.where(~taken & (similarity[d] >= min(thr, 1 - 1e-10)), similarity[d], -np.inf)
            if n_gt == 0 or not np.isfinite(cand).any():
                continue
            m = n_gt - 1 - int(np.argmax(cand[::-1]))
            taken[m] = tp[t, d] = True
    return tp


def _interpolated_ap(tp: np.ndarray, n_gt: int) -> tuple[float, float]:
    """COCOeval's accumulate for one threshold: (D,) score-sorted TP flags -> (AP, recall)."""
    if tp.size == 0:
        return 0.0, 0.0
    tps, fps = np.cumsum(tp), np.cumsum(~tp)
    rc = tps / n_gt
    # COCOeval adds eps to tps + fps (>= 1 here), which only costs exact ones; then precision is made monotone
    pr = np.maximum.accumulate((tps / (tps + fps))[::-1])[::-1]
    idx = np.searchsorted(rc, RECALL_THRESHOLDS, side="left")
    q = np.where(idx < tp.size, pr[np.minimum(idx, tp.size - 1)], 0.0)
    return float(q.mean()), float(rc[-1])


def oks_map(
    preds: Sequence[ArrayLike],
    scores: Sequence[ArrayLike],
    gts: Sequence[ArrayLike],
    sigmas: ArrayLike | None = None,
    areas: Sequence[ArrayLike] | None = None,
    max_detections: int | None = COCO_MAX_DETECTIONS,
) -> dict:
    """COCO keypoint mAP and AR over frames, as pycocotools' COCOeval computes them.

    Per frame, the detections are sorted by descending score (the first ``max_detections`` kept); at each OKS
    threshold 0.50:0.05:0.95 each detection in turn takes the free truth with the highest OKS >= threshold
    (each truth matched at most once). Over all frames, detections sorted by score give precision / recall;
    AP is the mean of the monotone precision at the 101 recall points 0:0.01:1. True instances without labelled
    keypoints and predictions without finite keypoints are ignored.

    Args:
        preds: per frame, (P_i, K, 2) predicted (x, y) pixels.
        scores: per frame, (P_i,) instance scores (higher = more confident).
        gts: per frame, (G_i, K, 2) true (x, y) pixels, NaN where unlabelled.
        sigmas: (K,) OKS sigmas; default :func:`default_sigmas`.
        areas: per frame, (G_i,) object areas in pixels^2; default: the truth's keypoint bounding box area.
        max_detections: detections kept per frame (COCO: 20); None: all.

    Returns:
        ``{"mAP", "AP50", "AP75", "AR" (recall averaged over thresholds), "AP" (per threshold), "recall" (per
        threshold), "thresholds", "n_gt", "n_pred"}``; the AP and AR values are NaN when no truth is labelled.

    Example:
        >>> gt = [np.array([[[0.0, 0.0], [10.0, 10.0]]])]
        >>> oks_map(gt, [np.array([1.0])], gt)["mAP"]
        1.0
    """
    _per_frame(preds, len(gts), "preds")
    _per_frame(scores, len(gts), "scores")
    if areas is not None:
        _per_frame(areas, len(gts), "areas")
    k = _num_keypoints(gts, preds) or 0
    sig = default_sigmas(k) if sigmas is None else np.asarray(sigmas, dtype=np.float64)
    all_scores, all_tp, n_gt = [], [], 0
    for i, (p, s, g) in enumerate(zip(preds, scores, gts, strict=True)):
        g, p = _instances(g, "gt", k), _instances(p, "pred", k)
        s = np.asarray(s, dtype=np.float64).reshape(-1)
        if s.shape != (p.shape[0],):
            raise KeyheadError(f"scores of frame {i} must have shape (P,) = ({p.shape[0]},), got {s.shape}")
        a = keypoint_areas(g) if areas is None else np.asarray(areas[i], dtype=np.float64).reshape(-1)
        if a.shape != (g.shape[0],):
            raise KeyheadError(f"areas of frame {i} must have shape (G,) = ({g.shape[0]},), got {a.shape}")
        keep_g, keep_p = _present(g), _present(p)
        g, a, p, s = g[keep_g], a[keep_g], p[keep_p], s[keep_p]
        order = np.argsort(-s, kind="mergesort")[:max_detections]
        p, s = p[order], s[order]
        all_tp.append(_greedy_oks_matches(oks(p, g, sig, a)))
        all_scores.append(s)
        n_gt += g.shape[0]
    score = np.concatenate(all_scores) if all_scores else np.empty(0)
    tp = np.concatenate(all_tp, axis=1) if all_tp else np.zeros((len(OKS_THRESHOLDS), 0), bool)
    tp = tp[:, np.argsort(-score, kind="mergesort")]
    if n_gt == 0:
        ap = recall = np.full(len(OKS_THRESHOLDS), np.nan)
    else:
        ap, recall = np.array([_interpolated_ap(row, n_gt) for row in tp]).T
    return {
        "mAP": float(np.mean(ap)),
        "AP50": float(ap[0]),
        "AP75": float(ap[5]),
        "AR": float(np.mean(recall)),
        "AP": [float(v) for v in ap],
        "recall": [float(v) for v in recall],
        "thresholds": [round(float(t), 2) for t in OKS_THRESHOLDS],
        "n_gt": n_gt,
        "n_pred": int(score.size),
    }


def _tracked(frame: tuple[ArrayLike, ArrayLike], name: str, i: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """One frame's (ids, poses), with negative ids and instances without finite keypoints dropped."""
    try:
        ids, poses = frame
    except (TypeError, ValueError):
        raise KeyheadError(f"{name}[{i}] must be a pair (ids (N,), poses (N, K, 2))") from None
    poses = _instances(poses, f"{name}[{i}] poses", k)
    ids = np.asarray(ids).reshape(-1)
    if ids.shape != (poses.shape[0],) or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
        raise KeyheadError(f"{name}[{i}] ids must be (N,) = ({poses.shape[0]},) integers, got {ids.dtype} {ids.shape}")
    keep = (ids >= 0) & _present(poses)
    ids, poses = ids[keep].astype(np.int64), poses[keep]
    if np.unique(ids).size != ids.size:
        raise KeyheadError(f"{name}[{i}] has a track id twice in one frame: {ids.tolist()}; ids must be unique")
    return ids, poses


def tracking_metrics(
    pred_tracks: Sequence[tuple[ArrayLike, ArrayLike]],
    gt_tracks: Sequence[tuple[ArrayLike, ArrayLike]],
    threshold: float,
) -> dict:
    """CLEAR MOT (MOTA, MOTP, identity switches) and IDF1 of tracked poses.

    A predicted and a true instance *can* match in a frame when their mean keypoint distance over shared
    keypoints is at most ``threshold`` pixels (choose it like a PCK radius, e.g. a fraction of the animal's
    length). Per frame (Bernardin & Stiefelhagen 2008, as py-motmetrics does it), a true track matched in the
    previous frame keeps its predicted track if the pair can still match; the rest are matched by the Hungarian
    algorithm on distance. An identity switch is a true track matched to another predicted id than at its last
    match. IDF1 (Ristani et al. 2016) takes one global one-to-one assignment of true to predicted tracks that
    maximises the identity true positives IDTP (frames where the assigned pair can match).

    Args:
        pred_tracks: per frame, ``(ids (P,), poses (P, K, 2))``: integer track ids and (x, y) pixels.
        gt_tracks: per frame, ``(ids (G,), poses (G, K, 2))`` of the truth, e.g.
            ``zip(frames.tracks, frames.keypoints)`` of an :class:`keyhead.types.InstanceFrames`.
        threshold: largest mean keypoint distance (pixels) of a match.

    Returns:
        ``{"mota", "motp" (mean matched distance, px), "idf1", "idp", "idr", "num_switches", "num_misses" (FN),
        "num_false_positives" (FP), "num_matches", "num_gt" (true instances), "num_pred", "idtp", "idfp",
        "idfn", "num_gt_tracks", "num_pred_tracks", "num_frames"}``. MOTA = 1 - (FN + FP + IDSW) / num_gt and
        IDF1 = 2 IDTP / (2 IDTP + IDFP + IDFN); NaN where undefined. Instances with a negative id (no identity)
        or without a finite keypoint are ignored.

    Example:
        >>> gt = [([0], [[[0.0, 0.0]]]), ([0], [[[1.0, 0.0]]])]
        >>> pred = [([7], [[[0.0, 1.0]]]), ([7], [[[1.0, 1.0]]])]
        >>> m = tracking_metrics(pred, gt, threshold=2.0)
        >>> m["mota"], m["idf1"], m["motp"]
        (1.0, 1.0, 1.0)
    """
    _per_frame(pred_tracks, len(gt_tracks), "pred_tracks")
    if not (isinstance(threshold, int | float | np.number) and math.isfinite(threshold) and threshold > 0):
        raise KeyheadError(f"threshold must be a positive distance in pixels, got {threshold!r}")
    k = _num_keypoints([f[1] for f in gt_tracks], [f[1] for f in pred_tracks]) or 0
    last: dict[int, int] = {}  # true id -> predicted id at its last match
    previous: dict[int, int] = {}  # the same, for matches made in the previous frame only
    pair_frames: Counter = Counter()
    gt_frames: Counter = Counter()
    pred_frames: Counter = Counter()
    switches = misses = false_pos = matches = 0
    dist_sum = 0.0
    for i, (pf, gf) in enumerate(zip(pred_tracks, gt_tracks, strict=True)):
        pid, pp = _tracked(pf, "pred_tracks", i, k)
        gid, gp = _tracked(gf, "gt_tracks", i, k)
        dist = instance_distances(pp, gp)  # (P, G)
        can = np.isfinite(dist) & (dist <= threshold)
        gt_frames.update(gid.tolist())
        pred_frames.update(pid.tolist())
        pair_frames.update(zip(gid[np.nonzero(can)[1]].tolist(), pid[np.nonzero(can)[0]].tolist(), strict=True))
        pairs: list[tuple[int, int]] = []
        pred_pos = {int(p): j for j, p in enumerate(pid)}
        for g_col, g in enumerate(gid.tolist()):
            p_row = pred_pos.get(previous.get(g, -1))
            if p_row is not None and can[p_row, g_col]:
                pairs.append((p_row, g_col))
        free = np.where(can, dist, np.nan)
        for p_row, g_col in pairs:
            free[p_row, :] = np.nan
            free[:, g_col] = np.nan
        pairs += list(zip(*optimal_assignment(free), strict=True))
        previous = {}
        for p_row, g_col in pairs:
            g, p = int(gid[g_col]), int(pid[p_row])
            switches += g in last and last[g] != p
            last[g] = previous[g] = p
            dist_sum += float(dist[p_row, g_col])
        matches += len(pairs)
        misses += gid.size - len(pairs)
        false_pos += pid.size - len(pairs)
    gt_ids, pred_ids = sorted(gt_frames), sorted(pred_frames)
    idtp = 0
    if gt_ids and pred_ids:
        table = np.array([[pair_frames[(g, p)] for p in pred_ids] for g in gt_ids], dtype=np.float64)
        rows, cols = linear_sum_assignment(table, maximize=True)
        idtp = int(table[rows, cols].sum())
    num_gt, num_pred = sum(gt_frames.values()), sum(pred_frames.values())
    idfn, idfp = num_gt - idtp, num_pred - idtp

    def ratio(a: float, b: float) -> float:
        return a / b if b else math.nan

    return {
        "mota": 1.0 - (misses + false_pos + switches) / num_gt if num_gt else math.nan,
        "motp": ratio(dist_sum, matches),
        "idf1": ratio(2 * idtp, 2 * idtp + idfp + idfn),
        "idp": ratio(idtp, idtp + idfp),
        "idr": ratio(idtp, idtp + idfn),
        "num_switches": int(switches),
        "num_misses": misses,
        "num_false_positives": false_pos,
        "num_matches": matches,
        "num_gt": num_gt,
        "num_pred": num_pred,
        "idtp": idtp,
        "idfp": idfp,
        "idfn": idfn,
        "num_gt_tracks": len(gt_ids),
        "num_pred_tracks": len(pred_ids),
        "num_frames": len(gt_tracks),
    }
