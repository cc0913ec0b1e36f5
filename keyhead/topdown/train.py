"""Training a top-down multi-animal model: the instance-centre model, then the pose model on crops, one run folder.

A top-down run folder holds the user's ``config.yaml``, the frame ``split.json`` (every instance of a frame is in
the frame's split), ``topdown.json`` (animals, crop size, anchor, names, identities), ``centroid/`` and ``pose/``
(two ordinary keyhead run folders, trained by :func:`keyhead.engine.train.train` from label files written into the
run) and, after evaluation, ``metrics.json`` with the multi-animal metrics of every split.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from keyhead.compare import train_or_resume
from keyhead.config import RunConfig, load_config, save_config
from keyhead.data.dataset import load_split, make_split, save_split
from keyhead.data.formats import is_multi_instance, write_coco
from keyhead.errors import KeyheadError
from keyhead.io.rundir import is_topdown_run, write_topdown
from keyhead.topdown.stages import (
    auto_crop_size,
    centroid_frames,
    crop_frames,
    instance_centres,
    read_instances,
)
from keyhead.types import LabeledFrames


def wants_topdown(cfg: RunConfig) -> bool:
    """Whether ``cfg`` trains a top-down model: ``topdown.enabled=on``, or ``auto`` and multi-instance labels."""
    if cfg.topdown.enabled != "auto":
        return cfg.topdown.enabled == "on"
    return bool(cfg.data.path) and is_multi_instance(cfg.data.path)


def stage_configs(cfg: RunConfig, run_dir: Path, animals: int) -> tuple[RunConfig, RunConfig]:
    """The centre model's and the pose model's configs, derived from the user's (see ``topdown`` in the config)."""
    td = cfg.topdown
    split_file = str(run_dir / "split.json")
    share = td.centroid_share
    centre = cfg.model_copy(deep=True)
    centre.name, centre.output_dir = "centroid", str(run_dir)
    centre.data = centre.data.model_copy(
        update={
            "path": str(run_dir / "centroid-labels.json"),
            "input_size": td.centroid_input_size,
            "keypoints": None,
            "flip_pairs": [],
            "crop": "none",
            "split_file": split_file,
            "context_video": None,
        }
    )
    centre.model = centre.model.model_copy(
        update={
            "backbone": td.centroid_backbone,
            "pretrained": td.centroid_pretrained,
            "backbone_kwargs": {},
            "head": "heatmap",
            # a near-zero start: with gain 1.0 the MSE spends minutes shrinking random maps before any peak forms
            # (fly clip: 126 px validation error after 19 epochs, against 6-12 px after 7-10 epochs at 0.01)
            "head_kwargs": {"init_gain": 0.01},
            "downsample_factor": 2,
            "sigma": td.centroid_sigma,
            "target": "gaussian",
            "loss": "heatmap_mse_raw",
            "decoder": None,
            "decoder_kwargs": {},
            "centroids": animals,
        }
    )
    centre.augment = centre.augment.model_copy(update={"hflip": 0.0})
    centre.semi = centre.semi.model_copy(update={"videos": []})
    pose = cfg.model_copy(deep=True)
    pose.name, pose.output_dir = "pose", str(run_dir)
    pose.data = pose.data.model_copy(
        update={
            "path": str(run_dir / "pose-labels.json"),
            "keypoints": None,
            "crop": "box",
            "crop_margin": 0.0,
            "split_file": split_file,
        }
    )
    if cfg.train.max_minutes:
        centre.train = centre.train.model_copy(update={"max_minutes": cfg.train.max_minutes * share})
        pose.train = pose.train.model_copy(update={"max_minutes": cfg.train.max_minutes * (1 - share)})
    centre.train = centre.train.model_copy(update={"calibration": "none", "freeze_backbone_epochs": 0})
    return centre, pose


def train_topdown(
    cfg: RunConfig | str | os.PathLike | None,
    overrides: list[str] | None = None,
    resume: str | os.PathLike | None = None,
    progress: bool = True,
    evaluate_after: bool = True,
) -> Path:
    """Train both stages of a top-down model into one run folder; returns the folder.

    Args:
        cfg: a config object or YAML path (``data.path``: multi-animal labels; ``topdown``: the stage settings).
        overrides: ``section.key=value`` strings applied on top.
        resume: a top-down run folder to continue (finished stages are kept, an interrupted one resumes).
        progress: show progress bars.
        evaluate_after: evaluate every split end to end (centres -> crops -> pose) when done.

    Example:
        >>> run = train_topdown("multi.yaml", ["data.path=flies.slp"])  # doctest: +SKIP
    """
    from keyhead.engine.train import new_run_dir

    if resume is not None:
        run_dir = Path(resume)
        cfg = load_config(run_dir / "config.yaml", overrides)
    else:
        cfg = cfg if isinstance(cfg, RunConfig) else load_config(cfg, overrides)
        run_dir = None
    frames = read_instances(cfg)
    animals = cfg.topdown.animals or int(frames.present().sum(1).max())
    centres = instance_centres(frames, cfg.topdown.anchor)
    crop = cfg.topdown.crop_size or auto_crop_size(frames, centres)
    if run_dir is None:
        run_dir = new_run_dir(cfg)
        save_config(cfg, run_dir / "config.yaml")
        rows = LabeledFrames(frames.root, frames.image_paths, np.zeros((len(frames), 0, 2)), [])
        if cfg.data.split_file:
            split = load_split(cfg.data.split_file, rows)
        else:
            split = make_split(len(frames), cfg.data.split, cfg.data.split_seed)
        save_split(split, rows, run_dir / "split.json")
        write_coco(centroid_frames(frames, centres), run_dir / "centroid-labels.json", record_root=True)
        write_coco(crop_frames(frames, centres, crop), run_dir / "pose-labels.json", record_root=True)
        write_topdown(
            run_dir,
            {
                "animals": animals,
                "crop_size": crop,
                "anchor": cfg.topdown.anchor,
                "keypoint_names": frames.keypoint_names,
                "track_names": frames.track_names,
                "skeleton": [list(p) for p in frames.skeleton],
            },
        )
    elif not is_topdown_run(run_dir):
        raise KeyheadError(f"{run_dir}: not a top-down run folder (no topdown.json); resume it with its own command")
    centre_cfg, pose_cfg = stage_configs(cfg, run_dir, animals)
    print(f"top-down run folder: {run_dir}  ({len(frames)} frames, up to {animals} animals, crops of {crop} px)")
    for stage, stage_cfg in (("centroid", centre_cfg), ("pose", pose_cfg)):
        print(f"stage {stage}: {train_or_resume(stage_cfg, run_dir / stage, progress)}")
    if evaluate_after:
        from keyhead.topdown.evaluate import evaluate_topdown

        evaluate_topdown(run_dir, progress=progress)
        from keyhead.topdown.report import write_topdown_report

        print(f"report: {write_topdown_report(run_dir)}")
    return run_dir
