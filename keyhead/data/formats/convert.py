"""``keyhead convert``: labels between DeepLabCut (CSV / HDF5 tables and projects), Lightning Pose, COCO, SLEAP, 300-W.

Keypoint names, the skeleton and missing points travel with the labels: NaN in keyhead is an empty cell in
DeepLabCut / Lightning Pose tables and ``v=0`` in COCO; ``.pts`` files cannot hold a missing point, so frames
with one are refused there. Coordinates are written as the shortest decimal that reads back to the same float32
(``.pts`` keeps 6 decimals), so round trips are lossless to the precision each format stores.

Images: every written path is relative to the output's own root folder (the CSV's or JSON's folder, the project
folder). When the output lives in the labels' root folder the images are referenced where they are; otherwise
they are copied under the output's folder with the same relative paths (DeepLabCut projects and ``.pts`` folders
need their images in a fixed place: ``labeled-data/<video>/`` and beside each ``.pts`` file), so the converted
labels are self-contained and the source is never modified. A SLEAP ``.slp`` references its frames where they are:
the video (labels read from a ``.slp``) or the image files.

Multi-animal labels (an ``individuals`` header row, a multi-animal DeepLabCut project, a ``.slp``, a COCO file with
several subjects in an image) convert as ``InstanceFrames`` to dlc-csv / dlc-h5 (multi-animal tables and projects),
lp-csv, coco and slp, keeping identities (DeepLabCut individuals, SLEAP tracks, COCO ``track_id``); ``.pts`` holds
one subject per image and refuses them.
"""

from __future__ import annotations

import datetime
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

from keyhead.data.formats import (
    is_multi_instance,
    load_instances,
    load_labels,
    write_coco,
    write_coco_instances,
    write_dlc_csv,
    write_dlc_multi_csv,
    write_dlc_multi_h5,
    write_pts,
    write_slp,
)
from keyhead.data.formats.dlc_multi import identity_blocks, write_h5_table
from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_path, atomic_write
from keyhead.io.structured import read_yaml
from keyhead.types import InstanceFrames, LabeledFrames

log = logging.getLogger("keyhead")

FORMATS = ("dlc-csv", "dlc-h5", "lp-csv", "coco", "pts", "slp")
_BY_SUFFIX = {".csv": "dlc-csv", ".h5": "dlc-h5", ".hdf5": "dlc-h5", ".json": "coco", ".slp": "slp"}
Frames = LabeledFrames | InstanceFrames
META_FILE = "keyhead_synth.yaml"  # skeleton and left/right pairs beside a Lightning Pose CollectedData.csv


def target_format(out: Path, to: str | None) -> str:
    """The format to write: ``to`` when given, else guessed from OUT's suffix (.csv, .h5, .json, .slp)."""
    if to is not None:
        if to not in FORMATS:
            raise KeyheadError(f"--to {to!r}: choose one of {', '.join(FORMATS)}")
        return to
    if out.suffix.lower() in _BY_SUFFIX:
        return _BY_SUFFIX[out.suffix.lower()]
    raise KeyheadError(f"{out}: cannot tell the format from the name; pass --to {'|'.join(FORMATS)}")


def source_scorer(src: Path) -> str | None:
    """The scorer of a DeepLabCut project (config.yaml) or table (first header row), if any."""
    try:
        if src.is_dir() and (src / "config.yaml").is_file():
            config = read_yaml(src / "config.yaml", "a DeepLabCut config.yaml") or {}
            scorer = config.get("scorer") if isinstance(config, dict) else None
            return str(scorer) if scorer else None
        table = src / "CollectedData.csv" if src.is_dir() else src
        if table.suffix.lower() == ".csv" and table.is_file():
            with open(table, encoding="utf-8-sig") as f:
                first = f.readline().strip().split(",")
            return first[1].strip() if len(first) > 1 and first[0].strip().lower() == "scorer" else None
    except (OSError, yaml.YAMLError, UnicodeDecodeError, AttributeError):
        return None
    return None


def _one_subject_per_image(frames: Frames, fmt: str) -> None:
    if isinstance(frames, InstanceFrames):
        return  # one row per image, its subjects side by side
    seen: dict[str, int] = {}
    for i, p in enumerate(frames.image_paths):
        if p in seen:
            raise KeyheadError(
                f"{frames.source}: image {p} has several annotated subjects (frames {seen[p]} and {i}); "
                f"{fmt} holds one subject per image: convert to coco instead"
            )
        seen[p] = i


def _copy_images(frames: Frames, dest_root: Path, new_paths: list[str]) -> None:
    """Copy each image to ``dest_root / new_path`` unless it is that very file already (atomically, no overwrite)."""
    missing = []
    for old, new in dict(zip(frames.image_paths, new_paths, strict=True)).items():
        src, dst = frames.root / old, dest_root / new
        if not src.is_file():
            missing.append(old)
            continue
        if dst.exists() and (dst.resolve() == src.resolve() or dst.stat().st_size == src.stat().st_size):
            continue
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    if missing:
        log.warning("%d images were not found under %s and not copied (e.g. %s)", len(missing), frames.root, missing[0])


def _inside(folder: Path, root: Path) -> bool:
    return folder.resolve() == root.resolve()


def _relocated(frames: Frames, root: Path, paths: list[str] | None = None) -> Frames:
    """The frames as seen from ``root``: images referenced in place if ``root`` is their root, else copied there."""
    paths = list(frames.image_paths) if paths is None else paths
    if paths != frames.image_paths or not _inside(root, frames.root):
        _copy_images(frames, root, paths)
    return replace(
        frames, root=root, image_paths=paths, skeleton=list(frames.skeleton), flip_pairs=list(frames.flip_pairs)
    )


def dlc_image_paths(paths: list[str]) -> list[str]:
    """``labeled-data/<video>/<image>`` paths (kept as they are when already so; else the folders name the video)."""
    out = []
    for p in paths:
        parts = p.split("/")
        if len(parts) == 3 and parts[0] == "labeled-data":
            out.append(p)
        else:
            out.append(f"labeled-data/{'__'.join(parts[:-1]) or 'images'}/{parts[-1]}")
    return out


def write_dlc_h5(frames: LabeledFrames, path: str | os.PathLike, scorer: str = "keyhead") -> Path:
    """A DeepLabCut HDF5 label table (pandas, key ``df_with_missing``, (scorer, bodyparts, coords) columns).

    Rows are indexed by the image paths relative to ``frames.root``; missing keypoints are NaN.
    """
    import pandas as pd

    columns = pd.MultiIndex.from_product(
        [[scorer], frames.keypoint_names, ["x", "y"]], names=["scorer", "bodyparts", "coords"]
    )
    data = frames.keypoints.astype(np.float64).reshape(len(frames), -1)
    return write_h5_table(pd.DataFrame(data, index=pd.Index(frames.image_paths, dtype=object), columns=columns), path)


def _table_writers(frames: Frames) -> tuple[Callable[..., Path], Callable[..., Path]]:
    """The (CSV, HDF5) DeepLabCut table writers for single- or multi-animal frames."""
    if isinstance(frames, InstanceFrames):
        return write_dlc_multi_csv, write_dlc_multi_h5
    return write_dlc_csv, write_dlc_h5


def write_dlc_project(frames: Frames, folder: Path, scorer: str, h5: bool) -> Path:
    """A DeepLabCut project: ``config.yaml`` + ``labeled-data/<video>/CollectedData_<scorer>.csv``.

    Multi-animal frames make a multi-animal project (``multianimalproject: true``, ``individuals``,
    ``multianimalbodyparts``). With ``h5`` the ``.h5`` table is written beside each CSV, as DeepLabCut itself does.
    """
    _one_subject_per_image(frames, "a DeepLabCut project")
    folder.mkdir(parents=True, exist_ok=True)
    placed = _relocated(frames, folder, dlc_image_paths(frames.image_paths))
    videos: dict[str, list[int]] = {}
    for i, p in enumerate(placed.image_paths):
        videos.setdefault(p.split("/")[1], []).append(i)
    write_csv, write_h5 = _table_writers(frames)
    for video, idx in videos.items():
        part = placed.subset(idx)
        table = folder / "labeled-data" / video / f"CollectedData_{scorer}.csv"
        write_csv(part, table, scorer=scorer)
        if h5:
            write_h5(part, table.with_suffix(".h5"), scorer=scorer)
    multi = isinstance(frames, InstanceFrames)
    config = {
        "Task": folder.name,
        "scorer": scorer,
        "date": datetime.date.today().strftime("%b%d"),
        "multianimalproject": multi,
        "project_path": str(folder.resolve()),
        "video_sets": {},
        **(_multi_config(frames) if multi else {"bodyparts": list(frames.keypoint_names)}),
        "skeleton": [[a, b] for a, b in frames.skeleton],
        "skeleton_color": "black",
        "pcutoff": 0.6,
        "dotsize": 8,
        "alphavalue": 0.7,
        "colormap": "rainbow",
        "TrainingFraction": [0.95],
        "iteration": 0,
        "default_net_type": "resnet_50",
        "snapshotindex": -1,
        "batch_size": 8,
    }
    with atomic_write(folder / "config.yaml", encoding="utf-8") as f:
        f.write("# DeepLabCut project written by keyhead convert\n")
        yaml.safe_dump(config, f, sort_keys=False)
    return folder


def _multi_config(frames: InstanceFrames) -> dict:
    """The config.yaml entries of a multi-animal DeepLabCut project (its table's individuals, in the same order)."""
    return {
        "individuals": identity_blocks(frames)[0],
        "uniquebodyparts": [],
        "multianimalbodyparts": list(frames.keypoint_names),
        "bodyparts": "MULTI!",
    }


def write_lightning_pose(frames: Frames, out: Path, scorer: str) -> Path:
    """A Lightning Pose folder: ``CollectedData.csv`` (paths relative to it), the skeleton in ``keyhead_synth.yaml``."""
    _one_subject_per_image(frames, "a Lightning Pose table")
    folder, csv_path = (out.parent, out) if out.suffix.lower() == ".csv" else (out, out / "CollectedData.csv")
    placed = _relocated(frames, folder)
    _table_writers(frames)[0](placed, csv_path, scorer=scorer)
    meta = {
        "generator": "keyhead convert",
        "version": 1,
        "keypoint_names": list(frames.keypoint_names),
        "skeleton": [[a, b] for a, b in frames.skeleton],
        "flip_pairs": [[frames.keypoint_names[a], frames.keypoint_names[b]] for a, b in frames.flip_pairs],
    }
    if frames.skeleton or frames.flip_pairs:
        with atomic_write(folder / META_FILE, encoding="utf-8") as f:
            yaml.safe_dump(meta, f, sort_keys=False)
    return csv_path


def write_pts_folder(frames: Frames, folder: Path) -> Path:
    """One ``.pts`` per frame beside its image (copied into ``folder`` unless it already is the labels' root)."""
    if isinstance(frames, InstanceFrames):
        raise KeyheadError(
            f"{frames.source}: multi-animal labels; a .pts file holds one subject per image: convert to coco, "
            "dlc-csv or slp instead"
        )
    _one_subject_per_image(frames, "a .pts folder")
    missing = np.isnan(frames.keypoints).any(axis=(1, 2))
    if missing.any():
        i = int(np.argmax(missing))
        raise KeyheadError(
            f"{frames.source}: {int(missing.sum())} frames have missing keypoints (first: {frames.image_paths[i]}); "
            ".pts files cannot hold missing points: convert to coco or dlc-csv instead"
        )
    placed = _relocated(frames, folder)
    for i, p in enumerate(placed.image_paths):
        write_pts(placed.keypoints[i], (folder / p).with_suffix(".pts"))
    return folder


def write_labels(frames: Frames, out: str | os.PathLike, to: str | None = None, scorer: str = "keyhead") -> Path:
    """Write frames (one subject per frame, or ``InstanceFrames``) in a label format (see the module docstring).

    Args:
        frames: the labels.
        out: a ``.csv`` / ``.h5`` table, a ``.json`` COCO file, a ``.slp`` file, or a folder (DeepLabCut project for
            ``dlc-csv`` / ``dlc-h5``, Lightning Pose folder for ``lp-csv``, ``.pts`` folder for ``pts``).
        to: ``dlc-csv``, ``dlc-h5``, ``lp-csv``, ``coco``, ``pts`` or ``slp`` (default: from OUT's suffix).
        scorer: the DeepLabCut scorer (header row, table and project names).

    Returns:
        What was written (file or folder).
    """
    out = Path(out)
    fmt = target_format(out, to)
    multi = isinstance(frames, InstanceFrames)
    if fmt in ("dlc-csv", "dlc-h5") and out.suffix.lower() not in (".csv", ".h5", ".hdf5"):
        return write_dlc_project(frames, out, scorer, h5=fmt == "dlc-h5")
    if fmt in ("dlc-csv", "dlc-h5"):
        _one_subject_per_image(frames, "a DeepLabCut table")
        writer = _table_writers(frames)[fmt == "dlc-h5"]
        return writer(_relocated(frames, out.parent), out, scorer=scorer)
    if fmt == "lp-csv":
        return write_lightning_pose(frames, out, scorer)
    if fmt == "coco":
        if out.suffix.lower() != ".json":
            raise KeyheadError(f"{out}: a COCO file is a .json; name it *.json")
        return (write_coco_instances if multi else write_coco)(_relocated(frames, out.parent), out)
    if fmt == "slp":
        return write_slp(frames if multi else InstanceFrames.from_single(frames), out)
    return write_pts_folder(frames, out)


def _read(src: Path, fmt: str) -> Frames:
    """The labels to convert: ``InstanceFrames`` for multi-animal sources, else ``LabeledFrames``.

    A COCO file is multi-animal when an image has several subjects or a subject a ``track_id``; it is read one
    subject per frame (keeping its boxes) when it converts to COCO without identities or has one subject per image.
    """
    if src.is_file() and src.suffix.lower() == ".json":
        frames = load_instances(src)
        return load_labels(src) if not frames.track_names and (fmt == "coco" or frames.max_instances <= 1) else frames
    return load_instances(src) if is_multi_instance(src) else load_labels(src)


def convert_labels(
    src: str | os.PathLike, out: str | os.PathLike, to: str | None = None, scorer: str | None = None
) -> Path:
    """Read labels in any layout ``load_labels`` or ``load_instances`` reads and write them in another format.

    Args:
        src: a DeepLabCut project / CSV / H5 (single- or multi-animal), a Lightning Pose folder or CSV, a COCO JSON,
            a SLEAP ``.slp`` or a ``.pts`` folder.
        out: where to write (see :func:`write_labels`).
        to: the output format (default: from OUT's suffix).
        scorer: DeepLabCut scorer (default: the source's scorer, else ``keyhead``).

    Returns:
        What was written.

    Example:
        >>> convert_labels("dlc-openfield-Pranav-2018-10-30", "openfield.json")  # doctest: +SKIP
        PosixPath('openfield.json')
    """
    src, out = Path(src), Path(out)
    if out.resolve() == src.resolve():
        raise KeyheadError(f"{out}: the output is the input; write the converted labels somewhere else")
    frames = _read(src, target_format(out, to))
    return write_labels(frames, out, to, scorer or source_scorer(src) or "keyhead")
