"""Callbacks: backbone freeze/unfreeze, augmentation epochs, safetensors checkpoints and the history table."""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import lightning as L

from keyhead.engine.checkpoint import save_optimizer, save_weights
from keyhead.utils.io import atomic_write


class FreezeBackbone(L.Callback):
    """Train only the head (and a stem adapted for grayscale input) for the first ``epochs`` epochs.

    While frozen, the backbone's BatchNorm layers stay in eval mode so their statistics keep the
    pretrained values.
    """

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        frozen = pl_module.epoch < self.epochs
        backbone = pl_module.model.backbone
        for p in backbone.parameters():
            p.requires_grad_(not frozen)
        if frozen:
            backbone.eval()


class AugmentEpoch(L.Callback):
    """Tells the training dataset which epoch it is, so each epoch draws new, reproducible augmentations."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.dataset.epoch = pl_module.epoch


class RunWriter(L.Callback):
    """Writes ``model.safetensors`` (best on the monitored metric), ``last.safetensors`` + optimizer state,
    ``state.json`` (epoch, best score) and ``history.csv`` (one row per epoch), all atomically.
    """

    def __init__(self, run_dir: Path, monitor: str = "val_pixel_error", best: float = math.inf, history=None) -> None:
        self.run_dir = Path(run_dir)
        self.monitor = monitor
        self.best = best
        self.history: list[dict] = list(history or [])
        self._t0 = time.perf_counter()
        self._elapsed0 = float(self.history[-1]["elapsed_s"]) if self.history else 0.0

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        m = {k: float(v) for k, v in trainer.callback_metrics.items()}
        row = {
            "epoch": pl_module.epoch,
            "train_loss": m.get("train_loss", math.nan),
            "val_loss": m.get("val_loss", math.nan),
            "val_pixel_error": m.get("val_pixel_error", math.nan),
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
            "elapsed_s": round(self._elapsed0 + time.perf_counter() - self._t0, 2),
        }
        self.history.append(row)
        score = m.get(self.monitor, m.get("train_loss", math.nan))
        if math.isfinite(score) and score < self.best:
            self.best = score
            save_weights(pl_module.model, self.run_dir / "model.safetensors", {"epoch": str(row["epoch"])})
        save_weights(pl_module.model, self.run_dir / "last.safetensors", {"epoch": str(row["epoch"])})
        save_optimizer(trainer.optimizers[0], self.run_dir / "last_optimizer.safetensors")
        with atomic_write(self.run_dir / "history.csv", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            w.writeheader()
            w.writerows(self.history)
        with atomic_write(self.run_dir / "state.json") as f:
            json.dump({"epoch": row["epoch"], "best": self.best, "monitor": self.monitor}, f)


def read_history(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "history.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
