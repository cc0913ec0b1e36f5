"""``keyhead predict``: images and folders -> a DLC-format predictions table and overlay pictures."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from keyhead.data.dataset import ImageCache, KeypointDataset
from keyhead.data.face import crops_to_landmarks, landmark_boxes
from keyhead.data.formats import load_labels
from keyhead.data.formats.dlc import write_dlc_csv
from keyhead.data.formats.ibug68 import IBUG68_NAMES
from keyhead.data.formats.pts import read_pts
from keyhead.data.prepare import select_keypoints
from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_path, make_dir
from keyhead.io.images import collect_images
from keyhead.io.rundir import read_skeleton
from keyhead.models.build import load_run
from keyhead.models.model import KeypointModel
from keyhead.models.tta import flip_predict, run_flip_pairs
from keyhead.report.plots import draw_keypoints, skeleton_indices
from keyhead.types import LabeledFrames

log = logging.getLogger("keyhead")


def _truth_for(images: list[Path], names: list[str]) -> dict[Path, np.ndarray]:
    """Labels for the images, where a label file sits in (or above) their folder, or a ``.pts`` beside them."""
    truth: dict[Path, np.ndarray] = {}
    for p in images:
        pts = p.with_suffix(".pts")
        if len(names) == len(IBUG68_NAMES) and pts.is_file():
            points = read_pts(pts)
            if points.shape == (len(names), 2):
                truth[p] = points.astype(np.float32)
    for folder in {p.parent for p in images}:
        for cand in (folder, folder.parent, folder.parent.parent):
            csvs = sorted(cand.glob("CollectedData*.csv"))
            if not csvs:
                continue
            try:
                frames = select_keypoints(load_labels(csvs[0]), names)
            except KeyheadError:
                break
            for i in range(len(frames)):
                truth[frames.path(i).resolve()] = frames.keypoints[i]
            break
    return truth


def predict_images(
    run_dir: str | os.PathLike,
    inputs: list[str | os.PathLike],
    out_dir: str | os.PathLike | None = None,
    overlays: bool = True,
    threshold: float = 0.5,
    batch_size: int = 16,
    progress: bool = True,
    flip: bool = False,
    device: str = "auto",
) -> Path:
    """Predict keypoints on images; writes ``predictions.csv`` (x, y, likelihood) and ``overlays/``.

    ``flip`` averages with the prediction on the mirrored image (:func:`keyhead.models.tta.flip_predict`).
    A run trained on face crops (``data.crop: landmarks``) crops each image to the box of its ``.pts`` landmarks
    when one lies beside it (the 300-W protocol); other images are resized whole. ``device``: "auto" (a GPU when
    there is one), "cpu", "cuda" or "mps".

    Returns:
        The output folder.
    """
    model, cfg = load_run(run_dir, device=device)
    images = collect_images(inputs)
    root = Path(os.path.commonpath([str(p.parent) for p in images]))
    k = len(model.keypoint_names)
    frames = LabeledFrames(
        root=root,
        image_paths=[p.relative_to(root).as_posix() for p in images],
        keypoints=np.full((len(images), k, 2), np.nan, np.float32),
        keypoint_names=model.keypoint_names,
        source="predict",
    )
    if batch_size < 1:
        raise KeyheadError(f"--batch-size {batch_size}: give a positive number of images per forward pass")
    out = make_dir(Path(out_dir) if out_dir else Path(run_dir) / "predictions")
    truth = _truth_for(images, model.keypoint_names)
    if crops_to_landmarks(cfg.data.crop, k):
        nan = np.full((k, 2), np.nan, np.float32)
        frames.boxes = landmark_boxes(np.stack([truth.get(p, nan) for p in images]))
        uncropped = int(np.isnan(frames.boxes).any(1).sum())
        if uncropped:
            log.warning("%d of %d images have no landmarks to crop to and are resized whole", uncropped, len(images))
    cache = ImageCache(frames, cfg.data.in_channels, 10**6)
    ds = KeypointDataset(
        frames,
        model.input_size,
        None,
        cache=cache,
        crop_margin=cfg.data.crop_margin,
        context_offsets=model.frame_offsets(),
        context_video=cfg.data.context_video,
        context_frames=cfg.data.context_frames,
    )
    flip_pairs = run_flip_pairs(run_dir, model.keypoint_names, cfg.data.flip_pairs) if flip else None
    xy, conf = predict_dataset(model, ds, batch_size, progress, desc="predict", flip_pairs=flip_pairs)
    frames.keypoints = xy
    csv_path = write_dlc_csv(frames, out / "predictions.csv", scorer="keyhead", likelihood=conf)
    if overlays:
        skeleton = skeleton_indices(model.keypoint_names, read_skeleton(run_dir))
        (out / "overlays").mkdir(parents=True, exist_ok=True)
        for i, p in enumerate(tqdm(images, desc="overlays", disable=not progress)):
            img = ds.cache.get(i)[0]
            pic = draw_keypoints(img, xy[i], truth.get(p), conf[i], threshold, skeleton)
            target = out / "overlays" / (frames.image_paths[i].replace("/", "__").rsplit(".", 1)[0] + ".png")
            with atomic_path(target) as tmp:
                cv2.imwrite(str(tmp), cv2.cvtColor(pic, cv2.COLOR_RGB2BGR))
    print(f"predicted {len(images)} images -> {csv_path}")
    return out


def predict_videos(*args, **kwargs):
    """Video prediction from a run folder; see :func:`keyhead.inference.video.predict_videos` (kept for the API)."""
    from keyhead.inference.video import predict_videos as run

    return run(*args, **kwargs)


def predict_dataset(
    model: KeypointModel,
    dataset: KeypointDataset,
    batch_size: int = 16,
    progress: bool = False,
    desc: str = "predict",
    flip_pairs: Sequence[tuple[int, int]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Predict every sample of an (un-augmented) dataset and map keypoints back to original-image pixels.

    With ``flip_pairs`` (left/right index pairs, possibly empty) each batch is predicted with horizontal-flip
    test-time augmentation (:func:`keyhead.models.tta.flip_predict`).

    Returns:
        xy (N, K, 2) in original pixels, confidence (N, K), in dataset order.
    """
    device = next(model.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size)
    xs, cs = [], []
    for batch in tqdm(loader, desc=desc, disable=not progress, unit="batch"):
        images = batch["image"].to(device)
        kp = model.predict(images) if flip_pairs is None else flip_predict(model, images, flip_pairs)
        inv = torch.linalg.inv(batch["matrix"]).to(kp.xy.device, torch.float64)
        xy = torch.einsum("bij,bkj->bki", inv[:, :2, :2], kp.xy.double()) + inv[:, None, :2, 2]
        xs.append(xy.float().cpu().numpy())
        cs.append(kp.confidence.float().cpu().numpy())
    k = model.head.num_keypoints
    if not xs:
        return np.zeros((0, k, 2), np.float32), np.zeros((0, k), np.float32)
    return np.concatenate(xs), np.concatenate(cs)
