"""Atomic file writing: a file either appears whole or not at all."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from keyhead.errors import KeyheadError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds.

    For writers that need a file name (savefig, safetensors). The final file gets the permissions a plain
    ``open()`` would give (mkstemp makes 0600 files).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it over ``path`` only if the block succeeds.

    Example:
        >>> with atomic_write("/tmp/x.txt") as f:
        ...     _ = f.write("hello")
    """
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


_TEMPORARY = re.compile(r"^\.(?P<stem>.+)\.[A-Za-z0-9_]{8}(?P<suffix>\.[^.]*)?$")


def remove_partial_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files ``atomic_path`` left in ``folder`` when its process was killed (``kill -9``).

    Only names of the form ``.<stem>.<8 random characters><suffix>`` directly in ``folder`` are removed; call it only
    when no other process is writing there (e.g. before resuming a run).

    Returns:
        The removed paths.
    """
    removed = []
    for p in Path(folder).iterdir():
        if p.is_file() and _TEMPORARY.match(p.name):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def make_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create folder ``path`` (and parents); a file in the way or a read-only parent is a one-line KeyheadError."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise KeyheadError(f"{what} {path}: a file of that name is in the way; choose another folder") from None
    except OSError as exc:
        raise KeyheadError(f"{what} {path} cannot be created ({exc.strerror}); choose a writable folder") from None
    if not os.access(path, os.W_OK):
        raise KeyheadError(f"{what} {path} is not writable; choose a writable folder")
    return path
