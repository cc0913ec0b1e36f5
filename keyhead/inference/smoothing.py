"""``keyhead smooth``: temporal smoothing of video predictions that respects each keypoint's confidence.

Two methods, both per keypoint and coordinate, over a DeepLabCut prediction table (one row per frame):

- ``kalman``: a constant-velocity Kalman filter followed by a Rauch-Tung-Striebel smoother (forward and backward).
  An observation's noise std is ``measurement_noise / confidence``, so a doubtful point pulls the track
  less; observations below ``min_confidence`` (or missing) are not used at all and the smoother interpolates the
  track through them.
- ``savgol``: a confidence-weighted Savitzky-Golay filter: at each frame a polynomial of ``order`` is fitted by
  weighted least squares to the ``window`` frames around it (weights = confidence, 0 below ``min_confidence``).
  Gaps longer than the window are filled by linear interpolation between the smoothed frames around them.

The likelihood column is kept as predicted, so interpolated frames still show that the network was unsure there.
Needs NumPy only (no torch).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from keyhead.errors import KeyheadError
from keyhead.io.predictions import read_prediction_table, write_prediction_table

METHODS = ("kalman", "savgol")


def kalman_smooth(
    z: np.ndarray,
    confidence: np.ndarray,
    min_confidence: float = 0.5,
    measurement_noise: float | None = None,
    process_noise: float = 0.5,
) -> np.ndarray:
    """Constant-velocity Kalman filter + RTS smoother over time, for S independent series.

    Args:
        z: (T, S) observations (e.g. x of each keypoint), NaN where missing.
        confidence: (T, S) in [0, 1]; an observation's std is ``measurement_noise / confidence``.
        min_confidence: observations below it are ignored (the smoother interpolates across them).
        measurement_noise: std of a fully confident observation in the unit of ``z`` (default: estimated per series
            from the second differences of the confident observations, at least 0.1).
        process_noise: std of the change of velocity per frame (how fast the point may accelerate).

    Returns:
        (T, S) smoothed positions; NaN only for a series with no usable observation at all.
    """
    z = np.asarray(z, dtype=np.float64)
    conf = np.nan_to_num(np.asarray(confidence, dtype=np.float64), nan=0.0)
    t_len, s = z.shape
    use = np.isfinite(z) & (conf >= min_confidence) & (conf > 0)
    if measurement_noise is None:
        r0 = np.array([_noise_estimate(z[use[:, j], j]) for j in range(s)])
    else:
        r0 = np.full(s, float(measurement_noise))
    f = np.array([[1.0, 1.0], [0.0, 1.0]])
    q = process_noise**2 * np.array([[0.25, 0.5], [0.5, 1.0]])
    first = np.where(use.any(0), use.argmax(0), 0)
    x = np.stack([np.where(use.any(0), z[first, np.arange(s)], 0.0), np.zeros(s)], axis=-1)  # (S, 2)
    p = np.broadcast_to(np.diag([1e6, 1e2]), (s, 2, 2)).copy()
    xs_f, xs_p = np.empty((t_len, s, 2)), np.empty((t_len, s, 2))
    ps_f, ps_p = np.empty((t_len, s, 2, 2)), np.empty((t_len, s, 2, 2))
    for t in range(t_len):
        if t > 0:
            x = x @ f.T
            p = f @ p @ f.T + q
        xs_p[t], ps_p[t] = x, p
        obs = use[t]
        r = (r0 / np.where(obs, conf[t], 1.0)) ** 2
        innov = np.where(obs, np.nan_to_num(z[t]) - x[:, 0], 0.0)
        s_var = p[:, 0, 0] + r
        gain = np.where(obs[:, None], p[:, :, 0] / s_var[:, None], 0.0)  # (S, 2)
        x = x + gain * innov[:, None]
        p = p - gain[:, :, None] * p[:, None, 0, :]
        xs_f[t], ps_f[t] = x, p
    out = np.empty((t_len, s))
    xs, ps = xs_f[-1], ps_f[-1]
    out[-1] = xs[:, 0]
    for t in range(t_len - 2, -1, -1):
        c = ps_f[t] @ f.T @ np.linalg.inv(ps_p[t + 1])
        xs = xs_f[t] + np.einsum("sij,sj->si", c, xs - xs_p[t + 1])
        ps = ps_f[t] + c @ (ps - ps_p[t + 1]) @ np.transpose(c, (0, 2, 1))
        out[t] = xs[:, 0]
    out[:, ~use.any(0)] = np.nan
    return out


def _noise_estimate(values: np.ndarray) -> float:
    """Noise std of a smooth series from the MAD of its second differences (which have variance 6 sigma^2)."""
    if len(values) < 5:
        return 1.0
    d2 = np.diff(values, 2)
    return max(0.1, 1.4826 * float(np.median(np.abs(d2 - np.median(d2)))) / np.sqrt(6.0))


def savgol_smooth(
    z: np.ndarray, confidence: np.ndarray, min_confidence: float = 0.5, window: int = 9, order: int = 2
) -> np.ndarray:
    """Confidence-weighted Savitzky-Golay smoothing of S series over time.

    Args:
        z: (T, S) observations, NaN where missing.
        confidence: (T, S) weights in [0, 1]; frames below ``min_confidence`` get weight 0.
        min_confidence: see above.
        window: odd number of frames in each local fit.
        order: polynomial order of the local fit (< window).

    Returns:
        (T, S) smoothed values; frames whose window holds fewer than ``order + 1`` usable frames, or usable frames
        on one side only, are interpolated linearly between their smoothed neighbours (NaN before the first and
        after the last usable frame).
    """
    if window < 3 or window % 2 == 0 or not 0 <= order < window:
        raise KeyheadError(
            f"savgol: window must be odd and >= 3 and order < window (got window={window}, order={order})"
        )
    z = np.asarray(z, dtype=np.float64)
    conf = np.nan_to_num(np.asarray(confidence, dtype=np.float64), nan=0.0)
    w = np.where(np.isfinite(z) & (conf >= min_confidence), conf, 0.0)
    zz = np.where(w > 0, z, 0.0)
    h = window // 2
    pad = ((h, h), (0, 0))
    ww = sliding_window_view(np.pad(w, pad), window, axis=0)  # (T, S, window)
    zw = sliding_window_view(np.pad(zz, pad), window, axis=0)
    j = np.arange(-h, h + 1, dtype=np.float64)
    powers = j[None, :] ** np.arange(2 * order + 1)[:, None]  # (2p+1, window)
    moments = np.einsum("tsw,mw->tsm", ww, powers)  # sum w j^m
    a = moments[..., np.add.outer(np.arange(order + 1), np.arange(order + 1))]  # (T, S, p+1, p+1)
    b = np.einsum("tsw,mw->tsm", ww * zw, powers[: order + 1])
    usable = ww > 0
    # a local fit must interpolate, not extrapolate: it needs frames on both sides of the centre (or the centre)
    both_sides = usable[..., h] | (usable[..., :h].any(-1) & usable[..., h + 1 :].any(-1))
    enough = (usable.sum(-1) >= order + 1) & both_sides
    a[~enough] = np.eye(order + 1)
    with np.errstate(all="ignore"):
        coef = np.linalg.solve(a, b[..., None])[..., 0, 0]
    out = np.where(enough, coef, np.nan)
    for k in range(out.shape[1]):
        good = np.flatnonzero(np.isfinite(out[:, k]))
        if len(good) >= 2:
            inner = np.arange(good[0], good[-1] + 1)
            out[inner, k] = np.interp(inner, good, out[good, k])
    return out


def smooth_trajectories(
    xy: np.ndarray,
    confidence: np.ndarray,
    method: str = "kalman",
    min_confidence: float = 0.5,
    **kwargs: float | int | None,
) -> np.ndarray:
    """Smooth (T, K, 2) keypoint tracks (x, y in pixels) given (T, K) confidences; returns (T, K, 2)."""
    if method not in METHODS:
        raise KeyheadError(f"--method {method!r}: choose {' or '.join(METHODS)}")
    t, k, _ = xy.shape
    z = xy.reshape(t, 2 * k)
    c = np.repeat(np.asarray(confidence, dtype=np.float64), 2, axis=1)
    fn = kalman_smooth if method == "kalman" else savgol_smooth
    return fn(z, c, min_confidence, **kwargs).reshape(t, k, 2)


def smooth_predictions(
    csv_path: str | os.PathLike,
    out: str | os.PathLike | None = None,
    method: str = "kalman",
    min_confidence: float = 0.5,
    **kwargs: float | int | None,
) -> Path:
    """Smooth a video prediction CSV (rows = frames in time order) and write it in the same format, atomically.

    Args:
        csv_path: the ``<video stem>.csv`` of ``keyhead predict``.
        out: the smoothed CSV (default ``<stem>_smoothed.csv`` beside the input).
        method: ``kalman`` or ``savgol``.
        min_confidence: frames below this confidence are not trusted and are interpolated.
        **kwargs: method parameters (``measurement_noise``, ``process_noise`` / ``window``, ``order``).

    Returns:
        The written path.

    Example:
        >>> smooth_predictions("predictions/test_vid.csv", method="kalman", min_confidence=0.5)  # doctest: +SKIP
        PosixPath('predictions/test_vid_smoothed.csv')
    """
    csv_path = Path(csv_path)
    rows, names, xy, lik, scorer = read_prediction_table(csv_path)
    if len(rows) < 2:
        raise KeyheadError(f"{csv_path}: {len(rows)} frame(s); smoothing needs a video's frames in time order")
    smoothed = smooth_trajectories(xy, lik, method, min_confidence, **kwargs)
    target = Path(out) if out is not None else csv_path.with_name(f"{csv_path.stem}_smoothed.csv")
    if target.resolve() == csv_path.resolve():
        raise KeyheadError(f"{target}: the output would replace the input; choose another --out")
    return write_prediction_table(target, rows, names, smoothed.astype(np.float32), lik, scorer=scorer)
