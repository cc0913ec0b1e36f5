"""Plots people look at: training curves and prediction-vs-truth overlays (prediction red, truth green)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from keyhead.data.dataset import read_image  # noqa: E402
from keyhead.io.atomic import atomic_path  # noqa: E402
from keyhead.types import LabeledFrames  # noqa: E402

PRED = (230, 40, 40)
TRUE = (40, 200, 40)


def draw_keypoints(
    image: np.ndarray,
    pred: np.ndarray | None = None,
    true: np.ndarray | None = None,
    confidence: np.ndarray | None = None,
    threshold: float = 0.0,
    skeleton: list[tuple[int, int]] | None = None,
    radius: int | None = None,
    pred_colour: tuple[int, int, int] = PRED,
) -> np.ndarray:
    """Draw keypoints on an RGB uint8 (H, W, 3) image (a copy): truth green, prediction red, error lines.

    Predictions whose confidence is below ``threshold`` are drawn hollow; ``pred_colour`` replaces the red (one
    colour per animal identity).
    """
    img = image if image.shape[-1] == 3 else np.repeat(image, 3, axis=-1)
    img = np.ascontiguousarray(img.copy())
    r = radius or max(2, round(max(img.shape[:2]) / 150))
    shift = 4
    scale = 1 << shift

    def pt(p: np.ndarray) -> tuple[int, int]:
        return int(round(p[0] * scale)), int(round(p[1] * scale))

    for pts, colour in ((true, TRUE), (pred, pred_colour)):
        if pts is None:
            continue
        for a, b in skeleton or []:
            if np.isfinite(pts[a]).all() and np.isfinite(pts[b]).all():
                cv2.line(img, pt(pts[a]), pt(pts[b]), colour, 1, cv2.LINE_AA, shift)
    if pred is not None and true is not None:
        for p, t in zip(pred, true, strict=True):
            if np.isfinite(p).all() and np.isfinite(t).all():
                cv2.line(img, pt(p), pt(t), (250, 220, 0), 1, cv2.LINE_AA, shift)
    if true is not None:
        for t in true:
            if np.isfinite(t).all():
                cv2.circle(img, pt(t), r * scale, TRUE, -1, cv2.LINE_AA, shift)
    if pred is not None:
        for j, p in enumerate(pred):
            if np.isfinite(p).all():
                sure = confidence is None or confidence[j] >= threshold
                cv2.circle(img, pt(p), r * scale, pred_colour, -1 if sure else 1, cv2.LINE_AA, shift)
    return img


def identity_colours(n: int) -> list[tuple[int, int, int]]:
    """``n`` well-separated RGB colours, one per animal identity (the same in overlays and labelled videos)."""
    import colorsys

    return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / max(n, 1), 0.9, 1.0)) for i in range(n)]


def skeleton_indices(names: list[str], skeleton: list[tuple[str, str]]) -> list[tuple[int, int]]:
    """Skeleton name pairs -> index pairs into ``names`` (pairs naming unknown keypoints are dropped)."""
    lookup = {n: i for i, n in enumerate(names)}
    return [(lookup[a], lookup[b]) for a, b in skeleton if a in lookup and b in lookup]


def plot_overlays(
    frames: LabeledFrames,
    indices: list[int],
    pred: np.ndarray,
    confidence: np.ndarray,
    path: str | os.PathLike,
    n_worst: int = 4,
    n_median: int = 4,
) -> Path | None:
    """A grid of the worst and the median frames by mean pixel error: prediction red, truth green."""
    if len(indices) == 0:
        return None
    err = np.linalg.norm(pred - frames.keypoints[indices], axis=-1)
    with np.errstate(all="ignore"):
        per_frame = np.where(np.isfinite(err).any(1), np.nanmean(np.where(np.isfinite(err), err, np.nan), 1), -1)
    order = np.argsort(-per_frame)
    worst = list(order[:n_worst])
    mid = len(order) // 2
    median = [i for i in order[max(0, mid - n_median // 2) : mid + (n_median + 1) // 2] if i not in worst]
    chosen = [(i, "worst") for i in worst] + [(i, "median") for i in median]
    cols = min(4, len(chosen))
    rows = (len(chosen) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    skel = skeleton_indices(frames.keypoint_names, frames.skeleton)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (j, kind) in zip(axes.ravel(), chosen, strict=False):
        i = indices[j]
        img = read_image(frames.path(i), 3)
        ax.imshow(draw_keypoints(img, pred[j], frames.keypoints[i], confidence[j], 0.5, skel))
        ax.set_title(f"{kind}: {per_frame[j]:.1f} px\n{Path(frames.image_paths[i]).name}", fontsize=8)
    fig.suptitle("prediction (red) vs truth (green)", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_history(run_dir: str | os.PathLike, path: str | os.PathLike) -> Path | None:
    """Training and validation loss, and validation pixel error, per epoch."""
    from keyhead.io.rundir import read_history

    hist = read_history(Path(run_dir))
    if not hist:
        return None
    ep = [h["epoch"] for h in hist]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    a1.plot(ep, [h["train_loss"] for h in hist], label="train")
    a1.plot(ep, [h["val_loss"] for h in hist], label="val")
    a1.set_xlabel("epoch")
    a1.set_ylabel("loss")
    a1.set_yscale("log")
    a1.legend()
    a2.plot(ep, [h["val_pixel_error"] for h in hist], color="C3")
    a2.set_xlabel("epoch")
    a2.set_ylabel("val pixel error (input px)")
    a2.set_yscale("log")
    for a in (a1, a2):
        a.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return Path(path)
