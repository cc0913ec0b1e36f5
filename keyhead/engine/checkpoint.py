"""Pickle-free checkpoints: weights and optimizer state as safetensors, everything else as JSON/YAML.

``last.safetensors`` is the resume checkpoint of a run and commits one finished epoch in one atomic rename: the
model's tensors, the optimizer's tensors (``optimizer.<param>.<name>``) and, in the safetensors metadata, the epoch,
the best monitored score, the early-stopping counter and the optimizer's param groups. A run killed at any moment
therefore resumes from a consistent epoch; files written around it (``history.csv``, ``state.json``) are views that
``keyhead train --resume`` reconciles with it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from keyhead.errors import KeyheadError
from keyhead.utils.io import atomic_path, atomic_write

FORMAT_VERSION = 1
_OPT = "optimizer."


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The safetensors header metadata of ``path`` ({} when none); a clear error for unreadable files."""
    path = Path(path)
    if not path.is_file():
        raise KeyheadError(f"weights file {path} is missing; the run folder is incomplete (train again or --resume)")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise KeyheadError(f"{path}: not a readable safetensors file ({exc}); it may be truncated or corrupt") from None


def check_format(path: str | os.PathLike, metadata: dict[str, str]) -> None:
    """Refuse files written by a newer keyhead (a higher ``format_version`` than this one reads)."""
    raw = metadata.get("format_version")
    if raw is None:
        return
    try:
        version = int(raw)
    except ValueError:
        raise KeyheadError(
            f"{path}: format version {raw!r} is not a number; the file is not a keyhead checkpoint"
        ) from None
    if version > FORMAT_VERSION:
        raise KeyheadError(
            f"{path}: written with checkpoint format version {version}, this keyhead reads up to {FORMAT_VERSION}; "
            "upgrade keyhead (pip install -U keyhead) to use this run"
        )


def _model_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}


def save_weights(module: torch.nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Write a module's state dict as safetensors, atomically."""
    meta = {"format": "keyhead", "format_version": str(FORMAT_VERSION), **(metadata or {})}
    with atomic_path(path) as tmp:
        save_file(_model_state(module), str(tmp), metadata=meta)


def load_weights(module: torch.nn.Module, path: str | os.PathLike, strict: bool = True) -> None:
    """Load safetensors weights into ``module``; a clear error when the file does not fit the model.

    Optimizer tensors of a resume checkpoint (``optimizer.*``) are skipped.
    """
    path = Path(path)
    check_format(path, read_metadata(path))
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise KeyheadError(f"{path}: not a readable safetensors file ({exc}); it may be truncated or corrupt") from None
    state = {k: v for k, v in state.items() if not k.startswith(_OPT)}
    result = module.load_state_dict(state, strict=False)
    bad = list(result.missing_keys) + list(result.unexpected_keys)
    if strict and bad:
        raise KeyheadError(
            f"{path}: weights do not fit this model ({len(result.missing_keys)} missing, "
            f"{len(result.unexpected_keys)} unexpected, e.g. {bad[0]!r}); "
            "the config and weights are from different runs"
        )


def _optimizer_parts(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for name, val in st.items():
            if torch.is_tensor(val):
                tensors[f"{pid}.{name}"] = val.detach().contiguous().cpu()
            else:
                scalars[f"{pid}.{name}"] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def save_training_state(
    module: torch.nn.Module, optimizer: torch.optim.Optimizer, path: str | os.PathLike, state: dict[str, Any]
) -> None:
    """Write the resume checkpoint: model + optimizer tensors and ``state`` (JSON-able), in one atomic file.

    Args:
        module: the model.
        optimizer: its optimizer.
        path: ``RUN_DIR/last.safetensors``.
        state: what the run needs to continue, e.g. ``{"epoch": 4, "best": 3.2, "wait": 1}``.
    """
    tensors, groups = _optimizer_parts(optimizer)
    payload = {**_model_state(module), **{_OPT + k: v for k, v in tensors.items()}}
    meta = {
        "format": "keyhead",
        "format_version": str(FORMAT_VERSION),
        "epoch": str(state.get("epoch", "")),
        "training_state": json.dumps(state),
        "optimizer": json.dumps(groups),
    }
    with atomic_path(path) as tmp:
        save_file(payload, str(tmp), metadata=meta)


def load_training_state(path: str | os.PathLike) -> dict[str, Any] | None:
    """The ``state`` saved by :func:`save_training_state`, or None for a checkpoint without one (older runs)."""
    meta = read_metadata(path)
    check_format(path, meta)
    raw = meta.get("training_state")
    return None if raw is None else json.loads(raw)


def save_optimizer(optimizer: torch.optim.Optimizer, path: str | os.PathLike) -> None:
    """Optimizer state alone: tensors to ``path`` (safetensors), scalars and param groups to ``path``.json."""
    tensors, groups = _optimizer_parts(optimizer)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    with atomic_write(str(path) + ".json") as f:
        json.dump(groups, f)


def load_optimizer(optimizer: torch.optim.Optimizer, path: str | os.PathLike, keep_lr: bool = False) -> None:
    """Restore optimizer state from a resume checkpoint (:func:`save_training_state`) or :func:`save_optimizer` files.

    Args:
        optimizer: the optimizer, already built for the same parameters.
        path: ``last.safetensors`` (or an optimizer-only file with its ``.json``).
        keep_lr: keep the optimizer's current learning rates (set by the LR schedule for the resumed epoch) instead
            of the saved ones, which predate the schedule's step at the end of the saved epoch.
    """
    path = Path(path)
    meta = read_metadata(path)
    tensors = load_file(str(path))
    if "optimizer" in meta:
        groups = json.loads(meta["optimizer"])
        tensors = {k[len(_OPT) :]: v for k, v in tensors.items() if k.startswith(_OPT)}
    else:
        groups = json.loads(Path(str(path) + ".json").read_text())
    state: dict[int, dict[str, Any]] = {}
    for key, val in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = val
    for key, val in groups["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = val
    saved = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in groups["param_groups"]]
    if len(saved) != len(optimizer.param_groups):
        raise KeyheadError(
            f"{path}: optimizer state has {len(saved)} parameter groups, this model's optimizer "
            f"{len(optimizer.param_groups)}; the checkpoint is from another model or keyhead version: start a new run"
        )
    if keep_lr:
        for group, now in zip(saved, optimizer.param_groups, strict=True):
            for key in ("lr", "initial_lr"):
                if key in now:
                    group[key] = now[key]
    optimizer.load_state_dict({"state": state, "param_groups": saved})
