"""Evaluation: predict every split with the best weights, the field's metrics, predictions and plots."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from keyhead.data.dataset import ImageCache, KeypointDataset, load_split
from keyhead.data.formats import load_labels
from keyhead.data.formats.dlc import write_dlc_csv
from keyhead.errors import KeyheadError
from keyhead.metrics import evaluate_split, interocular
from keyhead.model import KeypointModel
from keyhead.run import load_run, select_keypoints
from keyhead.types import LabeledFrames
from keyhead.utils.io import atomic_write


def predict_dataset(
    model: KeypointModel, dataset: KeypointDataset, batch_size: int = 16, progress: bool = False, desc: str = "predict"
) -> tuple[np.ndarray, np.ndarray]:
    """Predict every sample of an (un-augmented) dataset and map keypoints back to original-image pixels.

    Returns:
        xy (N, K, 2) in original pixels, confidence (N, K), in dataset order.
    """
    device = next(model.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size)
    xs, cs = [], []
    for batch in tqdm(loader, desc=desc, disable=not progress, unit="batch"):
        kp = model.predict(batch["image"].to(device))
        inv = torch.linalg.inv(batch["matrix"]).to(kp.xy.device, torch.float64)
        xy = torch.einsum("bij,bkj->bki", inv[:, :2, :2], kp.xy.double()) + inv[:, None, :2, 2]
        xs.append(xy.float().cpu().numpy())
        cs.append(kp.confidence.float().cpu().numpy())
    k = model.head.num_keypoints
    if not xs:
        return np.zeros((0, k, 2), np.float32), np.zeros((0, k), np.float32)
    return np.concatenate(xs), np.concatenate(cs)


def normalizer(frames: LabeledFrames, idx: list[int], spec: str) -> tuple[np.ndarray | None, str | None]:
    """Per-frame NME/PCK normaliser from the config's ``data.nme_normalizer``."""
    true = frames.keypoints[idx]
    if spec == "none":
        return None, None
    if spec == "interocular" or (spec == "auto" and frames.num_keypoints == 68):
        return interocular(true), "interocular"
    if spec == "auto":
        return None, None
    if spec == "bbox":
        return None, "bbox_diagonal"
    names = [s.strip() for s in spec.split(",")]
    if len(names) != 2 or any(n not in frames.keypoint_names for n in names):
        raise KeyheadError(
            f"data.nme_normalizer={spec!r}: use auto, interocular, bbox, none or two keypoint names 'a,b' "
            f"from {frames.keypoint_names}"
        )
    a, b = (frames.keypoint_names.index(n) for n in names)
    return np.linalg.norm(true[:, a] - true[:, b], axis=-1), f"{names[0]}-{names[1]}"


def evaluate_frames(
    model: KeypointModel,
    frames: LabeledFrames,
    splits: dict[str, list[int]],
    nme_normalizer: str = "auto",
    batch_size: int = 16,
    progress: bool = False,
    cache: ImageCache | None = None,
) -> tuple[dict, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Metrics per split and the predictions (original pixels) they came from.

    ``cache`` reuses images already decoded (e.g. by training); by default they are read anew.
    """
    cache = cache or ImageCache(frames, model.backbone.in_channels)
    metrics: dict[str, dict] = {}
    preds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, idx in splits.items():
        if not idx:
            continue
        ds = KeypointDataset(frames, model.input_size, None, cache=cache, indices=idx)
        xy, conf = predict_dataset(model, ds, batch_size, progress, desc=f"evaluate {name}")
        sizes = np.array([cache.size(i) for i in idx], dtype=np.float64)
        norm, norm_name = normalizer(frames, idx, nme_normalizer)
        norm_name = norm_name if norm is None else None
        metrics[name] = evaluate_split(
            xy,
            frames.keypoints[idx],
            sizes,
            frames.keypoint_names,
            confidence=conf,
            normalizer=norm,
            nme_normalizer_name=norm_name,
            auroc_threshold=0.05,
        )
        preds[name] = (xy, conf)
    return metrics, preds


def evaluate_run(
    run_dir: str | os.PathLike,
    data: str | os.PathLike | None = None,
    frames: LabeledFrames | None = None,
    progress: bool = True,
    cache: ImageCache | None = None,
) -> dict:
    """Evaluate a run's best weights; writes metrics.json, predictions_<split>.csv and plots.

    With ``data`` (other labelled data), every frame is evaluated as split ``test`` and the results go to
    ``RUN_DIR/eval-<data name>/`` so the run's own metrics are kept.
    """
    from keyhead.report.plots import plot_history, plot_overlays

    run = Path(run_dir)
    model, cfg = load_run(run)
    out = run
    if data is not None:
        frames = select_keypoints(load_labels(data), model.keypoint_names)
        splits = {"test": list(range(len(frames)))}
        out = run / f"eval-{Path(data).resolve().name}"
    else:
        if frames is None:
            frames = select_keypoints(load_labels(cfg.data.path), model.keypoint_names)
        splits = load_split(run / "split.json", frames)
    metrics, preds = evaluate_frames(
        model, frames, splits, cfg.data.nme_normalizer, cfg.train.batch_size, progress, cache if data is None else None
    )
    payload = {
        "run": str(run),
        "data": str(data or cfg.data.path),
        "keypoints": model.keypoint_names,
        "splits": metrics,
    }
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "metrics.json") as f:
        json.dump(payload, f, indent=1, allow_nan=False)
    for name, (xy, conf) in preds.items():
        pred_frames = frames.subset(splits[name])
        pred_frames.keypoints = xy
        write_dlc_csv(pred_frames, out / f"predictions_{name}.csv", scorer="keyhead", likelihood=conf)
    plot_history(run, out / "training_curve.png")
    split_name = "test" if "test" in preds else next(iter(preds))
    plot_overlays(frames, splits[split_name], *preds[split_name], out / f"overlays_{split_name}.png")
    summary = ", ".join(f"{s}: {m['pixel_error']:.2f} px" for s, m in metrics.items() if m["pixel_error"] is not None)
    print(f"pixel error (mean Euclidean, original pixels) {summary}; wrote {out / 'metrics.json'}")
    return payload
