"""Face benchmark: the facial-keypoint study's model families on the HELEN subset, through ``keyhead compare``.

Every ``face_*`` config template (regression CNN, ResNet-18 transfer, DINO flatten / query heads, U-Net, dynamic
head, EfficientNet-Lite0 heatmap) is trained on one FIXED split of ../shared/data/helen-300w-68pt-subset
(``bench/results/helen_split.json``: seed 42, 80 / 10 / 10 % of the 508 faces), cropped to the landmarks' box
with a 25 % margin (300-W protocol), 224x224 grayscale. The training budget (``--minutes``, 40 by default) is
shared out by ``SHARES``; the EfficientNet-Lite0 heatmap model, the one with real pretrained weights, gets the
largest share. Then the best model (lowest test NME) is evaluated again with flip test-time augmentation.

Writes bench/results/faces.json (settings, machine, every row, best model, NME with and without flip),
bench/results/faces.md (the comparison table) and bench/results/faces/*.png (curves, overlays, heatmap panels,
reliability plot of the best model); the runs themselves go to bench/runs/faces/.

Usage:
    flock /tmp/keyhead-heavy.lock .venv/bin/python bench/faces.py                  # the real run (~50 min)
    .venv/bin/python bench/faces.py --minutes 2 --frames 40 --out bench/runs/faces_smoke --no-results   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from _common import machine

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("KEYHEAD_SHARED_DATA", HERE.parent.parent / "shared" / "data"))
HELEN = SHARED / "helen-300w-68pt-subset" / "helen" / "trainset"
RESULTS = HERE / "results"

# Share of the training budget per template (normalised over the templates that exist).
SHARES = {
    "face_heatmap": 0.32,  # EfficientNet-Lite0 with real ImageNet weights: the best bet, the largest share
    "face_dynamic": 0.15,  # the same pretrained backbone with the dynamic head
    "face_unet": 0.11,  # full-resolution U-Net: ~2 training images/s
    "face_dino_query": 0.11,
    "face_resnet18": 0.11,
    "face_dino_flatten": 0.10,
    "face_regression_cnn": 0.10,
}


def make_split(path: Path, frames_limit: int | None, seed: int = 42) -> Path:
    """The fixed split (image paths), written once; ``frames_limit`` takes a seeded subset (smoke runs)."""
    import numpy as np

    from keyhead.data.dataset import make_split as split_frames
    from keyhead.data.dataset import save_split
    from keyhead.data.formats import load_labels

    if path.is_file():
        return path
    frames = load_labels(HELEN)
    if frames_limit:
        keep = np.sort(np.random.default_rng(seed).permutation(len(frames))[:frames_limit])
        frames = frames.subset(keep)
    save_split(split_frames(len(frames), (0.8, 0.1, 0.1), seed), frames, path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=40.0, help="total training budget over all models")
    ap.add_argument("--models", nargs="*", default=None, help="templates (default: every face_* template)")
    ap.add_argument("--frames", type=int, default=None, help="use a seeded subset of this many faces (smoke runs)")
    ap.add_argument("--out", type=Path, default=HERE / "runs" / "faces", help="compare folder")
    ap.add_argument("--no-results", action="store_true", help="do not write bench/results (smoke runs)")
    ap.add_argument(
        "--fresh", action="store_true", help="delete the compare folder first (else finished runs are kept)"
    )
    args = ap.parse_args(argv)

    from keyhead.compare import compare
    from keyhead.config import template_dir
    from keyhead.evaluation.evaluate import evaluate_run

    if not HELEN.is_dir():
        print(f"[bench] {HELEN} not found; nothing to do")
        return 1
    available = sorted(p.stem for p in template_dir().glob("face_*.yaml"))
    models = args.models or [m for m in SHARES if m in available] + [m for m in available if m not in SHARES]
    missing = [m for m in models if m not in available]
    if missing:
        print(f"[bench] templates not found: {', '.join(missing)}")
        return 1
    default_share = min(SHARES.values())
    total_share = sum(SHARES.get(m, default_share) for m in models)
    minutes = {m: round(args.minutes * SHARES.get(m, default_share) / total_share, 2) for m in models}
    if args.fresh and args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    split_path = RESULTS / "helen_split.json" if not (args.frames or args.no_results) else args.out / "helen_split.json"
    split_path.parent.mkdir(parents=True, exist_ok=True)
    make_split(split_path, args.frames)
    common = [f"data.path={HELEN}", "data.crop=landmarks", "data.crop_margin=0.25", "train.num_workers=0"]
    per_model = {m: [f"train.max_minutes={minutes[m]}"] for m in models}
    print(f"[bench] budgets (min): {minutes} (total {sum(minutes.values()):.1f})")

    t0 = time.perf_counter()
    result = compare(
        models,
        overrides=common,
        out=args.out,
        split_file=split_path,
        per_model_overrides=per_model,
        n_overlay=4,
        progress=False,
        keep_going=True,
    )
    rows = result["rows"]
    scored = [r for r in rows if r.get("nme") is not None]
    best = min(scored, key=lambda r: r["nme"]) if scored else None
    flip_nme = None
    if best is not None:
        flip_payload = evaluate_run(best["run_dir"], flip=True, progress=False)
        flip_nme = flip_payload["splits"]["test"].get("nme")
    wall = time.perf_counter() - t0

    table = Path(result["files"]["table_md"]).read_text()
    summary = ""
    if best is not None:
        summary = (
            f"\nBest model: **{best['model']}**, test NME {best['nme']:.2f} % "
            f"({flip_nme:.2f} % with flip test-time augmentation).\n"
            if flip_nme is not None
            else f"\nBest model: **{best['model']}**, test NME {best['nme']:.2f} %.\n"
        )
    for name, why in result["failed"].items():
        summary += f"\n{name}: {why}\n"
    print(table + summary)
    print(f"[bench] wall time {wall / 60:.1f} min")
    if args.no_results or args.frames:
        return 0

    from keyhead.io.atomic import atomic_write

    figures = RESULTS / "faces"
    figures.mkdir(parents=True, exist_ok=True)
    copied = []
    for src in result["files"].values():
        if str(src).endswith(".png"):
            dst = figures / Path(src).name
            shutil.copyfile(src, dst)
            copied.append(str(dst.relative_to(HERE.parent)))
    if best is not None:
        for name in ("reliability_test.png",):
            src = Path(best["run_dir"]) / name
            if src.is_file():
                dst = figures / f"best_{name}"
                shutil.copyfile(src, dst)
                copied.append(str(dst.relative_to(HERE.parent)))
    payload = {
        "data": str(HELEN),
        "split_file": str(split_path.relative_to(HERE.parent)),
        "protocol": "crop to the landmarks' box x1.25, 224x224 grayscale; NME = mean error / outer-eye-corner "
        "distance (points 36, 45), original-image pixels, test split",
        "budget_minutes": minutes,
        "overrides": common,
        "wall_minutes": round(wall / 60, 2),
        "rows": [{k: v for k, v in r.items() if k != "run_dir"} | {"run_dir": r["run_dir"]} for r in rows],
        "best": None if best is None else {"model": best["model"], "nme": best["nme"], "nme_flip": flip_nme},
        "failed": result["failed"],
        "figures": copied,
        "machine": machine(),
    }
    with atomic_write(RESULTS / "faces.json") as f:
        json.dump(payload, f, indent=1)
    with atomic_write(RESULTS / "faces.md") as f:
        f.write(
            "HELEN subset (508 faces, 68 points), fixed split bench/results/helen_split.json, 224x224 grayscale crops; "
            f"{sum(minutes.values()):.0f} min training in all on a 2-core CPU.\n\n" + table + summary
        )
    print(f"[bench] wrote {RESULTS / 'faces.json'} and {RESULTS / 'faces.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
