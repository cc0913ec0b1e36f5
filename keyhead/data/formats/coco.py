"""COCO keypoint JSON (``person_keypoints_*.json`` and the many face, hand and animal datasets that copy its layout)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from keyhead.data.formats._common import default_keypoint_layout, exists, relative_image_path
from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_write
from keyhead.io.structured import read_json, short
from keyhead.types import InstanceFrames, LabeledFrames

# "left"/"right" anywhere, or a lone L/R letter: "L_Eye", "l_eye", "eyeL" (not the R of "Rostrum").
_SIDE = re.compile(r"left|right|Left|Right|LEFT|RIGHT|(?<![A-Za-z])[LRlr](?![a-z])|(?<=[a-z])[LR](?![A-Za-z])")
_OTHER_SIDE = {"left": "right", "Left": "Right", "LEFT": "RIGHT", "L": "R", "l": "r"}
_OTHER_SIDE |= {v: k for k, v in _OTHER_SIDE.items()}


def _flip_pairs_from_names(names: list[str]) -> list[tuple[int, int]]:
    """Index pairs of names that differ only by side (``left_eye`` / ``right_eye``, ``L_Eye`` / ``R_Eye``)."""
    index = {name: i for i, name in enumerate(names)}
    pairs = []
    for i, name in enumerate(names):
        j = index.get(_SIDE.sub(lambda m: _OTHER_SIDE[m.group()], name))
        if j is not None and i < j:
            pairs.append((i, j))
    return pairs


def _load_json(path: Path) -> dict:
    data = read_json(path, "a COCO keypoints file")
    if not isinstance(data, dict) or not all(isinstance(data.get(key), list) for key in ("images", "annotations")):
        raise KeyheadError(
            f"{path}: not a COCO keypoints file; it needs 'images', 'annotations' and 'categories' lists"
        )
    return data


def _coco_id(value: object, where: str, key: str) -> int | str:
    """A COCO id: an integer (some datasets use strings); anything else is a one-line error naming the entry."""
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63):
        return value
    raise KeyheadError(f"{where}: {key} {short(value, 30)} is not a COCO id (an integer); fix the file")


def _describe(categories: list[dict]) -> str:
    listed = ", ".join(f"{c.get('name')} (id {c.get('id')})" for c in categories[:8])
    return listed + (f", ... ({len(categories)} in all)" if len(categories) > 8 else "")


def _pick_category(data: dict, path: Path, category: str | int | None) -> tuple[dict, set | None]:
    """The category whose keypoint layout is read, and the category ids to read (None: every annotation).

    ``category`` (a name or id) picks one; else the only category with keypoint names, or all of them when they
    share one layout (AP-10K and Animal Kingdom list one category per species with identical keypoints).
    """
    listed = data.get("categories")
    categories = [c for c in listed if isinstance(c, dict)] if isinstance(listed, list) else []
    for c in categories:
        for key in ("keypoints", "skeleton"):
            if c.get(key) is not None and not isinstance(c[key], list):
                raise KeyheadError(
                    f"{path}: category {c.get('name', c.get('id'))!r}: {key!r} must be a list, "
                    f"got {type(c[key]).__name__}; fix the categories entry"
                )
    if category is not None:
        chosen = [c for c in categories if category in (c.get("name"), c.get("id"))]
        if not chosen:
            raise KeyheadError(f"{path}: no category {category!r}; the file has {_describe(categories) or 'none'}")
        return chosen[0], {chosen[0].get("id")}
    candidates = [c for c in categories if c.get("keypoints")]
    if candidates and all(c["keypoints"] == candidates[0]["keypoints"] for c in candidates):
        return candidates[0], None
    if not candidates:
        # Some converted datasets (e.g. MMPose's 300-W) leave the category's keypoint names empty.
        used = {a.get("category_id") for a in data["annotations"] if isinstance(a, dict) and a.get("keypoints")}
        candidates = [c for c in categories if c.get("id") in used] or [{"id": i} for i in used]
        if len(candidates) == 1:
            return candidates[0], None
    if not candidates:
        raise KeyheadError(f"{path}: no annotation has keypoints; this is not a COCO keypoints file")
    raise KeyheadError(
        f"{path}: categories with different keypoints: {_describe(candidates)}; pass category= one of them"
    )


def _skeleton(pairs: list, names: list[str], path: Path) -> list[tuple[str, str]]:
    """Skeleton index pairs as name pairs: 1-based as COCO says, or 0-based if an index is 0 (ATRW, Animal Kingdom)."""
    k = len(names)
    if not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(i, int) and 0 <= i <= k for i in p) for p in pairs
    ):
        raise KeyheadError(f"{path}: skeleton must be pairs of keypoint numbers 1..{k}, got {pairs!r}")
    base = 0 if any(0 in p for p in pairs) else 1
    if any(max(p) - base >= k for p in pairs):
        raise KeyheadError(f"{path}: skeleton uses 0-based numbers and {k}, which is out of range 0..{k - 1}")
    return [(names[a - base], names[b - base]) for a, b in pairs]


class _Annotation(NamedTuple):
    """One annotation with at least one labelled keypoint.

    Attributes:
        image_id: its image's id; path: the image path relative to the root.
        xy: (K, 2) (x, y), NaN where unlabelled; visibility: (K,) 0, 1 or 2.
        bbox: (x, y, w, h), NaN when the annotation has none.
        track: ``track_id`` (PoseTrack) or None.
        where: the file and annotation id, for messages.
    """

    image_id: int | str
    path: str
    xy: np.ndarray
    visibility: np.ndarray
    bbox: list[float]
    track: int | str | None
    where: str


class _Coco(NamedTuple):
    path: Path
    root: Path
    names: list[str]
    skeleton: list[tuple[str, str]]
    flip_pairs: list[tuple[int, int]]
    annotations: list[_Annotation]
    image_order: dict[int | str, int]


def _parse_coco(
    json_path: str | os.PathLike, image_root: str | os.PathLike | None, category: str | int | None
) -> _Coco:
    """The keypoint layout and the labelled annotations of a COCO file; see ``read_coco`` for the rules."""
    path = Path(json_path).resolve()
    data = _load_json(path)
    chosen, ids = _pick_category(data, path, category)
    annotations = [
        a for a in data["annotations"] if isinstance(a, dict) and (ids is None or a.get("category_id") in ids)
    ]
    names = [str(n).strip() for n in chosen.get("keypoints") or []]
    if names:
        flip_pairs = _flip_pairs_from_names(names)
        skeleton = []
    else:
        k = next((len(a["keypoints"]) // 3 for a in annotations if isinstance(a.get("keypoints"), list)), 0)
        names, flip_pairs, skeleton = default_keypoint_layout(k)
    skeleton = _skeleton(chosen.get("skeleton") or [], names, path) or skeleton
    k = len(names)

    recorded = data.get("keyhead_image_root")  # written by write_coco(record_root=True): labels kept apart
    if image_root is None and isinstance(recorded, str) and recorded:
        image_root = recorded if Path(recorded).is_absolute() else path.parent / recorded
    root = Path(image_root).resolve() if image_root is not None else path.parent
    images = {
        _coco_id(im.get("id"), f"{path}, images[{i}]", "id"): im
        for i, im in enumerate(data["images"])
        if isinstance(im, dict)
    }
    relative: dict[object, str] = {}
    parsed = []
    for a in annotations:
        where = f"{path}, annotation id {a.get('id')}"
        raw = a.get("keypoints") or []
        try:
            if not isinstance(raw, list):
                raise TypeError
            values = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise KeyheadError(f"{where}: keypoints must be a list of numbers [x, y, v, ...]") from None
        if values.shape != (3 * k,) and len(values):
            raise KeyheadError(f"{where}: {values.size} keypoint values, expected {3 * k} (x, y, v for {k} keypoints)")
        if not len(values) or not (values[2::3] > 0).any():
            continue
        image_id = _coco_id(a.get("image_id"), where, "image_id")
        if image_id not in images:
            raise KeyheadError(f"{where}: image_id {image_id!r} is not in 'images'; add the image entry or drop it")
        if image_id not in relative:
            file_name = str(images[image_id].get("file_name", "")).replace("\\", "/")
            if image_root is None and not exists(root / file_name) and exists(root / "images" / file_name):
                file_name = f"images/{file_name}"
            relative[image_id] = relative_image_path(file_name, root, f"{path}, image id {image_id}")
        xy = values.reshape(k, 3)[:, :2].copy()
        v = np.where(np.isfinite(xy).all(axis=1), values[2::3], 0)
        xy[~(v > 0)] = np.nan
        bbox = a.get("bbox")
        valid = isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(c, (int, float)) for c in bbox)
        track = a.get("track_id")
        parsed.append(
            _Annotation(
                image_id=image_id,
                path=relative[image_id],
                xy=xy,
                visibility=np.where(v > 0, np.clip(np.rint(v), 1, 2), 0),
                bbox=bbox if valid else [np.nan] * 4,
                track=None if track is None else _coco_id(track, where, "track_id"),
                where=where,
            )
        )
    order = {image_id: i for i, image_id in enumerate(images)}
    return _Coco(path, root, names, skeleton, flip_pairs, parsed, order)


def read_coco(
    json_path: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    category: str | int | None = None,
) -> LabeledFrames:
    """Read a COCO keypoints JSON, one frame per annotation that has at least one labelled keypoint.

    ``keypoints`` ``[x1, y1, v1, x2, ...]`` are taken as given: COCO does not fix a pixel-centre convention and
    most datasets use the image's pixel grid with centres at integers, as keyhead does. ``v == 0`` (unlabelled)
    becomes NaN; ``v > 0`` is kept in ``visibility`` (1 occluded, 2 visible). ``num_keypoints`` is not trusted: an
    annotation counts when any ``v > 0``. ``bbox`` becomes ``boxes`` (NaN where an annotation has none; None when
    none has). The skeleton (1-based in COCO; taken as 0-based if it uses index 0) becomes name pairs; flip pairs
    come from left/right names (``left_eye``, ``L_Eye``, ``eyeL``). A category without keypoint names gets ``kp0..``
    (or the iBUG names, flip pairs and skeleton for 68 points). Categories that share one keypoint list (AP-10K's
    species) are read together.

    Args:
        json_path: the JSON file.
        image_root: folder that ``file_name`` is relative to. Default: the JSON's folder, or its ``images/``
            subfolder for images not found beside the JSON.
        category: the category to read (name or id); needed only when categories have different keypoints.

    Returns:
        The frames; an image with several annotated subjects appears once per subject (see ``read_coco_instances``
        for one row per image).

    Raises:
        KeyheadError: invalid JSON, several keypoint layouts and no ``category``, an annotation whose image id
            is not in ``images``, or keypoints of the wrong length.

    Example:
        >>> frames = read_coco("coco/person_keypoints_val2017.json")  # doctest: +SKIP
        >>> frames.keypoints.shape  # (N, 17, 2)  # doctest: +SKIP
    """
    coco = _parse_coco(json_path, image_root, category)
    k, anns = len(coco.names), coco.annotations
    boxes = np.asarray([a.bbox for a in anns], dtype=np.float64).reshape(-1, 4)
    return LabeledFrames(
        root=coco.root,
        image_paths=[a.path for a in anns],
        keypoints=np.asarray([a.xy for a in anns], dtype=np.float32).reshape(-1, k, 2),
        keypoint_names=coco.names,
        visibility=np.asarray([a.visibility for a in anns], dtype=np.int8).reshape(-1, k),
        boxes=None if np.isnan(boxes).all() else boxes,
        skeleton=coco.skeleton,
        flip_pairs=coco.flip_pairs,
        source=str(coco.path),
    )


def read_coco_instances(
    json_path: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    category: str | int | None = None,
) -> InstanceFrames:
    """Read a COCO keypoints JSON as one row per image holding all its annotated subjects (people, animals).

    The same rules as ``read_coco`` (coordinates, visibility, skeleton, flip pairs, categories, image paths); rows
    are the images with at least one labelled annotation, in ``images`` order, and an image's instances are its
    annotations in file order. ``track_id`` (PoseTrack) gives identities: ``track_names`` are the ids as strings in
    order of first appearance, and an annotation without one has track -1. Boxes are not kept.

    Args:
        json_path: the JSON file.
        image_root: as in ``read_coco``.
        category: as in ``read_coco``.

    Returns:
        The frames: ``keypoints`` (N, M, K, 2) with M the most labelled annotations of one image, NaN-padded.

    Raises:
        KeyheadError: as ``read_coco``, and a ``track_id`` used twice in one image.

    Example:
        >>> frames = read_coco_instances("coco/person_keypoints_val2017.json")  # doctest: +SKIP
        >>> frames.keypoints.shape  # (images, most people in one image, 17, 2)  # doctest: +SKIP
    """
    coco = _parse_coco(json_path, image_root, category)
    by_image: dict[int | str, list[_Annotation]] = {}
    for a in coco.annotations:
        by_image.setdefault(a.image_id, []).append(a)
    image_ids = sorted(by_image, key=coco.image_order.__getitem__)
    track_index = {t: i for i, t in enumerate(dict.fromkeys(a.track for a in coco.annotations if a.track is not None))}
    n, m, k = len(image_ids), max((len(v) for v in by_image.values()), default=0), len(coco.names)
    xy = np.full((n, m, k, 2), np.nan, dtype=np.float32)
    visibility = np.zeros((n, m, k), dtype=np.int8)
    tracks = np.full((n, m), -1, dtype=np.int64)
    for i, image_id in enumerate(image_ids):
        for j, a in enumerate(by_image[image_id]):
            xy[i, j], visibility[i, j] = a.xy, a.visibility
            if a.track is not None:
                if track_index[a.track] in tracks[i]:
                    raise KeyheadError(
                        f"{a.where}: track_id {a.track!r} appears twice in image id {image_id!r}; "
                        "give each subject of an image its own track_id"
                    )
                tracks[i, j] = track_index[a.track]
    return InstanceFrames(
        root=coco.root,
        image_paths=[by_image[image_id][0].path for image_id in image_ids],
        keypoints=xy,
        keypoint_names=coco.names,
        track_names=[str(t) for t in track_index],
        tracks=tracks,
        visibility=visibility,
        skeleton=coco.skeleton,
        flip_pairs=coco.flip_pairs,
        source=str(coco.path),
    )


def coco_is_multi_instance(json_path: str | os.PathLike) -> bool:
    """True when some image of a COCO keypoints file has two or more annotations with a labelled keypoint."""
    data = _load_json(Path(json_path))
    seen: set = set()
    for a in data["annotations"]:
        keypoints = a.get("keypoints") if isinstance(a, dict) else None
        if isinstance(keypoints, list) and any(isinstance(v, (int, float)) and v > 0 for v in keypoints[2::3]):
            image_id = a.get("image_id")
            if not isinstance(image_id, (int, str)):
                continue
            if image_id in seen:
                return True
            seen.add(image_id)
    return False


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image, or (0, 0) when it cannot be read."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if exists(path) else None
    return (0, 0) if image is None else (int(image.shape[1]), int(image.shape[0]))


def _images(frames: LabeledFrames | InstanceFrames) -> tuple[dict[str, int], list[dict]]:
    """One ``images`` entry per unique path (width and height read from the image, 0 when it is missing)."""
    image_ids: dict[str, int] = {}
    images = []
    for p in frames.image_paths:
        if p not in image_ids:
            image_ids[p] = len(image_ids) + 1
            width, height = _image_size(frames.root / p)
            images.append({"id": image_ids[p], "file_name": p, "width": width, "height": height})
    return image_ids, images


def _annotation(ann_id: int, image_id: int, xy: np.ndarray, given: np.ndarray | None, box: np.ndarray | None) -> dict:
    """A COCO annotation of (K, 2) keypoints (NaN: ``0, 0, 0``); ``bbox`` is ``box`` or else the keypoints' extent."""
    xy = xy.astype(np.float64)
    labelled = np.isfinite(xy).all(axis=-1)
    v = np.where(labelled, np.clip(given if given is not None else 2, 1, 2), 0)
    xy[~labelled] = 0.0
    box = box.astype(np.float64) if box is not None else np.full(4, np.nan)
    if not np.isfinite(box).all():
        lo, hi = (xy[labelled].min(axis=0), xy[labelled].max(axis=0)) if labelled.any() else (np.zeros(2),) * 2
        box = np.concatenate([lo, hi - lo])
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "keypoints": [
            c for x, y, vis in zip(xy[:, 0], xy[:, 1], v, strict=True) for c in (float(x), float(y), int(vis))
        ],
        "num_keypoints": int(labelled.sum()),
        "bbox": [float(c) for c in box],
        "area": float(box[2] * box[3]),
        "iscrowd": 0,
    }


def _dump(
    frames: LabeledFrames | InstanceFrames,
    images: list,
    annotations: list,
    path: Path,
    name: str,
    record_root: bool = False,
) -> Path:
    index = {n: j + 1 for j, n in enumerate(frames.keypoint_names)}
    category = {
        "id": 1,
        "name": name,
        "supercategory": name,
        "keypoints": list(frames.keypoint_names),
        "skeleton": [[index[a], index[b]] for a, b in frames.skeleton],
    }
    with atomic_write(path, "w", encoding="utf-8") as f:
        payload = {"images": images, "annotations": annotations, "categories": [category]}
        if record_root:
            payload["keyhead_image_root"] = str(Path(frames.root).resolve())
        json.dump(payload, f, allow_nan=False)
    return Path(path)


def write_coco(
    frames: LabeledFrames, json_path: str | os.PathLike, category_name: str = "object", record_root: bool = False
) -> Path:
    """Write frames as a COCO keypoints JSON, atomically.

    One ``images`` entry per unique path (``file_name`` relative to ``frames.root``; width and height read from the
    image, 0 when it is missing) and one annotation per frame. Missing keypoints are written as ``0, 0, 0``; labelled
    ones keep their visibility (2 when ``frames.visibility`` is None). ``bbox`` is ``frames.boxes``, or the labelled
    keypoints' extent where there is no finite box. Read it back with ``read_coco(json_path, image_root=frames.root)``
    (or with no ``image_root`` when the JSON sits in ``frames.root``); frames without any labelled keypoint are not
    read back.

    Args:
        frames: the frames to write.
        json_path: output file.
        category_name: the single category's name.
        record_root: also record ``frames.root`` (absolute) as ``keyhead_image_root``, which ``read_coco`` uses
            when no ``image_root`` is given: labels written away from their images (a top-down run's stage
            labels) read back from anywhere.

    Returns:
        The written path.

    Example:
        >>> write_coco(frames, "labels.json")  # doctest: +SKIP
    """
    image_ids, images = _images(frames)
    annotations = [
        _annotation(
            i + 1,
            image_ids[p],
            frames.keypoints[i],
            None if frames.visibility is None else frames.visibility[i],
            None if frames.boxes is None else frames.boxes[i],
        )
        for i, p in enumerate(frames.image_paths)
    ]
    return _dump(frames, images, annotations, Path(json_path), category_name, record_root)


def _track_id(name: str) -> int | str:
    return int(name) if name.isdecimal() and str(int(name)) == name else name


def write_coco_instances(frames: InstanceFrames, json_path: str | os.PathLike, category_name: str = "object") -> Path:
    """Write multi-instance frames as a COCO keypoints JSON, atomically: one annotation per present instance.

    Images, keypoints, visibility and the skeleton as in ``write_coco``; ``bbox`` is each instance's keypoint extent.
    An instance with a track gets ``track_id`` (PoseTrack): the track name as an integer where it is one, else the
    name. Read it back with ``read_coco_instances``.

    Args:
        frames: the frames to write.
        json_path: output file.
        category_name: the single category's name.

    Returns:
        The written path.

    Example:
        >>> write_coco_instances(read_slp("clip.slp"), "clip.json")  # doctest: +SKIP
    """
    image_ids, images = _images(frames)
    present = frames.present()
    annotations = []
    for i, m in zip(*np.nonzero(present), strict=True):
        given = None if frames.visibility is None else frames.visibility[i, m]
        ann = _annotation(len(annotations) + 1, image_ids[frames.image_paths[i]], frames.keypoints[i, m], given, None)
        if frames.tracks[i, m] >= 0:
            ann["track_id"] = _track_id(frames.track_names[frames.tracks[i, m]])
        annotations.append(ann)
    return _dump(frames, images, annotations, Path(json_path), category_name)
