"""``keyhead convert``: labels between DeepLabCut (CSV / HDF5 tables and projects), Lightning Pose, COCO and 300-W.

Keypoint names, the skeleton and missing points travel with the labels: NaN in keyhead is an empty cell in
DeepLabCut / Lightning Pose tables and ``v=0`` in COCO; ``.pts`` files cannot hold a missing point, so frames
with one are refused there. Coordinates are written as the shortest decimal that reads back to the same float32
(``.pts`` keeps 6 decimals), so round trips are lossless to the precision each format stores.

Images: every written path is relative to the output's own root folder (the CSV's or JSON's folder, the project
folder). When the output lives in the labels' root folder the images are referenced where they are; otherwise
they are copied under the output's folder with the same relative paths (DeepLabCut projects and ``.pts`` folders
need their images in a fixed place: ``labeled-data/<video>/`` and beside each ``.pts`` file), so the converted
labels are self-contained and the source is never modified.
"""

from __future__ import annotations

import datetime
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import yaml

from keyhead.data.formats import load_labels, write_coco, write_dlc_csv, write_pts
from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_path, atomic_write
from keyhead.io.structured import read_yaml
from keyhead.types import LabeledFrames

log = logging.getLogger("keyhead")

FORMATS = ("dlc-csv", "dlc-h5", "lp-csv", "coco", "pts")
_BY_SUFFIX = {".csv": "dlc-csv", ".h5": "dlc-h5", ".hdf5": "dlc-h5", ".json": "coco"}
META_FILE = "keyhead_synth.yaml"  # skeleton and left/right pairs beside a Lightning Pose CollectedData.csv


def target_format(out: Path, to: str | None) -> str:
    """The format to write: ``to`` when given, else guessed from OUT's suffix (.csv, .h5, .json)."""
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


def _one_subject_per_image(frames: LabeledFrames, fmt: str) -> None:
    seen: dict[str, int] = {}
    for i, p in enumerate(frames.image_paths):
        if p in seen:
            raise KeyheadError(
                f"{frames.source}: image {p} has several annotated subjects (frames {seen[p]} and {i}); "
                f"{fmt} holds one subject per image: convert to coco instead"
            )
        seen[p] = i


def _copy_images(frames: LabeledFrames, dest_root: Path, new_paths: list[str]) -> None:
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


def _with_paths(frames: LabeledFrames, root: Path, paths: list[str]) -> LabeledFrames:
    return LabeledFrames(
        root=root,
        image_paths=paths,
        keypoints=frames.keypoints,
        keypoint_names=frames.keypoint_names,
        visibility=frames.visibility,
        boxes=frames.boxes,
        skeleton=list(frames.skeleton),
        flip_pairs=list(frames.flip_pairs),
        source=frames.source,
    )


def _relocated(frames: LabeledFrames, root: Path, paths: list[str] | None = None) -> LabeledFrames:
    """The frames as seen from ``root``: images referenced in place if ``root`` is their root, else copied there."""
    paths = list(frames.image_paths) if paths is None else paths
    if paths != frames.image_paths or not _inside(root, frames.root):
        _copy_images(frames, root, paths)
    return _with_paths(frames, root, paths)


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
    table = pd.DataFrame(data, index=pd.Index(frames.image_paths, dtype=object), columns=columns)
    with atomic_path(path) as tmp:
        table.to_hdf(tmp, key="df_with_missing", mode="w", format="table")
    return Path(path)


def write_dlc_project(frames: LabeledFrames, folder: Path, scorer: str, h5: bool) -> Path:
    """A single-animal DeepLabCut project: ``config.yaml`` + ``labeled-data/<video>/CollectedData_<scorer>.csv``.

    With ``h5`` the ``.h5`` table is written beside each CSV, as DeepLabCut itself does.
    """
    _one_subject_per_image(frames, "a DeepLabCut project")
    folder.mkdir(parents=True, exist_ok=True)
    placed = _relocated(frames, folder, dlc_image_paths(frames.image_paths))
    videos: dict[str, list[int]] = {}
    for i, p in enumerate(placed.image_paths):
        videos.setdefault(p.split("/")[1], []).append(i)
    for video, idx in videos.items():
        part = placed.subset(idx)
        table = folder / "labeled-data" / video / f"CollectedData_{scorer}.csv"
        write_dlc_csv(part, table, scorer=scorer)
        if h5:
            write_dlc_h5(part, table.with_suffix(".h5"), scorer=scorer)
    config = {
        "Task": folder.name,
        "scorer": scorer,
        "date": datetime.date.today().strftime("%b%d"),
        "multianimalproject": False,
        "project_path": str(folder.resolve()),
        "video_sets": {},
        "bodyparts": list(frames.keypoint_names),
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


def write_lightning_pose(frames: LabeledFrames, out: Path, scorer: str) -> Path:
    """A Lightning Pose folder: ``CollectedData.csv`` (paths relative to it), the skeleton in ``keyhead_synth.yaml``."""
    _one_subject_per_image(frames, "a Lightning Pose table")
    folder, csv_path = (out.parent, out) if out.suffix.lower() == ".csv" else (out, out / "CollectedData.csv")
    placed = _relocated(frames, folder)
    write_dlc_csv(placed, csv_path, scorer=scorer)
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


def write_pts_folder(frames: LabeledFrames, folder: Path) -> Path:
    """One ``.pts`` per frame beside its image (copied into ``folder`` unless it already is the labels' root)."""
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


def write_labels(frames: LabeledFrames, out: str | os.PathLike, to: str | None = None, scorer: str = "keyhead") -> Path:
    """Write frames in a label format (see the module docstring for where images go).

    Args:
        frames: the labels.
        out: a ``.csv`` / ``.h5`` table, a ``.json`` COCO file, or a folder (DeepLabCut project for ``dlc-csv`` /
            ``dlc-h5``, Lightning Pose folder for ``lp-csv``, ``.pts`` folder for ``pts``).
        to: ``dlc-csv``, ``dlc-h5``, ``lp-csv``, ``coco`` or ``pts`` (default: from OUT's suffix).
        scorer: the DeepLabCut scorer (header row, table and project names).

    Returns:
        What was written (file or folder).
    """
    out = Path(out)
    fmt = target_format(out, to)
    if fmt in ("dlc-csv", "dlc-h5") and out.suffix.lower() not in (".csv", ".h5", ".hdf5"):
        return write_dlc_project(frames, out, scorer, h5=fmt == "dlc-h5")
    if fmt == "dlc-csv":
        _one_subject_per_image(frames, "a DeepLabCut table")
        return write_dlc_csv(_relocated(frames, out.parent), out, scorer=scorer)
    if fmt == "dlc-h5":
        _one_subject_per_image(frames, "a DeepLabCut table")
        return write_dlc_h5(_relocated(frames, out.parent), out, scorer=scorer)
    if fmt == "lp-csv":
        return write_lightning_pose(frames, out, scorer)
    if fmt == "coco":
        if out.suffix.lower() != ".json":
            raise KeyheadError(f"{out}: a COCO file is a .json; name it *.json")
        return write_coco(_relocated(frames, out.parent), out)
    return write_pts_folder(frames, out)


def convert_labels(
    src: str | os.PathLike, out: str | os.PathLike, to: str | None = None, scorer: str | None = None
) -> Path:
    """Read labels in any layout :func:`keyhead.load_labels` reads and write them in another format.

    Args:
        src: a DeepLabCut project / CSV / H5, a Lightning Pose folder or CSV, a COCO JSON or a ``.pts`` folder.
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
    frames = load_labels(src)
    return write_labels(frames, out, to, scorer or source_scorer(src) or "keyhead")
