"""Ensembles: predict with several runs and combine their keypoints (median or mean), with the spread as uncertainty.

Every member predicts the same images (or video frames) through keyhead's ordinary prediction path, in original
image pixels; per frame and keypoint the members' (x, y) are combined by their median (robust to one member going
astray) or mean, ignoring members that gave no point. Outputs, in DeepLabCut format:

- ``predictions.csv`` (images) or ``<video stem>.csv`` (videos): the combined x, y, and as likelihood the members'
  mean confidence (its meaning is unchanged, so thresholds chosen for single models still apply);
- ``..._variance.csv`` beside it: per keypoint ``x_var``, ``y_var``, the variance of the members' coordinates
  (px^2) around their mean: the ensemble's own uncertainty, large where the members disagree.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_write
from keyhead.io.predictions import read_prediction_table, write_prediction_table

COMBINE = ("median", "mean")


def combine_keypoints(
    xy: np.ndarray, confidence: np.ndarray, combine: str = "median"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Combine M members' predictions.

    Args:
        xy: (M, N, K, 2) (x, y) of each member, NaN where a member gave no point.
        confidence: (M, N, K).
        combine: "median" or "mean" of the members' coordinates.

    Returns:
        xy (N, K, 2) combined; confidence (N, K) the members' mean; variance (N, K, 2) of x and y across members
        (px^2, 0 for a single member, NaN where no member gave a point).

    Example:
        >>> xy = np.array([[[[0.0, 0.0]]], [[[2.0, 0.0]]], [[[10.0, 0.0]]]])
        >>> combine_keypoints(xy, np.ones((3, 1, 1)))[0].tolist()
        [[[2.0, 0.0]]]
    """
    if combine not in COMBINE:
        raise KeyheadError(f"--combine {combine!r}: choose {' or '.join(COMBINE)}")
    xy = np.asarray(xy, dtype=np.float64)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: a keypoint no member found
        mid = np.nanmedian(xy, axis=0) if combine == "median" else np.nanmean(xy, axis=0)
        var = np.nanvar(xy, axis=0)
        conf = np.nanmean(np.asarray(confidence, dtype=np.float64), axis=0)
    return mid.astype(np.float32), conf.astype(np.float32), var.astype(np.float32)


def write_variance_csv(path: Path, rows: list[str], names: list[str], var: np.ndarray, scorer: str) -> Path:
    """The members' variance per keypoint (``x_var``, ``y_var`` in px^2), in the DLC three-header-row layout."""
    header = [
        ["scorer"] + [scorer] * (2 * len(names)),
        ["bodyparts"] + [n for n in names for _ in range(2)],
        ["coords"] + ["x_var", "y_var"] * len(names),
    ]
    with atomic_write(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerows(header)
        for i, row in enumerate(rows):
            writer.writerow([row] + ["" if not np.isfinite(v) else repr(float(v)) for v in var[i].ravel()])
    return path


def combine_csvs(csvs: list[Path], out_csv: Path, combine: str = "median") -> tuple[Path, Path]:
    """Combine members' prediction CSVs (same rows and keypoints) into ``out_csv`` and ``<out stem>_variance.csv``."""
    tables = [read_prediction_table(p) for p in csvs]
    rows, names = tables[0][0], tables[0][1]
    for p, (r, n, *_) in zip(csvs, tables, strict=True):
        if n != names:
            raise KeyheadError(f"{p}: keypoints {n} differ from {names}; ensemble members must share their keypoints")
        if r != rows:
            raise KeyheadError(f"{p}: its rows differ from {csvs[0]}'s; members must predict the same frames")
    xy, conf, var = combine_keypoints(np.stack([t[2] for t in tables]), np.stack([t[3] for t in tables]), combine)
    main = write_prediction_table(out_csv, rows, names, xy, conf, scorer=f"keyhead-ensemble-{combine}")
    side = write_variance_csv(out_csv.with_name(f"{out_csv.stem}_variance.csv"), rows, names, var, "keyhead-ensemble")
    return main, side


def _check_members(run_dirs: list[Path]) -> None:
    names = None
    for run in run_dirs:
        file = run / "keypoints.txt"
        if not file.is_file():
            raise KeyheadError(f"{run}: not a finished run folder (no keypoints.txt); ensemble members are run folders")
        these = [n for n in file.read_text().splitlines() if n]
        if names is not None and these != names:
            raise KeyheadError(f"{run}: keypoints {these} differ from {run_dirs[0]}'s {names}; members must match")
        names = these


def predict_ensemble(
    run_dirs: list[str | os.PathLike],
    inputs: list[str | os.PathLike],
    out_dir: str | os.PathLike | None = None,
    combine: str = "median",
    runtime: str = "torch",
    batch_size: int = 16,
    progress: bool = False,
) -> Path:
    """Predict images and videos with every run and write the combined tables (see the module docstring).

    Args:
        run_dirs: two or more run folders with the same keypoints.
        inputs: images, folders of images and videos.
        out_dir: output folder (default ``FIRST_RUN/predictions``).
        combine: "median" or "mean".
        runtime: video runtime of each member ("torch", "onnx", "compile").
        batch_size: images per forward pass.
        progress: progress bars.

    Returns:
        The output folder.

    Example:
        >>> predict_ensemble(["runs/a", "runs/b", "runs/c"], ["frames/"], combine="median")  # doctest: +SKIP
    """
    from keyhead.inference.images import predict_images
    from keyhead.inference.video import predict_videos
    from keyhead.io.video import VIDEO_SUFFIXES, check_distinct_stems

    runs = [Path(r) for r in run_dirs]
    if len(runs) < 2:
        raise KeyheadError("an ensemble needs at least two run folders (RUN --ensemble RUN2 ...)")
    if combine not in COMBINE:
        raise KeyheadError(f"--combine {combine!r}: choose {' or '.join(COMBINE)}")
    _check_members(runs)
    videos = [Path(p) for p in inputs if Path(p).suffix.lower() in VIDEO_SUFFIXES]
    images = [Path(p) for p in inputs if Path(p).suffix.lower() not in VIDEO_SUFFIXES]
    check_distinct_stems(videos)  # <stem>.csv per video, before any member predicts
    out = Path(out_dir) if out_dir is not None else runs[0] / "predictions"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".ensemble-") as tmp:
        members = [Path(tmp) / f"member{i}" for i in range(len(runs))]
        if images:
            for run, folder in zip(runs, members, strict=True):
                predict_images(run, images, folder, overlays=False, batch_size=batch_size, progress=progress)
            main, _ = combine_csvs([m / "predictions.csv" for m in members], out / "predictions.csv", combine)
            print(f"ensemble of {len(runs)} runs ({combine}) -> {main}")
        for video in videos:
            csvs = []
            for run, folder in zip(runs, members, strict=True):
                res = predict_videos(run, [video], folder, batch_size, runtime, progress=progress, resume=False)
                csvs.append(Path(res[0].csv))
            main, _ = combine_csvs(csvs, out / f"{video.stem}.csv", combine)
            meta = csvs[0].with_name(f"{video.stem}_video.json")
            if meta.is_file():
                first = json.loads(meta.read_text())
                info = {key: first.get(key) for key in ("video", "fps", "n_frames")}
                info |= {"ensemble": [str(r) for r in runs], "combine": combine}
                with atomic_write(out / f"{video.stem}_video.json") as f:
                    json.dump(info, f, indent=1)
            print(f"ensemble of {len(runs)} runs ({combine}) -> {main}")
    return out


def predict_light_or_ensemble(
    run_dir: Path,
    images: list[Path],
    videos: list[Path],
    out: Path | None,
    runtime: str,
    ensemble: list[Path] | None,
    combine: str,
    no_overlays: bool,
    threshold: float,
    batch_size: int = 16,
    no_progress: bool = True,
) -> None:
    """``keyhead predict`` with an ONNX model (no torch) or an ensemble of runs (images; ensembles also videos)."""
    if ensemble:
        from keyhead.inference.ensembles import predict_ensemble

        opts = dict(combine=combine, runtime=runtime, batch_size=batch_size, progress=not no_progress)
        predict_ensemble([run_dir, *ensemble], [*images, *videos], out, **opts)
        return
    if videos:
        raise KeyheadError(f"{videos[0]}: a .onnx model predicts images; for videos pass the run folder")
    from keyhead.runtime import predict_images_onnx

    predict_images_onnx(run_dir, images, out, overlays=not no_overlays, threshold=threshold)
