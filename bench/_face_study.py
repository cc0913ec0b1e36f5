"""Pieces of the face study (bench/faces.py) that are not a model: the mean-shape baseline, the occlusion study of
the dynamic head against the static heatmap head, and seed 001's own table.

Everything here works in the evaluation's convention: predictions and labels in original-image pixels, NME =
mean error / outer-eye-corner distance (points 36 and 45), the 224x224 crop of each face's landmark box x1.25.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

# Seed 001's comparison table (its "Comparison and Summary"): test MSE of normalised coordinates; the seed does
# not say whether the coordinates were in [0, 1] or [-1, 1] units (keyhead reports both; [-1, 1] = 4 x [0, 1]).
SEED_001_MSE = {
    "face_resnet18": ("ResNet18 (transfer learning)", 0.0034),
    "face_unet": ("UNet (heatmap-based)", 0.0036),
    "face_dino_query": ("DINO (transfer learning)", 0.0080),
    "face_regression_cnn": ("Direct regression", 0.0629),
}

# Landmark groups an occluder covers (iBUG 68-point numbering, 0-based): one group per occluded face.
OCCLUDER_GROUPS = {
    "left eye + brow": list(range(17, 22)) + list(range(36, 42)),
    "right eye + brow": list(range(22, 27)) + list(range(42, 48)),
    "nose": list(range(27, 36)),
    "mouth": list(range(48, 68)),
    "left jaw": list(range(0, 7)),
    "right jaw": list(range(10, 17)),
}


def _crop_matrices(frames, idx, input_size: tuple[int, int], crop_margin: float) -> list[np.ndarray]:
    from keyhead.data.augment import box_matrix

    return [box_matrix(frames.boxes[i], input_size, 1.0 + crop_margin) for i in idx]


def _metrics(frames, idx, pred: np.ndarray, confidence: np.ndarray | None = None) -> dict:
    from keyhead.data.dataset import ImageCache
    from keyhead.metrics import evaluate_split, interocular

    cache = ImageCache(frames, 1)
    sizes = np.array([cache.size(i) for i in idx], dtype=np.float64)
    true = frames.keypoints[idx]
    return evaluate_split(
        pred,
        true,
        sizes,
        frames.keypoint_names,
        confidence=confidence,
        normalizer=interocular(true),
        auroc_threshold=0.05,
    )


def mean_shape_baseline(frames, split: dict[str, list[int]], input_size=(224, 224), crop_margin=0.25) -> dict:
    """The training faces' mean shape in the crop, put into every test face's crop: what a model that ignores the
    image scores. Returns the test split's NME, pixel error and normalised MSE in both conventions."""
    from keyhead.data.augment import transform_points

    train = split["train"]
    in_crop = [
        transform_points(frames.keypoints[i], m)
        for i, m in zip(train, _crop_matrices(frames, train, input_size, crop_margin), strict=True)
    ]
    mean = np.nanmean(np.stack(in_crop), axis=0)
    test = split["test"]
    pred = np.stack(
        [transform_points(mean, np.linalg.inv(m)) for m in _crop_matrices(frames, test, input_size, crop_margin)]
    )
    m = _metrics(frames, test, pred.astype(np.float32))
    return {
        "model": "mean shape (baseline)",
        "nme": m["nme"],
        "pixel_error": m["pixel_error"],
        "mse_normalized": m["mse_normalized"],
        "mse_normalized_pm1": m.get("mse_normalized_pm1"),
    }


def make_occluded(frames, idx: list[int], out: Path, seed: int = 0) -> tuple[object, np.ndarray, list[str]]:
    """Copies of the faces ``idx`` with one filled rectangle over one landmark group each (fixed seed).

    The rectangle is the group's box grown by 15 % of the inter-ocular distance on every side, filled with a flat
    random grey or uniform noise (alternating). The labels stay as they are: occluded points count as present.

    Returns:
        (frames of the occluded copies under ``out``, (n, K) bool mask of the points under an occluder, the group
        occluded per face).
    """
    from PIL import Image, ImageOps

    from keyhead.metrics import interocular

    rng = np.random.default_rng(seed)
    names = list(OCCLUDER_GROUPS)
    sub = frames.subset(idx)
    iod = interocular(sub.keypoints)
    mask = np.zeros(sub.keypoints.shape[:2], dtype=bool)
    groups = []
    out.mkdir(parents=True, exist_ok=True)
    for j in range(len(sub)):
        group = names[int(rng.integers(len(names)))]
        pts = sub.keypoints[j, OCCLUDER_GROUPS[group]]
        pad = 0.15 * float(iod[j])
        x0, y0 = np.nanmin(pts, 0) - pad
        x1, y1 = np.nanmax(pts, 0) + pad
        image = ImageOps.exif_transpose(Image.open(sub.path(j))).convert("RGB")
        arr = np.asarray(image).copy()
        r0, r1 = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)) + 1, arr.shape[0])
        c0, c1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)) + 1, arr.shape[1])
        if j % 2:
            arr[r0:r1, c0:c1] = rng.integers(0, 256, size=(r1 - r0, c1 - c0, 3), dtype=np.uint8)
        else:
            arr[r0:r1, c0:c1] = np.uint8(rng.integers(0, 256))
        kp = sub.keypoints[j]
        mask[j] = (kp[:, 0] >= c0 - 0.5) & (kp[:, 0] <= c1 - 0.5) & (kp[:, 1] >= r0 - 0.5) & (kp[:, 1] <= r1 - 0.5)
        dst = out / sub.image_paths[j]
        dst.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(dst.with_suffix(".png"))
        groups.append(group)
    occluded = replace(sub, root=out, image_paths=[str(Path(p).with_suffix(".png")) for p in sub.image_paths])
    return occluded, mask, groups


def _masked(rel: np.ndarray, conf: np.ndarray, mask: np.ndarray) -> dict:
    from keyhead.metrics import confidence_auroc

    r, c = rel[mask], conf[mask]
    auroc = confidence_auroc(c[None], r[None], 0.05) if r.size else float("nan")
    return {
        "nme": float(np.mean(r) * 100) if r.size else None,
        "confidence_auroc": None if not np.isfinite(auroc) else float(auroc),
        "mean_confidence": float(np.mean(c)) if c.size else None,
        "n_points": int(r.size),
    }


def kernel_variation(model, frames, idx: list[int], crop_margin: float) -> dict | None:
    """How much the dynamic head's generated kernels differ between images: ||W_k(x) - mean_x W_k|| / ||mean_x W_k||
    averaged over keypoints and images, for the whole kernel and for its generated (input-dependent) part."""
    import torch

    from keyhead.data.dataset import ImageCache, KeypointDataset

    head = model.head
    if not hasattr(head, "dynamic_params"):
        return None
    ds = KeypointDataset(
        frames, model.input_size, None, cache=ImageCache(frames, 1), indices=idx, crop_margin=crop_margin
    )
    kernels = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(ds), 16):
            batch = torch.stack([ds[i]["image"] for i in range(start, min(start + 16, len(ds)))])
            kernels.append(head.dynamic_params(model.features(batch))["kernel"])
    w = torch.cat(kernels)  # (N, K, D)
    mean = w.mean(0, keepdim=True)
    rel = ((w - mean).norm(dim=-1) / mean.norm(dim=-1).clamp_min(1e-12)).mean().item()
    static = getattr(head, "static_kernel", None)
    generated = w - static if static is not None else w
    gen_share = (generated.norm(dim=-1) / w.norm(dim=-1).clamp_min(1e-12)).mean().item()
    return {"kernel_variation": rel, "generated_share": gen_share, "n_images": int(w.shape[0])}


def occlusion_study(run_dirs: dict[str, str], frames, test: list[int], out: Path, seed: int = 0) -> dict:
    """Each run's NME and confidence AUROC (error > 5 % of the inter-ocular distance) on the clean test faces and
    on the same faces with an occluder (occluded points, the other points), through the evaluation's code path."""
    from keyhead.evaluation.evaluate import confidence_errors, evaluate_frames
    from keyhead.models.build import load_run

    occluded, mask, groups = make_occluded(frames, test, out / "occluded_faces", seed)
    occ_idx = list(range(len(occluded)))
    result: dict = {
        "protocol": "one filled rectangle per test face over one landmark group (box + 15 % of the inter-ocular "
        "distance), seed 0; occluded points stay labelled; AUROC flags points with error > 5 % inter-ocular",
        "n_faces": len(test),
        "n_occluded_points": int(mask.sum()),
        "groups": {g: groups.count(g) for g in OCCLUDER_GROUPS},
        "models": {},
    }
    for name, run_dir in run_dirs.items():
        model, cfg = load_run(run_dir)
        row: dict = {}
        for tag, fr, idx in (("clean", frames, test), ("occluded", occluded, occ_idx)):
            _, preds = evaluate_frames(model, fr, {"test": idx}, "interocular", 16, crop_margin=cfg.data.crop_margin)
            xy, conf = preds["test"]
            rel, _ = confidence_errors(fr, idx, xy, "interocular")
            every = np.isfinite(rel)
            row[tag] = _masked(rel, conf, every)
            if tag == "occluded":
                row["occluded_points"] = _masked(rel, conf, every & mask)
                row["other_points"] = _masked(rel, conf, every & ~mask)
        variation = kernel_variation(model, frames, test, cfg.data.crop_margin)
        if variation:
            row["kernels"] = variation
        result["models"][name] = row
    return result
