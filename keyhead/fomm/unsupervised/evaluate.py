"""Evaluate an unsupervised FOMM run: linear regression from its keypoints to labelled landmarks, vs random init.

Labels are either the true keypoints of the training video's frames (a DeepLabCut prediction-style CSV whose index
is the frame number, e.g. ``keyhead synth``'s ``videos/synth_vid_keypoints.csv``) or a labelled project (Lightning
Pose / DeepLabCut / COCO ..., anything ``keyhead.load_labels`` reads) whose images need not come from the video.

Held-out frames: for video labels, every 4th block of 50 consecutive frames (25 %; whole blocks, so that
near-identical neighbours of a test frame are not in the regressor's training set); for labelled images, a seeded
random third of the labelled frames.

The random-init baseline is the same detector architecture with the run's seed and no training; its BatchNorm
statistics are estimated on the evaluation frames first (without that a random network in eval mode sees
unnormalised activations), so it gets the same treatment as the trained one apart from the weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from keyhead.data.formats import load_labels
from keyhead.data.formats.dlc import read_dlc_predictions
from keyhead.errors import KeyheadError
from keyhead.fomm.detector import FommKPDetector
from keyhead.fomm.unsupervised.frames import read_frames, read_images, to_model_input
from keyhead.fomm.unsupervised.landmarks import detector_features, regression_errors
from keyhead.fomm.unsupervised.train import UnsupervisedConfig, _load_cfg, detector_from_config
from keyhead.io.atomic import atomic_write
from keyhead.models.build import load_run

__all__ = ["evaluate_unsupervised", "load_eval_frames", "split_indices"]

BLOCK = 50


def split_indices(n: int, video: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row indices: whole 50-frame blocks for video labels (every 4th held out), else a random third."""
    rows = np.arange(n)
    if video:
        test = (rows // BLOCK) % 4 == 3
        if not test.any() or test.all():
            test = rows % 4 == 3
    else:
        test = np.zeros(n, bool)
        test[np.random.default_rng(seed).permutation(n)[: max(1, n // 3)]] = True
    if test.all() or not test.any():
        raise KeyheadError(f"landmark evaluation needs at least 2 labelled frames (got {n})")
    return rows[~test], rows[test]


def load_eval_frames(
    labels: str | os.PathLike, video: str | os.PathLike | None, size: tuple[int, int], channels: int
) -> tuple[torch.Tensor, np.ndarray, bool, str]:
    """Frames at the model size and their landmarks in original pixels.

    Returns:
        (frames (N, C, H, W) uint8, landmarks (N, M, 2), whether they are video frames, a description).
    """
    path = Path(labels)
    if not path.exists():
        raise KeyheadError(f"labels {path} do not exist; give a keypoints CSV of the video or a labelled project")
    trajectory = None
    if path.is_file() and path.suffix.lower() == ".csv":
        try:
            trajectory = read_dlc_predictions(path)[0]
        except KeyheadError:
            trajectory = None
    if trajectory is not None:
        if video is None:
            raise KeyheadError(f"{path} holds keypoints of video frames; pass the video with --video")
        try:
            idx = [int(float(p)) for p in trajectory.image_paths]
        except ValueError:
            raise KeyheadError(f"{path}: the index column must be frame numbers for video labels") from None
        frames, _, read = read_frames(video, size, channels, indices=idx)
        order = {f: i for i, f in enumerate(idx)}
        kp = trajectory.keypoints[[order[r] for r in read]]
        return frames, kp.astype(np.float64), True, f"{len(read)} frames of {video} with {path.name}"
    frames_info = load_labels(path)
    keep = np.flatnonzero(np.isfinite(frames_info.keypoints).all(-1).any(-1))
    files = [frames_info.root / frames_info.image_paths[i] for i in keep]
    frames, _, _ = read_images(files, size, channels)
    return frames, frames_info.keypoints[keep].astype(np.float64), False, f"{len(keep)} labelled images of {path}"


@torch.no_grad()
def calibrate_batchnorm(detector: FommKPDetector, frames: torch.Tensor, batch_size: int = 32) -> None:
    """Replace BatchNorm running statistics by their average over ``frames`` (train-mode passes, no gradients)."""
    norms = [m for m in detector.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    detector.train()
    for i in range(0, len(frames), batch_size):
        detector(to_model_input(frames[i : i + batch_size]))
    for m in norms:
        m.momentum = 0.1
    detector.eval()


def evaluate_unsupervised(
    run_dir: str | os.PathLike,
    labels: str | os.PathLike,
    video: str | os.PathLike | None = None,
    jacobians: bool = False,
    baseline: bool = True,
    out: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Landmark regression errors of a run's detector (and of its random-init baseline).

    Args:
        run_dir: an unsupervised run folder (``keyhead fomm-train``).
        labels: video keypoints CSV or a labelled project (see the module docstring).
        video: the video the labels' frame numbers refer to (default: the run's training video).
        jacobians: also regress from the Jacobian entries.
        baseline: evaluate the random-init detector too.
        out: JSON file to write (default ``RUN/landmark_eval.json``).

    Returns:
        {"trained": errors, "random_init": errors, "settings": ...} (see ``regression_errors``).
    """
    run = Path(run_dir)
    if not (run / "fomm_train.yaml").is_file():
        raise KeyheadError(f"{run}: not an unsupervised FOMM run (no fomm_train.yaml); see keyhead fomm-train")
    cfg: UnsupervisedConfig = _load_cfg(run / "fomm_train.yaml")
    model, _ = load_run(run)
    model.use_channels_last(False)
    trained = FommKPDetector(model).eval()
    video = video if video is not None else cfg.video
    frames, landmarks, is_video, what = load_eval_frames(labels, video, tuple(cfg.input_size), cfg.in_channels)
    train, test = split_indices(len(frames), is_video, cfg.seed)
    detectors = {"trained": trained}
    if baseline:
        torch.manual_seed(cfg.seed)
        rand = detector_from_config(cfg)
        calibrate_batchnorm(rand, frames)
        detectors["random_init"] = rand
    result: dict[str, Any] = {}
    for name, det in detectors.items():
        feats = detector_features(det, frames, jacobians=jacobians)
        result[name] = regression_errors(feats[train], landmarks[train], feats[test], landmarks[test])
    result["settings"] = {
        "run": str(run),
        "labels": str(labels),
        "frames": what,
        "split": "every 4th block of 50 frames held out" if is_video else "seeded random third held out",
        "features": "keypoints (x, y) in input pixels" + (" + Jacobian entries" if jacobians else ""),
        "regressor": "least squares with bias, one fit per landmark coordinate on its labelled frames",
        "landmarks": int(landmarks.shape[1]),
    }
    with atomic_write(Path(out) if out is not None else run / "landmark_eval.json") as f:
        json.dump(result, f, indent=2)
    return result
