"""Evaluation metrics: pixel errors, NME, PCK and its AUC, and how well confidences flag bad keypoints.

NumPy in, Python floats and dicts out. Keypoints are (N, K, 2) arrays of (x, y) in image pixels, NaN where
missing. A keypoint is scored where both truth and prediction are finite; a labelled truth whose prediction is
NaN counts as a miss in PCK and its AUC, and :func:`evaluate_split` reports it as ``n_missing_predictions``.
Metrics with nothing to score are NaN; :func:`evaluate_split` turns those into None so its result can go
straight into ``json.dumps(..., allow_nan=False)``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence

import numpy as np

from keyhead.errors import KeyheadError

ArrayLike = np.ndarray | Sequence


def _keypoints(a: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[-1] != 2:
        raise KeyheadError(f"{name} must have shape (N, K, 2) with (x, y) pixel coordinates, got {arr.shape}")
    return arr


def _pair(pred: ArrayLike, true: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    pred, true = _keypoints(pred, "pred"), _keypoints(true, "true")
    if pred.shape != true.shape:
        raise KeyheadError(f"pred has shape {pred.shape} but true has {true.shape}; they must match (N, K, 2)")
    return pred, true


def _per_frame(values: ArrayLike | None, n: int, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise KeyheadError(f"{name} must have shape (N,) = ({n},), one value per frame, got {arr.shape}")
    return arr


def _mean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


def pixel_errors(pred: ArrayLike, true: ArrayLike) -> np.ndarray:
    """Euclidean distance between predicted and true keypoints.

    Args:
        pred: (N, K, 2) predicted (x, y) in pixels.
        true: (N, K, 2) true (x, y) in pixels, NaN where unlabelled.

    Returns:
        (N, K) float64 distances in pixels, NaN where either side is missing.

    Example:
        >>> pixel_errors([[[0.0, 0.0]]], [[[3.0, 4.0]]])
        array([[5.]])
    """
    pred, true = _pair(pred, true)
    return np.hypot(pred[..., 0] - true[..., 0], pred[..., 1] - true[..., 1])


def pixel_error(pred: ArrayLike, true: ArrayLike) -> float:
    """Mean Euclidean distance in pixels over scored keypoints (what DeepLabCut calls "rmse").

    Args:
        pred: (N, K, 2) predicted (x, y) in pixels.
        true: (N, K, 2) true (x, y) in pixels, NaN where unlabelled.

    Returns:
        mean_i |pred_i - true_i|; NaN if nothing can be scored.
    """
    return _mean(pixel_errors(pred, true))


def rmse_px(pred: ArrayLike, true: ArrayLike) -> float:
    """Root of the mean squared Euclidean distance in pixels over scored keypoints (the true RMSE).

    Always >= :func:`pixel_error`; the gap grows with the spread of the errors (outliers weigh more).

    Args:
        pred: (N, K, 2) predicted (x, y) in pixels.
        true: (N, K, 2) true (x, y) in pixels, NaN where unlabelled.

    Returns:
        sqrt(mean_i |pred_i - true_i|^2); NaN if nothing can be scored.
    """
    return math.sqrt(_mean(pixel_errors(pred, true) ** 2))


def mse_normalized(pred: ArrayLike, true: ArrayLike, image_sizes: ArrayLike, units: str = "unit") -> float:
    """Mean squared error of coordinates divided by the image size (seed 001's test metric).

    Each coordinate is scaled as (x / w, y / h) (``units="unit"``: [0, 1]) or (2 x / w - 1, 2 y / h - 1)
    (``units="pm1"``: [-1, 1], the units keyhead's regression heads train in; 4x the first), then the squared
    differences are averaged over the x and y coordinates of every scored keypoint. Seed 001 does not say which
    it used, so evaluations report both.

    Args:
        pred: (N, K, 2) predicted (x, y) in pixels.
        true: (N, K, 2) true (x, y) in pixels, NaN where unlabelled.
        image_sizes: (N, 2) (width, height) of each image in pixels.
        units: ``"unit"`` ([0, 1]) or ``"pm1"`` ([-1, 1]).

    Returns:
        The mean squared normalised error; NaN if nothing can be scored.

    Example:
        >>> mse_normalized([[[25.0, 0.0]]], [[[0.0, 0.0]]], [[100, 50]])
        0.03125
    """
    if units not in ("unit", "pm1"):
        raise KeyheadError(f"mse_normalized units={units!r}: choose 'unit' ([0, 1]) or 'pm1' ([-1, 1])")
    pred, true = _pair(pred, true)
    sizes = np.asarray(image_sizes, dtype=np.float64) / (2.0 if units == "pm1" else 1.0)
    if sizes.shape != (len(true), 2):
        raise KeyheadError(
            f"image_sizes must have shape (N, 2) = ({len(true)}, 2) as (width, height), got {sizes.shape}"
        )
    scored = np.isfinite(pred).all(-1) & np.isfinite(true).all(-1)
    diff = (pred - true) / sizes[:, None, :]
    return _mean(diff[scored] ** 2)


def nme(pred: ArrayLike, true: ArrayLike, normalizer: ArrayLike) -> float:
    """Normalised mean error in percent: the mean over frames of (mean error in the frame / normaliser).

    Args:
        pred: (N, K, 2) predicted (x, y) in pixels.
        true: (N, K, 2) true (x, y) in pixels, NaN where unlabelled.
        normalizer: (N,) per-frame length in pixels, e.g. :func:`interocular` for 68-point faces. Frames with
            no scored keypoint or a non-finite or non-positive normaliser are left out.

    Returns:
        NME in percent; NaN if no frame can be scored.
    """
    err = pixel_errors(pred, true)
    norm = _per_frame(normalizer, len(err), "normalizer")
    scored = np.isfinite(err)
    counts = scored.sum(1)
    per_frame = np.where(scored, err, 0.0).sum(1) / np.maximum(counts, 1)
    ok = (counts > 0) & np.isfinite(norm) & (norm > 0)
    return 100.0 * float((per_frame[ok] / norm[ok]).mean()) if ok.any() else math.nan


def interocular(true: ArrayLike, left: int = 36, right: int = 45) -> np.ndarray:
    """Distance between the outer eye corners, the usual NME normaliser of 68-point faces (300W).

    Args:
        true: (N, K, 2) true (x, y) in pixels.
        left: 0-based index of the left outer eye corner (36 in the 68-point scheme).
        right: 0-based index of the right outer eye corner (45 in the 68-point scheme).

    Returns:
        (N,) distances in pixels, NaN where either corner is missing.
    """
    true = _keypoints(true, "true")
    k = true.shape[1]
    if not (0 <= left < k and 0 <= right < k):
        raise KeyheadError(
            f"interocular needs keypoints {left} and {right} but there are only {k}; pass left=/right= for a "
            "scheme other than 68-point faces"
        )
    d = true[:, left] - true[:, right]
    return np.hypot(d[:, 0], d[:, 1])


def _keypoint_box(true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labelled = np.isfinite(true).all(-1)
    lo = np.where(labelled[..., None], true, np.inf).min(1)
    hi = np.where(labelled[..., None], true, -np.inf).max(1)
    wh = np.where(labelled.any(1)[:, None], hi - lo, np.nan)
    return wh[:, 0], wh[:, 1]


def bbox_diagonal(true: ArrayLike) -> np.ndarray:
    """Diagonal of the bounding box of each frame's labelled keypoints.

    Args:
        true: (N, K, 2) true (x, y) in pixels, NaN where unlabelled.

    Returns:
        (N,) lengths in pixels; NaN for frames without labels, 0 for a frame with one labelled keypoint.
    """
    w, h = _keypoint_box(_keypoints(true, "true"))
    return np.hypot(w, h)


def bbox_size(true: ArrayLike) -> np.ndarray:
    """Square root of the area of the bounding box of each frame's labelled keypoints.

    Args:
        true: (N, K, 2) true (x, y) in pixels, NaN where unlabelled.

    Returns:
        (N,) lengths sqrt(w * h) in pixels; NaN for frames without labels.
    """
    w, h = _keypoint_box(_keypoints(true, "true"))
    return np.sqrt(w * h)


NORMALIZERS: dict[str, Callable[[ArrayLike], np.ndarray]] = {
    "interocular": interocular,
    "bbox_diagonal": bbox_diagonal,
    "bbox_size": bbox_size,
}


def normalized_errors(pred: ArrayLike, true: ArrayLike, normalizer: ArrayLike | float) -> np.ndarray:
    """Errors divided by a per-frame normaliser, with missing predictions marked as infinitely wrong.

    Args:
        pred: (N, K, 2) predicted (x, y) in pixels.
        true: (N, K, 2) true (x, y) in pixels, NaN where unlabelled.
        normalizer: (N,) per-frame length in pixels, or a scalar (1.0 gives pixel errors).

    Returns:
        (N, K) errors / normaliser: NaN where the truth is missing or the frame's normaliser is not a finite
        positive number (not judged), +inf where the truth is labelled but the prediction is NaN (a miss).
    """
    pred, true = _pair(pred, true)
    n = len(true)
    norm = np.full(n, float(normalizer)) if np.ndim(normalizer) == 0 else _per_frame(normalizer, n, "normalizer")
    judged = np.isfinite(true).all(-1) & (np.isfinite(norm) & (norm > 0))[:, None]
    err = pixel_errors(pred, true)
    safe_norm = np.where(np.isfinite(norm) & (norm > 0), norm, 1.0)[:, None]
    rel = np.where(np.isfinite(err), err / safe_norm, np.inf)
    return np.where(judged, rel, np.nan)


def _threshold_key(t: float) -> str:
    return f"{t:g}"


def _pck_from(rel: np.ndarray, thresholds: Sequence[float]) -> dict[str, float]:
    judged = rel[~np.isnan(rel)]
    return {_threshold_key(t): float((judged <= t).mean()) if judged.size else math.nan for t in thresholds}


def pck(
    pred: ArrayLike,
    true: ArrayLike,
    normalizer: ArrayLike,
    thresholds: Sequence[float] = (0.05, 0.1, 0.2),
) -> dict[str, float]:
    """Percentage of correct keypoints: the fraction with error <= threshold x the frame's normaliser.

    Every labelled keypoint of a frame with a finite positive normaliser is judged; a NaN prediction is a miss.

    Args:
        pred: (N, K, 2) predicted (x, y) in pixels.
        true: (N, K, 2) true (x, y) in pixels, NaN where unlabelled.
        normalizer: (N,) per-frame length in pixels (e.g. :func:`bbox_diagonal` or :func:`interocular`).
        thresholds: fractions of the normaliser.

    Returns:
        ``{"0.05": fraction, ...}`` keyed by ``f"{threshold:g}"``, fractions in [0, 1]; NaN if nothing is judged.

    Example:
        >>> pck([[[0.0, 0.0], [10.0, 0.0]]], [[[1.0, 0.0], [0.0, 0.0]]], [10.0], thresholds=(0.1, 0.5))
        {'0.1': 0.5, '0.5': 0.5}
    """
    return _pck_from(normalized_errors(pred, true, normalizer), thresholds)


def pck_px(pred: ArrayLike, true: ArrayLike, thresholds: Sequence[float] = (5.0, 10.0, 20.0)) -> dict[str, float]:
    """PCK with thresholds in pixels: the fraction of labelled keypoints with error <= threshold.

    Args:
        pred: (N, K, 2) predicted (x, y) in pixels.
        true: (N, K, 2) true (x, y) in pixels, NaN where unlabelled.
        thresholds: distances in pixels.

    Returns:
        ``{"5": fraction, ...}`` keyed by ``f"{threshold:g}"``; NaN if nothing is labelled.
    """
    return _pck_from(normalized_errors(pred, true, 1.0), thresholds)


def auc_pck(errors_normalized: ArrayLike, max_threshold: float) -> float:
    """Area under the PCK curve from threshold 0 to ``max_threshold``, divided by ``max_threshold``.

    Computed exactly rather than on a grid of thresholds: the integral of the fraction of errors <= t over
    [0, T], divided by T, is the mean over keypoints of max(0, 1 - e / T).

    Args:
        errors_normalized: errors of any shape, e.g. from :func:`normalized_errors`; NaN entries are not judged,
            +inf entries (missed predictions) count as never correct.
        max_threshold: T, in the units of the errors (> 0).

    Returns:
        AUC in [0, 1]; NaN if nothing is judged.

    Example:
        >>> auc_pck([0.0, 0.05, 0.1, 0.2], max_threshold=0.1)
        0.375
    """
    if not max_threshold > 0:
        raise KeyheadError(f"max_threshold must be a positive number, got {max_threshold}")
    e = np.asarray(errors_normalized, dtype=np.float64).ravel()
    e = e[~np.isnan(e)]
    return float(np.clip(1.0 - e / max_threshold, 0.0, 1.0).mean()) if e.size else math.nan


def _average_ranks(x: np.ndarray) -> np.ndarray:
    # 1-based ranks, ties sharing the mean of the ranks they span.
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(xs)) + 1]
    ends = np.r_[starts[1:], len(x)]
    ranks = np.empty(len(x))
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def confidence_auroc(confidence: ArrayLike, errors: ArrayLike, threshold: ArrayLike | float) -> float:
    """How well low confidence flags bad keypoints: AUROC with positives error > threshold, score -confidence.

    Rank-based (the Mann-Whitney U statistic, ties counted as one half): the probability that a random bad
    keypoint has lower confidence than a random good one. 1.0 is a perfect ranking, 0.5 chance, 0.0 inverted.

    Args:
        confidence: (N, K) confidences; NaN entries are left out.
        errors: (N, K) errors in any unit; NaN entries (unlabelled) are left out, +inf (missed) counts as bad.
        threshold: scalar or (N, K), same unit as ``errors``.

    Returns:
        AUROC in [0, 1]; NaN if only good or only bad keypoints remain.

    Example:
        >>> confidence_auroc([0.9, 0.8, 0.2], [1.0, 2.0, 9.0], threshold=5.0)
        1.0
    """
    conf = np.asarray(confidence, dtype=np.float64)
    err = np.asarray(errors, dtype=np.float64)
    if conf.shape != err.shape:
        raise KeyheadError(f"confidence has shape {conf.shape} but errors have {err.shape}; they must match")
    thr = np.broadcast_to(np.asarray(threshold, dtype=np.float64), err.shape)
    ok = np.isfinite(conf) & ~np.isnan(err) & ~np.isnan(thr)
    bad = err[ok] > thr[ok]
    n_pos, n_neg = int(bad.sum()), int((~bad).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = _average_ranks(-conf[ok])
    return float((ranks[bad].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def reliability_bins(confidence: ArrayLike, errors: ArrayLike, threshold: float, n_bins: int = 10) -> dict:
    """Confidence reliability table: per equal-width confidence bin, how often keypoints are right and how wrong.

    Args:
        confidence: (N, K) confidences in [0, 1] (values outside are clipped into the end bins); NaN left out.
        errors: (N, K) errors in any unit; NaN entries (unlabelled) are left out, +inf (missed) counts as wrong
            and is left out of ``mean_error``.
        threshold: error at or below which a keypoint is correct, in the unit of ``errors``.
        n_bins: number of bins over [0, 1].

    Returns:
        ``{"edges": n_bins + 1 floats, "count", "mean_confidence", "accuracy" (fraction correct), "mean_error"
        (per bin, None where empty), "ece"}``; ``ece`` is the expected calibration error (count-weighted mean of
        |accuracy - mean confidence|), None if nothing is judged. JSON-ready (no NaN).

    Example:
        >>> reliability_bins([0.95, 0.9, 0.15], [0.01, 0.2, 0.3], threshold=0.05, n_bins=2)["accuracy"]
        [0.0, 0.5]
    """
    conf = np.asarray(confidence, dtype=np.float64)
    err = np.asarray(errors, dtype=np.float64)
    if conf.shape != err.shape:
        raise KeyheadError(f"confidence has shape {conf.shape} but errors have {err.shape}; they must match")
    if n_bins < 1:
        raise KeyheadError(f"n_bins must be >= 1, got {n_bins}")
    ok = np.isfinite(conf) & ~np.isnan(err)
    c, e = conf[ok], err[ok]
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(c, edges[1:-1], right=True), 0, n_bins - 1)
    out: dict = {"edges": edges.tolist(), "count": [], "mean_confidence": [], "accuracy": [], "mean_error": []}
    gap = 0.0
    for b in range(n_bins):
        sel = which == b
        n = int(sel.sum())
        out["count"].append(n)
        if n == 0:
            for key in ("mean_confidence", "accuracy", "mean_error"):
                out[key].append(None)
            continue
        acc = float((e[sel] <= threshold).mean())
        mc = float(c[sel].mean())
        finite = e[sel][np.isfinite(e[sel])]
        out["mean_confidence"].append(mc)
        out["accuracy"].append(acc)
        out["mean_error"].append(float(finite.mean()) if finite.size else None)
        gap += n * abs(acc - mc)
    out["ece"] = gap / len(c) if len(c) else None
    return out


def _json_float(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _json_dict(d: dict[str, float]) -> dict[str, float | None]:
    return {k: _json_float(v) for k, v in d.items()}


def _error_summary(err: np.ndarray) -> tuple[float, float, float]:
    e = err[np.isfinite(err)]
    if not e.size:
        return math.nan, math.nan, math.nan
    return float(e.mean()), float(np.sqrt((e**2).mean())), float(np.median(e))


def evaluate_split(
    pred: ArrayLike,
    true: ArrayLike,
    image_sizes: ArrayLike,
    keypoint_names: Sequence[str],
    confidence: ArrayLike | None = None,
    normalizer: ArrayLike | None = None,
    nme_normalizer_name: str | None = None,
    *,
    pck_thresholds: Sequence[float] = (0.05, 0.1, 0.2),
    pck_px_thresholds: Sequence[float] = (5.0, 10.0, 20.0),
    auroc_threshold: float = 0.1,
) -> dict:
    """All metrics of one split (train / val / test) as a JSON-ready dict.

    The PCK normaliser is ``normalizer`` when one is given (directly, or by ``nme_normalizer_name``), else the
    diagonal of the bounding box of each frame's labelled keypoints (:func:`bbox_diagonal`; frames with fewer
    than two distinct labelled points then have no normaliser and are not judged by PCK). For 68-point faces
    pass ``nme_normalizer_name="interocular"`` (or ``normalizer=interocular(true)``).

    Args:
        pred: (N, K, 2) predicted (x, y) in pixels, NaN where the model gave no prediction.
        true: (N, K, 2) true (x, y) in pixels, NaN where unlabelled.
        image_sizes: (N, 2) (width, height) of each image in pixels, for ``mse_normalized``.
        keypoint_names: K unique names, the keys of ``per_keypoint``.
        confidence: optional (N, K) confidences; adds ``confidence_auroc`` for flagging keypoints that fail
            PCK@``auroc_threshold``.
        normalizer: optional (N,) per-frame length in pixels for NME and PCK.
        nme_normalizer_name: ``"interocular"``, ``"bbox_diagonal"`` or ``"bbox_size"``: computes the normaliser
            from ``true`` when ``normalizer`` is None.
        pck_thresholds: PCK thresholds as fractions of the normaliser.
        pck_px_thresholds: PCK thresholds in pixels.
        auroc_threshold: fraction of the normaliser above which a keypoint counts as bad for the AUROC.

    Returns:
        ``{"n_frames", "n_keypoints_labelled", "n_missing_predictions", "pixel_error" (mean Euclidean px),
        "rmse_px", "median_px", "mse_normalized", "nme" (percent; only with a normaliser), "pck", "pck_px",
        "confidence_auroc" (only with confidence), "per_keypoint": {name: {"pixel_error", "rmse_px",
        "median_px", "n_labelled", "n_missing_predictions", "pck", "pck_px"}}}``. Values are int, float or None
        (None where nothing could be scored), never NaN.
    """
    pred, true = _pair(pred, true)
    n, k = true.shape[:2]
    names = list(keypoint_names)
    if len(names) != k or len(set(names)) != k:
        raise KeyheadError(f"keypoint_names must be {k} unique names (one per keypoint), got {names}")
    if normalizer is None and nme_normalizer_name is not None:
        if nme_normalizer_name not in NORMALIZERS:
            close = difflib.get_close_matches(nme_normalizer_name, list(NORMALIZERS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise KeyheadError(
                f"unknown normaliser {nme_normalizer_name!r}{hint} (known: {', '.join(sorted(NORMALIZERS))})"
            )
        normalizer = NORMALIZERS[nme_normalizer_name](true)
    norm = _per_frame(normalizer, n, "normalizer") if normalizer is not None else bbox_diagonal(true)

    err = pixel_errors(pred, true)
    labelled = np.isfinite(true).all(-1)
    missing = labelled & ~np.isfinite(pred).all(-1)
    rel = normalized_errors(pred, true, norm)
    rel_px = normalized_errors(pred, true, 1.0)
    mean_px, rmse, median = _error_summary(err)

    result: dict = {
        "n_frames": int(n),
        "n_keypoints_labelled": int(labelled.sum()),
        "n_missing_predictions": int(missing.sum()),
        "pixel_error": _json_float(mean_px),
        "rmse_px": _json_float(rmse),
        "median_px": _json_float(median),
        "mse_normalized": _json_float(mse_normalized(pred, true, image_sizes)),
        "mse_normalized_pm1": _json_float(mse_normalized(pred, true, image_sizes, units="pm1")),
    }
    if normalizer is not None:
        result["nme"] = _json_float(nme(pred, true, norm))
    result["pck"] = _json_dict(_pck_from(rel, pck_thresholds))
    result["pck_px"] = _json_dict(_pck_from(rel_px, pck_px_thresholds))
    if confidence is not None:
        conf = np.asarray(confidence, dtype=np.float64)
        if conf.shape != (n, k):
            raise KeyheadError(f"confidence must have shape (N, K) = ({n}, {k}), got {conf.shape}")
        result["confidence_auroc"] = _json_float(confidence_auroc(conf, rel, auroc_threshold))

    per_keypoint = {}
    for j, name in enumerate(names):
        kp_mean, kp_rmse, kp_median = _error_summary(err[:, j])
        per_keypoint[name] = {
            "pixel_error": _json_float(kp_mean),
            "rmse_px": _json_float(kp_rmse),
            "median_px": _json_float(kp_median),
            "n_labelled": int(labelled[:, j].sum()),
            "n_missing_predictions": int(missing[:, j].sum()),
            "pck": _json_dict(_pck_from(rel[:, j], pck_thresholds)),
            "pck_px": _json_dict(_pck_from(rel_px[:, j], pck_px_thresholds)),
        }
    result["per_keypoint"] = per_keypoint
    return result
