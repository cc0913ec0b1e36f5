"""Unsupervised keypoints from one video (FOMM's training setup, scaled to a CPU), as a resumable keyhead run.

Every step draws B random frame pairs (source, driving) of the video and minimises

    w_rec * pyramid_l1(G(source, kp_source, kp_driving), driving)
  + w_value * L_value + w_jacobian * L_jacobian         (equivariance under a random TPS warp of the driving frame)

over the detector (``fomm_hourglass`` + ``fomm_kp``) and a small warping generator
(:class:`keyhead.fomm.unsupervised.generator.WarpGenerator`), with Adam (FOMM: 2e-4, betas (0.5, 0.999)).

The run folder is a regular keyhead run (``keyhead.load_run``, ``keyhead profile``, ``keyhead predict`` work on it):

| file | what |
|---|---|
| ``config.yaml``, ``keypoints.txt`` | the detector as a keyhead model config (backbone / head kwargs) and its K names |
| ``fomm_train.yaml`` | the unsupervised settings (:class:`UnsupervisedConfig`) |
| ``model.safetensors`` | the detector's weights (written at every save and at the end) |
| ``generator.safetensors`` | the warping generator's weights |
| ``last.safetensors``, ``last_optimizer.safetensors`` | detector + generator and Adam state, for ``--resume`` |
| ``state.json``, ``history.csv`` | step, elapsed time; losses every ``log_every`` steps |
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import Tensor, nn
from tqdm.auto import tqdm

from keyhead.config import RunConfig, save_config
from keyhead.engine.checkpoint import load_optimizer, save_optimizer
from keyhead.errors import KeyheadError
from keyhead.fomm.detector import FommKPDetector, kp_detector
from keyhead.fomm.unsupervised.frames import read_frames, to_model_input
from keyhead.fomm.unsupervised.generator import WarpGenerator, pyramid_l1
from keyhead.fomm.unsupervised.tps import TPSWarp, equivariance_losses
from keyhead.io.atomic import atomic_write
from keyhead.io.structured import read_json, read_yaml
from keyhead.models.weights import load_weights, save_weights

__all__ = ["UnsupervisedConfig", "detector_from_config", "fomm_keypoints", "train_unsupervised"]


class UnsupervisedConfig(BaseModel):
    """Settings of an unsupervised run (saved as ``fomm_train.yaml``); the defaults fit a 2-core CPU."""

    model_config = ConfigDict(extra="forbid")

    video: str = Field(description="a video file or a folder of frames")
    input_size: tuple[int, int] = Field((128, 128), description="detector input (H, W); frames are resized to it")
    in_channels: int = Field(3, ge=1, le=3)
    num_kp: int = Field(10, ge=1)
    block_expansion: int = Field(32, ge=1, description="hourglass width (vox-256: 32)")
    max_features: int = Field(256, ge=1, description="hourglass channel cap (vox-256: 1024)")
    num_blocks: int = Field(4, ge=1, description="hourglass depth (vox-256: 5)")
    scale_factor: float = Field(0.25, gt=0, le=1, description="anti-alias downsampling before the hourglass")
    temperature: float = Field(0.1, gt=0)
    estimate_jacobian: bool = True
    generator_size: int = Field(64, ge=16, description="side of the images the generator reconstructs")
    generator_width: int = Field(16, ge=4, description="generator encoder width (FOMM: 64)")
    batch_size: int = Field(8, ge=1)
    steps: int = Field(2000, ge=1)
    max_minutes: float | None = Field(None, gt=0, description="stop cleanly when this wall-clock budget is spent")
    lr: float = Field(5e-4, gt=0, description="FOMM: 2e-4 for days of GPU training; 5e-4 for a CPU budget")
    betas: tuple[float, float] = (0.5, 0.999)
    sigma_affine: float = Field(0.05, ge=0)
    sigma_tps: float = Field(0.005, ge=0)
    points_tps: int = Field(5, ge=2)
    weight_reconstruction: float = Field(10.0, ge=0)
    weight_equivariance_value: float = Field(10.0, ge=0)
    weight_equivariance_jacobian: float = Field(10.0, ge=0)
    max_frames: int | None = Field(None, ge=2, description="use at most this many frames, evenly spaced")
    seed: int = 0
    log_every: int = Field(20, ge=1)
    save_every: int = Field(200, ge=1)


def detector_from_config(cfg: UnsupervisedConfig) -> FommKPDetector:
    """The detector an unsupervised run trains (random init, seeded by the caller)."""
    return kp_detector(
        num_kp=cfg.num_kp,
        num_channels=cfg.in_channels,
        block_expansion=cfg.block_expansion,
        max_features=cfg.max_features,
        num_blocks=cfg.num_blocks,
        temperature=cfg.temperature,
        estimate_jacobian=cfg.estimate_jacobian,
        scale_factor=cfg.scale_factor,
        input_size=tuple(cfg.input_size),
    )


def run_config(cfg: UnsupervisedConfig, name: str) -> RunConfig:
    """The detector as a keyhead model config, so ``load_run`` rebuilds it."""
    return RunConfig.model_validate(
        {
            "name": name,
            "data": {"path": str(cfg.video), "input_size": list(cfg.input_size), "in_channels": cfg.in_channels},
            "model": {
                "backbone": "fomm_hourglass",
                "backbone_kwargs": {
                    "block_expansion": cfg.block_expansion,
                    "max_features": cfg.max_features,
                    "num_blocks": cfg.num_blocks,
                    "scale_factor": cfg.scale_factor,
                },
                "head": "fomm_kp",
                "head_kwargs": {"temperature": cfg.temperature, "estimate_jacobian": cfg.estimate_jacobian},
                "downsample_factor": round(1 / cfg.scale_factor).bit_length() - 1,
            },
            "train": {"channels_last": False, "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed},
        }
    )


def fomm_keypoints(detector: FommKPDetector, x: Tensor) -> tuple[Tensor, Tensor | None]:
    """Keypoints and Jacobians in image-normalised coordinates (``keyhead.fomm.unsupervised.tps``).

    FOMM's values live on the heatmap-cell grid; they are mapped to input pixels and then to [-1, 1] over the pixel
    centres of the image, and the Jacobians are conjugated by the same (diagonal) scale.

    Args:
        detector: the FOMM detector.
        x: (B, C, H, W) images in [0, 1].

    Returns:
        (kp (B, K, 2), jacobian (B, K, 2, 2) or None).
    """
    out = detector(x)
    h, w = x.shape[-2:]
    size = x.new_tensor([w - 1, h - 1])
    kp = detector.to_pixels(out["value"]) / size * 2 - 1
    jac = out.get("jacobian")
    if jac is not None:
        hh, ww = detector.model.codec.heatmap_size
        stride = detector.model.codec.stride
        s = x.new_tensor([(ww - 1) * stride / (w - 1), (hh - 1) * stride / (h - 1)])
        jac = s.view(1, 1, 2, 1) * jac / s.view(1, 1, 1, 2)
    return kp, jac


class _Trainer(nn.Module):
    """Detector + generator, one step's losses."""

    def __init__(self, cfg: UnsupervisedConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.detector = detector_from_config(cfg)
        size = (cfg.generator_size, cfg.generator_size)
        self.generator = WarpGenerator(cfg.num_kp, cfg.in_channels, size, block_expansion=cfg.generator_width)

    def losses(self, source: Tensor, driving: Tensor, gen: torch.Generator) -> dict[str, Tensor]:
        cfg, b = self.cfg, source.shape[0]
        warp = TPSWarp(b, cfg.sigma_affine, cfg.sigma_tps, cfg.points_tps, generator=gen)
        warped = warp.warp_frame(driving)
        kp, jac = fomm_keypoints(self.detector, torch.cat([source, driving, warped]))
        kp_s, kp_d, kp_w = kp.split(b)
        jac_s, jac_d, jac_w = jac.split(b) if jac is not None else (None, None, None)
        out = self.generator(source, kp_s, kp_d, jac_s, jac_d)
        target = self.generator.resize(driving, self.generator.image_size)
        terms = {"reconstruction": pyramid_l1(out["prediction"], target)}
        terms.update(equivariance_losses(kp_d, jac_d, kp_w, jac_w, warp))
        weights = {
            "reconstruction": cfg.weight_reconstruction,
            "equivariance_value": cfg.weight_equivariance_value,
            "equivariance_jacobian": cfg.weight_equivariance_jacobian,
        }
        terms["loss"] = sum(weights[k] * v for k, v in terms.items())
        return terms


def _load_cfg(path: Path) -> UnsupervisedConfig:
    try:
        return UnsupervisedConfig.model_validate(read_yaml(path, "an unsupervised run config"))
    except ValidationError as exc:
        raise KeyheadError(f"{path}: not a valid unsupervised run config ({str(exc).splitlines()[0]})") from None


def train_unsupervised(
    cfg: UnsupervisedConfig | None, out_dir: str | os.PathLike, resume: bool = False, progress: bool = True
) -> Path:
    """Train (or resume) an unsupervised FOMM detector; returns the run folder.

    Args:
        cfg: the settings (None with ``resume``: read from ``out_dir/fomm_train.yaml``).
        out_dir: the run folder.
        resume: continue from ``last.safetensors`` (``cfg`` may raise ``steps`` / ``max_minutes``).
        progress: show a progress bar.
    """
    out = Path(out_dir)
    state_path = out / "state.json"
    if resume:
        if not (out / "fomm_train.yaml").is_file() or not (out / "last.safetensors").is_file():
            raise KeyheadError(f"{out}: no unsupervised run to resume (fomm_train.yaml / last.safetensors missing)")
        saved = _load_cfg(out / "fomm_train.yaml")
        if cfg is not None:
            cfg = saved.model_copy(update={"steps": cfg.steps, "max_minutes": cfg.max_minutes})
        else:
            cfg = saved
    elif cfg is None:
        raise KeyheadError("train_unsupervised needs a config unless resuming")
    elif (out / "fomm_train.yaml").exists():
        raise KeyheadError(f"{out} already holds an unsupervised run; pass --resume to continue it or choose --out")
    if cfg.input_size[0] % 32 or cfg.input_size[1] % 32:
        raise KeyheadError(f"input_size {tuple(cfg.input_size)}: each side must be a multiple of 32 (e.g. 128x128)")
    torch.manual_seed(cfg.seed)
    frames, original, _ = read_frames(cfg.video, tuple(cfg.input_size), cfg.in_channels, cfg.max_frames)
    if len(frames) < 2:
        raise KeyheadError(f"{cfg.video}: needs at least 2 frames to make source / driving pairs")
    trainer = _Trainer(cfg)
    opt = torch.optim.Adam(trainer.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
    step, elapsed = 0, 0.0
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        load_weights(trainer, out / "last.safetensors")
        load_optimizer(opt, out / "last_optimizer.safetensors")
        state = read_json(state_path, "state.json")
        try:
            step, elapsed = int(state["step"]), float(state["elapsed_s"])
        except (TypeError, KeyError, ValueError):
            raise KeyheadError(
                f"{state_path}: needs numbers step and elapsed_s; train again without --resume"
            ) from None
    else:
        with atomic_write(out / "fomm_train.yaml") as f:
            yaml.safe_dump(cfg.model_dump(mode="json"), f, sort_keys=False)
        save_config(run_config(cfg, out.name), out / "config.yaml")
        with atomic_write(out / "keypoints.txt") as f:
            f.write("".join(f"{n}\n" for n in trainer.detector.model.keypoint_names))
    history_path = out / "history.csv"
    history = _read_history(history_path, step)
    rng = np.random.default_rng([cfg.seed, step])
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    trainer.train()
    start = time.perf_counter() - elapsed
    bar = tqdm(total=cfg.steps, initial=step, desc="fomm-train", unit="step", disable=not progress)
    running: dict[str, float] = {}
    try:
        while step < cfg.steps:
            if cfg.max_minutes is not None and time.perf_counter() - start > cfg.max_minutes * 60:
                break
            i = rng.integers(0, len(frames), cfg.batch_size)
            j = rng.integers(0, len(frames), cfg.batch_size)
            terms = trainer.losses(to_model_input(frames[i]), to_model_input(frames[j]), gen)
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            opt.step()
            step += 1
            for k, v in terms.items():
                running[k] = running.get(k, 0.0) + float(v.detach())
            if step % cfg.log_every == 0 or step == cfg.steps:
                n = cfg.log_every if step % cfg.log_every == 0 else step % cfg.log_every
                row = {"step": step, "elapsed_s": round(time.perf_counter() - start, 2)}
                row.update({k: v / n for k, v in running.items()})
                history.append(row)
                running = {}
                bar.set_postfix(loss=f"{row['loss']:.3f}", eq=f"{row['equivariance_value']:.4f}")
            if step % cfg.save_every == 0:
                _save(trainer, opt, out, step, time.perf_counter() - start, history, original, len(frames))
            bar.update(1)
    finally:
        bar.close()
    _save(trainer, opt, out, step, time.perf_counter() - start, history, original, len(frames))
    return out


def _read_history(path: Path, step: int) -> list[dict]:
    if not path.is_file():
        return []
    with path.open() as f:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    return [r for r in rows if r["step"] <= step]


def _save(
    trainer: _Trainer,
    opt: torch.optim.Optimizer,
    out: Path,
    step: int,
    elapsed: float,
    history: list[dict],
    original: tuple[int, int],
    n_frames: int,
) -> None:
    meta = {"step": str(step)}
    save_weights(trainer.detector.model, out / "model.safetensors", meta)
    save_weights(trainer.generator, out / "generator.safetensors", meta)
    save_weights(trainer, out / "last.safetensors", meta)
    save_optimizer(opt, out / "last_optimizer.safetensors")
    if history:
        with atomic_write(out / "history.csv", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)
    state = {"step": step, "elapsed_s": elapsed, "frames": n_frames, "original_size": list(original)}
    with atomic_write(out / "state.json") as f:
        json.dump(state, f, indent=2)


def load_generator(run_dir: str | os.PathLike, cfg: UnsupervisedConfig) -> WarpGenerator:
    """The trained warping generator of a run."""
    size = (cfg.generator_size, cfg.generator_size)
    gen = WarpGenerator(cfg.num_kp, cfg.in_channels, size, block_expansion=cfg.generator_width)
    load_weights(gen, Path(run_dir) / "generator.safetensors")
    return gen.eval()
