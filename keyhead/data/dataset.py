"""Labelled frames as a torch Dataset: cached images, one affine per sample, keypoints in input pixels."""

from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from keyhead.config import AugmentConfig
from keyhead.data.augment import box_matrix, photometric, random_affine, resize_matrix, transform_points, warp
from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_write
from keyhead.io.images import read_image  # noqa: F401  (re-exported: keyhead.data.dataset.read_image)
from keyhead.io.structured import read_json, short
from keyhead.types import LabeledFrames, flip_permutation

log = logging.getLogger(__name__)


class ImageCache:
    """Decodes each image once and keeps it in memory, downscaled so its longer side is <= ``max_side``.

    ``get(i)`` returns the cached image and the 3x3 matrix from original pixels to cached pixels.
    """

    def __init__(self, frames: LabeledFrames, in_channels: int = 3, max_side: int = 1024) -> None:
        self.frames = frames
        self.in_channels = in_channels
        self.max_side = max_side
        self._images: dict[int, tuple[np.ndarray, np.ndarray, tuple[int, int]]] = {}
        self._context: dict[str, np.ndarray] = {}
        self._videos: dict[str, object] = {}

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        """(cached image (h, w, C) uint8, 3x3 original->cached matrix, original (W, H))."""
        if i not in self._images:
            img = read_image(self.frames.path(i), self.in_channels)
            h, w = img.shape[:2]
            scale = min(1.0, self.max_side / max(h, w))
            if scale < 1.0:
                nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
                img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
                img = img[..., None] if img.ndim == 2 else img
                m = resize_matrix((w, h), (nw, nh))
            else:
                m = np.eye(3)
            self._images[i] = (img, m, (w, h))
        return self._images[i]

    def size(self, i: int) -> tuple[int, int]:
        return self.get(i)[2]

    def window(self, i: int, offsets: list[int], video: str | None = None) -> list[np.ndarray]:
        """Cached images of frame ``i``'s context window (see :mod:`keyhead.data.context`), in cached pixels."""
        from keyhead.data.context import VideoFrames, find_video, frame_number, has_neighbours, neighbour_paths

        img, _, (w, h) = self.get(i)
        rel = self.frames.image_paths[i]
        root = self.frames.root
        n = frame_number(rel)
        src = None
        if n is not None and not has_neighbours(root, rel):
            path = find_video(root, rel, video)
            if path is not None:
                src = self._videos.setdefault(str(path), VideoFrames(path, self.in_channels))
                src.load({n + o for o in offsets})
        out = []
        for off, p in zip(offsets, neighbour_paths(root, rel, offsets), strict=True):
            frame = src.get(n + off) if src is not None else None
            if off == 0 or (frame is None and p == rel):
                out.append(img)
                continue
            if frame is None:
                frame = self._context.get(p)
                if frame is None:
                    frame = read_image(Path(root) / p, self.in_channels)
            if frame.shape[:2] != (h, w) and frame.shape[:2] != img.shape[:2]:
                where = p if src is None else f"{src.path} frame {n + off}"
                raise KeyheadError(
                    f"context frame {where} is {frame.shape[1]}x{frame.shape[0]} but the labelled frame {rel} is "
                    f"{w}x{h}; context frames must have the labelled frame's size"
                )
            if img.shape[:2] != frame.shape[:2]:
                frame = cv2.resize(frame, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_AREA)
                frame = frame[..., None] if frame.ndim == 2 else frame
            if src is None:
                self._context[p] = frame
            out.append(frame)
        return out


class KeypointDataset(Dataset):
    """Samples for training and evaluation.

    Each sample: ``image`` (C, H, W) float32 in [0, 1], ``keypoints`` (K, 2) float32 in input pixels (NaN
    missing), ``matrix`` (3, 3) float64 original->input pixels, ``index`` into ``frames``. With a box, the
    subject's box (enlarged by ``1 + crop_margin``) is cropped; else the whole image is resized to the input size.

    Args:
        frames: the labelled frames.
        input_size: (H, W) model input.
        augment: augmentation settings, or None for deterministic evaluation samples.
        flip_pairs: keypoint index pairs swapped by a horizontal flip.
        cache: a shared :class:`ImageCache` (train/val/test datasets share one).
        seed: base seed; each (epoch, index) draws its own augmentation deterministically.
        crop_margin: a frame's box is enlarged by this fraction before cropping (``data.crop_margin``).
        context_offsets: frame offsets of a context window (e.g. [-2, -1, 0, 1, 2] for ``mhcrnn``); each
            sample's ``image`` is then (T, C, H, W), every frame warped and augmented the same way.
        context_video: the video the labelled frames come from, when their neighbours are not on disk.
        context_frames: where windows come from (``data.context_frames``): auto, frames or static (see
            :func:`keyhead.data.context.context_source`); a static sample's ``image`` is (1, C, H, W), which the
            model broadcasts to its window.
    """

    def __init__(
        self,
        frames: LabeledFrames,
        input_size: tuple[int, int],
        augment: AugmentConfig | None = None,
        flip_pairs: list[tuple[int, int]] | None = None,
        cache: ImageCache | None = None,
        indices: list[int] | None = None,
        in_channels: int = 3,
        seed: int = 0,
        crop_margin: float = 0.25,
        context_offsets: list[int] | None = None,
        context_video: str | None = None,
        context_frames: str = "auto",
    ) -> None:
        self.frames = frames
        self.context_offsets = list(context_offsets) if context_offsets and len(context_offsets) > 1 else None
        self.context_video = context_video
        self.static_context = False
        if self.context_offsets:
            source, _ = _context_source(str(frames.root), tuple(frames.image_paths), context_frames, context_video)
            self.static_context = source == "static"
        self.crop_margin = float(crop_margin)
        self.input_size = input_size
        self.augment = augment if augment is not None and augment.enabled else None
        self.flip_pairs = list(flip_pairs or [])
        self.cache = cache or ImageCache(frames, in_channels)
        self.indices = list(range(len(frames))) if indices is None else list(indices)
        self.seed = seed
        self.epoch = 0
        self._flip_perm = np.array(flip_permutation(frames.num_keypoints, self.flip_pairs))

    def __len__(self) -> int:
        return len(self.indices)

    def base_matrix(self, i: int) -> np.ndarray:
        """Original pixels -> input pixels, before augmentation."""
        out_wh = (self.input_size[1], self.input_size[0])
        if self.frames.boxes is not None and np.all(np.isfinite(self.frames.boxes[i])):
            return box_matrix(self.frames.boxes[i], out_wh, 1.0 + self.crop_margin)
        return resize_matrix(self.cache.size(i), out_wh)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        i = self.indices[item]
        img, to_cache, _ = self.cache.get(i)
        out_wh = (self.input_size[1], self.input_size[0])
        matrix = self.base_matrix(i)
        kp = self.frames.keypoints[i].astype(np.float64)
        rng = None
        if self.augment is not None:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            aug, flipped = random_affine(rng, self.augment, out_wh)
            matrix = aug @ matrix
            if flipped:
                kp = kp[self._flip_perm]
        to_input = matrix @ np.linalg.inv(to_cache)
        windowed = self.context_offsets and not self.static_context
        images = self.cache.window(i, self.context_offsets, self.context_video) if windowed else [img]
        out = []
        for frame in images:
            image = warp(frame, to_input, out_wh).astype(np.float32) / 255.0
            if rng is not None:  # the same photometric draw for every frame of a window
                image = photometric(image, np.random.default_rng((self.seed, self.epoch, i, 1)), self.augment)
            out.append(image.transpose(2, 0, 1))
        xy = transform_points(kp, matrix).astype(np.float32)
        stacked = np.stack(out) if self.context_offsets else out[0]  # static windows: (1, C, H, W)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(stacked)),
            "keypoints": torch.from_numpy(xy),
            "matrix": torch.from_numpy(matrix),
            "index": torch.tensor(i),
        }


@functools.lru_cache(maxsize=16)
def _context_source(root: str, rels: tuple[str, ...], mode: str, video: str | None) -> tuple[str, str]:
    """:func:`keyhead.data.context.context_source`, decided (and logged) once per label set."""
    from keyhead.data.context import context_source

    source, reason = context_source(root, list(rels), mode, video)
    if source == "static" and mode == "auto":
        log.warning("context windows are static (each labelled frame repeated): %s", reason)
        if "numbered" in reason:
            log.warning("give data.context_video, or data.context_frames=frames to use the neighbours anyway")
    else:
        log.info("context windows: %s (%s)", source, reason)
    return source, reason


def make_split(n: int, fractions: tuple[float, float, float], seed: int) -> dict[str, list[int]]:
    """A deterministic train/val/test split of ``n`` frames (each non-empty fraction gets >= 1 frame)."""
    if n == 0:
        raise KeyheadError("the dataset has no labelled frames; check the label file")
    perm = np.random.default_rng(seed).permutation(n).tolist()
    n_val = max(1, round(fractions[1] * n)) if fractions[1] > 0 else 0
    n_test = max(1, round(fractions[2] * n)) if fractions[2] > 0 else 0
    n_train = n - n_val - n_test
    if n_train < 1:
        raise KeyheadError(
            f"only {n} labelled frames: too few for data.split {list(fractions)} (needs {n_val} val + {n_test} test "
            "+ at least 1 train frame); label more frames or set data.split=[1,0,0] (no val/test)"
        )
    return {
        "train": sorted(perm[:n_train]),
        "val": sorted(perm[n_train : n_train + n_val]),
        "test": sorted(perm[n_train + n_val :]),
    }


def save_split(
    split: dict[str, list[int]],
    frames: LabeledFrames,
    path: str | os.PathLike,
    sizes: list[tuple[int, int]] | None = None,
) -> None:
    """Write the split with image paths (and each image's (W, H) as ``image_sizes``) to check the data against later."""
    payload: dict = {name: [frames.image_paths[i] for i in idx] for name, idx in split.items()}
    if sizes is not None:
        payload["image_sizes"] = {p: list(wh) for p, wh in zip(frames.image_paths, sizes, strict=True)}
    with atomic_write(path) as f:
        json.dump(payload, f, indent=1)


def read_split_file(path: str | os.PathLike) -> dict:
    """A run's ``split.json``, checked: split names -> lists of image paths, and ``image_sizes`` path -> (W, H)."""
    payload = read_json(path, "split.json")
    if not isinstance(payload, dict):
        raise KeyheadError(f"{path}: expected a mapping of split names to image lists; delete the run and train again")
    sizes = payload.get("image_sizes", {})
    if not isinstance(sizes, dict) or not all(
        isinstance(s, list) and len(s) == 2 and all(isinstance(v, int) for v in s) for s in sizes.values()
    ):
        raise KeyheadError(f"{path}: image_sizes is not a mapping of image paths to [width, height]; train again")
    return payload


def recorded_sizes(run_dir: str | os.PathLike) -> dict:
    """The image sizes a run recorded in its ``split.json`` ({} for runs that predate them)."""
    return read_split_file(Path(run_dir) / "split.json").get("image_sizes", {})


def load_split(path: str | os.PathLike, frames: LabeledFrames) -> dict[str, list[int]]:
    """Read a saved split and map its image paths back to indices of ``frames``.

    An image with several rows (one per animal: COCO's people, top-down crops) puts all of them in its split, so
    no animal of a test image is trained on."""
    payload = read_split_file(path)
    lookup: dict[str, list[int]] = {}
    for i, p in enumerate(frames.image_paths):
        lookup.setdefault(p, []).append(i)
    split: dict[str, list[int]] = {}
    for name, paths in payload.items():
        if name == "image_sizes":  # recorded image sizes, checked by keyhead.data.checks.check_recorded_sizes
            continue
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise KeyheadError(f"{path}: split {short(name)} is not a list of image paths; delete the run, train again")
        missing = [p for p in paths if p not in lookup]
        if missing:
            raise KeyheadError(
                f"{path}: {len(missing)} images of split {name!r} are not in the labels (first: {missing[0]}); "
                "the data changed since the run was made"
            )
        split[name] = [i for p in dict.fromkeys(paths) for i in lookup[p]]
    return split
