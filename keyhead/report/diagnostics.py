"""Diagnostic plots: confidence reliability and heatmap panels (predicted vs target, per keypoint and summed).

Pure NumPy in, a PNG out (written atomically); no model code here, so the HTML report can import these freely.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from keyhead.errors import KeyheadError  # noqa: E402
from keyhead.io.atomic import atomic_path  # noqa: E402
from keyhead.metrics import reliability_bins  # noqa: E402


def plot_reliability(
    confidence: np.ndarray,
    errors: np.ndarray,
    path: str | os.PathLike,
    threshold: float = 0.05,
    n_bins: int = 10,
    error_unit: str = "x normaliser",
    title: str = "",
    auroc: float | None = None,
) -> Path | None:
    """Reliability diagram of keypoint confidences: does a confident keypoint tend to be right?

    Left panel: per confidence bin, the observed accuracy (fraction of keypoints whose error is <= ``threshold``)
    against the mean confidence, with the diagonal of perfect calibration and the number of keypoints in each bin.
    Right panel: the mean error per bin (it should fall as confidence rises) over a histogram of the counts.

    Args:
        confidence: (N, K) confidences in [0, 1]; NaN entries are left out.
        errors: (N, K) errors in any unit (e.g. divided by the inter-ocular distance); NaN = unlabelled
            (left out), +inf = a missed prediction (wrong, and left out of the mean error).
        path: the PNG to write.
        threshold: error at or below which a keypoint counts as correct, in the unit of ``errors``.
        n_bins: equal-width confidence bins over [0, 1].
        error_unit: axis label of the errors, e.g. ``"x inter-ocular"`` or ``"px"``.
        title: figure title (e.g. the run and split).
        auroc: the confidence AUROC to print in the title, if known.

    Returns:
        The written path, or None when nothing is judged (no pair of finite confidence and labelled truth).

    Example:
        >>> conf = np.array([[0.9, 0.8, 0.1]]); err = np.array([[0.01, 0.02, 0.3]])
        >>> plot_reliability(conf, err, "/tmp/reliability.png").name
        'reliability.png'
    """
    bins = reliability_bins(confidence, errors, threshold, n_bins)
    if sum(bins["count"]) == 0:
        return None
    edges = np.asarray(bins["edges"])
    centres = (edges[:-1] + edges[1:]) / 2
    width = np.diff(edges)
    count = np.asarray(bins["count"])
    acc = np.array([np.nan if a is None else a for a in bins["accuracy"]])
    mean_conf = np.array([np.nan if c is None else c for c in bins["mean_confidence"]])
    mean_err = np.array([np.nan if e is None else e for e in bins["mean_error"]])

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.bar(centres, np.nan_to_num(acc), width=width * 0.9, color="C0", alpha=0.75, label="observed accuracy")
    a1.plot([0, 1], [0, 1], "--", color="0.4", lw=1, label="perfect calibration")
    a1.plot(mean_conf, acc, "o", color="C3", ms=4, label="(mean confidence, accuracy)")
    for x, a, n in zip(centres, acc, count, strict=True):
        if n:
            a1.text(x, min(np.nan_to_num(a) + 0.02, 0.97), str(int(n)), ha="center", fontsize=7)
    a1.set_xlim(0, 1)
    a1.set_ylim(0, 1.05)
    a1.set_xlabel("confidence")
    a1.set_ylabel(f"fraction with error <= {threshold:g} {error_unit}")
    a1.legend(fontsize=7, loc="upper left")

    a2b = a2.twinx()
    a2b.bar(centres, count, width=width * 0.9, color="0.8", label="keypoints")
    a2b.set_ylabel("keypoints per bin")
    a2.set_zorder(a2b.get_zorder() + 1)
    a2.patch.set_visible(False)
    a2.plot(centres, mean_err, "o-", color="C3", label="mean error")
    a2.axhline(threshold, ls="--", color="0.4", lw=1)
    a2.set_xlim(0, 1)
    a2.set_xlabel("confidence")
    a2.set_ylabel(f"mean error ({error_unit})")
    for a in (a1, a2):
        a.grid(alpha=0.3)
    ece = bins["ece"]
    parts = [title] if title else []
    if auroc is not None and np.isfinite(auroc):
        parts.append(f"confidence AUROC {auroc:.3f}")
    if ece is not None:
        parts.append(f"ECE {ece:.3f}")
    fig.suptitle("  |  ".join(parts) or "confidence reliability", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return Path(path)


def _extent(shape_hw: tuple[int, int], stride: float, offset: int) -> tuple[float, float, float, float]:
    # Cell (u, v) is centred at input pixel ((u + offset + 0.5) * stride - 0.5, ...): its edges span these bounds.
    h, w = shape_hw
    x0, y0 = offset * stride - 0.5, offset * stride - 0.5
    return (x0, x0 + w * stride, y0 + h * stride, y0)


def plot_heatmap_panels(
    image: np.ndarray,
    pred_maps: np.ndarray,
    path: str | os.PathLike,
    target_maps: np.ndarray | None = None,
    keypoints: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
    stride: float = 1.0,
    offset: int = 0,
    pred_xy: np.ndarray | None = None,
    true_xy: np.ndarray | None = None,
    max_keypoints: int = 6,
    title: str = "",
) -> Path:
    """Heatmap panels of one frame: predicted (top row) vs target (bottom row) per keypoint, and the sum over all.

    The maps are drawn over the input image in input pixels (cell (u, v) of a stride-s map covers the input
    pixels around ((u + offset + 0.5) s - 0.5, (v + offset + 0.5) s - 0.5)), so a misplaced peak is visible as such.

    Args:
        image: (H, W) or (H, W, C) the model input, uint8 or float in [0, 1].
        pred_maps: (K, h, w) activated predicted heatmaps (e.g. ``model.codec.maps(logits)[0]``).
        path: the PNG to write.
        target_maps: optional (K, h, w) target heatmaps (e.g. ``model.codec.encode(xy)[0][0]``).
        keypoints: indices of the keypoints to show (default: ``max_keypoints`` spread evenly over K).
        names: K keypoint names for the panel titles.
        stride: input pixels per heatmap cell.
        offset: cells cropped from each border of the full map (see :class:`keyhead.models.codecs.HeatmapCodec`).
        pred_xy: optional (K, 2) decoded (x, y) in input pixels, drawn as red crosses.
        true_xy: optional (K, 2) true (x, y) in input pixels, drawn as green crosses.
        max_keypoints: how many keypoints to show when ``keypoints`` is None.
        title: figure title.

    Returns:
        The written path.

    Example:
        >>> maps = np.random.rand(4, 16, 16)
        >>> plot_heatmap_panels(np.zeros((64, 64)), maps, "/tmp/panels.png", maps, stride=4).name
        'panels.png'
    """
    pred_maps = np.asarray(pred_maps, dtype=np.float64)
    if pred_maps.ndim != 3:
        raise KeyheadError(f"pred_maps must be (K, h, w), got shape {pred_maps.shape}")
    if target_maps is not None:
        target_maps = np.asarray(target_maps, dtype=np.float64)
        if target_maps.shape != pred_maps.shape:
            raise KeyheadError(f"target_maps shape {target_maps.shape} != pred_maps shape {pred_maps.shape}")
    k = pred_maps.shape[0]
    if keypoints is None:
        keypoints = sorted(set(np.linspace(0, k - 1, min(max_keypoints, k)).round().astype(int).tolist()))
    keypoints = [int(j) for j in keypoints]
    if any(not 0 <= j < k for j in keypoints):
        raise KeyheadError(f"keypoints {keypoints} out of range for {k} heatmaps")
    img = np.asarray(image)
    img = img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img
    gray = img if img.ndim == 2 else img.mean(-1)
    gray = gray / 255.0 if gray.dtype == np.uint8 or gray.max() > 1.0 else gray
    ext = _extent(pred_maps.shape[1:], stride, offset)
    rows = [("predicted", pred_maps)] + ([("target", target_maps)] if target_maps is not None else [])
    cols = len(keypoints) + 1
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.2 * cols, 2.4 * len(rows)), squeeze=False)
    for r, (label, maps) in enumerate(rows):
        panels = [(j, maps[j]) for j in keypoints] + [(None, maps.sum(0))]
        for c, (j, m) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(gray, cmap="gray", vmin=0, vmax=1)
            ax.imshow(m, cmap="magma", alpha=0.6, extent=ext, interpolation="nearest")
            ax.set_xlim(-0.5, gray.shape[1] - 0.5)
            ax.set_ylim(gray.shape[0] - 0.5, -0.5)
            ax.axis("off")
            name = "sum over keypoints" if j is None else (names[j] if names is not None else f"kp {j}")
            ax.set_title(f"{label}: {name}", fontsize=7)
            sel = slice(None) if j is None else [j]
            for xy, colour in ((true_xy, "lime"), (pred_xy, "red")):
                if xy is not None:
                    pts = np.asarray(xy, dtype=np.float64)[sel].reshape(-1, 2)
                    ax.plot(pts[:, 0], pts[:, 1], "+", color=colour, ms=5 if j is None else 9, mew=1)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_curves(histories: dict[str, list[dict]], path: str | os.PathLike, title: str = "") -> Path | None:
    """Training curves of several runs on one figure.

    Panels: training loss relative to each run's first epoch (losses of different kinds are not comparable in
    absolute value), validation pixel error per epoch, and validation pixel error against training time.

    Args:
        histories: run name -> rows of ``history.csv`` (``epoch``, ``train_loss``, ``val_pixel_error`` in input
            pixels, ``elapsed_s``), e.g. from :func:`keyhead.engine.callbacks.read_history`.
        path: the PNG to write.
        title: figure title.

    Returns:
        The written path, or None when no run has a history.

    Example:
        >>> h = [{"epoch": 0, "train_loss": 2.0, "val_pixel_error": 9.0, "elapsed_s": 1.0}]
        >>> plot_curves({"a": h}, "/tmp/curves.png").name
        'curves.png'
    """
    histories = {k: v for k, v in histories.items() if v}
    if not histories:
        return None
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 4.2))
    for i, (name, hist) in enumerate(histories.items()):
        colour = f"C{i % 10}"
        ep = [h["epoch"] for h in hist]
        loss = np.array([h["train_loss"] for h in hist], dtype=np.float64)
        first = loss[np.isfinite(loss)][0] if np.isfinite(loss).any() else 1.0
        val = [h["val_pixel_error"] for h in hist]
        minutes = [h["elapsed_s"] / 60 for h in hist]
        a1.plot(ep, loss / (first if first else 1.0), color=colour, label=name)
        a2.plot(ep, val, color=colour, label=name)
        a3.plot(minutes, val, color=colour, label=name)
    a1.set_ylabel("train loss / first epoch's")
    a2.set_ylabel("val pixel error (input px)")
    a3.set_ylabel("val pixel error (input px)")
    for a, xl in ((a1, "epoch"), (a2, "epoch"), (a3, "training time (min)")):
        a.set_xlabel(xl)
        a.set_yscale("log")
        a.grid(alpha=0.3, which="both")
    a3.legend(fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return Path(path)


def _view_box(true: np.ndarray, shape_hw: tuple[int, int], margin: float) -> tuple[int, int, int, int]:
    """A square (x0, y0, x1, y1) pixel window around the labelled points, enlarged by ``margin``, inside the image."""
    h, w = shape_hw
    pts = true[np.isfinite(true).all(-1)]
    if not len(pts):
        return 0, 0, w, h
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    side = max(x1 - x0, y1 - y0, 8.0) * (1 + margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return (
        int(max(0, np.floor(cx - side / 2))),
        int(max(0, np.floor(cy - side / 2))),
        int(min(w, np.ceil(cx + side / 2) + 1)),
        int(min(h, np.ceil(cy + side / 2) + 1)),
    )


def plot_overlay_grid(
    images: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    predictions: dict[str, Sequence[np.ndarray]],
    path: str | os.PathLike,
    row_titles: dict[str, str] | None = None,
    col_titles: Sequence[str] | None = None,
    zoom_margin: float | None = 0.3,
    skeleton: list[tuple[int, int]] | None = None,
) -> Path:
    """Prediction-vs-truth overlays side by side: one row per model, one column per frame (the same frames).

    Prediction red, truth green, a yellow line joining each pair. With ``zoom_margin`` every column shows the box
    of the frame's true keypoints enlarged by that fraction (a face, not the whole photo).

    Args:
        images: F images, (H, W, 3) uint8 RGB (or (H, W) / (H, W, 1) grayscale), original pixels.
        truths: F arrays (K, 2) of true (x, y) in original pixels, NaN unlabelled.
        predictions: model name -> F arrays (K, 2) of predicted (x, y) in original pixels.
        path: the PNG to write.
        row_titles: model name -> a longer label (e.g. with its NME).
        col_titles: F column labels (e.g. file names).
        zoom_margin: crop each column around its truth; None shows whole images.
        skeleton: index pairs to draw as lines.

    Returns:
        The written path.
    """
    from keyhead.report.plots import draw_keypoints

    if len(images) != len(truths) or any(len(p) != len(images) for p in predictions.values()):
        raise KeyheadError("plot_overlay_grid: images, truths and every model's predictions must list the same frames")
    rows, cols = max(1, len(predictions)), max(1, len(images))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols + 0.4, 2.7 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for r, (name, preds) in enumerate(predictions.items()):
        for c, (img, true, pred) in enumerate(zip(images, truths, preds, strict=True)):
            rgb = np.asarray(img)
            rgb = rgb[..., None] if rgb.ndim == 2 else rgb
            rgb = np.repeat(rgb, 3, axis=-1) if rgb.shape[-1] == 1 else rgb
            box = _view_box(np.asarray(true), rgb.shape[:2], zoom_margin) if zoom_margin is not None else None
            radius = max(1, round((box[2] - box[0] if box else max(rgb.shape[:2])) / 120))
            pic = draw_keypoints(rgb, np.asarray(pred), np.asarray(true), skeleton=skeleton, radius=radius)
            if box is not None:
                pic = pic[box[1] : box[3], box[0] : box[2]]
            ax = axes[r, c]
            ax.imshow(pic)
            if c == 0:
                ax.set_ylabel((row_titles or {}).get(name, name), fontsize=7)
            if r == 0 and col_titles is not None:
                ax.set_title(col_titles[c], fontsize=7)
    fig.suptitle("prediction (red) vs truth (green)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return Path(path)


def model_heatmap_panels(
    model, cfg, frames, index: int, path: str | os.PathLike, keypoints: Sequence[int] | None = None, title: str = ""
) -> Path | None:
    """:func:`plot_heatmap_panels` of a loaded run on frame ``index`` of ``frames`` (None for non-heatmap heads).

    The frame is prepared as evaluation prepares it (whole image or crop, resized to the model input); the panels
    show the model's activated maps, the training targets, and the decoded and true keypoints.
    """
    import torch

    from keyhead.data.dataset import KeypointDataset

    if model.codec.kind != "heatmap" or model.context > 1:
        return None
    ds = KeypointDataset(
        frames,
        model.input_size,
        None,
        indices=[index],
        in_channels=cfg.data.in_channels,
        crop_margin=cfg.data.crop_margin,
    )
    sample = ds[0]
    with torch.inference_mode():
        raw = model.eval()(sample["image"][None])
        kp = model.decode(raw)
    logits = raw["heatmaps"] if isinstance(raw, dict) else raw
    if not isinstance(logits, torch.Tensor) or logits.ndim != 4:
        return None
    maps = model.codec.maps(logits.float())[0].numpy()
    target = model.codec.encode(sample["keypoints"][None].double())[0][0].float().numpy()
    image = (sample["image"].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    return plot_heatmap_panels(
        image,
        maps,
        path,
        target_maps=target,
        keypoints=keypoints,
        names=model.keypoint_names,
        stride=model.codec.stride,
        offset=model.codec.offset,
        pred_xy=kp.xy[0].numpy(),
        true_xy=sample["keypoints"].numpy(),
        title=title,
    )
