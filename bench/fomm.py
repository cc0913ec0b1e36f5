"""FOMM benchmark: unsupervised keypoints from video, and the compressed detector.

Writes bench/results/fomm.json and bench/results/fomm.md (+ fomm_compress.png) with the exact settings:

- ``unsupervised``: ``keyhead synth --kind face`` (600-frame video, 256x256, seed 0), then unsupervised FOMM training
  on the video (:class:`keyhead.fomm.unsupervised.UnsupervisedConfig`, wall-clock budget ``--unsup-minutes``), then the
  linear-regression landmark error (68 true landmarks of every frame; every 4th block of 50 frames held out) next
  to the random-init baseline of the same detector. ``wall_s`` is the whole part (video, training, evaluation).
- ``mirror_mouse`` (optional, ``--mouse-minutes`` > 0): the same on the Lightning Pose mirror-mouse video, the
  regressor fitted / evaluated on the labelled PNGs (which are not frames of that video).
- ``compression``: a supervised faithful vox-256 detector (``fomm_kp`` template, 10 of the 68 face landmarks, the
  synthetic labelled frames, budget ``--teacher-minutes``) is the teacher; ``keyhead compress`` makes the light
  student on the synthetic video's frames and times every step in one process at 256x256, batch 1. The student starts
  from the teacher's channels and distils for a fixed number of steps (``--distill-steps``; ~19 min here), so the
  deviation does not depend on the machine's speed.

Usage:
    flock /tmp/keyhead-heavy.lock .venv/bin/python bench/fomm.py [--parts unsupervised compression mirror_mouse]
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
RESULTS = HERE / "results"
RUNS = HERE / "runs" / "fomm_bench"
TEACHER_KEYPOINTS = [
    "jaw_8",
    "right_brow_2",
    "left_brow_2",
    "nose_lower_2",
    "right_eye_0",
    "right_eye_3",
    "left_eye_0",
    "left_eye_3",
    "outer_lip_0",
    "outer_lip_6",
]


def synth_data(args: argparse.Namespace) -> Path:
    from keyhead.data.synth import generate

    data = RUNS / "synth_face"
    if not (data / "videos" / "synth_vid.mp4").is_file():
        generate(data, kind="face", n_labeled=300, image_size=(256, 256), video_frames=600, seed=0, overwrite=True)
    return data


def unsupervised(args: argparse.Namespace, video: Path, labels: Path, name: str, minutes: float) -> dict:
    from keyhead.fomm.unsupervised import UnsupervisedConfig, evaluate_unsupervised, train_unsupervised

    run = RUNS / name
    shutil.rmtree(run, ignore_errors=True)
    cfg = UnsupervisedConfig(
        video=str(video),
        input_size=(128, 128),
        num_kp=10,
        block_expansion=32,
        max_features=256,
        num_blocks=4,
        scale_factor=0.25,
        generator_size=64,
        generator_width=args.generator_width,
        batch_size=args.unsup_batch,
        steps=100_000,
        max_minutes=minutes,
        lr=args.unsup_lr,
        seed=0,
    )
    t0 = time.perf_counter()
    train_unsupervised(cfg, run, progress=not args.no_progress)
    train_s = time.perf_counter() - t0
    result = evaluate_unsupervised(run, labels, video=video)
    state = json.loads((run / "state.json").read_text())
    return {
        "settings": cfg.model_dump(mode="json"),
        "steps_done": state["step"],
        "train_s": train_s,
        "eval_s": time.perf_counter() - t0 - train_s,
        "wall_s": time.perf_counter() - t0,
        "trained": result["trained"],
        "random_init": result["random_init"],
        "evaluation": result["settings"],
        "run": str(run),
    }


def teacher(args: argparse.Namespace, data: Path) -> tuple[Path, dict]:
    from keyhead.config import load_config, template_dir
    from keyhead.engine.train import train

    run = RUNS / "teacher"
    if args.reuse_teacher and (run / "model.safetensors").is_file():
        return run, {"reused": True, **teacher_summary(run)}
    shutil.rmtree(run, ignore_errors=True)
    overrides = [
        f"data.path={data}",
        "data.keypoints=[" + ",".join(TEACHER_KEYPOINTS) + "]",
        f"train.max_minutes={args.teacher_minutes}",
        "train.epochs=1000",
        "train.lr=0.001",
        "train.batch_size=8",
        "train.milestones=[]",
        "name=teacher",
        f"output_dir={RUNS}",
    ]
    cfg = load_config(template_dir() / "fomm_kp.yaml", overrides)
    t0 = time.perf_counter()
    run = Path(train(cfg, progress=not args.no_progress))
    return run, {"overrides": overrides, "wall_s": time.perf_counter() - t0, **teacher_summary(run)}


def teacher_summary(run: Path) -> dict:
    """The teacher's accuracy on its own labelled split (pixels at 256x256) and training length."""
    metrics = json.loads((run / "metrics.json").read_text())["splits"]
    epochs = sum(1 for _ in (run / "history.csv").open()) - 1 if (run / "history.csv").is_file() else None
    return {
        "epochs": epochs,
        "train_pixel_error": metrics.get("train", {}).get("pixel_error"),
        "test_pixel_error": metrics.get("test", {}).get("pixel_error"),
        "test_n_frames": metrics.get("test", {}).get("n_frames"),
    }


def compression(args: argparse.Namespace, data: Path) -> dict:
    from keyhead.fomm.compress import CompressSettings, compress_detector

    teacher_run, teacher_info = teacher(args, data)
    settings = CompressSettings(
        block_expansion=args.student_width,
        max_features=args.student_max_features,
        distill_steps=args.distill_steps,
        max_minutes=args.distill_minutes or None,
        max_frames=args.max_frames,
        augment_copies=args.augment_copies,
        occlusion_copies=args.occlusion_copies,
        init=args.init,
        separable=args.separable,
        separable_head=args.separable_head,
        repeats=args.repeats,
    )
    out = RUNS / "compressed"
    t0 = time.perf_counter()
    report = compress_detector(
        teacher_run, out, frames=data / "videos" / "synth_vid.mp4", settings=settings, progress=not args.no_progress
    )
    shutil.copyfile(out / "compress.png", RESULTS / "fomm_compress.png")
    eligible = [
        r
        for r in report.rows
        if not r["step"].startswith("faithful")
        and r["speedup"] is not None
        and r["speedup"] >= 4.0
        and r["deviation_px"] <= 1.0
    ]
    best = max(eligible, key=lambda r: r["speedup"]) if eligible else None
    lat = {r["step"]: r["latency_ms"] for r in report.rows}
    same_runtime = {
        r["step"]: (lat["faithful onnxruntime"] if r["runtime"].startswith("onnxruntime") else lat["faithful"])
        / r["latency_ms"]
        for r in report.rows
        if r["latency_ms"] and "faithful onnxruntime" in lat
    }
    return {
        "teacher": {"run": str(teacher_run), **teacher_info},
        "rows": report.rows,
        "settings": report.settings,
        "files": report.files,
        "wall_s": time.perf_counter() - t0,
        "criterion": ">= 4x faster than the faithful detector with mean deviation <= 1.0 px at 256x256",
        "best_passing_step": best["step"] if best else None,
        "speedup_vs_faithful_in_same_runtime": same_runtime,
        "passed": best is not None,
        "markdown": report.to_markdown(),
    }


def write(results: dict) -> None:
    path = RESULTS / "fomm.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    old.update(results)
    from keyhead.io.atomic import atomic_write

    with atomic_write(path) as f:
        json.dump(old, f, indent=2)
    lines = ["# FOMM benchmark (bench/fomm.py)", "", f"machine: {json.dumps(old.get('machine', {}))}", ""]
    for key in ("unsupervised", "mirror_mouse"):
        if key in old:
            u = old[key]
            lines += [
                f"## Unsupervised keypoints: {key}",
                "",
                f"{u['steps_done']} steps in {u['train_s'] / 60:.1f} min (part wall time {u['wall_s'] / 60:.1f} min); "
                f"{u['evaluation']['frames']}; {u['evaluation']['split']}.",
                "",
                "| detector | held-out pixel error | NME % | train pixel error |",
                "|---|---|---|---|",
            ]
            for name in ("trained", "random_init"):
                r = u[name]
                lines.append(
                    f"| {name} | {r['pixel_error']:.2f} | {r['nme']:.2f} ({r['normalizer']}) | "
                    f"{r['train_pixel_error']:.2f} |"
                )
            lines.append("")
    if "compression" in old:
        c = old["compression"]
        lines += [
            "## Compression",
            "",
            c["markdown"],
            f"criterion: {c['criterion']}: passed={c['passed']} (best step: {c['best_passing_step']})",
            "",
        ]
        per_kp = [r for r in c["rows"] if "deviation_per_keypoint_px" in r and r["latency_ms"] is not None]
        if per_kp:
            names = list(per_kp[0]["deviation_per_keypoint_px"])
            lines += [
                "Mean deviation per keypoint (px at 256x256, held-out frames):",
                "",
                "| step | " + " | ".join(names) + " |",
                "|---" * (len(names) + 1) + "|",
            ]
            for r in per_kp:
                vals = r["deviation_per_keypoint_px"]
                lines.append(f"| {r['step']} | " + " | ".join(f"{vals[n]:.2f}" for n in names) + " |")
            lines.append("")
    with atomic_write(RESULTS / "fomm.md") as f:
        f.write("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["unsupervised", "compression"],
        choices=["unsupervised", "compression", "mirror_mouse"],
    )
    parser.add_argument("--unsup-minutes", type=float, default=11.0)
    parser.add_argument("--unsup-batch", type=int, default=8)
    parser.add_argument("--unsup-lr", type=float, default=5e-4)
    parser.add_argument("--generator-width", type=int, default=16)
    parser.add_argument("--mouse-minutes", type=float, default=6.0)
    parser.add_argument("--teacher-minutes", type=float, default=8.0)
    parser.add_argument("--reuse-teacher", action="store_true", help="keep an existing bench teacher run")
    parser.add_argument("--student-width", type=int, default=16)
    parser.add_argument("--student-max-features", type=int, default=128)
    parser.add_argument("--init", default="teacher", choices=["teacher", "random"], help="the student's first weights")
    parser.add_argument("--separable", action="store_true", help="depthwise-separable hourglass (needs --init random)")
    parser.add_argument(
        "--distill-steps", type=int, default=3600, help="distillation steps (a fixed count: the same result anywhere)"
    )
    parser.add_argument("--distill-minutes", type=float, default=0.0, help="wall-clock cap instead; 0: none")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--max-frames", type=int, default=600, help="video frames for distillation + held out")
    parser.add_argument("--augment-copies", type=int, default=2, help="TPS-warped copies per distillation frame")
    parser.add_argument(
        "--occlusion-copies", type=int, default=1, help="occluded copies per (warped) distillation frame"
    )
    parser.add_argument(
        "--separable-head", default="jacobian", choices=["all", "jacobian", "none"], help="separable 7x7 head convs"
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    RUNS.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": machine(), "command": " ".join(sys.argv)}
    data = synth_data(args)
    if "unsupervised" in args.parts:
        t0 = time.perf_counter()
        part = unsupervised(
            args,
            data / "videos" / "synth_vid.mp4",
            data / "videos" / "synth_vid_keypoints.csv",
            "unsupervised_synth",
            args.unsup_minutes,
        )
        part["wall_s_with_video"] = time.perf_counter() - t0
        results["unsupervised"] = part
        write(results)
    if "mirror_mouse" in args.parts:
        mouse = SHARED / "lightning-pose-mirror-mouse-example"
        if mouse.is_dir():
            results["mirror_mouse"] = unsupervised(
                args,
                mouse / "videos" / "test_vid.mp4",
                mouse / "CollectedData.csv",
                "unsupervised_mouse",
                args.mouse_minutes,
            )
            write(results)
    if "compression" in args.parts:
        results["compression"] = compression(args, data)
        write(results)
    print((RESULTS / "fomm.md").read_text())


if __name__ == "__main__":
    main()
