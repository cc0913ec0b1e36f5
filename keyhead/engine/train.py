"""``keyhead train``: data -> split -> model -> Lightning fit -> best weights -> evaluation and plots."""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from keyhead.config import RunConfig, load_config, save_config
from keyhead.data.dataset import ImageCache, KeypointDataset, load_split, make_split, save_split
from keyhead.data.formats import load_labels, validate_frames
from keyhead.engine.callbacks import AugmentEpoch, FreezeBackbone, RunWriter, read_history
from keyhead.engine.checkpoint import load_weights
from keyhead.engine.module import KeypointModule
from keyhead.errors import KeyheadError
from keyhead.run import check_components, flip_pair_indices, labelled_rows, model_from_config, select_keypoints
from keyhead.types import LabeledFrames
from keyhead.utils.io import atomic_write

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
    base = Path(cfg.output_dir) / cfg.name
    run, i = base, 1
    while run.exists():
        i += 1
        run = base.with_name(f"{base.name}_{i}")
    run.mkdir(parents=True)
    return run


def prepare_data(cfg: RunConfig) -> tuple[LabeledFrames, list[tuple[int, int]]]:
    if not cfg.data.path:
        raise KeyheadError("data.path is not set; point it at your labels (e.g. data.path=path/to/project)")
    frames = select_keypoints(load_labels(cfg.data.path), cfg.data.keypoints)
    validate_frames(frames)
    keep = labelled_rows(frames)
    if len(keep) < len(frames):
        log.warning("%d of %d frames have no labelled keypoint and are left out", len(frames) - len(keep), len(frames))
        frames = frames.subset(keep)
    flips = flip_pair_indices(frames, cfg.data.flip_pairs)
    if cfg.augment.enabled and cfg.augment.hflip > 0 and not flips:
        log.warning("augment.hflip > 0 but no data.flip_pairs: left/right keypoints will not be swapped on flips")
    return frames, flips


def make_loaders(
    cfg: RunConfig, frames: LabeledFrames, split: dict[str, list[int]], flips: list[tuple[int, int]]
) -> tuple[KeypointDataset, DataLoader, DataLoader | None]:
    cache = ImageCache(frames, cfg.data.in_channels, cfg.data.cache_max_side)
    common = dict(cache=cache, in_channels=cfg.data.in_channels, flip_pairs=flips, seed=cfg.train.seed)
    train_ds = KeypointDataset(frames, cfg.data.input_size, cfg.augment, indices=split["train"], **common)
    val_ds = (
        KeypointDataset(frames, cfg.data.input_size, None, indices=split["val"], **common) if split["val"] else None
    )
    workers = cfg.train.num_workers
    loader_kw = dict(num_workers=workers, persistent_workers=workers > 0)
    train_dl = DataLoader(
        train_ds,
        batch_size=min(cfg.train.batch_size, len(train_ds)),
        shuffle=True,
        drop_last=len(train_ds) > cfg.train.batch_size,
        generator=torch.Generator().manual_seed(cfg.train.seed),
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
    start_epoch, history, best = 0, [], float("inf")
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").is_file() or not (run_dir / "state.json").is_file():
            raise KeyheadError(f"{run_dir} has no config.yaml/state.json: not a run folder that can be resumed")
        cfg = load_config(run_dir / "config.yaml", overrides)
        state = json.loads((run_dir / "state.json").read_text())
        start_epoch, best, history = state["epoch"] + 1, state["best"], read_history(run_dir)
    elif not isinstance(cfg, RunConfig):
        cfg = load_config(cfg, overrides)
    check_components(cfg)
    quiet_lightning()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)

    frames, flips = prepare_data(cfg)
    if resume is None:
        run_dir = new_run_dir(cfg)
        split = make_split(len(frames), cfg.data.split, cfg.data.split_seed)
        save_config(cfg, run_dir / "config.yaml")
        save_split(split, frames, run_dir / "split.json")
        with atomic_write(run_dir / "keypoints.txt") as f:
            f.write("\n".join(frames.keypoint_names) + "\n")
        with atomic_write(run_dir / "skeleton.json") as f:
            json.dump([list(pair) for pair in frames.skeleton], f)
    else:
        split = load_split(run_dir / "split.json", frames)
    device = "cuda" if torch.cuda.is_available() and cfg.train.accelerator in ("auto", "gpu", "cuda") else "cpu"
    print(
        f"run folder: {run_dir}  ({len(split['train'])} train / {len(split['val'])} val / {len(split['test'])} test "
        f"frames, {frames.num_keypoints} keypoints, {device})"
    )

    model = model_from_config(cfg, frames.keypoint_names, pretrained=False if resume else None)
    model.use_channels_last(cfg.train.channels_last)
    optimizer_state = run_dir / "last_optimizer.safetensors" if resume is not None else None
    module = KeypointModule(model, cfg, start_epoch=start_epoch, optimizer_state=optimizer_state)
    if resume is not None:
        load_weights(model, run_dir / "last.safetensors")
    train_ds, train_dl, val_dl = make_loaders(cfg, frames, split, flips)
    remaining = cfg.train.epochs - start_epoch
    if remaining > 0:
        callbacks: list[L.Callback] = [AugmentEpoch(train_ds), RunWriter(run_dir, best=best, history=history)]
        if cfg.train.freeze_backbone_epochs:
            callbacks.append(FreezeBackbone(cfg.train.freeze_backbone_epochs))
        if cfg.train.early_stopping_patience and val_dl is not None:
            callbacks.append(
                L.pytorch.callbacks.EarlyStopping("val_pixel_error", patience=cfg.train.early_stopping_patience)
            )
        if progress:
            callbacks.append(L.pytorch.callbacks.TQDMProgressBar(refresh_rate=1))
        trainer = L.Trainer(
            max_epochs=remaining,
            max_time={"minutes": cfg.train.max_minutes} if cfg.train.max_minutes else None,
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
            deterministic="warn",
            log_every_n_steps=1,
        )
        t0 = time.perf_counter()
        trainer.fit(module, train_dl, val_dl)
        print(f"trained {trainer.current_epoch} epochs in {time.perf_counter() - t0:.1f} s")
    if evaluate_after:
        from keyhead.evaluate import evaluate_run

        evaluate_run(run_dir, frames=frames, progress=progress, cache=train_ds.cache)
    return run_dir
