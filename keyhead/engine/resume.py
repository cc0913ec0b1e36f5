"""Resuming a run exactly, and running one on several processes (Lightning DDP) with one writer.

Exact resume needs no saved random state: batches, augmentations and dropout are drawn from (seed, epoch) alone
(:mod:`keyhead.engine.sampler`), the resume checkpoint holds weights, optimizer state, best score and the
early-stopping count of the last finished epoch, the LR schedule is replayed to that epoch, and the Trainer counts
epochs from it (so ``train.val_every`` keeps the same epochs).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch

from keyhead.config import RunConfig
from keyhead.engine.checkpoint import load_training_state
from keyhead.engine.sampler import launched_rank
from keyhead.errors import KeyheadError
from keyhead.io.atomic import remove_partial_files
from keyhead.io.rundir import read_history
from keyhead.io.structured import read_json
from keyhead.models.weights import read_metadata

RUN_DIR_ENV = "KEYHEAD_DDP_RUN_DIR"
"""Set by global rank 0 before DDP starts, so the other processes (which re-run the command) use its run folder."""


def read_resume_state(run_dir: Path) -> tuple[int, float, int, list[dict[str, float]]]:
    """(first epoch to train, best score, early-stopping count, history rows) of an interrupted run.

    ``last.safetensors`` is authoritative; ``history.csv`` rows after its epoch (written just before a kill) are
    dropped. Runs made before the resume checkpoint held its state fall back to ``state.json``.

    Raises:
        KeyheadError: the folder has no finished epoch to continue from.
    """
    last = run_dir / "last.safetensors"
    if not (run_dir / "config.yaml").is_file() or not last.is_file():
        raise KeyheadError(
            f"{run_dir} has no config.yaml/last.safetensors: not a run folder that can be resumed "
            "(no epoch finished before it stopped; start the run again)"
        )
    if launched_rank() == 0:  # a kill -9 during an atomic write leaves its temporary file behind
        remove_partial_files(run_dir)
    state = load_training_state(last)
    if state is None:
        state_file = run_dir / "state.json"
        if not state_file.is_file():
            raise KeyheadError(f"{run_dir} has no state.json: not a run folder that can be resumed")
        state = read_json(state_file, "state.json")
    try:
        epoch = int(state["epoch"])
        best, wait = float(state.get("best", math.inf)), int(state.get("wait", 0))
    except (TypeError, KeyError, ValueError, AttributeError):
        raise KeyheadError(
            f"{run_dir}: the saved training state is damaged (needs a number 'epoch'); start the run again"
        ) from None
    history = [{**row, "epoch": int(row["epoch"])} for row in read_history(run_dir) if row.get("epoch", -1) <= epoch]
    return epoch + 1, best, wait, history


def optimizer_file(run_dir: Path) -> Path:
    """Where a run keeps its optimizer state: in ``last.safetensors``, or (runs made before) its own file."""
    last = run_dir / "last.safetensors"
    return last if "optimizer" in read_metadata(last) else run_dir / "last_optimizer.safetensors"


def start_at_epoch(trainer: L.Trainer, epoch: int) -> None:
    """Make a new Trainer count epochs from ``epoch`` (as Lightning does when it restores its own checkpoint)."""
    for tracker in (trainer.fit_loop.epoch_progress.current, trainer.fit_loop.epoch_progress.total):
        tracker.ready = tracker.started = tracker.processed = tracker.completed = epoch


def device_count(cfg: RunConfig) -> int:
    """How many processes ``train.devices`` asks for (1 for ``auto`` on a machine without several GPUs)."""
    devices = cfg.train.devices
    if isinstance(devices, str):
        text = devices.strip()
        if text == "auto":
            return torch.cuda.device_count() if torch.cuda.device_count() > 1 else 1
        if text == "-1":
            return max(1, torch.cuda.device_count() if cfg.train.accelerator != "cpu" else os.cpu_count() or 1)
        if text.isdigit():
            return int(text)
        return len([d for d in text.split(",") if d.strip()])
    return max(1, devices)


def trainer_kwargs(cfg: RunConfig) -> dict[str, Any]:
    """Strategy and determinism settings for the Trainer.

    Several devices: DDP (one process per device; gloo on CPU, NCCL on GPU), BatchNorm statistics synchronised
    over the GPU processes (each sees only its share of a batch; on CPU each process keeps its own batch
    statistics, since torch's SyncBatchNorm needs GPUs), and keyhead's own sampler instead of Lightning's
    ``DistributedSampler`` (the same global batches as one process). ``train.deterministic``: ``true`` makes
    non-deterministic GPU kernels an error, ``warn`` uses deterministic kernels where they exist, ``false`` lets
    cuDNN pick the fastest ones.
    """
    kwargs: dict[str, Any] = {"use_distributed_sampler": False, "deterministic": cfg.train.deterministic}
    if cfg.train.deterministic is False:
        kwargs["benchmark"] = True
    else:  # cuBLAS needs a fixed workspace for reproducible matmuls (set before CUDA starts)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if device_count(cfg) > 1:
        from lightning.pytorch.strategies import DDPStrategy

        cpu = cfg.train.accelerator == "cpu" or not torch.cuda.is_available()
        kwargs["strategy"] = DDPStrategy(
            process_group_backend="gloo" if cpu else None, find_unused_parameters=True, start_method="popen"
        )
        kwargs["sync_batchnorm"] = not cpu  # torch's SyncBatchNorm runs on GPUs only
    return kwargs
