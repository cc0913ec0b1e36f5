"""Plumbing shared by the format readers: image paths relative to a root folder, default keypoint names."""

from __future__ import annotations

import functools
import os
import posixpath
import re
from pathlib import Path

from keyhead.data.formats.ibug68 import IBUG68_FLIP_PAIRS, IBUG68_NAMES, IBUG68_SKELETON
from keyhead.errors import KeyheadError

_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:/")


def _posix(raw: str) -> str:
    return raw.strip().replace("\\", "/")


def _is_absolute(path: str) -> bool:
    return path.startswith("/") or bool(_WINDOWS_DRIVE.match(path))


def exists(path: Path) -> bool:
    """``path.exists()`` that says False for names the OS refuses (too long, NUL bytes) instead of raising."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def resolve_root(folder: str | os.PathLike, first_path: str | None, max_up: int = 3) -> Path:
    """The folder that a label file's image paths are relative to.

    Tries ``folder`` and then up to ``max_up`` of its parents, returning the first one in which ``first_path`` exists
    (DeepLabCut's ``labeled-data/<video>/CollectedData_<scorer>.csv`` holds paths relative to the project folder).
    Falls back to ``folder`` when the image is found nowhere, so that a later check can name the missing files.

    Args:
        folder: the label file's folder.
        first_path: the first image path as written in the file (any separators), or None for an empty table.
        max_up: how many parent folders to try.

    Returns:
        The absolute root folder.
    """
    folder = Path(folder).resolve()
    if first_path:
        path = _posix(first_path)
        if path and not _is_absolute(path) and "\0" not in path:
            for candidate in [folder, *folder.parents[:max_up]]:
                if exists(candidate / path):
                    return candidate
    return folder


def relative_image_path(raw: str, root: Path, where: str) -> str:
    """Normalise an image path from a label file to a POSIX path relative to ``root``.

    Backslashes become ``/``; absolute paths inside ``root`` are made relative; ``.`` and ``a/../b`` are collapsed.

    Args:
        raw: the path as written in the file.
        root: the absolute root folder.
        where: the file and row, for messages.

    Returns:
        The relative path, e.g. ``labeled-data/vid/img001.png``.

    Raises:
        KeyheadError: the path is empty, contains a NUL character, or points outside ``root``.
    """
    path = _posix(raw)
    if "\0" in path:
        raise KeyheadError(f"{where}: image path {raw!r} contains a NUL character; fix the file name in the label file")
    if _is_absolute(path):
        try:
            path = Path(os.path.normpath(path)).relative_to(os.path.normpath(root)).as_posix()
        except ValueError:
            raise KeyheadError(
                f"{where}: image path {raw!r} is outside the root folder {root}; "
                "write it relative to the root folder or pass root= the folder that contains it"
            ) from None
    path = posixpath.normpath(path) if path else ""
    if path in ("", "."):
        raise KeyheadError(f"{where}: empty image path; every row needs the path of its image")
    if path == ".." or path.startswith("../") or _links_out(root, path):
        how = "" if path.startswith("..") else " through a symbolic link"
        raise KeyheadError(
            f"{where}: image path {raw!r} leaves the root folder {root}{how}; "
            "move the images under the root folder or pass root= a folder that contains them"
        )
    return path


def _links_out(root: Path, path: str) -> bool:
    """True when ``root / path`` leads outside ``root`` through a symbolic link: one rule for ``..`` and links."""
    target = Path(root) / path
    if not os.path.lexists(target):
        return False  # a missing image is reported by the image check, with its own fix
    real_root = _realpath(str(root))
    return os.path.commonpath([real_root, os.path.realpath(target)]) != real_root


@functools.lru_cache(maxsize=64)
def _realpath(folder: str) -> str:
    """The root's real path, resolved once for all the rows of a label file."""
    return os.path.realpath(folder)


def default_keypoint_layout(k: int) -> tuple[list[str], list[tuple[int, int]], list[tuple[str, str]]]:
    """Names, flip pairs and skeleton for ``k`` unnamed keypoints: the iBUG layout for 68, else ``kp0..kp{k-1}``.

    Returns:
        (names, flip_pairs, skeleton).
    """
    if k == len(IBUG68_NAMES):
        return list(IBUG68_NAMES), list(IBUG68_FLIP_PAIRS), list(IBUG68_SKELETON)
    return [f"kp{i}" for i in range(k)], [], []
