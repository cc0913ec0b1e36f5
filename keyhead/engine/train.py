"""``keyhead train``: data -> split -> model -> Lightning fit -> best weights -> evaluation and plots."""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from keyhead.config import RunConfig, load_config, save_config
from keyhead.data.checks import check_recorded_sizes, image_sizes
from keyhead.data.dataset import ImageCache, KeypointDataset, load_split, recorded_sizes, save_split
from keyhead.data.prepare import initial_split, prepare_data
from keyhead.engine.callbacks import AugmentEpoch, BudgetSchedule, FreezeBackbone, RunWriter
from keyhead.engine.module import KeypointModule
from keyhead.engine.resume import RUN_DIR_ENV, optimizer_file, read_resume_state, start_at_epoch, trainer_kwargs
from keyhead.engine.sampler import EpochBatchSampler, launched_rank
from keyhead.engine.semi import setup_semi
from keyhead.io.atomic import atomic_write, make_dir
from keyhead.io.rundir import write_skeleton
from keyhead.models.build import check_components, model_from_config
from keyhead.models.tta import save_flip_pairs
from keyhead.models.weights import load_weights
from keyhead.types import LabeledFrames

log = logging.getLogger("keyhead")


def quiet_lightning() -> None:
    """Lightning's start-up banners and tips are noise in a CLI; keyhead prints what matters itself."""
    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")


def new_run_dir(cfg: RunConfig) -> Path:
    """``output_dir/name``, or ``name_2``, ``name_3``... if taken (a run is never overwritten)."""
    base = make_dir(cfg.output_dir, "output_dir") / cfg.name
    run, i = base, 1
    while run.exists():
        i += 1
        run = base.with_name(f"{base.name}_{i}")
    run.mkdir(parents=True)
    return run


def make_loaders(
    cfg: RunConfig,
    frames: LabeledFrames,
    split: dict[str, list[int]],
    flips: list[tuple[int, int]],
    context_offsets: list[int] | None = None,
) -> tuple[KeypointDataset, DataLoader, DataLoader | None]:
    cache = ImageCache(frames, cfg.data.in_channels, cfg.data.cache_max_side)
    common = dict(
        cache=cache,
        in_channels=cfg.data.in_channels,
        flip_pairs=flips,
        seed=cfg.train.seed,
        crop_margin=cfg.data.crop_margin,
        context_offsets=context_offsets,
        context_video=cfg.data.context_video,
        context_frames=cfg.data.context_frames,
    )
    train_ds = KeypointDataset(frames, cfg.data.input_size, cfg.augment, indices=split["train"], **common)
    val_ds = (
        KeypointDataset(frames, cfg.data.input_size, None, indices=split["val"], **common) if split["val"] else None
    )
    workers = cfg.train.num_workers
    loader_kw = dict(num_workers=workers, persistent_workers=workers > 0)
    train_dl = DataLoader(
        train_ds,
        batch_sampler=EpochBatchSampler(len(train_ds), cfg.train.batch_size, cfg.train.seed),
        **loader_kw,
    )
    val_dl = DataLoader(val_ds, batch_size=cfg.train.batch_size, **loader_kw) if val_ds is not None else None
    return train_ds, train_dl, val_dl


def train(
    cfg: RunConfig | str | os.PathLike,
    overrides: list[str] | None = None,
    resume: str | os.PathLike | None = None,
    progress: bool = True,
    evaluate_after: bool = True,
) -> Path:
    """Train a model; returns the run folder (config, split, weights, history, metrics, plots).

    Args:
        cfg: a config object or YAML path.
        overrides: ``section.key=value`` strings applied on top.
        resume: a run folder to continue from its last epoch (its config and split are reused).
        progress: show progress bars.
        evaluate_after: evaluate every split with the best weights and write plots when done.
    """
    start_epoch, history, best, wait = 0, [], float("inf"), 0
    if resume is not None:
        run_dir = Path(resume)
        start_epoch, best, wait, history = read_resume_state(run_dir)
        cfg = load_config(run_dir / "config.yaml", overrides)
    elif not isinstance(cfg, RunConfig):
        cfg = load_config(cfg, overrides)
    check_components(cfg)
    quiet_lightning()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)

    frames, flips = prepare_data(cfg)
    model = model_from_config(cfg, frames.keypoint_names, pretrained=False if resume else None)
    if cfg.train.freeze_stride:
        model.backbone.layers_to_stride(cfg.train.freeze_stride)  # a backbone without stages fails before training
    model.use_channels_last(cfg.train.channels_last)
    ddp_child = launched_rank() > 0 and RUN_DIR_ENV in os.environ
    if ddp_child:  # a DDP process started by rank 0: it trains in rank 0's run folder and writes nothing
        run_dir = Path(os.environ[RUN_DIR_ENV])
        split = load_split(run_dir / "split.json", frames)
    elif resume is None:
        split = initial_split(cfg, frames)
        run_dir = new_run_dir(cfg)
        save_config(cfg, run_dir / "config.yaml")
        save_split(split, frames, run_dir / "split.json", image_sizes(frames))
        with atomic_write(run_dir / "keypoints.txt") as f:
            f.write("\n".join(frames.keypoint_names) + "\n")
        write_skeleton(run_dir, frames.skeleton)
        save_flip_pairs(run_dir, frames.keypoint_names, flips)
    else:
        split = load_split(run_dir / "split.json", frames)
        recorded = recorded_sizes(run_dir)
        check_recorded_sizes(recorded, frames, image_sizes(frames), run_dir)
    device = "cuda" if torch.cuda.is_available() and cfg.train.accelerator in ("auto", "gpu", "cuda") else "cpu"
    print(
        f"run folder: {run_dir}  ({len(split['train'])} train / {len(split['val'])} val / {len(split['test'])} test "
        f"frames, {frames.num_keypoints} keypoints, {device})"
    )

    optimizer_state = optimizer_file(run_dir) if resume is not None else None
    semi = setup_semi(cfg, frames, split["train"], model, run_dir)
    module = KeypointModule(model, cfg, start_epoch=start_epoch, optimizer_state=optimizer_state, unsupervised=semi)
    if resume is not None:
        load_weights(model, run_dir / "last.safetensors")
    train_ds, train_dl, val_dl = make_loaders(cfg, frames, split, flips, model.frame_offsets())
    remaining = cfg.train.epochs - start_epoch
    patience = cfg.train.early_stopping_patience if val_dl is not None else 0
    if patience and wait >= patience:
        remaining = 0  # the run had already stopped early
    spent_s = float(history[-1]["elapsed_s"]) if history else 0.0  # earlier segments of a resumed run
    minutes_left = cfg.train.max_minutes - spent_s / 60.0 if cfg.train.max_minutes else None
    if minutes_left is not None and minutes_left <= 0:
        remaining = 0  # the run's time budget is spent: a resumed run gets what is left of it, not a new one
    if remaining > 0:
        writer = RunWriter(run_dir, best=best, history=history, patience=patience, wait=wait)
        callbacks: list[L.Callback] = [AugmentEpoch(train_ds)]
        if cfg.train.schedule == "cosine":  # before the writer, which records the rate each step ran with
            t = cfg.train
            callbacks.append(BudgetSchedule(t.lr, t.epochs, t.max_minutes, t.warmup, t.final_lr, elapsed_s=spent_s))
        callbacks.append(writer)
        if cfg.train.freeze_backbone_epochs or cfg.train.freeze_stride:
            t = cfg.train
            callbacks.append(FreezeBackbone(t.freeze_backbone_epochs, t.train_stem_while_frozen, t.freeze_stride))
        if progress:
            callbacks.append(L.pytorch.callbacks.TQDMProgressBar(refresh_rate=1))
        trainer = L.Trainer(
            max_epochs=cfg.train.epochs,
            max_time={"minutes": minutes_left} if minutes_left else None,
            accelerator=cfg.train.accelerator,
            devices=cfg.train.devices,
            precision=cfg.train.precision,
            check_val_every_n_epoch=cfg.train.val_every,
            num_sanity_val_steps=0,
            enable_checkpointing=False,
            logger=False,
            enable_progress_bar=progress,
            enable_model_summary=False,
            callbacks=callbacks,
            log_every_n_steps=1,
            **trainer_kwargs(cfg),
        )
        start_at_epoch(trainer, start_epoch)
        os.environ[RUN_DIR_ENV] = str(run_dir.resolve())
        t0 = time.perf_counter()
        try:
            trainer.fit(module, train_dl, val_dl)
        except SystemExit:  # Lightning's answer to Ctrl-C: shut down cleanly, then exit
            if not trainer.interrupted:
                raise
            saved = "finished epochs are saved" if (run_dir / "last.safetensors").is_file() else "no epoch finished"
            print(f"keyhead: interrupted; {saved}; continue with: keyhead train --resume {run_dir}", file=sys.stderr)
            sys.exit(130)
        if trainer.global_rank != 0:
            return run_dir
        print(f"trained {trainer.current_epoch - start_epoch} epochs in {time.perf_counter() - t0:.1f} s")
    if evaluate_after:
        from keyhead.evaluation.evaluate import evaluate_run

        evaluate_run(run_dir, frames=frames, progress=progress, cache=train_ds.cache)
        write_run_report(run_dir)
    return run_dir


def write_run_report(run_dir: Path) -> None:
    """``report.html`` at the end of training; a report problem is a warning, never a failed training run."""
    try:
        from keyhead.report.html import write_report

        print(f"report: {write_report(run_dir)}")
    except Exception as exc:  # noqa: BLE001  (the weights and metrics are already saved)
        log.warning("could not write the HTML report (%s: %s); run keyhead report %s", type(exc).__name__, exc, run_dir)
