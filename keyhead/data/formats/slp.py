"""SLEAP labels (``.slp``, and ``.pkg.slp`` with the labelled frames embedded), read and written through sleap-io.

Only user (hand-labelled) instances are labels; predicted instances are ignored and a frame without a user instance
is skipped. Coordinates are taken as SLEAP stores them, (x, y) pixels of the video frame; a point marked not
visible is NaN. Skeleton edges, symmetries (flip pairs) and tracks (identities) travel with the keypoints.

keyhead trains from image files, so :func:`read_slp` extracts each labelled video frame once as a PNG into a cache
folder (``$KEYHEAD_CACHE/slp-frames/...``, ``KEYHEAD_CACHE`` defaulting to ``~/.cache/keyhead``), skipping the
frames already there; each PNG is written atomically, so an interrupted extraction resumes cleanly. Frames are read
through sleap-io's video objects, so embedded ``.pkg.slp`` frames work as well as videos beside the ``.slp``.
Videos are opened only from local files: nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path, PureWindowsPath
from typing import Any

import cv2
import numpy as np

from keyhead.data.formats._common import exists
from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_path, atomic_write
from keyhead.io.images import IMAGE_SUFFIXES
from keyhead.types import InstanceFrames

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def cache_dir() -> Path:
    """keyhead's cache folder: ``$KEYHEAD_CACHE``, else ``~/.cache/keyhead``."""
    return Path(os.environ.get("KEYHEAD_CACHE") or "~/.cache/keyhead").expanduser()


def default_frames_dir(path: str | os.PathLike) -> Path:
    """Where the frames of a ``.slp`` are extracted: ``<cache>/slp-frames/<stem>-<12 hex digits>``.

    The digits are a SHA-1 of the file's absolute path, size and modification time, so an edited file gets fresh
    frames and two files of one name do not share a folder.
    """
    path = Path(path).resolve()
    stat = path.stat()
    digest = hashlib.sha1(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return cache_dir() / "slp-frames" / f"{path.stem}-{digest}"


def _load(path: Path) -> Any:
    import sleap_io as sio

    if not path.is_file():
        raise KeyheadError(f"{path}: file not found; check the path")
    try:
        return sio.load_slp(str(path), open_videos=False)
    except Exception as exc:  # h5py, JSON and sleap-io errors alike: the file is not a .slp sleap-io reads
        first = (str(exc).splitlines() or [""])[0][:100]
        raise KeyheadError(
            f"{path}: not a readable SLEAP file ({type(exc).__name__}: {first}); save it again from SLEAP"
        ) from None


def _resolve(name: str, folder: Path) -> str:
    """A video path as stored in a .slp, found on this machine: as written, beside the .slp, or by its name there."""
    if _URL.match(name):
        return name
    windows = PureWindowsPath(name)
    for candidate in (Path(name), folder / name, folder / Path(name).name, folder / windows.name):
        if exists(candidate) and candidate.is_file():
            return str(candidate.resolve())
    return name


def _original(video: Any) -> str | list[str]:
    """The file the frames came from (the source video of an embedded ``.pkg.slp``)."""
    return (video.source_video or video).filename


def _stems(videos: list[Any]) -> list[str]:
    """A folder name for each video's frames: its file stem (an image sequence: its folder), made unique."""
    stems: list[str] = []
    for video in videos:
        name = _original(video)
        stem = (Path(name[0]).parent.name or "images") if isinstance(name, list) else PureWindowsPath(name).stem
        stem = re.sub(r"[^\w.-]+", "_", stem).strip(".") or "video"
        unique, j = stem, 2
        while unique in stems:
            unique, j = f"{stem}-{j}", j + 1
        stems.append(unique)
    return stems


def _write_png(path: Path, image: np.ndarray, where: str) -> None:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    channels = image.shape[-1] if image.ndim == 3 else 1
    conversion = {3: cv2.COLOR_RGB2BGR, 4: cv2.COLOR_RGBA2BGRA}.get(channels)
    image = cv2.cvtColor(image, conversion) if conversion is not None else image.reshape(image.shape[:2])
    ok, buffer = cv2.imencode(".png", image)
    if not ok:
        raise KeyheadError(f"{where}: the frame could not be encoded as PNG; check the video")
    with atomic_write(path, "wb") as f:
        f.write(buffer.tobytes())


def _extract(path: Path, frames: InstanceFrames, labelled: list[Any]) -> None:
    """Write the PNG of every row whose image is not in ``frames.root`` yet (reading each video only if needed)."""
    for i, lf in enumerate(labelled):
        target = frames.path(i)
        if target.is_file():
            continue
        video, name = lf.video, _original(lf.video)
        shown = name[0] if isinstance(name, list) else name
        if isinstance(video.filename, str) and _URL.match(video.filename):
            raise KeyheadError(
                f"{path}: its video {shown} is a URL and keyhead downloads nothing; download it and put it beside "
                "the .slp"
            )
        if not video.exists():
            raise KeyheadError(
                f"{path}: its video {shown} is missing; put the video beside the .slp (same file name) or fix the "
                "path in SLEAP"
            )
        try:
            if not video.is_open:
                video.open()
            image = video[int(lf.frame_idx)]
        except Exception as exc:  # any backend (OpenCV, PyAV, HDF5) failing to give the frame
            raise KeyheadError(
                f"{path}: frame {lf.frame_idx} of {shown} could not be read ({type(exc).__name__}); check the video"
            ) from None
        _write_png(target, image, f"{path}, frame {lf.frame_idx} of {shown}")


def read_slp(
    path: str | os.PathLike,
    frames_dir: str | os.PathLike | None = None,
    extract: bool = True,
    rows: Sequence[int] | None = None,
) -> InstanceFrames:
    """Read the user-labelled frames of a SLEAP ``.slp`` (or ``.pkg.slp``) file through sleap-io.

    Args:
        path: the ``.slp`` file. Its videos are found where the file says, or beside it by name (as sleap-io does).
        frames_dir: folder the labelled frames are extracted to as PNG (``<video stem>/img000123.png``); default
            :func:`default_frames_dir`. Frames already there are not extracted again.
        extract: extract the frames not yet in ``frames_dir``; False reads the labels only (``image_paths`` then
            name files that may not exist yet), without touching the videos.
        rows: read only these labelled frames (indices into the frames that have a user instance, in file order).

    Returns:
        The frames: one row per labelled frame, M = the most user instances of one frame; ``keypoint_names`` are
        the skeleton's nodes, ``skeleton`` its edges, ``flip_pairs`` its symmetries, ``track_names`` / ``tracks``
        SLEAP's tracks; ``frame_indices`` and ``video_paths`` say where each row came from; ``root`` is
        ``frames_dir``.

    Raises:
        KeyheadError: an unreadable file, no user instance at all, instances of several skeletons, a video that is
            missing (or a URL) when its frames must be extracted, or a frame that cannot be read.

    Example:
        >>> frames = read_slp("clip.slp", extract=False)  # doctest: +SKIP
        >>> frames.keypoints.shape, frames.track_names  # doctest: +SKIP
        ((1500, 2, 13, 2), ['female', 'male'])
    """
    path = Path(path).resolve()
    labels = _load(path)
    try:
        for video in labels.videos:
            name = video.filename
            resolved = (
                [_resolve(n, path.parent) for n in name] if isinstance(name, list) else _resolve(name, path.parent)
            )
            if resolved != name:
                video.replace_filename(resolved, open=False)
        labelled = [lf for lf in labels.labeled_frames if lf.user_instances]
        if not labelled:
            raise KeyheadError(f"{path}: no user-labelled instance (predictions are not labels); label frames in SLEAP")
        if rows is not None:
            outside = [i for i in rows if not -len(labelled) <= i < len(labelled)]
            if outside:
                raise KeyheadError(
                    f"{path}: row {outside[0]} is outside its {len(labelled)} labelled frames; fix rows="
                )
            labelled = [labelled[i] for i in rows]
        frames = _instances(path, labels, labelled, Path(frames_dir) if frames_dir else default_frames_dir(path))
        if extract:
            _extract(path, frames, labelled)
        return frames
    finally:
        for video in labels.videos:
            video.close()


def _instances(path: Path, labels: Any, labelled: list[Any], root: Path) -> InstanceFrames:
    skeletons = list({id(inst.skeleton): inst.skeleton for lf in labelled for inst in lf.user_instances}.values())
    if len(skeletons) != 1:
        names = ", ".join(str(s.name or len(s.nodes)) for s in skeletons[:4])
        raise KeyheadError(f"{path}: user instances of {len(skeletons)} skeletons ({names}); keyhead reads one")
    skeleton = skeletons[0]
    tracks = list(labels.tracks)
    for lf in labelled:  # a track an instance uses but the file does not list
        tracks += [inst.track for inst in lf.user_instances if inst.track is not None and inst.track not in tracks]
    track_index = {id(track): t for t, track in enumerate(tracks)}
    stems = dict(zip(map(id, labels.videos), _stems(labels.videos), strict=True))
    m, k = max(len(lf.user_instances) for lf in labelled), len(skeleton.nodes)
    xy = np.full((len(labelled), m, k, 2), np.nan, dtype=np.float32)
    track_of = np.full((len(labelled), m), -1, dtype=np.int64)
    image_paths, video_paths = [], []
    for i, lf in enumerate(labelled):
        for j, inst in enumerate(lf.user_instances):
            xy[i, j] = inst.numpy(invisible_as_nan=True)[:, :2]
            track_of[i, j] = -1 if inst.track is None else track_index[id(inst.track)]
        name = _original(lf.video)
        video_paths.append(str(name[lf.frame_idx] if isinstance(name, list) else name))
        image_paths.append(f"{stems.get(id(lf.video), 'video')}/img{int(lf.frame_idx):06d}.png")
    return InstanceFrames(
        root=root,
        image_paths=image_paths,
        keypoints=xy,
        keypoint_names=list(skeleton.node_names),
        track_names=[str(track.name) for track in tracks],
        tracks=track_of,
        skeleton=[(str(a), str(b)) for a, b in skeleton.edge_names],
        flip_pairs=[(min(a, b), max(a, b)) for a, b in skeleton.symmetry_inds],
        frame_indices=np.array([int(lf.frame_idx) for lf in labelled], dtype=np.int64),
        video_paths=video_paths,
        source=str(path),
    )


def _is_image(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def write_slp(frames: InstanceFrames, path: str | os.PathLike, video: str | os.PathLike | None = None) -> Path:
    """Write multi-instance labels as a SLEAP ``.slp`` through sleap-io, atomically (user instances, no images).

    Each row becomes a labelled frame of user instances (its present instances; rows with none are left out) on
    the tracks ``frames.track_names``; the skeleton keeps the edges and the flip pairs (as symmetries). A row's
    frame is: frame ``frame_indices[i]`` of ``video`` when given; else of ``video_paths[i]`` where that is a video
    and the frame number is known (labels read from a ``.slp``); else its image file (``video_paths[i]`` when it
    names an existing image, else ``root / image_paths[i]``) in one image-sequence video, referenced in place.

    Args:
        frames: the labels.
        path: the ``.slp`` to write.
        video: the video all rows are frames of (needs ``frames.frame_indices``).

    Returns:
        The written path; ``read_slp`` reads it back with the same keypoints and tracks.

    Raises:
        KeyheadError: ``video`` given but the rows have no frame numbers.

    Example:
        >>> write_slp(read_dlc_multi_csv("CollectedData.csv"), "labels.slp")  # doctest: +SKIP
    """
    import sleap_io as sio

    names = list(frames.keypoint_names)
    skeleton = sio.Skeleton(
        nodes=names,
        edges=[(a, b) for a, b in frames.skeleton if a in names and b in names],
        symmetries=[(names[a], names[b]) for a, b in frames.flip_pairs],
        name="keyhead",
    )
    tracks = [sio.Track(name=name) for name in frames.track_names]
    known = np.full(len(frames), -1) if frames.frame_indices is None else frames.frame_indices
    if video is not None and (known < 0).any():
        raise KeyheadError(
            f"{frames.source}: the rows have no video frame numbers, so they cannot be frames of {video}; "
            "write them without a video (as images)"
        )
    videos: dict[str, Any] = {}
    images: list[str] = []
    places: list[tuple[str, int]] = []
    for i in range(len(frames)):
        source = str(Path(video).resolve()) if video is not None else (frames.video_paths or [""] * len(frames))[i]
        if source and not _is_image(source) and known[i] >= 0:
            videos.setdefault(source, None)
            places.append((source, int(known[i])))
        else:
            image = source if source and _is_image(source) and exists(Path(source)) else str(frames.path(i).resolve())
            places.append(("", len(images)))
            images.append(image)
    sio_videos = {key: sio.Video(filename=key, open_backend=False) for key in videos}
    if images:
        meta = {"type": "ImageVideo", "filename": images[0], "filenames": images, "shape": None, "grayscale": False}
        sio_videos[""] = sio.Video(filename=images, open_backend=False, backend_metadata=meta)
    present = frames.present()
    labeled_frames = []
    for i, (key, frame_idx) in enumerate(places):
        instances = [
            sio.Instance.from_numpy(
                frames.keypoints[i, m].astype(np.float64),
                skeleton=skeleton,
                track=tracks[frames.tracks[i, m]] if frames.tracks[i, m] >= 0 else None,
            )
            for m in np.flatnonzero(present[i])
        ]
        if instances:
            labeled_frames.append(sio.LabeledFrame(video=sio_videos[key], frame_idx=frame_idx, instances=instances))
    labels = sio.Labels(
        labeled_frames=labeled_frames, videos=list(sio_videos.values()), skeletons=[skeleton], tracks=tracks
    )
    with atomic_path(path) as tmp:
        sio.save_slp(labels, str(tmp), verbose=False)
    return Path(path)
