"""``keyhead predict`` on images with a top-down run: every animal's keypoints, a multi-animal table, overlays."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from keyhead.data.formats.dlc_multi import write_dlc_multi_csv
from keyhead.io.atomic import atomic_path
from keyhead.io.images import collect_images, read_image
from keyhead.report.plots import draw_keypoints, identity_colours, skeleton_indices
from keyhead.topdown.predict import TopDownPredictor
from keyhead.types import InstanceFrames


def predict_images_topdown(
    run_dir: str | os.PathLike,
    inputs: list[str | os.PathLike],
    out: str | os.PathLike | None = None,
    overlays: bool = True,
    threshold: float = 0.5,
    batch_size: int = 8,
    progress: bool = True,
) -> Path:
    """Find and predict every animal on images; writes ``predictions.csv`` (multi-animal DeepLabCut table: one
    individual ``animal<i>`` per animal found, strongest first; images are not tracked) and ``overlays/``.

    Example:
        >>> predict_images_topdown("runs/flies", ["frames/"])  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    predictor = TopDownPredictor(run_dir)
    images = collect_images(list(inputs), hint="; videos go to keyhead predict RUN VIDEO")
    out = Path(out) if out is not None else Path(run_dir) / "predictions"
    out.mkdir(parents=True, exist_ok=True)
    names = predictor.keypoint_names
    found = []
    for s in tqdm(range(0, len(images), batch_size), desc="predict", disable=not progress):
        found += predictor([read_image(p, predictor.in_channels) for p in images[s : s + batch_size]])
    m = max(1, predictor.max_animals, *(len(f.xy) for f in found))
    xy = np.full((len(images), m, len(names), 2), np.nan, dtype=np.float32)
    conf = np.full((len(images), m, len(names)), np.nan, dtype=np.float32)
    for i, f in enumerate(found):
        xy[i, : len(f.xy)], conf[i, : len(f.xy)] = f.xy, f.confidence
    root = Path(os.path.commonpath([p.parent for p in images]))
    frames = InstanceFrames(
        root, [p.relative_to(root).as_posix() for p in images], xy, names, [f"animal{i}" for i in range(m)]
    )
    csv_path = write_dlc_multi_csv(frames, out / "predictions.csv", scorer="keyhead", likelihood=conf)
    if overlays:
        limbs = skeleton_indices(names, [tuple(p) for p in predictor.record.get("skeleton") or []])
        colours = identity_colours(m)
        (out / "overlays").mkdir(parents=True, exist_ok=True)
        for i, p in enumerate(tqdm(images, desc="overlays", disable=not progress)):
            pic = read_image(p, 3)
            for a in range(len(found[i].xy)):
                pic = draw_keypoints(pic, xy[i, a], None, conf[i, a], threshold, limbs, pred_colour=colours[a])
            target = out / "overlays" / (frames.image_paths[i].replace("/", "__").rsplit(".", 1)[0] + ".png")
            with atomic_path(target) as tmp:
                cv2.imwrite(str(tmp), cv2.cvtColor(pic, cv2.COLOR_RGB2BGR))
    print(f"predicted {len(images)} images ({sum(len(f.xy) for f in found)} animals) -> {csv_path}")
    return out
