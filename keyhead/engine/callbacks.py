"""Callbacks: backbone freeze/unfreeze, augmentation epochs, safetensors checkpoints and the history table."""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import lightning as L
from torch import nn

from keyhead.engine.checkpoint import save_training_state
from keyhead.engine.sampler import seed_epoch
from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_write
from keyhead.models.weights import save_weights


class FreezeBackbone(L.Callback):
    """Train only the head (and, with ``train_stem``, the backbone's first convolution) for the first ``epochs``;
    with ``stride``, the backbone's stem and stages up to that output stride stay frozen for the whole run.

    Seed 001's two-stage transfer: a grayscale stem and a new output layer adapt first, then everything is
    fine-tuned. While frozen, the backbone's BatchNorm layers stay in eval mode so their statistics keep the
    pretrained values; every later epoch puts the backbone back in training mode (Lightning restores, after
    validation, the mode it saw before it, so a backbone once set to eval would otherwise stay there), except the
    layers ``stride`` keeps frozen (``train.freeze_stride``: early layers keep their ImageNet weights and
    statistics, and back-propagation stops before them).
    """

    def __init__(self, epochs: int, train_stem: bool = False, stride: int = 0) -> None:
        self.epochs = epochs
        self.train_stem = train_stem
        self.stride = stride

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        frozen = pl_module.epoch < self.epochs
        backbone = pl_module.model.backbone
        for p in backbone.parameters():
            p.requires_grad_(not frozen)
        backbone.train(not frozen)
        if frozen and self.train_stem:
            for p in stem_conv(backbone).parameters():
                p.requires_grad_(True)
        if not frozen and self.stride:
            for layer in backbone.layers_to_stride(self.stride):
                layer.requires_grad_(False)
                layer.eval()


def stem_conv(backbone: nn.Module) -> nn.Conv2d:
    """The backbone's first convolution (the one that reads the image: ResNet ``conv1``, a ViT's patch embedding)."""
    for m in backbone.modules():
        if isinstance(m, nn.Conv2d):
            return m
    raise KeyheadError(f"{type(backbone).__name__} has no convolution; set train.train_stem_while_frozen: false")


class AugmentEpoch(L.Callback):
    """Tells the training dataset which epoch it is and seeds torch / NumPy / random from (seed, epoch), so each
    epoch draws new augmentations and dropout masks that depend on nothing else (an exact ``--resume``).
    """

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.dataset.epoch = pl_module.epoch
        seed_epoch(self.dataset.seed, pl_module.epoch)


def warmup_cosine(p: float, warmup: float = 0.0, final: float = 0.0) -> float:
    """Learning-rate factor at progress ``p`` in [0, 1]: a linear warm-up over the first ``warmup`` of the run
    (starting just above 0, so the first step is not wasted), then a half cosine from 1 down to ``final``.

    Example:
        >>> [round(warmup_cosine(p, warmup=0.1), 3) for p in (0.0, 0.05, 0.1, 0.55, 1.0)]
        [0.01, 0.51, 1.0, 0.5, 0.0]
    """
    p = min(max(p, 0.0), 1.0)
    if p < warmup:
        return min(1.0, (p + 1e-3) / warmup)
    q = (p - warmup) / (1.0 - warmup)
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * q))


class BudgetSchedule(L.Callback):
    """A cosine learning rate over the run's whole budget, in epochs or wall-clock minutes, whichever ends it first.

    Before every training step each parameter group's rate is set to ``lr * factor(p)``, where ``p`` in [0, 1] is
    the share of the run done: ``max(epochs done / epochs, minutes spent / max_minutes)`` (the minutes include those
    of earlier segments of a resumed run). ``factor`` rises linearly from 0 over the first ``warmup`` of the run,
    then follows a half cosine from 1 down to ``final``. A run stopped by its time budget thus ends with the rate
    annealed, which epoch milestones cannot promise when the budget, not the epoch count, ends the run. With a
    time budget the rate depends on the clock, so two runs match no more closely than their epoch counts do.

    Args:
        lr: the peak rate (``train.lr``).
        epochs: the run's epoch count.
        max_minutes: the run's wall-clock budget (None: epochs only).
        warmup: share of the run spent warming up.
        final: the last rate as a factor of ``lr``.
        elapsed_s: seconds already spent by earlier segments of a resumed run.
    """

    def __init__(
        self,
        lr: float,
        epochs: int,
        max_minutes: float | None = None,
        warmup: float = 0.0,
        final: float = 0.0,
        elapsed_s: float = 0.0,
    ) -> None:
        self.lr, self.epochs, self.max_minutes = lr, epochs, max_minutes
        self.warmup, self.final, self.elapsed_s = warmup, final, elapsed_s
        self._t0 = time.perf_counter()

    def factor(self, p: float) -> float:
        """The rate's factor at progress ``p`` in [0, 1] (:func:`warmup_cosine`)."""
        return warmup_cosine(p, self.warmup, self.final)

    def progress(self, epoch: int, batch_idx: int, batches: int) -> float:
        """Share of the run done at a step: the larger of the epoch share and the time-budget share."""
        p = (epoch + batch_idx / max(1, batches)) / self.epochs
        if self.max_minutes:
            p = max(p, (self.elapsed_s + time.perf_counter() - self._t0) / (60.0 * self.max_minutes))
        return min(p, 1.0)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        batches = trainer.num_training_batches
        p = self.progress(pl_module.epoch, batch_idx, int(batches) if math.isfinite(batches) else 1)
        for group in trainer.optimizers[0].param_groups:
            group["lr"] = self.lr * self.factor(p)


class RunWriter(L.Callback):
    """Keeps the best score and the early-stopping count, and writes the run's per-epoch files atomically.

    In order: ``model.safetensors`` (when the monitored metric improved), ``history.csv`` (one row per epoch), then
    ``last.safetensors`` (weights, optimizer state, epoch, best, early-stopping count: the resume checkpoint, one
    atomic rename) and ``state.json`` (a readable copy of that state). Every DDP process keeps the counts, so all of
    them stop together; only global rank 0 writes.

    Args:
        run_dir: the run folder.
        monitor: the metric to keep the best weights by (``train_loss`` when the run has no validation frames).
        best: best score so far (when resuming).
        history: history rows so far (when resuming).
        patience: stop after this many validations without improvement (0: never).
        wait: validations without improvement so far (when resuming).
    """

    def __init__(
        self,
        run_dir: Path,
        monitor: str = "val_pixel_error",
        best: float = math.inf,
        history=None,
        patience: int = 0,
        wait: int = 0,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.monitor = monitor
        self.best = best
        self.history: list[dict] = list(history or [])
        self.patience = patience
        self.wait = wait
        self._t0 = time.perf_counter()
        self._elapsed0 = float(self.history[-1]["elapsed_s"]) if self.history else 0.0
        self._lr = math.nan

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        self._lr = trainer.optimizers[0].param_groups[0]["lr"]  # the rate of the epoch's last step (history's lr)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        m = {k: float(v) for k, v in trainer.callback_metrics.items()}
        epoch = pl_module.epoch
        has_val = getattr(trainer, "val_dataloaders", None) is not None
        validated = has_val and (epoch + 1) % (trainer.check_val_every_n_epoch or 1) == 0
        row = {
            "epoch": epoch,
            "train_loss": m.get("train_loss", math.nan),
            "val_loss": m.get("val_loss", math.nan) if validated else math.nan,
            "val_pixel_error": m.get("val_pixel_error", math.nan) if validated else math.nan,
            "lr": self._lr,
            "elapsed_s": round(self._elapsed0 + time.perf_counter() - self._t0, 2),
        }
        self.history.append(row)
        score = row.get(self.monitor, math.nan) if has_val else row["train_loss"]
        improved = math.isfinite(score) and score < self.best
        if improved:
            self.best, self.wait = score, 0
        elif math.isfinite(score):
            self.wait += 1
        if self.patience and self.wait >= self.patience:
            trainer.should_stop = True
        if not trainer.is_global_zero:
            return
        if improved:
            save_weights(pl_module.model, self.run_dir / "model.safetensors", {"epoch": str(epoch)})
        with atomic_write(self.run_dir / "history.csv", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            w.writeheader()
            w.writerows(self.history)
        state = {"epoch": epoch, "best": self.best, "monitor": self.monitor, "wait": self.wait}
        save_training_state(pl_module.model, trainer.optimizers[0], self.run_dir / "last.safetensors", state)
        with atomic_write(self.run_dir / "state.json") as f:
            json.dump(state, f)
