"""Top-down prediction: instance centres on the whole frame, then the pose model on a crop around each centre."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from keyhead.data.augment import box_matrix, transform_points
from keyhead.io.images import resize_like_training, warp
from keyhead.io.rundir import read_topdown
from keyhead.models.build import load_run
from keyhead.topdown.stages import crop_box


@dataclass
class Instances:
    """The animals found in one image.

    Attributes:
        xy: (P, K, 2) keypoints in image pixels.
        confidence: (P, K) keypoint confidences.
        score: (P,) instance scores (the centre map's peak value).
        centre: (P, 2) instance centres in image pixels.
    """

    xy: np.ndarray
    confidence: np.ndarray
    score: np.ndarray
    centre: np.ndarray


def _to_tensor(images: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """(B, H, W, C) uint8 images -> (B, C, H, W) float in [0, 1] (as the training dataset feeds them)."""
    return torch.from_numpy(np.stack(images)).to(device).permute(0, 3, 1, 2).float().div_(255.0)


class TopDownPredictor:
    """Finds the animals of a top-down run's images and predicts each one's keypoints.

    Args:
        run_dir: a top-down run folder (``keyhead train`` on multi-animal labels).
        threshold: centre-map peaks below this are not animals (default: the run's ``topdown.peak_threshold``).
        max_animals: at most this many animals per image (default: the run's ``animals``).
        device: torch device.
        crop_batch: crops per pose-model batch.

    Example:
        >>> found = TopDownPredictor("runs/flies")([frame])[0]  # doctest: +SKIP
        >>> found.xy.shape  # (animals found, K, 2)  # doctest: +SKIP
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        threshold: float | None = None,
        max_animals: int | None = None,
        device: str | torch.device = "cpu",
        crop_batch: int = 32,
    ) -> None:
        from keyhead.config import load_config

        run = Path(run_dir)
        self.record = read_topdown(run)
        cfg = load_config(run / "config.yaml")
        self.device = torch.device(device)
        self.centre_model, centre_cfg = load_run(run / "centroid")
        self.pose_model, pose_cfg = load_run(run / "pose")
        self.centre_model.to(self.device).eval()
        self.pose_model.to(self.device).eval()
        self.in_channels = pose_cfg.data.in_channels
        self.threshold = cfg.topdown.peak_threshold if threshold is None else threshold
        self.max_animals = int(max_animals or self.record["animals"])
        self.crop_size = int(self.record["crop_size"])
        self.crop_batch = crop_batch
        self.keypoint_names: list[str] = list(self.pose_model.keypoint_names)

    @torch.inference_mode()
    def centres(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Instance centres of each image: ((P, 2) image pixels, (P,) scores), strongest first, P <= max_animals."""
        size = self.centre_model.input_size
        resized, mats = zip(*(resize_like_training(img, size) for img in images), strict=True)
        kp = self.centre_model.predict(_to_tensor(list(resized), self.device))
        xy, score = kp.numpy()
        out = []
        for i, m in enumerate(mats):
            keep = np.flatnonzero(score[i] >= self.threshold)
            keep = keep[np.argsort(-score[i][keep], kind="stable")][: self.max_animals]
            out.append((transform_points(xy[i][keep].astype(np.float64), np.linalg.inv(m)), score[i][keep]))
        return out

    @torch.inference_mode()
    def pose(self, images: list[np.ndarray], centres: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Keypoints of the animal centred at each centre: ((P, K, 2) image pixels, (P, K) confidence) per image."""
        h, w = self.pose_model.input_size
        crops, inverse = [], []
        for img, c in zip(images, centres, strict=True):
            for box in crop_box(np.asarray(c, dtype=np.float64).reshape(-1, 2), self.crop_size):
                m = box_matrix(box, (w, h), 1.0)
                crops.append(warp(img, m, (w, h)))
                inverse.append(np.linalg.inv(m))
        k = len(self.keypoint_names)
        xy = np.zeros((len(crops), k, 2), dtype=np.float64)
        conf = np.zeros((len(crops), k), dtype=np.float32)
        for s in range(0, len(crops), self.crop_batch):
            kp = self.pose_model.predict(_to_tensor(crops[s : s + self.crop_batch], self.device))
            part_xy, conf[s : s + self.crop_batch] = kp.numpy()
            for j, p in enumerate(part_xy):
                xy[s + j] = transform_points(p.astype(np.float64), inverse[s + j])
        out, start = [], 0
        for c in centres:
            n = len(c)
            out.append((xy[start : start + n].astype(np.float32), conf[start : start + n]))
            start += n
        return out

    def __call__(self, images: list[np.ndarray]) -> list[Instances]:
        """Animals of each (H, W, C) uint8 image (channels as the run was trained: 1 or 3)."""
        found = self.centres(images)
        poses = self.pose(images, [c for c, _ in found])
        return [
            Instances(xy, conf, score.astype(np.float32), c.astype(np.float32))
            for (c, score), (xy, conf) in zip(found, poses, strict=True)
        ]
