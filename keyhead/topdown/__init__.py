"""Several animals per frame: top-down pose (instance centres, then any pose head on crops) and identity tracking.

``keyhead train / evaluate / predict`` come here for multi-animal labels and top-down run folders; the functions
below choose between this package and the single-animal paths, so the CLI stays one command per verb.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from keyhead.config import RunConfig, load_config
from keyhead.io.rundir import is_topdown_run, read_topdown

__all__ = ["evaluate_any", "is_topdown_run", "predict_topdown", "read_topdown", "train_any"]


def train_any(
    cfg: RunConfig | str | os.PathLike | None,
    overrides: list[str] | None = None,
    resume: str | os.PathLike | None = None,
    progress: bool = True,
) -> Path:
    """Train a top-down model when the labels are multi-animal (or ``topdown.enabled=on``), else a single-animal one.

    Example:
        >>> run = train_any("heatmap_efficientnet_lite0", ["data.path=flies.slp"])  # doctest: +SKIP
    """
    from keyhead.topdown.train import train_topdown, wants_topdown

    if resume is not None:
        if is_topdown_run(resume):
            return train_topdown(None, overrides, resume=resume, progress=progress)
    else:
        cfg = cfg if isinstance(cfg, RunConfig) else load_config(cfg, overrides)
        if wants_topdown(cfg):
            return train_topdown(cfg, progress=progress)
    from keyhead.engine.train import train

    return train(cfg, [] if isinstance(cfg, RunConfig) else overrides, resume=resume, progress=progress)


def evaluate_any(
    run_dir: str | os.PathLike,
    data: str | os.PathLike | None = None,
    progress: bool = True,
    flip: bool = False,
    decoder: str | None = None,
) -> Any:
    """Evaluate a run: end to end for a top-down run (``--flip`` is single-animal only), else per keypoint."""
    if is_topdown_run(run_dir):
        from keyhead.errors import KeyheadError
        from keyhead.topdown.evaluate import evaluate_topdown

        if flip or decoder:
            option = "--flip" if flip else "--decoder"
            raise KeyheadError(f"{option}: not supported for multi-animal (top-down) runs yet; evaluate without it")
        return evaluate_topdown(run_dir, data=data, progress=progress)
    from keyhead.evaluation.evaluate import evaluate_run

    return evaluate_run(run_dir, data=data, progress=progress, flip=flip, decoder=decoder)


def predict_topdown(
    run_dir: str | os.PathLike,
    images: list[Path],
    videos: list[Path],
    out: Path | None,
    batch_size: int = 8,
    labeled_video: bool = False,
    threshold: float = 0.5,
    resume: bool = True,
    max_frames: int | None = None,
    progress: bool = True,
    overlays: bool = True,
) -> None:
    """``keyhead predict`` with a top-down run: tracked CSV + .slp per video, a multi-animal table for images."""
    from keyhead.topdown.predict import TopDownPredictor
    from keyhead.topdown.video import predict_video_topdown

    predictor = TopDownPredictor(run_dir) if videos else None
    for video in videos:
        res = predict_video_topdown(
            run_dir, video, out, batch_size, resume, max_frames, progress, None, labeled_video, threshold, predictor
        )
        print(
            f"{res.csv}: {res.n_frames} frames, {res.frames_per_second:.1f} frames/s, identities "
            f"{', '.join(res.summary_data['identities'])}; {res.slp}"
            + (f"; labelled video {res.labeled}" if res.labeled else "")
        )
    if images:
        from keyhead.topdown.images import predict_images_topdown

        predict_images_topdown(run_dir, images, out, overlays, threshold, batch_size, progress)
