"""keyhead's predictions as SLEAP (``.slp``, ``.analysis.h5``) and NWB (ndx-pose) files, written by ``sleap-io``.

keyhead writes its own prediction table (DeepLabCut's CSV layout, which ``movement`` and ``sleap-io`` read as
they are); for the analysis tools that want SLEAP or NWB files, :func:`save_predictions` hands the same numbers to
sleap-io's writers instead of a writer of keyhead's own. A single-animal table is one animal: each row (a video
frame, or an image) becomes a labelled frame with one predicted instance on the track ``animal``; a multi-animal
table (an ``individuals`` header row) gives one predicted instance per individual, each on its own track named after
the individual. Keypoint confidences become point scores; missing keypoints stay NaN, and an individual without
any predicted point in a row gets no instance there.

Torch-free, like the rest of ``io/``; ``sleap_io`` is imported when a file is written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_path
from keyhead.io.predictions import is_multi_prediction_table, read_multi_prediction_table, read_prediction_table
from keyhead.io.structured import read_json

POSE_FORMATS = ("slp", "nwb", "analysis-h5")
TRACK = "animal"


def pose_format(out: str | os.PathLike, to: str | None = None) -> str:
    """The pose file format to write: ``to`` when given, else from OUT's name (``.slp``, ``.nwb``, ``.analysis.h5``)."""
    if to is not None:
        if to not in POSE_FORMATS:
            raise KeyheadError(f"--to {to!r}: a prediction table converts to {', '.join(POSE_FORMATS)}")
        return to
    name = Path(out).name.lower()
    for suffix, fmt in ((".slp", "slp"), (".nwb", "nwb"), (".analysis.h5", "analysis-h5")):
        if name.endswith(suffix):
            return fmt
    raise KeyheadError(f"{out}: a prediction table converts to NAME.slp, NAME.nwb or NAME.analysis.h5; rename OUT")


def prediction_labels(
    rows: list[str],
    names: list[str],
    xy: np.ndarray,
    likelihood: np.ndarray,
    video: str | os.PathLike | None = None,
    skeleton: list[tuple[str, str]] | None = None,
    individuals: list[str] | None = None,
) -> Any:
    """A ``sleap_io.Labels`` holding the predicted instances of a prediction table's rows.

    Args:
        rows: N row labels: frame numbers (a video) or image paths (images: an image-sequence video).
        names: K keypoint names; xy: (N, K, 2) pixels, NaN where missing; likelihood: (N, K).
        video: the predicted video (rows are its frame numbers); None for image rows.
        skeleton: keypoint-name pairs to draw as edges.
        individuals: M animal names of a multi-animal table, one track each; xy is then (N, M, K, 2) and
            likelihood (N, M, K).
    """
    import sleap_io as sio

    known = set(names)
    edges = [(a, b) for a, b in (skeleton or []) if a in known and b in known]
    sk = sio.Skeleton(nodes=list(names), edges=edges, name="keyhead")
    tracks = [sio.Track(name=name) for name in individuals or [TRACK]]
    xy = np.asarray(xy).reshape(len(rows), len(tracks), len(names), 2)
    likelihood = np.asarray(likelihood).reshape(len(rows), len(tracks), len(names))
    if video is not None:
        try:
            frame_idx = np.array([int(float(r)) for r in rows])
        except ValueError:
            raise KeyheadError(
                f"{video}: the table's rows are not frame numbers; convert image predictions without --video"
            ) from None
        vid = sio.Video(filename=str(video), open_backend=False)
    else:
        frame_idx = np.arange(len(rows))
        files = [str(r) for r in rows]  # an image sequence, described as sleap-io's ImageVideo describes itself
        meta = {"type": "ImageVideo", "filename": files[0], "filenames": files, "shape": None, "grayscale": False}
        vid = sio.Video(filename=files, open_backend=False, backend_metadata=meta)
    # one dense (frames, tracks, K, x / y / score) array for sleap-io's own constructor; frames without any
    # predicted point (and frame numbers the table skips) get no instance, SLEAP's convention
    first = int(frame_idx.min())
    arr = np.full((int(frame_idx.max()) - first + 1, len(tracks), len(names), 3), np.nan)
    arr[frame_idx - first, :, :, :2] = xy
    arr[frame_idx - first, :, :, 2] = np.nan_to_num(likelihood, nan=0.0)
    return sio.Labels.from_numpy(arr, [vid], sk, tracks, first_frame=first, return_confidence=True)


def save_predictions(
    csv_path: str | os.PathLike,
    out: str | os.PathLike,
    to: str | None = None,
    video: str | os.PathLike | None = None,
    skeleton: list[tuple[str, str]] | None = None,
) -> Path:
    """Convert a keyhead prediction table into a SLEAP / NWB pose file through sleap-io, atomically.

    Args:
        csv_path: a table written by ``keyhead predict`` (``<stem>.csv`` of a video, or ``predictions.csv``); a
            multi-animal table gives one track per individual.
        out: ``NAME.slp``, ``NAME.nwb`` or ``NAME.analysis.h5`` (or any name with ``to``).
        to: ``slp``, ``nwb`` or ``analysis-h5`` (default: from OUT's name).
        video: the predicted video; default the one named in ``<stem>_video.json`` beside a video's table.
        skeleton: keypoint-name pairs (e.g. :func:`keyhead.io.rundir.read_skeleton` of the run).

    Returns:
        The written path.
    """
    import sleap_io as sio

    csv_path, out = Path(csv_path), Path(out)
    fmt = pose_format(out, to)
    individuals = None
    if is_multi_prediction_table(csv_path):
        rows, individuals, names, xy, likelihood = read_multi_prediction_table(csv_path)
    else:
        rows, names, xy, likelihood, _ = read_prediction_table(csv_path)
    if not rows:
        raise KeyheadError(f"{csv_path}: no predictions in the table; predict again")
    if video is None:
        summary = csv_path.with_name(f"{csv_path.stem}_video.json")
        if summary.is_file():
            info = read_json(summary, "a keyhead video summary")
            video = info.get("video") if isinstance(info, dict) else None
    if fmt == "analysis-h5" and video is None:
        raise KeyheadError(f"{csv_path}: a SLEAP analysis file describes a video; pass --video the predicted video")
    labels = prediction_labels(rows, names, xy, likelihood, video, skeleton, individuals)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        if fmt == "slp":
            sio.save_slp(labels, str(tmp))
        elif fmt == "nwb":
            sio.save_nwb(labels, str(tmp))
        else:
            sio.save_analysis_h5(labels, str(tmp))
    return out
