"""COCO keypoint JSON (``person_keypoints_*.json`` and the many face, hand and animal datasets that copy its layout)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import cv2
import numpy as np

from keyhead.data.formats._common import default_keypoint_layout, exists, relative_image_path
from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_write
from keyhead.io.structured import read_json, short
from keyhead.types import LabeledFrames

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
        The frames; an image with several annotated subjects appears once per subject.

    Raises:
        KeyheadError: invalid JSON, several keypoint layouts and no ``category``, an annotation whose image id
            is not in ``images``, or keypoints of the wrong length.

    Example:
        >>> frames = read_coco("coco/person_keypoints_val2017.json")  # doctest: +SKIP
        >>> frames.keypoints.shape  # (N, 17, 2)  # doctest: +SKIP
    """
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

    root = Path(image_root).resolve() if image_root is not None else path.parent
    images = {
        _coco_id(im.get("id"), f"{path}, images[{i}]", "id"): im
        for i, im in enumerate(data["images"])
        if isinstance(im, dict)
    }
    relative: dict[object, str] = {}
    paths, keypoints, visibility, boxes = [], [], [], []
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
        paths.append(relative[image_id])
        keypoints.append(xy)
        visibility.append(np.where(v > 0, np.clip(np.rint(v), 1, 2), 0))
        bbox = a.get("bbox")
        valid = isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(c, (int, float)) for c in bbox)
        boxes.append(bbox if valid else [np.nan] * 4)
    boxes_array = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return LabeledFrames(
        root=root,
        image_paths=paths,
        keypoints=np.asarray(keypoints, dtype=np.float32).reshape(-1, k, 2),
        keypoint_names=names,
        visibility=np.asarray(visibility, dtype=np.int8).reshape(-1, k),
        boxes=None if np.isnan(boxes_array).all() else boxes_array,
        skeleton=skeleton,
        flip_pairs=flip_pairs,
        source=str(path),
    )


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image, or (0, 0) when it cannot be read."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if exists(path) else None
    return (0, 0) if image is None else (int(image.shape[1]), int(image.shape[0]))


def write_coco(frames: LabeledFrames, json_path: str | os.PathLike, category_name: str = "object") -> Path:
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

    Returns:
        The written path.

    Example:
        >>> write_coco(frames, "labels.json")  # doctest: +SKIP
    """
    image_ids: dict[str, int] = {}
    images = []
    for p in frames.image_paths:
        if p not in image_ids:
            image_ids[p] = len(image_ids) + 1
            width, height = _image_size(frames.root / p)
            images.append({"id": image_ids[p], "file_name": p, "width": width, "height": height})
    annotations = []
    for i, p in enumerate(frames.image_paths):
        xy = frames.keypoints[i].astype(np.float64)
        labelled = np.isfinite(xy).all(axis=-1)
        given = frames.visibility[i] if frames.visibility is not None else np.full(len(xy), 2)
        v = np.where(labelled, np.clip(given, 1, 2), 0)
        xy[~labelled] = 0.0
        box = frames.boxes[i].astype(np.float64) if frames.boxes is not None else np.full(4, np.nan)
        if not np.isfinite(box).all():
            if labelled.any():
                lo, hi = xy[labelled].min(axis=0), xy[labelled].max(axis=0)
            else:
                lo = hi = np.zeros(2)
            box = np.concatenate([lo, hi - lo])
        annotations.append(
            {
                "id": i + 1,
                "image_id": image_ids[p],
                "category_id": 1,
                "keypoints": [
                    c for x, y, vis in zip(xy[:, 0], xy[:, 1], v, strict=True) for c in (float(x), float(y), int(vis))
                ],
                "num_keypoints": int(labelled.sum()),
                "bbox": [float(c) for c in box],
                "area": float(box[2] * box[3]),
                "iscrowd": 0,
            }
        )
    index = {name: j + 1 for j, name in enumerate(frames.keypoint_names)}
    category = {
        "id": 1,
        "name": category_name,
        "supercategory": category_name,
        "keypoints": list(frames.keypoint_names),
        "skeleton": [[index[a], index[b]] for a, b in frames.skeleton],
    }
    with atomic_write(json_path, "w", encoding="utf-8") as f:
        json.dump({"images": images, "annotations": annotations, "categories": [category]}, f, allow_nan=False)
    return Path(json_path)
