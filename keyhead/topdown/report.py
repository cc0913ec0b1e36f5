"""The HTML report of a top-down (multi-animal) run: end-to-end metrics, test frames with every animal drawn, the
stage reports, tracked videos and the config; self-contained like the single-animal report."""

from __future__ import annotations

import datetime
import html
import json
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from keyhead.io.images import read_image
from keyhead.io.rundir import read_topdown
from keyhead.report.html import SPLITS, _num, _png, write_page
from keyhead.report.plots import draw_keypoints, identity_colours, skeleton_indices

COLUMNS = (
    ("frames", "frames", 0),
    ("n_gt", "animals", 0),
    ("n_matched", "matched", 0),
    ("n_missed", "missed", 0),
    ("n_false", "false", 0),
    ("mean_px", "pixel error (px)", 2),
    ("median_px", "median (px)", 2),
    ("mAP", "OKS mAP", 3),
    ("AP50", "AP50", 3),
    ("AP75", "AP75", 3),
    ("AR", "AR", 3),
    ("frames_per_second", "frames/s", 1),
)


def metrics_rows(splits: dict[str, dict]) -> str:
    """HTML table of the end-to-end metrics, one row per split."""
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t, _ in COLUMNS)
    rows = [
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(f"<td>{_num(m.get(key), d) if d else _num(m.get(key))}</td>" for key, _, d in COLUMNS)
        + "</tr>"
        for name, m in splits.items()
    ]
    return f"<table><tr><th>split</th>{head}</tr>{''.join(rows)}</table>"


def frame_grid(run: Path, split: str, path: Path, shown: int = 6, side: int = 360) -> Path | None:
    """Up to ``shown`` evenly spaced frames of ``split``: each found animal in its own colour, the truth green."""
    from keyhead.config import load_config
    from keyhead.topdown.predict import TopDownPredictor
    from keyhead.topdown.stages import read_instances

    cfg = load_config(run / "config.yaml")
    frames = read_instances(cfg)
    wanted = set(json.loads((run / "split.json").read_text()).get(split, []))
    rows = [i for i, p in enumerate(frames.image_paths) if p in wanted]
    if not rows:
        return None
    rows = [rows[int(j)] for j in np.linspace(0, len(rows) - 1, min(shown, len(rows)))]
    predictor = TopDownPredictor(run)
    found = predictor([read_image(frames.path(i), predictor.in_channels) for i in rows])
    limbs = skeleton_indices(frames.keypoint_names, frames.skeleton)
    colours = identity_colours(max(predictor.max_animals, 1))
    tiles = []
    for i, f in zip(rows, found, strict=True):
        pic = read_image(frames.path(i), 3)
        for m, truth in enumerate(frames.keypoints[i]):
            if np.isfinite(truth).any():
                pic = draw_keypoints(pic, None, truth, skeleton=limbs)
            if m < len(f.xy):
                pic = draw_keypoints(pic, f.xy[m], None, f.confidence[m], 0.5, limbs, pred_colour=colours[m])
        scale = side / max(pic.shape[:2])
        pic = cv2.resize(pic, (round(pic.shape[1] * scale), round(pic.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        tiles.append(cv2.copyMakeBorder(pic, 0, side - pic.shape[0], 0, side - pic.shape[1], cv2.BORDER_CONSTANT))
    while len(tiles) % 3:
        tiles.append(np.zeros_like(tiles[0]))
    grid = np.vstack([np.hstack(tiles[k : k + 3]) for k in range(0, len(tiles), 3)])
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    return path


def write_topdown_report(
    run_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    video_predictions: list[str | os.PathLike] | None = None,
) -> Path:
    """Write ``RUN_DIR/report.html`` for a top-down run (or ``out``); returns the path.

    Tracked videos are listed from ``RUN_DIR/predictions/*_video.json`` and from the ``<stem>_video.json`` beside
    each of ``video_predictions`` (tracked CSVs written elsewhere with ``--out``).

    Example:
        >>> write_topdown_report("runs/topdown_lite0")  # doctest: +SKIP
    """
    run = Path(run_dir)
    record = read_topdown(run)
    metrics_path = run / "metrics.json"
    splits = json.loads(metrics_path.read_text()).get("splits", {}) if metrics_path.is_file() else {}
    splits = {s: splits[s] for s in SPLITS if s in splits} | {s: m for s, m in splits.items() if s not in SPLITS}
    target = Path(out) if out is not None else run / "report.html"
    parts = [
        f"<h1>keyhead multi-animal run: {html.escape(run.resolve().name)}</h1>",
        f'<p class="muted">{html.escape(str(run.resolve()))}<br>up to {record["animals"]} animals, crops of '
        f"{record['crop_size']} px, {len(record['keypoint_names'])} keypoints, identities "
        f"{html.escape(', '.join(record.get('track_names') or []) or 'none in the labels')}<br>"
        f"written {datetime.datetime.now().isoformat(timespec='seconds')}</p>",
        "<h2>End to end (centres found -> crops -> pose)</h2>",
        metrics_rows(splits) if splits else '<p class="note">no metrics.json: run keyhead evaluate on the run</p>',
        '<p class="muted">Pixel error: mean Euclidean distance of matched animals\' keypoints after optimal matching, '
        "in image pixels; OKS mAP as COCO computes it (per-keypoint sigma 0.025, area of the animal's keypoint "
        "box); missed = labelled animals without a match, false = found animals without one.</p>",
    ]
    split = next((s for s in ("test", "val", "train") if s in splits), None)
    with tempfile.TemporaryDirectory() as tmp:
        if split is not None:
            try:
                grid = frame_grid(run, split, Path(tmp) / "frames.png")
            except (OSError, ValueError) as exc:
                grid, why = None, str(exc)
            else:
                why = f"no {split} frames"
            parts.append(f"<h2>{html.escape(split)} frames</h2>")
            parts.append(
                _png(grid) + '<p class="muted">each animal found in its own colour, the labels green</p>'
                if grid is not None
                else f'<p class="note">not available: {html.escape(why)}</p>'
            )
    parts.append("<h2>Stages</h2><ul>")
    for stage, what in (("centroid", "instance centres on the whole frame"), ("pose", "pose on true-centre crops")):
        if (run / stage / "report.html").is_file():
            parts.append(f'<li><a href="{stage}/report.html">{stage}</a>: {what}</li>')
    parts.append("</ul><h2>Tracked videos</h2>")
    summaries = sorted((run / "predictions").glob("*_video.json")) if (run / "predictions").is_dir() else []
    for csv_path in map(Path, video_predictions or []):
        beside = csv_path.with_name(f"{csv_path.stem}_video.json")
        if beside.is_file() and beside not in summaries:
            summaries.append(beside)
    if not summaries:
        parts.append('<p class="note">none yet: keyhead predict RUN_DIR video.mp4 tracks the animals of a video</p>')
    for s in summaries:
        info = json.loads(s.read_text())
        seen = ", ".join(f"{html.escape(k)} {v}" for k, v in (info.get("frames_with_each_identity") or {}).items())
        parts.append(
            f"<p>{html.escape(Path(str(info.get('video', s.stem))).name)}: {info.get('frames')} frames at "
            f"{_num(info.get('frames_per_second'), 1)} frames/s; frames with each identity: {seen}</p>"
        )
    parts.append(f"<h2>Config</h2><pre>{html.escape((run / 'config.yaml').read_text())}</pre>")
    return write_page(target, f"keyhead multi-animal report: {run.resolve().name}", parts)
