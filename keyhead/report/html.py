"""``keyhead report``: one self-contained HTML page per run (images embedded as base64 PNG, inline CSS, no scripts).

Sections: summary, metrics per split and per keypoint (table and error bars), training curves, overlays of the worst
and median frames (prediction red, truth green), heatmap panels (heatmap heads), the confidence reliability plot,
keypoint traces of predicted videos (x, y and confidence over time), and the resolved config. A section whose inputs
are missing (e.g. the training data moved) is replaced by a one-line note instead of failing the page.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from keyhead.errors import KeyheadError  # noqa: E402
from keyhead.io.atomic import atomic_path, atomic_write  # noqa: E402
from keyhead.io.predictions import read_prediction_table

SPLITS = ("train", "val", "test")
CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1200px;color:#222;
padding:0 16px;line-height:1.4}
h1{font-size:24px;margin-bottom:4px}h2{font-size:19px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
img{max-width:100%;height:auto;border:1px solid #eee;margin:6px 0}
pre{background:#f7f7f7;padding:10px;font-size:12px;overflow-x:auto;border:1px solid #eee}
.note{color:#8a5a00;background:#fff7e0;padding:4px 8px;border-left:3px solid #e0a000}
.muted{color:#666;font-size:13px}
"""


def _png(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _num(v: object, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def metrics_table(splits: dict[str, dict]) -> str:
    """HTML table: one row per split with the headline metrics of ``metrics.json``."""
    cols = [("n_frames", "frames", 0), ("pixel_error", "pixel error (px)", 2), ("rmse_px", "RMSE (px)", 2)]
    cols += [
        ("median_px", "median (px)", 2),
        ("mse_normalized", "MSE ([0,1] units)", 5),
        ("mse_normalized_pm1", "MSE ([-1,1] units)", 5),
        ("nme", "NME (%)", 2),
    ]
    cols += [("confidence_auroc", "confidence AUROC", 3)]
    pck_keys = sorted({k for m in splits.values() for k in (m.get("pck") or {})}, key=float)
    pck_px_keys = sorted({k for m in splits.values() for k in (m.get("pck_px") or {})}, key=float)
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t, _ in cols)
    head += "".join(f"<th>PCK@{k}</th>" for k in pck_keys) + "".join(f"<th>PCK@{k}px</th>" for k in pck_px_keys)
    rows = []
    for name, m in splits.items():
        cells = [f"<td>{_num(m.get(key), d) if d else _num(m.get(key))}</td>" for key, _, d in cols]
        cells += [f"<td>{_num((m.get('pck') or {}).get(k), 3)}</td>" for k in pck_keys]
        cells += [f"<td>{_num((m.get('pck_px') or {}).get(k), 3)}</td>" for k in pck_px_keys]
        rows.append(f"<tr><td>{html.escape(name)}</td>{''.join(cells)}</tr>")
    return f"<table><tr><th>split</th>{head}</tr>{''.join(rows)}</table>"


def keypoint_table(splits: dict[str, dict], names: list[str]) -> str:
    """HTML table: per keypoint, the mean pixel error of each split."""
    head = "".join(f"<th>{html.escape(s)} (px)</th>" for s in splits)
    rows = []
    for name in names:
        cells = "".join(
            f"<td>{_num(((m.get('per_keypoint') or {}).get(name) or {}).get('pixel_error'))}</td>"
            for m in splits.values()
        )
        rows.append(f"<tr><td>{html.escape(name)}</td>{cells}</tr>")
    return f"<table><tr><th>keypoint</th>{head}</tr>{''.join(rows)}</table>"


def plot_keypoint_errors(splits: dict[str, dict], names: list[str], path: Path) -> Path | None:
    """Grouped bars: mean pixel error per keypoint, one bar per split."""
    values = {
        s: [((m.get("per_keypoint") or {}).get(n) or {}).get("pixel_error") for n in names] for s, m in splits.items()
    }
    values = {s: [np.nan if v is None else v for v in vs] for s, vs in values.items() if any(v is not None for v in vs)}
    if not values:
        return None
    x = np.arange(len(names))
    width = 0.8 / len(values)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(names) + 2), 3.6))
    for i, (split, vs) in enumerate(values.items()):
        ax.bar(x + (i - (len(values) - 1) / 2) * width, vs, width, label=split)
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("mean pixel error (original px)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path


def read_video_predictions(csv_path: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """A prediction table of a video: (names, frame numbers (T,), xy (T, K, 2), likelihood (T, K))."""
    rows, names, xy, lik, _ = read_prediction_table(csv_path)
    try:
        frames = np.array([float(r) for r in rows], dtype=np.float64)
    except ValueError:
        frames = np.arange(len(rows), dtype=np.float64)
    return names, frames, xy, lik


def plot_video_traces(csv_path: Path, path: Path, fps: float | None = None, threshold: float = 0.5) -> Path:
    """Small multiples, one per keypoint: x and y over time (px) and the confidence (grey, right axis)."""
    names, frames, xy, lik = read_video_predictions(csv_path)
    t = frames / fps if fps else frames
    cols = 3 if len(names) > 4 else len(names)
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.3 * rows), squeeze=False, sharex=True)
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    for j, (ax, name) in enumerate(zip(axes.ravel(), names, strict=False)):
        low = lik[:, j] < threshold
        for slot, label, colour in ((0, "x", "C0"), (1, "y", "C1")):
            ax.plot(t, xy[:, j, slot], color=colour, lw=0.9, label=label)
            ax.plot(t[low], xy[low, j, slot], ".", color="0.6", ms=2)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("px", fontsize=8)
        ax.tick_params(labelsize=7)
        conf = ax.twinx()
        conf.fill_between(t, 0, lik[:, j], color="0.5", alpha=0.25, lw=0)
        conf.set_ylim(0, 1.05)
        conf.tick_params(labelsize=7)
        if j == 0:
            ax.legend(fontsize=7, loc="upper left")
    for ax in axes[-1]:
        ax.set_xlabel("time (s)" if fps else "frame", fontsize=8)
    fig.suptitle(
        f"{csv_path.name}: x (blue), y (orange), confidence (grey area, right axis; grey dots < {threshold})",
        fontsize=10,
    )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    return path


class _Truth:
    """The run's labelled frames, split and predictions per split, read back from the run folder."""

    def __init__(self, run: Path, cfg: object, names: list[str]) -> None:
        from keyhead.data.dataset import load_split
        from keyhead.data.formats.dlc import read_dlc_predictions
        from keyhead.data.prepare import prepare_data

        self.frames, _ = prepare_data(cfg)
        self.split = load_split(run / "split.json", self.frames)
        lookup = {p: i for i, p in enumerate(self.frames.image_paths)}
        self.preds: dict[str, tuple[list[int], np.ndarray, np.ndarray]] = {}
        for name in SPLITS:
            path = run / f"predictions_{name}.csv"
            if not path.is_file():
                continue
            pred, lik = read_dlc_predictions(path, root=self.frames.root)
            if pred.keypoint_names != names:
                raise KeyheadError(f"{path}: keypoints {pred.keypoint_names} differ from the run's {names}")
            rows = [(r, lookup[p]) for r, p in enumerate(pred.image_paths) if p in lookup]
            if rows:
                r_idx = [r for r, _ in rows]
                self.preds[name] = ([i for _, i in rows], pred.keypoints[r_idx], lik[r_idx])

    def main_split(self) -> str | None:
        return next((s for s in ("test", "val", "train") if s in self.preds), None)


def _heatmap_panels(run: Path, truth: _Truth, split: str, path: Path) -> Path | None:
    """Predicted vs target heatmaps on the worst frame of ``split`` (heatmap heads only)."""
    from keyhead.models.build import load_run
    from keyhead.report.diagnostics import model_heatmap_panels

    model, cfg = load_run(run)
    idx, pred, _ = truth.preds[split]
    err = np.linalg.norm(pred - truth.frames.keypoints[idx], axis=-1)
    with np.errstate(all="ignore"):
        per_frame = np.nan_to_num(np.nanmean(err, axis=1), nan=-1.0)
    i = idx[int(np.argmax(per_frame))]
    title = f"worst {split} frame: {truth.frames.image_paths[i]} (model input pixels)"
    return model_heatmap_panels(model, cfg, truth.frames, i, path, title=title)


def _reliability(truth: _Truth, split: str, metrics: dict, path: Path) -> Path | None:
    from keyhead.metrics import bbox_diagonal

    try:
        from keyhead.report.diagnostics import plot_reliability
    except ImportError:  # diagnostics is optional for the page
        return None
    idx, pred, lik = truth.preds[split]
    true = truth.frames.keypoints[idx]
    norm = bbox_diagonal(true)
    err = np.linalg.norm(pred - true, axis=-1) / np.where(norm > 0, norm, np.nan)[:, None]
    err = np.where(np.isnan(pred).any(-1) & np.isfinite(true).all(-1), np.inf, err)
    auroc = (metrics.get(split) or {}).get("confidence_auroc")
    return plot_reliability(
        lik, err, path, threshold=0.05, error_unit="x box diagonal", title=f"{split} split", auroc=auroc
    )


def _video_csvs(run: Path, explicit: list[Path]) -> list[tuple[Path, float | None]]:
    """Video prediction CSVs: ``RUN/predictions/*_video.json`` (with fps) and the ones passed explicitly."""
    found: list[tuple[Path, float | None]] = []
    for meta_path in sorted((run / "predictions").glob("*_video.json")):
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        csv_path = meta_path.with_name(meta_path.name[: -len("_video.json")] + ".csv")
        if csv_path.is_file():
            fps = meta.get("fps") if isinstance(meta, dict) else None
            found.append((csv_path, float(fps) if isinstance(fps, int | float) and fps > 0 else None))
    known = {p.resolve() for p, _ in found}
    for p in explicit:
        if Path(p).resolve() not in known:
            found.append((Path(p), None))
    return found


def write_report(
    run_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    video_predictions: list[str | os.PathLike] | None = None,
) -> Path:
    """Write the run's HTML report (``RUN_DIR/report.html`` by default), self-contained and viewable offline.

    Args:
        run_dir: a run folder (``config.yaml``, ``metrics.json``, ``history.csv``, ``predictions_<split>.csv``...).
        out: the HTML file to write.
        video_predictions: extra video prediction CSVs (DLC format, one row per frame) to trace; those in
            ``RUN_DIR/predictions/*_video.json`` are found on their own.

    Returns:
        The written path.

    Raises:
        KeyheadError: ``run_dir`` is not a run folder, or an explicit video CSV is unreadable.

    Example:
        >>> write_report("runs/heatmap_lite0")  # doctest: +SKIP
        PosixPath('runs/heatmap_lite0/report.html')
    """
    from keyhead.config import load_config
    from keyhead.report.plots import plot_history, plot_overlays

    run = Path(run_dir)
    if not (run / "config.yaml").is_file():
        raise KeyheadError(f"{run}: no config.yaml; pass a run folder written by keyhead train")
    cfg = load_config(run / "config.yaml")
    names_file = run / "keypoints.txt"
    names = [n for n in names_file.read_text().splitlines() if n] if names_file.is_file() else []
    metrics_path = run / "metrics.json"
    metrics = json.loads(metrics_path.read_text()).get("splits", {}) if metrics_path.is_file() else {}
    metrics = {s: metrics[s] for s in SPLITS if s in metrics} | {s: m for s, m in metrics.items() if s not in SPLITS}
    videos = _video_csvs(run, [Path(p) for p in video_predictions or []])
    target = Path(out) if out is not None else run / "report.html"

    parts: list[str] = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)

        def figure(title: str, make: Callable[[Path], Path | None], file: str, caption: str = "") -> None:
            parts.append(f"<h2>{html.escape(title)}</h2>")
            try:
                made = make(tmp / file)
            except (KeyheadError, OSError, ValueError) as exc:
                parts.append(_note(f"not available: {exc}"))
                return
            if made is None:
                parts.append(_note("nothing to plot for this run"))
                return
            parts.append(_png(made) + (f'<p class="muted">{html.escape(caption)}</p>' if caption else ""))

        m = cfg.model
        parts.append(f"<h1>keyhead run report: {html.escape(run.resolve().name)}</h1>")
        parts.append(
            f'<p class="muted">{html.escape(str(run.resolve()))}<br>backbone <b>{html.escape(m.backbone)}</b>, '
            f"head <b>{html.escape(m.head)}</b>, decoder <b>{html.escape(m.decoder or 'the head default')}</b>, "
            f"loss <b>{html.escape(str(m.loss))}</b>, input {cfg.data.input_size[1]}x{cfg.data.input_size[0]}, "
            f"{len(names)} keypoints; data {html.escape(str(cfg.data.path))}<br>"
            f"written {datetime.datetime.now().isoformat(timespec='seconds')}</p>"
        )
        parts.append("<h2>Metrics per split</h2>")
        if metrics:
            parts.append(metrics_table(metrics))
            parts.append(
                '<p class="muted">All in original-image pixels over labelled keypoints: pixel error = mean Euclidean '
                'distance (DeepLabCut\'s "rmse"), RMSE = root mean squared distance.</p>'
            )
            parts.append("<h3>Per keypoint (mean pixel error)</h3>" + keypoint_table(metrics, names))
        else:
            parts.append(_note("no metrics.json: run keyhead evaluate on the run first"))
        figure("Per-keypoint error", lambda p: plot_keypoint_errors(metrics, names, p), "keypoint_errors.png")
        figure("Training curves", lambda p: plot_history(run, p), "curves.png", "losses (log scale) per epoch")

        try:
            truth: _Truth | None = _Truth(run, cfg, names)
            split = truth.main_split()
            why = "" if split else "no predictions_<split>.csv in the run folder; run keyhead evaluate"
        except (KeyheadError, OSError) as exc:
            truth, split, why = None, None, f"the run's labelled data could not be read ({exc})"
        if truth is not None and split is not None:
            idx, pred, lik = truth.preds[split]
            figure(
                f"Worst and median {split} frames",
                lambda p: plot_overlays(truth.frames, idx, pred, lik, p),
                "overlays.png",
                "prediction red, truth green, yellow lines join them; hollow red = confidence below 0.5",
            )
            figure(f"Heatmaps ({split})", lambda p: _heatmap_panels(run, truth, split, p), "heatmaps.png")
            figure(
                f"Confidence reliability ({split})",
                lambda p: _reliability(truth, split, metrics, p),
                "reliability.png",
                "a keypoint counts as correct within 5% of its frame's keypoint box diagonal",
            )
        else:
            parts.append("<h2>Overlays, heatmaps and reliability</h2>" + _note(f"not available: {why}"))

        parts.append("<h2>Videos</h2>")
        if not videos:
            parts.append(_note("no video predictions (keyhead predict RUN_DIR video.mp4 writes them)"))
        for k, (csv_path, fps) in enumerate(videos):
            parts.append(f"<h3>{html.escape(csv_path.name)}</h3>")
            try:
                parts.append(_png(plot_video_traces(csv_path, tmp / f"video{k}.png", fps)))
            except (KeyheadError, OSError, ValueError) as exc:
                parts.append(_note(f"not available: {exc}"))

        parts.append("<h2>Resolved config</h2>")
        parts.append(f"<pre>{html.escape((run / 'config.yaml').read_text())}</pre>")

    return write_page(target, f"keyhead report: {run.resolve().name}", parts)


def write_page(target: Path, title: str, parts: list[str]) -> Path:
    """Write one self-contained HTML page (the report style) from its body ``parts``, atomically."""
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head>"
        f"<body>\n{chr(10).join(parts)}\n</body></html>\n"
    )
    with atomic_write(target, encoding="utf-8") as f:
        f.write(page)
    return target
