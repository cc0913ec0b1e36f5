"""K-fold cross-validation of one config on one dataset: how small labelled sets should be judged.

Every labelled frame is a test frame exactly once. The frames are dealt into K folds by a seeded permutation
(``data.split_seed``); for fold i the test split is fold i and the other folds are split again into train and
validation in the config's train : val proportion (at least one validation frame). Each fold is an ordinary run
(``OUT/fold<i>/``) trained through the real training loop, so a cross-validation folder can be re-run: finished
folds are skipped, interrupted ones resumed. The summary ``cv.json`` / ``cv.md`` gives every test metric per fold,
its mean and its spread (sample standard deviation, min, max), and the pooled figures over all test frames.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from keyhead.compare import resolve_config, train_or_resume
from keyhead.config import RunConfig, apply_overrides, load_config, template_dir
from keyhead.data.dataset import save_split
from keyhead.data.prepare import prepare_data
from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_write

# Test metrics summarised across folds (higher-is-better ones are marked in the table by name only).
METRICS = [
    "pixel_error",
    "median_px",
    "rmse_px",
    "nme",
    "mse_normalized",
    "mse_normalized_pm1",
    "confidence_auroc",
]


def fold_splits(n: int, k: int, val_fraction: float, seed: int) -> list[dict[str, list[int]]]:
    """K train / val / test splits of ``n`` frames in which every frame is tested exactly once.

    Args:
        n: number of labelled frames.
        k: number of folds (2 <= k <= n).
        val_fraction: share of the non-test frames that go to validation (at least one frame).
        seed: the permutation's seed.

    Example:
        >>> s = fold_splits(10, 5, 0.1, 0)
        >>> sorted(i for f in s for i in f["test"]) == list(range(10))
        True
    """
    if k < 2 or k > n:
        raise KeyheadError(f"--cv {k}: use between 2 and the number of labelled frames ({n}) folds")
    perm = np.random.default_rng(seed).permutation(n)
    folds = [sorted(perm[i::k].tolist()) for i in range(k)]
    splits = []
    for i, test in enumerate(folds):
        rest = np.array([j for f, fold in enumerate(folds) if f != i for j in fold])
        rest = rest[np.random.default_rng((seed, i)).permutation(len(rest))]
        n_val = max(1, round(val_fraction * len(rest)))
        if len(rest) - n_val < 1:
            raise KeyheadError(f"--cv {k}: {n} labelled frames leave no training frame in fold {i}; use fewer folds")
        splits.append({"train": sorted(rest[n_val:].tolist()), "val": sorted(rest[:n_val].tolist()), "test": test})
    return splits


def spread(values: list[float]) -> dict[str, float | None]:
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None}
    return {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
        "min": float(v.min()),
        "max": float(v.max()),
    }


def _pooled(tests: list[dict]) -> dict[str, float | None]:
    """Figures over all test frames at once: means weighted by each fold's labelled keypoints / frames."""
    out: dict[str, float | None] = {}
    points = [t.get("n_keypoints_labelled") or 0 for t in tests]
    frames = [t.get("n_frames") or 0 for t in tests]
    for key, weights in (("pixel_error", points), ("nme", points), ("mse_normalized", points)):
        pairs = [(t.get(key), w) for t, w in zip(tests, weights, strict=True) if t.get(key) is not None and w]
        total = sum(w for _, w in pairs)
        out[key] = sum(v * w for v, w in pairs) / total if total else None
    out["n_frames"] = sum(frames)
    return out


def cross_validate(
    config: str | os.PathLike | RunConfig,
    k: int = 5,
    overrides: list[str] | None = None,
    out: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and test a config K times, each labelled frame tested once; returns the ``cv.json`` payload.

    Args:
        config: a config file, a template name, a run folder (its ``config.yaml``) or a config object.
        k: number of folds.
        overrides: ``key=value`` strings applied to the config.
        out: the cross-validation folder (default ``<output_dir>/<name>-cv<k>``).
        progress: show progress bars.

    Returns:
        ``{"config", "k", "folds": [{"fold", "run_dir", "n_train", "n_val", "n_test", "test": {...}}], "summary":
        {metric: {"mean", "std", "min", "max"}}, "pooled": {...}, "files": {...}}``.
    """
    if isinstance(config, RunConfig):
        cfg = RunConfig.model_validate(apply_overrides(config.model_dump(mode="json"), overrides or []))
        source = cfg.name
    else:
        path = Path(config)
        if (path / "config.yaml").is_file():  # a run folder
            path = path / "config.yaml"
        elif path.is_dir() and not (template_dir() / f"{path.name}.yaml").is_file():
            raise KeyheadError(f"{config}: no config.yaml in this folder; pass a run folder, a config or a template")
        else:  # a config file, or a template (also when a folder of that name, e.g. demo/, is in the way)
            path = resolve_config(path.name if path.is_dir() else config)
        cfg = load_config(path, overrides or [])
        source = str(path)
    folder = Path(out) if out is not None else Path(cfg.output_dir) / f"{cfg.name}-cv{k}"
    frames, _ = prepare_data(cfg)
    train_share, val_share = cfg.data.split[0], cfg.data.split[1]
    val_fraction = val_share / (train_share + val_share) if train_share + val_share > 0 else 0.1
    splits = fold_splits(len(frames), k, val_fraction, cfg.data.split_seed)
    folder.mkdir(parents=True, exist_ok=True)
    folds = []
    for i, split in enumerate(splits):
        split_path = folder / f"split_fold{i}.json"
        save_split(split, frames, split_path)
        fold_cfg = cfg.model_copy(deep=True)
        fold_cfg.name, fold_cfg.output_dir = f"fold{i}", str(folder)
        fold_cfg.data.split_file = str(split_path.resolve())
        sizes = " / ".join(f"{len(split[name])} {name}" for name in ("train", "val", "test"))
        print(f"[cv] fold {i + 1}/{k}: {sizes}")
        what = train_or_resume(fold_cfg, folder / f"fold{i}", progress)
        metrics = json.loads((folder / f"fold{i}" / "metrics.json").read_text())["splits"]["test"]
        test = {key: metrics.get(key) for key in (*METRICS, "n_frames", "n_keypoints_labelled")}
        folds.append(
            {
                "fold": i,
                "run_dir": str(folder / f"fold{i}"),
                "n_train": len(split["train"]),
                "n_val": len(split["val"]),
                "n_test": len(split["test"]),
                "test": test,
            }
        )
        print(f"[cv] fold {i + 1}/{k} {what}: test {test['pixel_error']:.2f} px")
    summary = {key: spread([f["test"].get(key) for f in folds]) for key in METRICS}
    summary = {key: s for key, s in summary.items() if s["mean"] is not None}
    payload: dict[str, Any] = {
        "config": source,
        "overrides": list(overrides or []),
        "data": str(cfg.data.path),
        "k": k,
        "seed": cfg.data.split_seed,
        "folds": folds,
        "summary": summary,
        "pooled": _pooled([f["test"] for f in folds]),
        "files": {"json": str(folder / "cv.json"), "md": str(folder / "cv.md")},
    }
    with atomic_write(folder / "cv.json") as f:
        json.dump(payload, f, indent=1, allow_nan=False)
    with atomic_write(folder / "cv.md") as f:
        f.write(cv_markdown(payload))
    s = summary["pixel_error"]
    print(f"[cv] {k} folds: test pixel error {s['mean']:.2f} +- {s['std']:.2f} px; wrote {folder / 'cv.md'}")
    return payload


def cv_markdown(payload: dict[str, Any]) -> str:
    """The cross-validation table: one row per fold, then mean, sample std, min and max of each metric."""
    keys = list(payload["summary"])
    digits = {"mse_normalized": 5, "mse_normalized_pm1": 5, "confidence_auroc": 3}

    def fmt(v: Any, key: str) -> str:
        return "-" if v is None else f"{v:.{digits.get(key, 2)}f}"

    lines = [
        f"{payload['k']}-fold cross-validation of {payload['config']} on {payload['data']} (seed {payload['seed']}); "
        "every labelled frame is tested once.",
        "",
        "| fold | train / val / test | " + " | ".join(keys) + " |",
        "|---|---|" + "---|" * len(keys),
    ]
    for f in payload["folds"]:
        row = " | ".join(fmt(f["test"].get(k), k) for k in keys)
        lines.append(f"| {f['fold']} | {f['n_train']} / {f['n_val']} / {f['n_test']} | {row} |")
    for stat in ("mean", "std", "min", "max"):
        row = " | ".join(fmt(payload["summary"][k][stat], k) for k in keys)
        lines.append(f"| **{stat}** | | {row} |")
    return "\n".join(lines) + "\n"
