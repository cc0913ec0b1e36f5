"""``keyhead compare``: train several configs (a list, or a grid over config keys) on one split, then compare them.

Every model is an ordinary run folder under ``OUT/runs/<name>`` (trained by :func:`keyhead.engine.train.train`),
so a compare folder can be re-run: finished runs are skipped, interrupted ones resumed. The comparison is written
as ``comparison.md`` / ``comparison.csv`` / ``compare.json`` (test-split metrics, parameters, training time and
inference latency measured the same way for every model), ``curves.png`` (all training curves on one figure),
``overlays.png`` (prediction red vs truth green, one row per model, the same test frames) and
``heatmaps_<name>.png`` (predicted vs target heatmaps) for heatmap heads.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from keyhead.config import RunConfig, load_config, template_dir
from keyhead.errors import KeyheadError
from keyhead.evaluation.timing import time_calls
from keyhead.io.atomic import atomic_write

COLUMNS = [
    ("model", "model"),
    ("head", "head"),
    ("backbone", "backbone"),
    ("loss", "loss"),
    ("mse_normalized", "normalised MSE [0,1]"),
    ("mse_normalized_pm1", "normalised MSE [-1,1]"),
    ("nme", "NME %"),
    ("nme_flip", "NME % (flip TTA)"),
    ("pixel_error", "pixel error (px)"),
    ("confidence_auroc", "confidence AUROC"),
    ("params_m", "parameters (M)"),
    ("epochs", "epochs"),
    ("train_minutes", "train time (min)"),
    ("latency_ms", "latency (ms/img)"),
]


@dataclass
class Entry:
    """One model of a comparison: a config (file) and the overrides that make it this model."""

    name: str
    config: Path
    overrides: list[str] = field(default_factory=list)
    grid: dict[str, Any] = field(default_factory=dict)


def resolve_config(name: str | os.PathLike) -> Path:
    """A config file path, or the name of a shipped template (``keyhead config list``)."""
    p = Path(name)
    if p.is_file():
        return p
    template = template_dir() / f"{p.name.removesuffix('.yaml')}.yaml"
    if template.is_file():
        return template
    names = ", ".join(q.stem for q in sorted(template_dir().glob("*.yaml")))
    raise KeyheadError(f"{name}: neither a config file nor a template; templates: {names}")


def split_values(text: str) -> list[str]:
    """Comma-separated grid values; commas inside brackets stay (``input_size=[224,224],[256,256]``)."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return [v for v in out if v]


def parse_grid(items: list[str] | dict[str, list[Any]] | None) -> dict[str, list[str]]:
    """``["model.loss=mse,bce", "train.lr=1e-3,1e-4"]`` (or a dict) -> ``{key: [value, ...]}`` in order."""
    if not items:
        return {}
    if isinstance(items, dict):
        return {k: [v if isinstance(v, str) else json.dumps(v) for v in vs] for k, vs in items.items()}
    grid: dict[str, list[str]] = {}
    for item in items:
        if "=" not in item:
            raise KeyheadError(f"--grid {item!r} is not of the form key=v1,v2 (e.g. model.loss=mse,smooth_l1)")
        key, values = item.split("=", 1)
        grid[key.strip()] = split_values(values)
        if not grid[key.strip()]:
            raise KeyheadError(f"--grid {item!r}: no values after '='")
    return grid


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text).strip("_")


def expand(configs: list[str | os.PathLike], grid: dict[str, list[str]] | None = None) -> list[Entry]:
    """Every config crossed with every combination of the grid, each with a unique, readable run name.

    Example:
        >>> [e.name for e in expand(["demo"], {"model.loss": ["kl", "ce"]})]
        ['demo-loss=kl', 'demo-loss=ce']
    """
    if not configs:
        raise KeyheadError("compare needs at least one config file or template name")
    grid = grid or {}
    keys = list(grid)
    entries: list[Entry] = []
    used: set[str] = set()
    for c in configs:
        path = resolve_config(c)
        for combo in itertools.product(*(grid[k] for k in keys)):
            parts = [f"{k.rsplit('.', 1)[-1]}={v}" for k, v in zip(keys, combo, strict=True)]
            name = _slug("-".join([path.stem, *parts]))
            base, i = name, 1
            while name in used:
                i += 1
                name = f"{base}_{i}"
            used.add(name)
            overrides = [f"{k}={v}" for k, v in zip(keys, combo, strict=True)]
            entries.append(Entry(name, path, overrides, dict(zip(keys, combo, strict=True))))
    return entries


def measure_latency(model: torch.nn.Module, repeats: int = 20, warmup: int = 3) -> float:
    """Wall time of ``model.predict`` on one image (batch 1, the model's input size), in milliseconds.

    The same protocol for every model of a comparison: the model's device, torch's current thread count, random
    input, ``warmup`` untimed calls, then the fastest of ``repeats`` timed calls (on a shared CPU the fastest call
    is the reproducible figure; the median moves with whatever else runs).
    """
    device = next(model.parameters()).device
    h, w = model.input_size
    x = torch.rand(1, model.backbone.in_channels, h, w, device=device)
    if model.context > 1:
        x = x[:, None].expand(1, model.context, *x.shape[1:]).contiguous()
    times = time_calls({"model": lambda: model.predict(x)}, repeats, warmup, sync=device.type == "cuda")
    return min(times["model"])


def _cached_latency(run_dir: Path, model: torch.nn.Module, repeats: int) -> float:
    """:func:`measure_latency`, measured once per run and kept in ``latency.json`` (re-runs report the same figure)."""
    path = run_dir / "latency.json"
    if path.is_file():
        return float(json.loads(path.read_text())["latency_ms"])
    ms = measure_latency(model, repeats)
    device = str(next(model.parameters()).device)
    with atomic_write(path) as f:
        json.dump(
            {"latency_ms": ms, "batch": 1, "repeats": repeats, "threads": torch.get_num_threads(), "device": device}, f
        )
    return ms


def train_or_resume(cfg: RunConfig, run_dir: Path, progress: bool) -> str:
    """Train (or resume, or skip) one model; returns what was done."""
    from keyhead.engine.train import train

    if (run_dir / "metrics.json").is_file():
        return "skipped (finished)"
    if (run_dir / "state.json").is_file() and (run_dir / "last.safetensors").is_file():
        train(None, resume=run_dir, progress=progress)
        return "resumed"
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a run that died before its first epoch: nothing to keep
    train(cfg, progress=progress)
    return "trained"


def _fmt(value: Any, key: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        digits = {
            "mse_normalized": 5,
            "mse_normalized_pm1": 5,
            "confidence_auroc": 3,
            "params_m": 2,
            "train_minutes": 1,
            "latency_ms": 1,
        }
        return f"{value:.{digits.get(key, 2)}f}"
    return str(value)


def summarize_run(run_dir: Path, split: str = "test", latency_repeats: int = 20) -> dict[str, Any]:
    """One row of the comparison: a finished run's metrics on ``split``, its size, training time and latency."""
    from keyhead.io.rundir import read_history
    from keyhead.models.build import load_run

    metrics = json.loads((run_dir / "metrics.json").read_text())["splits"]
    m = metrics.get(split) or next(iter(metrics.values()))
    model, cfg = load_run(run_dir)
    hist = read_history(run_dir)
    flip_file = run_dir / "eval-flip" / "metrics.json"
    nme_flip = None
    if flip_file.is_file():
        nme_flip = (json.loads(flip_file.read_text())["splits"].get(split) or {}).get("nme")
    return {
        "model": run_dir.name,
        "head": cfg.model.head,
        "backbone": cfg.model.backbone,
        "loss": cfg.model.loss,
        "mse_normalized": m.get("mse_normalized"),
        "mse_normalized_pm1": m.get("mse_normalized_pm1"),
        "nme": m.get("nme"),
        "nme_flip": nme_flip,
        "pixel_error": m.get("pixel_error"),
        "confidence_auroc": m.get("confidence_auroc"),
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "epochs": len(hist),
        "train_minutes": (hist[-1]["elapsed_s"] / 60.0) if hist else None,
        "latency_ms": _cached_latency(run_dir, model, latency_repeats),
        "run_dir": str(run_dir),
    }


def write_table(rows: list[dict], grid_keys: list[str], out: Path) -> tuple[Path, Path]:
    """``comparison.md`` and ``comparison.csv``: one row per model (grid keys as extra columns)."""
    cols = list(COLUMNS)
    if not any(r.get("nme") is not None for r in rows):
        cols = [c for c in cols if c[0] not in ("nme", "nme_flip")]
    elif not any(r.get("nme_flip") is not None for r in rows):
        cols = [c for c in cols if c[0] != "nme_flip"]
    cols[1:1] = [(f"grid:{k}", k) for k in grid_keys]
    md = ["| " + " | ".join(t for _, t in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        md.append("| " + " | ".join(_fmt(r.get(k), k) for k, _ in cols) + " |")
    md_path, csv_path = out / "comparison.md", out / "comparison.csv"
    with atomic_write(md_path) as f:
        f.write("\n".join(md) + "\n")
    with atomic_write(csv_path, newline="") as f:
        w = csv.writer(f)
        w.writerow([k for k, _ in cols])
        w.writerows([[r.get(k) if r.get(k) is not None else "" for k, _ in cols] for r in rows])
    return md_path, csv_path


def _pick_frames(test_idx: list[int], n: int) -> list[int]:
    if not test_idx or n <= 0:
        return []
    pos = np.linspace(0, len(test_idx) - 1, min(n, len(test_idx))).round().astype(int)
    return [test_idx[p] for p in dict.fromkeys(pos.tolist())]


def _overlays(rows: list[dict], frames, chosen: list[int], out: Path) -> Path | None:
    from keyhead.data.dataset import read_image
    from keyhead.data.formats import read_dlc_predictions
    from keyhead.report.diagnostics import plot_overlay_grid
    from keyhead.report.plots import skeleton_indices

    if not chosen:
        return None
    paths = [frames.image_paths[i] for i in chosen]
    preds: dict[str, list[np.ndarray]] = {}
    titles: dict[str, str] = {}
    for r in rows:
        csv_path = Path(r["run_dir"]) / "predictions_test.csv"
        if not csv_path.is_file():
            continue
        pf, _ = read_dlc_predictions(csv_path, root=frames.root)
        lookup = {p: pf.keypoints[j] for j, p in enumerate(pf.image_paths)}
        if not all(p in lookup for p in paths):
            continue
        preds[r["model"]] = [lookup[p] for p in paths]
        score = f"NME {r['nme']:.2f} %" if r.get("nme") is not None else f"{r['pixel_error']:.1f} px"
        titles[r["model"]] = f"{r['model']}\n{score}"
    if not preds:
        return None
    images = [read_image(frames.path(i), 3) for i in chosen]
    return plot_overlay_grid(
        images,
        [frames.keypoints[i] for i in chosen],
        preds,
        out / "overlays.png",
        row_titles=titles,
        col_titles=[Path(p).name for p in paths],
        zoom_margin=0.3 if frames.boxes is not None else None,
        skeleton=skeleton_indices(frames.keypoint_names, frames.skeleton),
    )


def heatmap_panels(run_dir: Path, frames, index: int, out: Path) -> Path | None:
    """Predicted vs target heatmaps of one frame for a heatmap-head run (None for other heads)."""
    from keyhead.models.build import load_run
    from keyhead.report.diagnostics import model_heatmap_panels

    model, cfg = load_run(run_dir)
    faces = [8, 30, 36, 45, 48, 54]  # chin, nose tip, outer eye corners, mouth corners
    keypoints = faces if len(model.keypoint_names) == 68 else None
    title = f"{run_dir.name}: {Path(frames.image_paths[index]).name}"
    return model_heatmap_panels(model, cfg, frames, index, out / f"heatmaps_{run_dir.name}.png", keypoints, title)


def compare(
    configs: list[str | os.PathLike],
    grid: list[str] | dict[str, list[Any]] | None = None,
    overrides: list[str] | None = None,
    out: str | os.PathLike = "compare",
    split_file: str | os.PathLike | None = None,
    per_model_overrides: dict[str, list[str]] | None = None,
    flip: bool = False,
    n_overlay: int = 4,
    latency_repeats: int = 20,
    progress: bool = True,
    keep_going: bool = False,
) -> dict[str, Any]:
    """Train every config (x grid) on the same split and write the comparison table and figures.

    Args:
        configs: config files or template names (``face_unet``, ``heatmap_resnet18``, ...).
        grid: ``key=v1,v2`` strings (or ``{key: [values]}``): every combination becomes one model per config.
        overrides: ``key=value`` applied to every model (e.g. ``data.path=...``, ``train.max_minutes=5``).
        out: the compare folder (runs in ``OUT/runs/<name>``).
        split_file: a ``split.json`` to use; by default one is made from the first config's data and seed and saved
            as ``OUT/split.json``, so every model (and every re-run) sees the same frames.
        per_model_overrides: model name (config stem, or the full run name) -> extra ``key=value`` for that model
            only (e.g. a larger time budget for one of them).
        flip: also evaluate every model with flip test-time augmentation (column ``NME % (flip TTA)``).
        n_overlay: test frames in the side-by-side overlays.
        latency_repeats: timed ``predict`` calls per model for the latency column.
        progress: progress bars.
        keep_going: a model whose training fails is reported (``failed``) and left out of the table instead of
            stopping the comparison.

    Returns:
        The ``compare.json`` payload: ``{"out", "split_file", "grid", "rows": [...], "failed": {...},
        "files": {...}}``.
    """
    from keyhead.data.dataset import load_split, make_split, save_split
    from keyhead.data.prepare import prepare_data
    from keyhead.evaluation.evaluate import evaluate_run
    from keyhead.io.rundir import read_history
    from keyhead.report.diagnostics import plot_curves

    out = Path(out)
    grid_values = parse_grid(grid)
    entries = expand(configs, grid_values)
    common = list(overrides or [])
    per_model = per_model_overrides or {}
    cfgs = []
    for e in entries:
        extra = per_model.get(e.name, per_model.get(e.config.stem, []))
        cfgs.append(load_config(e.config, [*common, *e.overrides, *extra]))
    paths = {c.data.path for c in cfgs}
    if len(paths) != 1:
        raise KeyheadError(f"compare: the models read different data ({', '.join(sorted(paths))}); set data.path once")
    out.mkdir(parents=True, exist_ok=True)
    frames, _ = prepare_data(cfgs[0])
    split_path = Path(split_file) if split_file else out / "split.json"
    if split_file is None and not split_path.is_file():
        save_split(make_split(len(frames), cfgs[0].data.split, cfgs[0].data.split_seed), frames, split_path)
    split = load_split(split_path, frames)
    failed: dict[str, str] = {}
    for e, cfg in zip(entries, cfgs, strict=True):
        cfg.name, cfg.output_dir = e.name, str(out / "runs")
        cfg.data.split_file = str(split_path.resolve())
        print(f"[compare] {e.name}: {' '.join(e.overrides) or '(config as is)'}")
        try:
            what = train_or_resume(cfg, out / "runs" / e.name, progress)
            if flip and not (out / "runs" / e.name / "eval-flip" / "metrics.json").is_file():
                evaluate_run(out / "runs" / e.name, flip=True, progress=progress)
        except Exception as exc:  # noqa: BLE001  (keep_going: one broken model must not lose the others)
            if not keep_going:
                raise
            what = failed[e.name] = f"failed: {type(exc).__name__}: {exc}"
        print(f"[compare] {e.name}: {what}")
    rows = []
    for e in entries:
        if e.name in failed:
            continue
        row = summarize_run(out / "runs" / e.name, latency_repeats=latency_repeats)
        row.update({f"grid:{k}": v for k, v in e.grid.items()})
        rows.append(row)
    if not rows:
        raise KeyheadError(f"compare: every model failed ({'; '.join(f'{k}: {v}' for k, v in failed.items())})")
    md_path, csv_path = write_table(rows, list(grid_values), out)
    files = {"table_md": str(md_path), "table_csv": str(csv_path)}
    curves = plot_curves({r["model"]: read_history(Path(r["run_dir"])) for r in rows}, out / "curves.png")
    if curves:
        files["curves"] = str(curves)
    chosen = _pick_frames(split.get("test") or split.get("val") or [], n_overlay)
    overlay = _overlays(rows, frames, chosen, out)
    if overlay:
        files["overlays"] = str(overlay)
    for r in rows:
        panel = heatmap_panels(Path(r["run_dir"]), frames, chosen[0], out) if chosen else None
        if panel:
            files[f"heatmaps:{r['model']}"] = str(panel)
    payload = {
        "out": str(out),
        "split_file": str(split_path),
        "grid": grid_values,
        "overrides": common,
        "rows": rows,
        "failed": failed,
        "files": files,
    }
    with atomic_write(out / "compare.json") as f:
        json.dump(payload, f, indent=1, default=_json_default)
    print(md_path.read_text(), end="")
    print(f"[compare] wrote {md_path}, {csv_path} and figures in {out}")
    return payload


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


__all__ = ["Entry", "compare", "expand", "measure_latency", "parse_grid", "summarize_run"]
