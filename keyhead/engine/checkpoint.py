"""Pickle-free checkpoints: weights and optimizer state as safetensors, everything else as JSON/YAML."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from keyhead.errors import KeyheadError
from keyhead.utils.io import atomic_path, atomic_write

FORMAT_VERSION = 1


def save_weights(module: torch.nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Write a module's state dict as safetensors, atomically."""
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    meta = {"format": "keyhead", "format_version": str(FORMAT_VERSION), **(metadata or {})}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)


def load_weights(module: torch.nn.Module, path: str | os.PathLike, strict: bool = True) -> None:
    """Load safetensors weights into ``module``; a clear error when the file does not fit the model."""
    path = Path(path)
    if not path.is_file():
        raise KeyheadError(f"weights file {path} is missing; the run folder is incomplete (train again or --resume)")
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise KeyheadError(f"{path}: not a readable safetensors file ({exc}); it may be truncated or corrupt") from None
    result = module.load_state_dict(state, strict=False)
    bad = list(result.missing_keys) + list(result.unexpected_keys)
    if strict and bad:
        raise KeyheadError(
            f"{path}: weights do not fit this model ({len(result.missing_keys)} missing, "
            f"{len(result.unexpected_keys)} unexpected, e.g. {bad[0]!r}); "
            "the config and weights are from different runs"
        )


def save_optimizer(optimizer: torch.optim.Optimizer, path: str | os.PathLike) -> None:
    """Optimizer state: tensors to ``path`` (safetensors), scalars and param groups to ``path``.json."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for name, val in st.items():
            if torch.is_tensor(val):
                tensors[f"{pid}.{name}"] = val.detach().contiguous().cpu()
            else:
                scalars[f"{pid}.{name}"] = val
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    with atomic_write(str(path) + ".json") as f:
        json.dump({"param_groups": sd["param_groups"], "scalars": scalars}, f)


def load_optimizer(optimizer: torch.optim.Optimizer, path: str | os.PathLike) -> None:
    tensors = load_file(str(path))
    meta = json.loads(Path(str(path) + ".json").read_text())
    state: dict[int, dict[str, Any]] = {}
    for key, val in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = val
    for key, val in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = val
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
