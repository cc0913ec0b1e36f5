"""iBUG 300-W ``.pts`` landmark files (one face per file, 1-based Matlab coordinates) and folders of them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from keyhead.data.formats._common import default_keypoint_layout
from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_write
from keyhead.types import LabeledFrames

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def read_pts(path: str | os.PathLike) -> np.ndarray:
    """Read one ``.pts`` file as 0-based pixel coordinates.

    Accepts the standard layout (``version: 1`` / ``n_points: 68`` / ``{`` / one ``x y`` per line / ``}``) and the
    bare list of ``x y`` lines some redistributions ship. 300-W coordinates are 1-based (Matlab): 1 is subtracted so
    that the centre of the top-left pixel is (0, 0).

    Args:
        path: the ``.pts`` file.

    Returns:
        (P, 2) float64 (x, y).

    Raises:
        KeyheadError: an empty file, a line that is not two numbers (named by line number), a missing brace, or an
            ``n_points`` that disagrees with the number of points.

    Example:
        >>> import tempfile
        >>> f = write_pts(np.array([[0.0, 0.0], [9.5, 4.0]]), f"{tempfile.mkdtemp()}/face.pts")
        >>> read_pts(f).tolist()
        [[0.0, 0.0], [9.5, 4.0]]
    """
    path = Path(path)
    if not path.is_file():
        raise KeyheadError(f"{path}: file not found; check the path")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise KeyheadError(f"{path}: not a text file; a .pts file holds lines of 'x y'") from None
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise KeyheadError(f"{path}: empty file; a .pts file holds lines of 'x y'")
    expected = None
    body = lines
    if lines[0][1].lower().startswith("version"):
        brace = next((i for i, (_, line) in enumerate(lines) if line == "{"), None)
        if brace is None or lines[-1][1] != "}":
            raise KeyheadError(f"{path}: the header starts with 'version' but the points are not inside '{{' ... '}}'")
        for n, line in lines[1:brace]:
            key, _, value = line.partition(":")
            if key.strip().lower() == "n_points":
                try:
                    expected = int(value)
                except ValueError:
                    raise KeyheadError(f"{path}, line {n}: n_points {value.strip()!r} is not a whole number") from None
        body = lines[brace + 1 : -1]
    points = []
    for n, line in body:
        try:
            x, y = (float(v) for v in line.split())
        except ValueError:
            raise KeyheadError(f"{path}, line {n}: expected two numbers 'x y', got {line!r}") from None
        points.append((x, y))
    if expected is not None and expected != len(points):
        raise KeyheadError(f"{path}: n_points is {expected} but {len(points)} points follow; fix n_points")
    return np.asarray(points, dtype=np.float64).reshape(-1, 2) - 1.0


def write_pts(points: np.ndarray, path: str | os.PathLike) -> Path:
    """Write (P, 2) 0-based (x, y) points as a standard 1-based ``.pts`` file, atomically.

    Args:
        points: (P, 2) (x, y) pixel coordinates, all finite (the format has no missing value).
        path: output file.

    Returns:
        The written path.

    Example:
        >>> import tempfile
        >>> write_pts(np.zeros((68, 2)), f"{tempfile.mkdtemp()}/face.pts").suffix
        '.pts'
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise KeyheadError(f"{path}: points must be (P, 2) (x, y), got shape {points.shape}")
    if not np.isfinite(points).all():
        raise KeyheadError(f"{path}: .pts files cannot hold missing points; fill or drop the NaN points first")
    lines = ["version: 1", f"n_points: {len(points)}", "{"]
    lines += [f"{x + 1.0:.6f} {y + 1.0:.6f}" for x, y in points]
    lines.append("}")
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return Path(path)


def _image_for(pts: Path, listing: dict[Path, dict[tuple[str, str], Path]]) -> Path:
    """The image beside ``pts`` with the same stem; ``listing`` caches each folder's files."""
    if pts.parent not in listing:
        listing[pts.parent] = {(f.stem, f.suffix.lower()): f for f in pts.parent.iterdir() if f.is_file()}
    files = listing[pts.parent]
    for ext in _IMAGE_EXTENSIONS:
        if (pts.stem, ext) in files:
            return files[pts.stem, ext]
    raise KeyheadError(
        f"{pts}: no image {pts.stem}{{{','.join(_IMAGE_EXTENSIONS)}}} beside it; put its image in the same folder"
    )


def read_pts_folder(folder: str | os.PathLike, recursive: bool = True) -> LabeledFrames:
    """Read every ``X.pts`` under a folder with its image ``X.jpg``/``.jpeg``/``.png``/``.bmp`` (same folder).

    Args:
        folder: the folder (300-W layout, e.g. ``helen/trainset``).
        recursive: also look in subfolders.

    Returns:
        The frames in sorted path order; 68 points get the iBUG names, flip pairs and skeleton
        (``keyhead.data.formats.ibug68``), other counts ``kp0..``.

    Raises:
        KeyheadError: no ``.pts`` file, a ``.pts`` without image, or files with different numbers of points.

    Example:
        >>> frames = read_pts_folder("300W/helen/trainset")  # doctest: +SKIP
        >>> frames.keypoints.shape  # (N, 68, 2)  # doctest: +SKIP
    """
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise KeyheadError(f"{folder}: not a folder; pass the folder that holds the .pts files")
    files = sorted(folder.rglob("*.pts") if recursive else folder.glob("*.pts"))
    if not files:
        raise KeyheadError(f"{folder}: no .pts files{' (searched subfolders too)' if recursive else ''}")
    listing: dict[Path, dict[tuple[str, str], Path]] = {}
    images = [_image_for(f, listing).relative_to(folder).as_posix() for f in files]
    points = [read_pts(f) for f in files]
    for f, p in zip(files, points, strict=True):
        if len(p) != len(points[0]):
            raise KeyheadError(
                f"{f}: {len(p)} points but {files[0].name} has {len(points[0])}; a folder must hold one layout"
            )
    names, flip_pairs, skeleton = default_keypoint_layout(len(points[0]))
    return LabeledFrames(
        root=folder,
        image_paths=images,
        keypoints=np.stack(points),
        keypoint_names=names,
        flip_pairs=flip_pairs,
        skeleton=skeleton,
        source=str(folder),
    )
