"""Evaluation: predict every split with the best weights, the field's metrics, predictions and plots."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from keyhead.config import RunConfig
from keyhead.data.checks import check_recorded_sizes
from keyhead.data.dataset import ImageCache, KeypointDataset, load_split, recorded_sizes
from keyhead.data.face import apply_crop
from keyhead.data.formats.dlc import write_dlc_csv
from keyhead.data.prepare import labels_for_model
from keyhead.errors import KeyheadError
from keyhead.inference.images import predict_dataset
from keyhead.io.atomic import atomic_write
from keyhead.metrics import bbox_diagonal, evaluate_split, interocular, normalized_errors, reliability_bins
from keyhead.models.build import load_run
from keyhead.models.calibration import CALIBRATION_FILE, ConfidenceCalibration
from keyhead.models.model import KeypointModel
from keyhead.models.tta import run_flip_pairs
from keyhead.types import LabeledFrames

AUROC_THRESHOLD = 0.05  # a keypoint is "bad" when its error exceeds 5 % of the normaliser


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


def confidence_errors(
    frames: LabeledFrames, idx: list[int], xy: np.ndarray, spec: str = "auto"
) -> tuple[np.ndarray, str]:
    """Errors as the confidence AUROC judges them: divided by the frame's normaliser (``data.nme_normalizer``),
    or by its labelled keypoints' box diagonal when there is none.

    Args:
        frames: the labelled frames.
        idx: the frames predicted, in the order of ``xy``.
        xy: (N, K, 2) predictions in original pixels.
        spec: ``data.nme_normalizer``.

    Returns:
        (N, K) relative errors (NaN unlabelled, +inf missed) and the normaliser's name for axis labels.
    """
    norm, name = normalizer(frames, idx, spec)
    true = frames.keypoints[idx]
    if norm is None:
        norm, name = bbox_diagonal(true), "bbox diagonal"
    return normalized_errors(xy, true, norm), f"x {name.replace('_', ' ')}"


def _summary(split: str, m: dict) -> str:
    nme = f", NME {m['nme']:.2f} %" if m.get("nme") is not None else ""
    return f"{split}: {m['pixel_error']:.2f} px{nme}"


def evaluate_frames(
    model: KeypointModel,
    frames: LabeledFrames,
    splits: dict[str, list[int]],
    nme_normalizer: str = "auto",
    batch_size: int = 16,
    progress: bool = False,
    cache: ImageCache | None = None,
    flip_pairs: Sequence[tuple[int, int]] | None = None,
    crop_margin: float = 0.25,
    context_frames: str = "auto",
    context_video: str | None = None,
    fit_calibration_to: Path | None = None,
    calibration_method: str = "auto",
) -> tuple[dict, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Metrics per split and the predictions (original pixels) they came from.

    ``cache`` reuses images already decoded (e.g. by training); by default they are read anew. Frames with boxes
    are cropped to them enlarged by ``crop_margin``; ``flip_pairs`` turns on flip test-time augmentation. Each
    split's metrics include ``reliability`` (:func:`keyhead.metrics.reliability_bins` of the confidences against
    the errors the AUROC judges). The network runs without the model's confidence calibration; when the model has
    one (or ``fit_calibration_to`` is a path and a ``val`` split is given: one is fitted on it by
    ``calibration_method``, saved there and set on the model), metrics and predictions carry the calibrated
    confidences, and each split keeps the raw confidences' AUROC and ECE under ``raw_confidence``.
    """
    cache = cache or ImageCache(frames, model.backbone.in_channels)
    preds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    sizes: dict[str, np.ndarray] = {}
    cal = getattr(model, "calibration", None)  # predict raw; the map is applied below, to the metrics too
    if cal is not None:
        model.calibration = None
    for name, idx in splits.items():
        if not idx:
            continue
        ds = KeypointDataset(
            frames,
            model.input_size,
            None,
            cache=cache,
            indices=idx,
            crop_margin=crop_margin,
            context_offsets=model.frame_offsets(),
            context_video=context_video,
            context_frames=context_frames,
        )
        xy, conf = predict_dataset(model, ds, batch_size, progress, desc=f"evaluate {name}", flip_pairs=flip_pairs)
        preds[name] = (xy, conf)
        sizes[name] = np.array([cache.size(i) for i in idx], dtype=np.float64)
    metrics = {name: split_metrics(frames, splits[name], *preds[name], sizes[name], nme_normalizer) for name in preds}
    if cal is None and fit_calibration_to is not None and "val" in preds:
        xy, conf = preds["val"]
        rel, _ = confidence_errors(frames, splits["val"], xy, nme_normalizer)
        labelled = ~np.isnan(rel)
        cal = ConfidenceCalibration.fit(
            conf[labelled],
            rel[labelled] <= AUROC_THRESHOLD,
            method=calibration_method,
            fitted_on="val",
            error_threshold=AUROC_THRESHOLD,
        )
        if cal is not None:
            cal.save(fit_calibration_to)
    if hasattr(model, "calibration"):
        model.calibration = cal
    if cal is not None:
        for name, (xy, conf) in list(preds.items()):
            raw = metrics[name]
            preds[name] = (xy, cal.numpy(conf))
            metrics[name] = split_metrics(frames, splits[name], *preds[name], sizes[name], nme_normalizer)
            metrics[name]["raw_confidence"] = {
                "confidence_auroc": raw.get("confidence_auroc"),
                "ece": raw["reliability"]["ece"],
            }
    return metrics, preds


def split_metrics(
    frames: LabeledFrames, idx: list[int], xy: np.ndarray, conf: np.ndarray, sizes: np.ndarray, nme_normalizer: str
) -> dict:
    """:func:`keyhead.metrics.evaluate_split` of one split's predictions, with its ``reliability`` table."""
    norm, norm_name = normalizer(frames, idx, nme_normalizer)
    norm_name = norm_name if norm is None else None
    m = evaluate_split(
        xy,
        frames.keypoints[idx],
        sizes,
        frames.keypoint_names,
        confidence=conf,
        normalizer=norm,
        nme_normalizer_name=norm_name,
        auroc_threshold=AUROC_THRESHOLD,
    )
    rel, _ = confidence_errors(frames, idx, xy, nme_normalizer)
    m["reliability"] = reliability_bins(conf, rel, AUROC_THRESHOLD)
    return m


def run_frames(
    run: Path, cfg: RunConfig, keypoint_names: list[str], frames: LabeledFrames | None = None
) -> tuple[LabeledFrames, dict[str, list[int]]]:
    """A run's own labelled frames and split (``split.json``).

    Unless ``frames`` are given (already loaded, e.g. by training), they are read from ``data.path`` in the model's
    keypoint order, checked against the image sizes the run recorded (an image replaced since training is an
    error, not a silent mismatch) and cropped as ``data.crop`` says.
    """
    if frames is None:
        frames, sizes = labels_for_model(cfg.data.path, keypoint_names)
        check_recorded_sizes(recorded_sizes(run), frames, sizes, run)
        frames = apply_crop(frames, cfg.data.crop)
    return frames, load_split(run / "split.json", frames)


def evaluate_run(
    run_dir: str | os.PathLike,
    data: str | os.PathLike | None = None,
    frames: LabeledFrames | None = None,
    progress: bool = True,
    cache: ImageCache | None = None,
    flip: bool = False,
    decoder: str | None = None,
) -> dict:
    """Evaluate a run's best weights; writes metrics.json, predictions_<split>.csv, reliability_<split>.png, plots.

    With ``data`` (other labelled data), every frame is evaluated as split ``test`` and the results go to
    ``RUN_DIR/eval-<data name>/`` so the run's own metrics are kept. With ``flip`` (horizontal-flip test-time
    augmentation) the folder gets a ``-flip`` suffix (``RUN_DIR/eval-flip/`` for the run's own split). With
    ``decoder`` (another registered heatmap decoder, no retraining) the folder gets a ``-decoder-<name>`` suffix
    (``RUN_DIR/eval-decoder-<name>/``), and on the run's own split a confidence calibration for that decoder is
    fitted on the validation frames and saved there (the run's own calibration belongs to its decoder).
    """
    from keyhead.report.diagnostics import plot_reliability
    from keyhead.report.plots import plot_history, plot_overlays

    run = Path(run_dir)
    model, cfg = load_run(run)
    suffix = ""
    if decoder is not None:
        if getattr(model.codec, "kind", None) != "heatmap":
            raise KeyheadError(f"--decoder: {run} is a {model.codec.kind} model; decoders read heatmaps")
        model.codec.set_decoder(decoder, None if decoder != cfg.model.decoder else cfg.model.decoder_kwargs)
        model.calibration = None
        suffix = f"-decoder-{decoder}"
    if data is not None:
        frames = apply_crop(labels_for_model(data, model.keypoint_names)[0], cfg.data.crop)
        splits = {"test": list(range(len(frames)))}
        out = run / f"eval-{Path(data).resolve().name}{'-flip' if flip else ''}{suffix}"
    else:
        frames, splits = run_frames(run, cfg, model.keypoint_names, frames)
        out = run / f"eval{'-flip' if flip else ''}{suffix}" if flip or suffix else run
    flip_pairs = run_flip_pairs(run, model.keypoint_names, cfg.data.flip_pairs) if flip else None
    # the run's own split, without TTA: fit the confidence calibration on val once (train.calibration)
    fit = data is None and not flip and cfg.train.calibration != "none"
    metrics, preds = evaluate_frames(
        model,
        frames,
        splits,
        cfg.data.nme_normalizer,
        cfg.train.batch_size,
        progress,
        cache if data is None else None,
        flip_pairs=flip_pairs,
        crop_margin=cfg.data.crop_margin,
        context_frames=cfg.data.context_frames,
        context_video=cfg.data.context_video if data is None else None,
        fit_calibration_to=out / CALIBRATION_FILE if fit else None,
        calibration_method=cfg.train.calibration,
    )
    payload = {
        "run": str(run),
        "data": str(data or cfg.data.path),
        "keypoints": model.keypoint_names,
        "flip_tta": flip,
        "calibration": None if model.calibration is None else {"file": CALIBRATION_FILE, **model.calibration.info},
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
    for name, (xy, conf) in preds.items():
        rel, unit = confidence_errors(frames, splits[name], xy, cfg.data.nme_normalizer)
        auroc = metrics[name].get("confidence_auroc")
        title = f"{run.name} {name}{' (flip TTA)' if flip else ''}"
        plot_reliability(
            conf, rel, out / f"reliability_{name}.png", AUROC_THRESHOLD, error_unit=unit, title=title, auroc=auroc
        )
    summary = ", ".join(_summary(s, m) for s, m in metrics.items() if m["pixel_error"] is not None)
    print(f"{'flip TTA: ' if flip else ''}{summary}; wrote {out / 'metrics.json'}")
    return payload
