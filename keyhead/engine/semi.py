"""Semi-supervised training without DALI: unlabelled video clips and Lightning Pose's unsupervised losses.

Clips of consecutive frames are decoded once on the CPU (PyAV, any codec), resized to the model input and kept
in memory; each training step adds a batch of clips whose predicted keypoints (differentiable spatial
expectation of the heatmaps, in original pixels) are penalised by:

- temporal: ``max(0, |xy_t - xy_{t-1}| - epsilon)`` per keypoint (jumps larger than epsilon pixels);
- pca: ``max(0, |xy - reconstruction| - epsilon)`` per keypoint, the reconstruction from a PCA of the
  training labels (Pose PCA over all keypoints; multi-view PCA over the views of each body part when
  ``semi.multiview`` lists them). Epsilon defaults to a percentile of the labels' own reconstruction errors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from keyhead.config import RunConfig
from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_write
from keyhead.models.decoders.functional import soft_argmax
from keyhead.types import LabeledFrames


class PosePCA:
    """A PCA of keypoint coordinates (original pixels) and its epsilon-insensitive reconstruction error.

    Args:
        mean: (D,) mean of the fitted rows.
        components: (D, P) orthonormal principal axes kept.
        groups: for each row layout, the keypoint index of every (x, y) pair: (G, D/2).
        epsilon: (K,) per-keypoint error (pixels) below which no loss is paid.
    """

    def __init__(self, mean: np.ndarray, components: np.ndarray, groups: np.ndarray, epsilon: np.ndarray) -> None:
        self.mean = torch.as_tensor(mean, dtype=torch.float32)
        self.components = torch.as_tensor(components, dtype=torch.float32)
        self.groups = torch.as_tensor(groups, dtype=torch.long)
        self.epsilon = torch.as_tensor(epsilon, dtype=torch.float32)

    @classmethod
    def fit(
        cls,
        keypoints: np.ndarray,
        variance: float = 0.99,
        groups: list[list[int]] | None = None,
        quantile: float = 0.95,
    ) -> PosePCA:
        """Fit on labelled keypoints (N, K, 2); rows with a missing keypoint are left out.

        ``groups`` (multi-view): lists of keypoint indices, one list per body part, one index per view; each body
        part contributes a row (x_v1, y_v1, x_v2, y_v2, ...) and the PCA keeps ``2 * views - 1`` components
        (two views see one 3-D point). Without groups, one row per frame holds all K keypoints.
        """
        k = keypoints.shape[1]
        layout = np.array(groups if groups else [complete_keypoints(keypoints)])
        rows = keypoints[:, layout].reshape(-1, layout.shape[1] * 2)
        rows = rows[np.isfinite(rows).all(1)]
        if len(rows) < layout.shape[1] * 2 + 1:
            raise KeyheadError(
                f"Pose PCA needs more fully-labelled {'body parts' if groups else 'frames'} than its {rows.shape[1]} "
                f"dimensions; only {len(rows)} found; label more frames or drop 'pca' from semi.losses"
            )
        mean = rows.mean(0)
        _, s, vt = np.linalg.svd(rows - mean, full_matrices=False)
        if groups:
            p = 2 * layout.shape[1] - 1
        else:
            ratio = np.cumsum(s**2) / max((s**2).sum(), 1e-12)
            p = int(np.searchsorted(ratio, variance) + 1)
        pca = cls(mean, vt[:p].T, layout, np.zeros(k))
        err = pca.errors(torch.as_tensor(keypoints, dtype=torch.float32)).numpy()
        eps = np.zeros(k)
        for j in np.unique(layout):
            col = err[:, j][np.isfinite(err[:, j])]
            eps[j] = np.quantile(col, quantile) if len(col) else 0.0
        pca.epsilon = torch.as_tensor(eps, dtype=torch.float32)
        return pca

    def errors(self, xy: torch.Tensor) -> torch.Tensor:
        """Per-keypoint reconstruction error (..., K) in pixels for keypoints (..., K, 2)."""
        lead = xy.shape[:-2]
        g, m = self.groups.shape
        rows = xy[..., self.groups.to(xy.device), :].reshape(*lead, g, 2 * m)
        mean, comp = self.mean.to(xy), self.components.to(xy)
        centred = rows - mean
        recon = centred @ comp @ comp.T
        res = torch.linalg.vector_norm((centred - recon).reshape(*lead, g, m, 2), dim=-1)
        out = torch.full((*lead, xy.shape[-2]), float("nan"), dtype=xy.dtype, device=xy.device)
        out[..., self.groups.to(xy.device).reshape(-1)] = res.reshape(*lead, g * m)
        return out

    def loss(self, xy: torch.Tensor) -> torch.Tensor:
        err = self.errors(xy)
        pen = torch.relu(err - self.epsilon.to(xy))
        return pen[torch.isfinite(pen)].mean()

    def save(self, path: str | os.PathLike) -> None:
        from safetensors.torch import save_file

        from keyhead.io.atomic import atomic_path

        with atomic_path(path) as tmp:
            save_file(
                {
                    "mean": self.mean.contiguous(),
                    "components": self.components.contiguous(),
                    "groups": self.groups.contiguous(),
                    "epsilon": self.epsilon.contiguous(),
                },
                str(tmp),
            )

    @classmethod
    def load(cls, path: str | os.PathLike) -> PosePCA:
        from safetensors.torch import load_file

        t = load_file(str(path))
        return cls(t["mean"], t["components"], t["groups"], t["epsilon"])


def complete_keypoints(keypoints: np.ndarray, min_rows: int | None = None) -> list[int]:
    """Keypoints for a single-view Pose PCA: drop the most often missing ones until enough frames are complete.

    Lightning Pose asks the user to list the keypoints to use; this picks them from the labels: occluded-prone
    keypoints (e.g. a paw hidden half the time) are left out rather than discarding most frames.
    """
    keep = list(range(keypoints.shape[1]))
    labelled = np.isfinite(keypoints).all(-1)  # (N, K)
    while len(keep) > 2:
        need = min_rows if min_rows is not None else max(2 * 2 * len(keep) + 1, 20)
        if labelled[:, keep].all(1).sum() >= need:
            break
        worst = max(keep, key=lambda j: (~labelled[:, j]).sum())
        keep.remove(worst)
    return keep


class ClipPool:
    """Clips of consecutive unlabelled frames, decoded once, resized to the model input, kept as uint8.

    Args:
        videos: video files.
        input_size: (H, W) model input.
        in_channels: 1 or 3.
        n_frames: frames to keep in all (split into clips of ``clip_length``).
        clip_length: consecutive frames per clip.
        seed: which clips are taken.
    """

    def __init__(
        self,
        videos: list[Path],
        input_size: tuple[int, int],
        in_channels: int,
        n_frames: int = 512,
        clip_length: int = 4,
        seed: int = 0,
    ) -> None:
        from keyhead.io.images import resize_like_training
        from keyhead.io.video import iter_frames, probe

        self.clip_length = clip_length
        clips: list[np.ndarray] = []
        self.scale: tuple[float, float] | None = None
        per_video = max(1, n_frames // clip_length // max(len(videos), 1))
        rng = np.random.default_rng(seed)
        h, w = input_size
        for video in videos:
            info = probe(video)
            n = info.n_frames or 0
            if n < clip_length:
                raise KeyheadError(f"semi.videos: {video} has {n} frames, fewer than semi.clip_length={clip_length}")
            scale = (info.width / w, info.height / h)
            if self.scale is not None and not np.allclose(scale, self.scale):
                raise KeyheadError(f"semi.videos: {video} has another frame size than the first video; use one size")
            self.scale = scale
            starts = np.sort(rng.choice(n - clip_length + 1, size=min(per_video, n - clip_length + 1), replace=False))
            wanted = {int(s) + j: (ci, j) for ci, s in enumerate(starts) for j in range(clip_length)}
            buf = np.zeros((len(starts), clip_length, in_channels, h, w), np.uint8)
            last = max(wanted)
            for i, frame in iter_frames(video, in_channels):
                if i in wanted:
                    ci, j = wanted[i]
                    buf[ci, j] = resize_like_training(frame, input_size)[0].transpose(2, 0, 1)
                if i >= last:
                    break
            clips.append(buf)
        self.clips = torch.from_numpy(np.concatenate(clips))
        self._rng = np.random.default_rng(seed + 1)

    def __len__(self) -> int:
        return len(self.clips)

    def sample(self, n: int, step: int) -> torch.Tensor:
        """(n, L, C, H, W) float clips in [0, 1], drawn deterministically from the step number."""
        idx = np.random.default_rng((int(step), 7)).choice(len(self.clips), size=min(n, len(self.clips)), replace=False)
        return self.clips[idx].float() / 255.0


class UnsupervisedLosses:
    """Everything a training step needs for the unlabelled part: the clip pool, the PCA and the weights."""

    def __init__(self, cfg: RunConfig, pool: ClipPool, pca: PosePCA | None) -> None:
        self.cfg = cfg.semi
        self.pool = pool
        self.pca = pca

    def __call__(self, model: torch.nn.Module, step: int) -> dict[str, torch.Tensor]:
        clips = self.pool.sample(self.cfg.clips_per_batch, step).to(next(model.parameters()).device)
        b, t = clips.shape[:2]
        raw = model(clips.flatten(0, 1))
        codec = model.codec
        logits = raw[:, -1] if raw.ndim == 5 else raw
        xy, _ = soft_argmax(logits.float(), stride=codec.stride, temperature=1.0)
        xy = xy + codec.offset * codec.stride
        sx, sy = self.pool.scale
        xy = torch.stack([(xy[..., 0] + 0.5) * sx - 0.5, (xy[..., 1] + 0.5) * sy - 0.5], dim=-1)
        xy = xy.reshape(b, t, *xy.shape[1:])
        out: dict[str, torch.Tensor] = {}
        if "temporal" in self.cfg.losses and t > 1:
            jump = torch.linalg.vector_norm(xy[:, 1:] - xy[:, :-1], dim=-1)
            out["temporal"] = self.cfg.temporal_weight * torch.relu(jump - self.cfg.temporal_epsilon).mean()
        if "pca" in self.cfg.losses and self.pca is not None:
            out["pca"] = self.cfg.pca_weight * self.pca.loss(xy.flatten(0, 1))
        return out


def find_videos(cfg: RunConfig) -> list[Path]:
    """``semi.videos`` as files: explicit paths/folders, or ``auto`` = the project's ``videos/`` folder."""
    from keyhead.io.video import VIDEO_SUFFIXES

    out: list[Path] = []
    for entry in cfg.semi.videos:
        if entry == "auto":
            root = Path(cfg.data.path)
            root = root if root.is_dir() else root.parent
            folder = root / "videos"
            found = sorted(p for p in folder.glob("*") if p.suffix.lower() in VIDEO_SUFFIXES) if folder.is_dir() else []
            if not found:
                raise KeyheadError(f"semi.videos=auto: no videos in {folder}; list the video files in semi.videos")
            out.extend(found)
            continue
        p = Path(entry)
        if p.is_dir():
            out.extend(sorted(q for q in p.glob("*") if q.suffix.lower() in VIDEO_SUFFIXES))
        elif p.is_file():
            out.append(p)
        else:
            raise KeyheadError(f"semi.videos: {entry} does not exist; give video files or folders")
    return out


def setup_semi(
    cfg: RunConfig, frames: LabeledFrames, train_idx: list[int], model: torch.nn.Module, run_dir: Path
) -> UnsupervisedLosses | None:
    """The unlabelled pool and the PCA of a run (None when ``semi.videos`` is empty); saves ``pca.safetensors``."""
    if not cfg.semi.videos:
        return None
    unknown = set(cfg.semi.losses) - {"temporal", "pca"}
    if unknown:
        raise KeyheadError(f"semi.losses: unknown {sorted(unknown)}; use temporal and/or pca")
    if model.codec.kind != "heatmap":
        raise KeyheadError("semi-supervised losses need a heatmap head (they use its spatial expectation)")
    if model.context > 1:
        raise KeyheadError(
            "semi-supervised losses are for single-frame heads so far; use head=heatmap with semi.videos, or mhcrnn "
            "without semi.videos"
        )
    videos = find_videos(cfg)
    pca = None
    if "pca" in cfg.semi.losses:
        groups = None
        if cfg.semi.multiview:
            names = frames.keypoint_names
            missing = [n for part in cfg.semi.multiview for n in part if n not in names]
            if missing:
                raise KeyheadError(f"semi.multiview names {missing} are not keypoints of the data ({names})")
            groups = [[names.index(n) for n in part] for part in cfg.semi.multiview]
        pca = PosePCA.fit(frames.keypoints[train_idx], cfg.semi.pca_variance, groups, cfg.semi.pca_epsilon_quantile)
        pca.save(run_dir / "pca.safetensors")
    pool = ClipPool(
        videos, model.input_size, cfg.data.in_channels, cfg.semi.frames, cfg.semi.clip_length, cfg.train.seed
    )
    with atomic_write(run_dir / "semi.json") as f:
        json.dump({"videos": [str(v) for v in videos], "clips": len(pool), "clip_length": pool.clip_length}, f)
    return UnsupervisedLosses(cfg, pool, pca)
