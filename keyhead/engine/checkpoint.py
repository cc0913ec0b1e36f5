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
from safetensors.torch import load_file, save_file

from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_path, atomic_write
from keyhead.models.weights import FORMAT_VERSION, OPTIMIZER_PREFIX, check_format, model_state, read_metadata


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
    payload = {**model_state(module), **{OPTIMIZER_PREFIX + k: v for k, v in tensors.items()}}
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
    if raw is None:
        return None
    try:
        state = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        state = None
    if not isinstance(state, dict):
        raise KeyheadError(f"{path}: its training state is damaged (not a JSON mapping); start the run again")
    return state


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
    try:
        saved, state = _read_optimizer(path)
    except KeyheadError:
        raise
    except Exception as exc:  # any damage in the metadata: a wrong type, a missing key, a bad number
        raise KeyheadError(
            f"{path}: the optimizer state is damaged ({type(exc).__name__}); resuming would silently reset it, so "
            "it is refused: start the run again without --resume"
        ) from None
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
    try:
        optimizer.load_state_dict({"state": state, "param_groups": saved})
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise KeyheadError(
            f"{path}: the optimizer state does not fit this model ({type(exc).__name__}); start the run again"
        ) from None


def _read_optimizer(path: Path) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
    """(param groups, per-parameter state) saved by :func:`save_training_state` or :func:`save_optimizer`."""
    meta = read_metadata(path)
    tensors = load_file(str(path))
    if "optimizer" in meta:
        groups = json.loads(meta["optimizer"])
        tensors = {k[len(OPTIMIZER_PREFIX) :]: v for k, v in tensors.items() if k.startswith(OPTIMIZER_PREFIX)}
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
    if not all(isinstance(g.get("lr"), float | int) and isinstance(g.get("params"), list) for g in saved):
        raise ValueError("param_groups")
    return saved, state
