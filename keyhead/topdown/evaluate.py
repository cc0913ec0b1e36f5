"""End-to-end evaluation of a top-down run: centres -> crops -> pose on every split, against all labelled animals."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from keyhead.data.dataset import load_split
from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_write
from keyhead.io.images import read_image
from keyhead.io.rundir import read_topdown
from keyhead.multimetrics import instance_errors, oks_map
from keyhead.topdown.predict import Instances, TopDownPredictor
from keyhead.topdown.stages import read_instances
from keyhead.types import InstanceFrames, LabeledFrames


def predict_frames(
    predictor: TopDownPredictor, frames: InstanceFrames, rows: list[int], batch: int = 8, progress: bool = False
) -> list[Instances]:
    """The predictor's animals on ``rows`` of ``frames`` (images read as the run was trained)."""
    from tqdm.auto import tqdm

    out: list[Instances] = []
    bar = tqdm(total=len(rows), desc="top-down predict", unit="frame", disable=not progress, leave=False)
    for s in range(0, len(rows), batch):
        chunk = rows[s : s + batch]
        out += predictor([read_image(frames.path(i), predictor.in_channels) for i in chunk])
        bar.update(len(chunk))
    bar.close()
    return out


def split_metrics(frames: InstanceFrames, rows: list[int], found: list[Instances]) -> dict[str, Any]:
    """Per-instance pixel error after optimal matching, OKS mAP (COCO), missed and false instances."""
    present = frames.present()  # once, not per row
    gts = [frames.keypoints[i][present[i]] for i in rows]
    preds = [f.xy for f in found]
    errors = instance_errors(preds, gts)
    ap = oks_map(preds, [f.score for f in found], gts)
    return {"frames": len(rows), **errors, **ap}


def evaluate_topdown(
    run_dir: str | os.PathLike, data: str | os.PathLike | None = None, progress: bool = True
) -> dict[str, Any]:
    """Evaluate a top-down run end to end; writes ``metrics.json`` (or ``eval-<data>/metrics.json``) and returns it.

    Args:
        run_dir: the top-down run folder.
        data: other multi-animal labels to evaluate on (every frame is the ``test`` split); default: the run's
            split of its own labels.
        progress: show a progress bar.
    """
    from keyhead.config import load_config

    run = Path(run_dir)
    record = read_topdown(run)
    cfg = load_config(run / "config.yaml")
    if data is not None:
        cfg.data.path, cfg.data.keypoints = str(data), record["keypoint_names"]
    frames = read_instances(cfg)
    if frames.keypoint_names != record["keypoint_names"]:
        raise KeyheadError(
            f"{frames.source or cfg.data.path}: keypoints {frames.keypoint_names} differ from the run's "
            f"{record['keypoint_names']}; evaluate on labels of the same skeleton"
        )
    if data is None:
        rows = LabeledFrames(frames.root, frames.image_paths, np.zeros((len(frames), 0, 2)), [])
        splits = {k: v for k, v in load_split(run / "split.json", rows).items() if v}
        out_dir = run
    else:
        splits = {"test": list(range(len(frames)))}
        out_dir = run / f"eval-{Path(data).stem}"
    predictor = TopDownPredictor(run)
    metrics: dict[str, Any] = {"splits": {}}
    for name, idx in splits.items():
        t0 = time.perf_counter()
        found = predict_frames(predictor, frames, idx, progress=progress)
        m = split_metrics(frames, idx, found)
        m["frames_per_second"] = len(idx) / max(time.perf_counter() - t0, 1e-9)
        metrics["splits"][name] = m
        print(
            f"{name}: {m['n_matched']} matched animals, pixel error {m['mean_px']:.2f} px, "
            f"mAP {m['mAP']:.3f}, {m['n_missed']} missed, {m['n_false']} false ({len(idx)} frames)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(out_dir / "metrics.json") as f:
        json.dump(metrics, f, indent=1)
    return metrics
