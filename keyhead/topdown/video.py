"""Multi-animal video prediction: animals found per frame, identities kept by the tracker, rows streamed to CSV.

The output is a multi-animal DeepLabCut table (scorer / individuals / bodyparts / coords; one individual per
identity, absent animals as empty cells), written as frames are predicted to ``<stem>.csv.part`` and renamed when
the video is done: memory stays flat and an interrupted run resumes where it stopped (the tracker restarts from
the last written frame's animals). A SLEAP ``.slp`` with one track per identity is written beside it at the end.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from keyhead.errors import KeyheadError
from keyhead.inference._stream import completed_rows, truncate_rows
from keyhead.inference.tracking import Tracker
from keyhead.io.atomic import atomic_write
from keyhead.io.predictions import format_instance_rows, prediction_header, read_multi_prediction_table
from keyhead.io.video import iter_frames, probe
from keyhead.topdown.predict import Instances, TopDownPredictor


@dataclass
class TrackedVideo:
    """Paths and numbers of one multi-animal video prediction."""

    csv: Path
    slp: Path | None
    summary: Path
    labeled: Path | None
    n_frames: int
    frames_per_second: float
    summary_data: dict[str, Any]


def identity_names(record: dict[str, Any], animals: int) -> list[str]:
    """The identities' names: the labels' track names when there are as many, else ``animal0..``."""
    names = [str(n) for n in record.get("track_names") or []]
    return names if len(names) == animals else [f"animal{i}" for i in range(animals)]


def _slots(found: Instances, ids: np.ndarray, animals: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """One frame's animals placed in their identity's slot: (M, K, 2) xy and (M, K) confidence, NaN where absent."""
    xy = np.full((animals, k, 2), np.nan, dtype=np.float32)
    conf = np.full((animals, k), np.nan, dtype=np.float32)
    for p, t in enumerate(ids):
        if 0 <= t < animals:
            xy[t], conf[t] = found.xy[p], found.confidence[p]
    return xy, conf


def _seed_tracker(tracker: Tracker, partial: Path) -> None:
    """Restart the tracker from the last written frame: its animals keep their identities (column order)."""
    _, _, _, xy, _ = read_multi_prediction_table(partial)
    if len(xy):
        present = np.flatnonzero(np.isfinite(xy[-1]).all(-1).any(-1))
        tracker.seed(xy[-1][present], present)


def predict_video_topdown(
    run_dir: str | os.PathLike,
    video: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    batch_size: int = 8,
    resume: bool = True,
    max_frames: int | None = None,
    progress: bool = True,
    animals: int | None = None,
    labeled_video: bool = False,
    threshold: float = 0.5,
    predictor: TopDownPredictor | None = None,
) -> TrackedVideo:
    """Predict and track every animal of a video with a top-down run.

    Args:
        run_dir: the top-down run folder.
        video: the video (any codec PyAV / OpenCV decode).
        out_dir: output folder (default ``RUN_DIR/predictions``).
        batch_size: frames per centre-model batch.
        resume: continue an interrupted prediction of the same video by the same run.
        max_frames: predict only the first N frames.
        progress: show a progress bar.
        animals: identities to keep (default: the run's ``animals``).
        labeled_video: also write an MP4 with each identity drawn in its own colour.
        threshold: confidence below which the labelled video draws points hollow.
        predictor: a loaded predictor to reuse over several videos.

    Returns:
        The CSV, .slp and summary paths and frames/s.
    """
    from tqdm.auto import tqdm

    from keyhead.config import load_config

    run = Path(run_dir)
    predictor = predictor or TopDownPredictor(run)
    cfg = load_config(run / "config.yaml")
    animals = int(animals or predictor.record["animals"])
    names = predictor.keypoint_names
    k = len(names)
    out = Path(out_dir) if out_dir is not None else run / "predictions"
    out.mkdir(parents=True, exist_ok=True)
    video = Path(video)
    if not video.is_file():
        raise KeyheadError(f"video {video} does not exist")
    info = probe(video)
    total = info.n_frames if max_frames is None else min(info.n_frames or max_frames, max_frames)
    csv_path, partial = out / f"{video.stem}.csv", out / f"{video.stem}.csv.part"
    individuals = identity_names(predictor.record, animals)
    header = prediction_header(names, scorer=f"keyhead-{run.name}", individuals=individuals)
    done = completed_rows(partial, header) if resume else 0
    match = cfg.topdown.match_distance or predictor.crop_size / 2
    tracker = Tracker(max_tracks=animals, max_age=cfg.topdown.max_age, max_cost=match)
    if done:
        truncate_rows(partial, header, done)
        _seed_tracker(tracker, partial)
    else:
        with atomic_write(partial) as f:
            f.write(header)
    bar = tqdm(total=total, initial=done, desc=video.name, unit="frame", disable=not progress)
    t0, n_new = time.perf_counter(), 0
    with open(partial, "a") as f:
        batch: list[np.ndarray] = []
        first = done
        for i, frame in iter_frames(video, predictor.in_channels, start=done):
            if total is not None and i >= total:
                break
            batch.append(frame)
            if len(batch) == batch_size:
                first = _flush(predictor, tracker, batch, first, animals, k, f)
                bar.update(len(batch))
                n_new += len(batch)
                batch = []
        if batch:
            first = _flush(predictor, tracker, batch, first, animals, k, f)
            bar.update(len(batch))
            n_new += len(batch)
    bar.close()
    elapsed = time.perf_counter() - t0
    os.replace(partial, csv_path)
    fps = n_new / max(elapsed, 1e-9)
    slp = _write_slp(csv_path, video, predictor.record)
    labeled = None
    if labeled_video:
        from keyhead.inference.video import write_labeled_video

        limbs = [(names.index(a), names.index(b)) for a, b in predictor.record.get("skeleton") or []]
        mp4 = out / f"{video.stem}_labeled.mp4"
        labeled = write_labeled_video(video, csv_path, mp4, threshold, limbs, progress, instances=animals)
    _, ids, _, xy, _ = read_multi_prediction_table(csv_path)
    present = np.isfinite(xy).all(-1).any(-1)  # (N, M)
    summary = {
        "video": str(video),
        "frames": int(len(xy)),
        "frames_per_second": fps,
        "identities": ids,
        "frames_with_each_identity": {name: int(present[:, m].sum()) for m, name in enumerate(ids)},
        "mean_animals_per_frame": float(present.sum(1).mean()) if len(present) else 0.0,
    }
    summary_path = out / f"{video.stem}_video.json"
    with atomic_write(summary_path) as f:
        json.dump(summary, f, indent=1)
    return TrackedVideo(csv_path, slp, summary_path, labeled, int(len(xy)), fps, summary)


def _flush(
    predictor: TopDownPredictor, tracker: Tracker, batch: list[np.ndarray], first: int, animals: int, k: int, f: Any
) -> int:
    """Predict, track and append one batch of frames; returns the next frame number."""
    xy = np.empty((len(batch), animals, k, 2), dtype=np.float32)
    conf = np.empty((len(batch), animals, k), dtype=np.float32)
    for j, found in enumerate(predictor(batch)):
        ids = tracker.update(found.xy, found.score)
        xy[j], conf[j] = _slots(found, ids, animals, k)
    f.write(format_instance_rows(first, xy, conf))
    f.flush()
    return first + len(batch)


def _write_slp(csv_path: Path, video: Path, record: dict[str, Any]) -> Path:
    """The tracked predictions as SLEAP ``.slp`` (one track per identity) beside the CSV."""
    from keyhead.io.interop import save_predictions

    skeleton = [tuple(p) for p in record.get("skeleton") or []]
    return save_predictions(csv_path, csv_path.with_suffix(".slp"), video=video, skeleton=skeleton)
