"""keyhead's weights files (safetensors + metadata, format versioned) and weights files from elsewhere.

Weights files from elsewhere: safetensors are read as they are; pickles (``torch.save`` files) only when trusted.

Unpickling can run any code hidden in the file, so keyhead refuses ``.pt`` / ``.pth`` / ``.ckpt`` / ``.bin`` pickles
unless the user says they trust the file (config ``model.trust_pickle: true``, ``keyhead train --trust-pickle``,
``keyhead convert-weights --trust-pickle``, or ``with trust_pickle():`` in Python). Even then they are read with
``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers and refuses anything else, so a
file that tries to run code is still refused. Converting once to safetensors removes the question for good.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_path

_TRUST: contextvars.ContextVar[bool] = contextvars.ContextVar("keyhead_trust_pickle", default=False)


@contextlib.contextmanager
def trust_pickle(trusted: bool = True) -> Iterator[None]:
    """Within the block, pickle weight files are read (with ``torch.load(weights_only=True)``) instead of refused.

    Example:
        >>> with trust_pickle():  # doctest: +SKIP
        ...     model = keyhead.create_model(num_keypoints=17, backbone="resnet18", pretrained="resnet18.pth")
    """
    token = _TRUST.set(trusted)
    try:
        yield
    finally:
        _TRUST.reset(token)


def is_safetensors(path: str | os.PathLike) -> bool:
    """True when the file starts like a safetensors file (8-byte header length, then a JSON object)."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 0 < n < os.path.getsize(path) and head[8:9] == b"{"


def read_pickle_weights(path: str | os.PathLike, trusted: bool | None = None) -> Any:
    """Read a ``torch.save`` file, if trusted, with ``torch.load(weights_only=True)``.

    Args:
        path: the file.
        trusted: override the ambient :func:`trust_pickle` setting.

    Returns:
        Whatever the file holds (tensors in plain containers).

    Raises:
        KeyheadError: not trusted (the message says how to convert or trust it), or the file holds more than
            tensors and plain containers (it would run code; refused even when trusted).
    """
    path = Path(path)
    if not (_TRUST.get() if trusted is None else trusted):
        raise KeyheadError(
            f"{path} is a pickle file (torch.save), and unpickling can run code hidden in it, so keyhead does not "
            f"load it by default; if you trust its source, convert it once: keyhead convert-weights {path} "
            f"{path.with_suffix('.safetensors')} --trust-pickle (or set model.trust_pickle: true, CLI --trust-pickle)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError, zip errors: many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KeyheadError(
            f"{path}: refused even with trust_pickle: it holds more than tensors and plain containers, which "
            f"torch.load(weights_only=True) will not rebuild ({first[:200]}); re-save it in its own project with "
            "safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')"
        ) from None


def read_weights_file(path: str | os.PathLike, trusted: bool | None = None) -> Any:
    """A safetensors file (by content, whatever its suffix) as a dict of tensors, else :func:`read_pickle_weights`."""
    path = Path(path)
    if not path.is_file():
        raise KeyheadError(f"weights file {path} does not exist; pass a .safetensors (or a trusted .pth) file")
    if is_safetensors(path):
        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors' own error types
            raise KeyheadError(f"{path}: not a readable safetensors file ({exc}); it may be truncated") from None
    return read_pickle_weights(path, trusted)


def state_dict_of(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The tensors of a loaded checkpoint: unwraps ``state_dict`` / ``model`` / ``kp_detector`` entries (Lightning,
    timm, first-order-model checkpoints) and a DDP ``module.`` prefix.

    Raises:
        KeyheadError: no mapping of names to tensors inside.
    """
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "kp_detector"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise KeyheadError(f"{source} does not hold a state dict (a mapping of names to tensors)")
    return {str(k).removeprefix("module."): v for k, v in obj.items()}


def convert_weights(src: str | os.PathLike, dst: str | os.PathLike, trusted: bool = False) -> int:
    """Convert a (trusted) ``torch.save`` checkpoint into a safetensors state dict, atomically.

    Args:
        src: the ``.pt`` / ``.pth`` / ``.ckpt`` file (a state dict, or a checkpoint holding one).
        dst: the ``.safetensors`` file to write.
        trusted: the user vouches for ``src`` (still read with ``weights_only=True``).

    Returns:
        The number of tensors written.

    Example:
        >>> convert_weights("resnet18.pth", "resnet18.safetensors", trusted=True)  # doctest: +SKIP
        102
    """
    state = state_dict_of(read_weights_file(src, trusted), str(src))
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    seen: dict[int, str] = {}
    for k, v in tensors.items():  # tied weights share storage, which safetensors refuses: store copies
        ptr = v.untyped_storage().data_ptr()
        if ptr in seen and v.numel():
            tensors[k] = v.clone()
        seen.setdefault(ptr, k)
    with atomic_path(dst) as tmp:
        save_file(tensors, str(tmp), metadata={"converted_from": Path(src).name})
    return len(tensors)


FORMAT_VERSION = 1
OPTIMIZER_PREFIX = "optimizer."  # tensors of a resume checkpoint that are not model weights


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


def model_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}


def save_weights(module: torch.nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Write a module's state dict as safetensors, atomically."""
    meta = {"format": "keyhead", "format_version": str(FORMAT_VERSION), **(metadata or {})}
    with atomic_path(path) as tmp:
        save_file(model_state(module), str(tmp), metadata=meta)


def load_weights(
    module: torch.nn.Module,
    path: str | os.PathLike,
    strict: bool = True,
    shape_hint: str = "the config and weights are from different runs",
) -> None:
    """Load safetensors weights into ``module``; a clear error when the file does not fit the model.

    Optimizer tensors of a resume checkpoint (``optimizer.*``) are skipped. ``shape_hint`` ends the error for a
    tensor of another shape (what to check, e.g. the run's keypoint list).
    """
    path = Path(path)
    check_format(path, read_metadata(path))
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise KeyheadError(f"{path}: not a readable safetensors file ({exc}); it may be truncated or corrupt") from None
    state = {k: v for k, v in state.items() if not k.startswith(OPTIMIZER_PREFIX)}
    expected = module.state_dict()
    for name, tensor in state.items():
        if name in expected and tuple(tensor.shape) != tuple(expected[name].shape):
            raise KeyheadError(
                f"{path}: tensor {name!r} is {tuple(tensor.shape)} but the model expects "
                f"{tuple(expected[name].shape)}; {shape_hint}"
            )
    result = module.load_state_dict(state, strict=False)
    bad = list(result.missing_keys) + list(result.unexpected_keys)
    if strict and bad:
        raise KeyheadError(
            f"{path}: weights do not fit this model ({len(result.missing_keys)} missing, "
            f"{len(result.unexpected_keys)} unexpected, e.g. {bad[0]!r}); "
            "the config and weights are from different runs"
        )
