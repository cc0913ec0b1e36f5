"""Face benchmark: the facial-keypoint study's model families on the HELEN subset, through ``keyhead compare``.

Every ``face_*`` config template (regression CNN, ResNet-18 transfer, the same two-stage transfer on the
offline-pretrained EfficientNet-Lite0, DINO flatten / query heads, U-Net, dynamic head, EfficientNet-Lite0 heatmap)
is trained on one FIXED split of ../shared/data/helen-300w-68pt-subset (``bench/results/helen_split.json``: seed 42,
80 / 10 / 10 % of the 508 faces), cropped to the landmarks' box with a 25 % margin (300-W protocol), 224x224
grayscale, each with the SAME wall-clock budget (``--minutes-per-model``, 8 by default). ResNet-18 and DINO start
from random initialisation (no hub weights offline). Beside them: the mean-shape baseline (the training faces' mean
shape in the crop) and the targets (every family <= half the baseline's NME, the U-Net <= 8 %). Then the best model
is evaluated with flip test-time augmentation, and the dynamic head is set against the static heatmap head on the
same test faces with synthetic occluders (bench/_face_study.py).

Writes bench/results/faces.json (settings, machine, every row, baseline, targets, occlusion study, seed 001's
table), bench/results/faces.md (the tables) and bench/results/faces/*.png (curves, overlays, heatmap panels,
reliability plot of the best model); the runs themselves go to bench/runs/faces/.

Usage:
    flock /tmp/keyhead-heavy.lock .venv/bin/python bench/faces.py                  # the real run (~75 min)
    .venv/bin/python bench/faces.py --minutes-per-model 0.3 --frames 40 --out bench/runs/faces_smoke --no-results
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

# The order of the table; every face_* template not named here follows.
ORDER = [
    "face_regression_cnn",
    "face_resnet18",
    "face_lite0_transfer",
    "face_dino_flatten",
    "face_dino_query",
    "face_unet",
    "face_dynamic",
    "face_heatmap",
]
UNET_TARGET_NME = 8.0  # issue 15: the U-Net (trained from scratch in the seed too) at or below 8 % NME


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
    ap.add_argument("--minutes-per-model", type=float, default=8.0, help="training budget of every model (minutes)")
    ap.add_argument("--models", nargs="*", default=None, help="templates (default: every face_* template)")
    ap.add_argument("--frames", type=int, default=None, help="use a seeded subset of this many faces (smoke runs)")
    ap.add_argument("--out", type=Path, default=HERE / "runs" / "faces", help="compare folder")
    ap.add_argument("--no-results", action="store_true", help="do not write bench/results (smoke runs)")
    ap.add_argument(
        "--fresh", action="store_true", help="delete the compare folder first (else finished runs are kept)"
    )
    args = ap.parse_args(argv)

    from _face_study import SEED_001_MSE, mean_shape_baseline, occlusion_study

    from keyhead.compare import compare
    from keyhead.config import template_dir
    from keyhead.data.dataset import load_split
    from keyhead.data.face import apply_crop
    from keyhead.data.formats import load_labels
    from keyhead.evaluation.evaluate import evaluate_run

    if not HELEN.is_dir():
        print(f"[bench] {HELEN} not found; nothing to do")
        return 1
    available = sorted(p.stem for p in template_dir().glob("face_*.yaml"))
    models = args.models or [m for m in ORDER if m in available] + [m for m in available if m not in ORDER]
    missing = [m for m in models if m not in available]
    if missing:
        print(f"[bench] templates not found: {', '.join(missing)}")
        return 1
    minutes = {m: args.minutes_per_model for m in models}
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
    frames = apply_crop(load_labels(HELEN), "landmarks")
    split = load_split(split_path, frames)
    baseline = mean_shape_baseline(frames, split)
    targets = target_check(rows, baseline)
    scored = [r for r in rows if r.get("nme") is not None]
    best = min(scored, key=lambda r: r["nme"]) if scored else None
    flip_nme = None
    if best is not None:
        flip_payload = evaluate_run(best["run_dir"], flip=True, progress=False)
        flip_nme = flip_payload["splits"]["test"].get("nme")
    runs = {r["model"]: r["run_dir"] for r in rows}
    study_models = {m: runs[m] for m in ("face_heatmap", "face_dynamic") if m in runs}
    occlusion = occlusion_study(study_models, frames, split["test"], args.out) if study_models else None
    wall = time.perf_counter() - t0

    table = Path(result["files"]["table_md"]).read_text()
    summary = baseline_and_targets_md(baseline, targets)
    if best is not None:
        summary += (
            f"\nBest model: **{best['model']}**, test NME {best['nme']:.2f} % "
            f"({flip_nme:.2f} % with flip test-time augmentation).\n"
            if flip_nme is not None
            else f"\nBest model: **{best['model']}**, test NME {best['nme']:.2f} %.\n"
        )
    for name, why in result["failed"].items():
        summary += f"\n{name}: {why}\n"
    summary += seed_table_md(rows, SEED_001_MSE)
    if occlusion:
        summary += occlusion_md(occlusion)
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
        "distance (points 36, 45), original-image pixels, test split; ResNet-18 and DINO from random init",
        "budget_minutes": minutes,
        "overrides": common,
        "wall_minutes": round(wall / 60, 2),
        "rows": [{k: v for k, v in r.items() if k != "run_dir"} | {"run_dir": r["run_dir"]} for r in rows],
        "mean_shape_baseline": baseline,
        "targets": targets,
        "best": None if best is None else {"model": best["model"], "nme": best["nme"], "nme_flip": flip_nme},
        "seed_001_mse": {m: {"method": t, "mse": v} for m, (t, v) in SEED_001_MSE.items()},
        "occlusion": occlusion,
        "failed": result["failed"],
        "figures": copied,
        "machine": machine(),
    }
    with atomic_write(RESULTS / "faces.json") as f:
        json.dump(payload, f, indent=1)
    with atomic_write(RESULTS / "faces.md") as f:
        f.write(
            "HELEN subset (508 faces, 68 points), fixed split bench/results/helen_split.json, 224x224 grayscale crops; "
            f"{args.minutes_per_model:g} min of training per model on a 2-core CPU ({machine()['cpu_flags']}); "
            "ResNet-18 and DINO start from random initialisation (no hub weights offline).\n\n" + table + summary
        )
    print(f"[bench] wrote {RESULTS / 'faces.json'} and {RESULTS / 'faces.md'}")
    return 0


def target_check(rows: list[dict], baseline: dict) -> dict:
    """Issue 15's targets: every family at or below half the mean-shape baseline's NME; the U-Net at or below 8 %."""
    half = baseline["nme"] / 2
    out = {}
    for r in rows:
        limit = min(half, UNET_TARGET_NME) if r["model"] == "face_unet" else half
        nme = r.get("nme")
        out[r["model"]] = {"nme": nme, "target": round(limit, 2), "met": nme is not None and nme <= limit}
    return out


def baseline_and_targets_md(baseline: dict, targets: dict) -> str:
    lines = [
        "",
        f"Mean-shape baseline (the training faces' mean shape in each test crop): NME {baseline['nme']:.2f} %, "
        f"{baseline['pixel_error']:.2f} px, normalised MSE {baseline['mse_normalized']:.5f} [0,1] / "
        f"{baseline['mse_normalized_pm1']:.5f} [-1,1].",
        "",
        "| model | NME % | target NME % | met |",
        "|---|---|---|---|",
    ]
    for name, t in targets.items():
        nme = "-" if t["nme"] is None else f"{t['nme']:.2f}"
        lines.append(f"| {name} | {nme} | <= {t['target']:.2f} | {'yes' if t['met'] else 'no'} |")
    return "\n".join(lines) + "\n"


def seed_table_md(rows: list[dict], seed: dict) -> str:
    by_model = {r["model"]: r for r in rows}
    lines = [
        "",
        "Seed 001's table (its test MSE; its units, [0,1] or [-1,1], are not stated) beside keyhead's runs:",
        "",
        "| seed 001 method | seed MSE | keyhead template | keyhead MSE [0,1] | keyhead MSE [-1,1] | keyhead NME % |",
        "|---|---|---|---|---|---|",
    ]
    for model, (method, mse) in seed.items():
        r = by_model.get(model, {})

        def f(key: str, fmt: str, r: dict = r) -> str:
            return "-" if r.get(key) is None else format(r[key], fmt)

        lines.append(
            f"| {method} | {mse:.4f} | {model} | {f('mse_normalized', '.5f')} | {f('mse_normalized_pm1', '.5f')} | "
            f"{f('nme', '.2f')} |"
        )
    return "\n".join(lines) + "\n"


def occlusion_md(study: dict) -> str:
    lines = [
        "",
        f"Occlusion study ({study['n_faces']} test faces, {study['n_occluded_points']} points under an occluder; "
        f"{study['protocol']}):",
        "",
        "| model | NME % clean | NME % occluded faces | NME % occluded points | NME % other points | AUROC clean | "
        "AUROC occluded faces | mean confidence occluded / other points |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def f(x, fmt: str = ".2f") -> str:
        return "-" if x is None else format(x, fmt)

    for name, r in study["models"].items():
        lines.append(
            f"| {name} | {f(r['clean']['nme'])} | {f(r['occluded']['nme'])} | {f(r['occluded_points']['nme'])} | "
            f"{f(r['other_points']['nme'])} | {f(r['clean']['confidence_auroc'], '.3f')} | "
            f"{f(r['occluded']['confidence_auroc'], '.3f')} | {f(r['occluded_points']['mean_confidence'], '.3f')} / "
            f"{f(r['other_points']['mean_confidence'], '.3f')} |"
        )
    for name, r in study["models"].items():
        if "kernels" in r:
            k = r["kernels"]
            lines.append(
                f"\n{name}'s kernels: per-image variation {k['kernel_variation']:.3f} of the mean kernel's norm; the "
                f"generated part is {k['generated_share']:.3f} of the kernel's norm ({k['n_images']} test images)."
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
