"""The LightningModule: losses from the head's raw output, validation pixel error, optimizers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch

from keyhead.config import RunConfig
from keyhead.engine.checkpoint import load_optimizer
from keyhead.models.codecs import CoordCodec
from keyhead.models.losses import laplace_nll, loss_spec
from keyhead.models.model import KeypointModel


class KeypointModule(L.LightningModule):
    """Trains a :class:`KeypointModel`; the model never owns its loss, the module does.

    Args:
        model: the model.
        cfg: the run config (loss, optimizer, schedule).
        start_epoch: epochs already done (when resuming), so schedules continue where they stopped.
        optimizer_state: a saved optimizer state (``last_optimizer.safetensors``) to restore at the start of fit.
        unsupervised: ``(model, step) -> {name: loss}`` for unlabelled data, added to every training step
            (:mod:`keyhead.engine.semi`).
    """

    def __init__(
        self,
        model: KeypointModel,
        cfg: RunConfig,
        start_epoch: int = 0,
        optimizer_state: Path | None = None,
        unsupervised: Callable[[KeypointModel, int], dict[str, torch.Tensor]] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.spec = loss_spec(cfg.model.loss)
        self.start_epoch = start_epoch
        self.optimizer_state = optimizer_state
        self.unsupervised = unsupervised

    def on_fit_start(self) -> None:
        if self.optimizer_state is None:
            return
        if Path(self.optimizer_state).is_file():
            load_optimizer(self.trainer.optimizers[0], self.optimizer_state, keep_lr=True)  # the LR schedule's rate
        else:
            logging.getLogger("keyhead").warning(
                "resuming without optimizer state (%s is missing): Adam's moments start again from zero",
                self.optimizer_state,
            )

    @property
    def epoch(self) -> int:
        """Epoch index counted from the start of the run: a resumed Trainer starts counting at ``start_epoch``."""
        return self.current_epoch

    def compute_loss(self, raw: object, keypoints: torch.Tensor) -> torch.Tensor:
        codec = self.model.codec
        if codec.kind == "heatmap":
            targets, valid = codec.encode(keypoints)
            if isinstance(raw, dict):  # heatmaps + their soft-argmax coords + log-scale (dynamic head)
                loss = self.spec.fn(raw["heatmaps"], targets, valid)
                if "log_scale" in raw:  # the likelihood trains the soft-argmax coordinates and the scale together
                    target = CoordCodec(codec.input_size).encode(keypoints)[0]
                    target = torch.where(valid[..., None], target, torch.full_like(target, float("nan")))
                    loss = loss + 0.1 * laplace_nll(raw["coords"], raw["log_scale"], target)
                return loss
            if raw.ndim == 5:  # several heads stacked (mhcrnn): every head is supervised by the same targets
                return sum(self.spec.fn(raw[:, i], targets, valid) for i in range(raw.shape[1]))
            return self.spec.fn(raw, targets, valid)
        target, _ = codec.encode(keypoints)
        loss = self.spec.fn(raw["coords"], target)
        if "log_scale" in raw:
            loss = loss + 0.1 * laplace_nll(raw["coords"].detach(), raw["log_scale"], target)
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.compute_loss(self.model(batch["image"]), batch["keypoints"])
        n = len(batch["image"])
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True)
        if self.unsupervised is not None:
            step = self.epoch * max(1, int(self.trainer.num_training_batches)) + batch_idx
            for name, value in self.unsupervised(self.model, step).items():
                self.log(f"train_{name}_loss", value, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
                loss = loss + value
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        raw = self.model(batch["image"])
        loss = self.compute_loss(raw, batch["keypoints"])
        pred = self.model.decode(raw).xy
        true = batch["keypoints"]
        err = torch.linalg.vector_norm(pred - true, dim=-1)
        labelled = torch.isfinite(err)
        n = len(batch["image"])
        self.log("val_loss", loss, on_epoch=True, prog_bar=False, batch_size=n, sync_dist=True)
        if labelled.any():
            self.log(
                "val_pixel_error", err[labelled].mean(), on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True
            )

    def configure_optimizers(self):
        t = self.cfg.train
        opt_cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
        params = [p for p in self.model.parameters()]
        optimizer = opt_cls(params, lr=t.lr, weight_decay=t.weight_decay)
        if t.schedule == "cosine":  # the rate is set before every step by engine.callbacks.BudgetSchedule
            return optimizer
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=t.milestones or [10**9], gamma=t.gamma)
        for _ in range(self.start_epoch):
            scheduler.step()
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
