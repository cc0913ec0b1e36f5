"""Video benchmark (issue 4): mhcrnn vs the plain heatmap head on mirror-mouse, semi-supervised, frames/s.

Writes bench/results/video.json (one section per part, merged into the file):
- ``accuracy``: the heatmap head, the mhcrnn head and the heatmap head with the semi-supervised losses
  (temporal + Pose PCA on ``videos/test_vid.mp4``), all on the offline-pretrained EfficientNet-Lite0, the same
  split and the same wall-clock budget; test pixel error, confidence AUROC of both decoders, and the temporal
  norm / PCA error of each model's predictions on ``videos/test_vid.mp4`` (994 frames), with wall times.
- ``speed``: frames/s of `keyhead predict` on ``test_vid.mp4`` for ResNet-18 + heatmap and ResNet-18 + mhcrnn at
  256x256, eager and with the onnxruntime fast path, and the model-load-to-first-frame time (in process, and
  for the whole command in a fresh process).
- ``codecs``: the same prediction on the DLC openfield video and on an MJPEG AVI made from it.

Usage:
    python bench/video.py [--parts accuracy speed codecs] [--minutes 7]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from _common import write_section

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("KEYHEAD_SHARED_DATA", HERE.parent.parent / "shared" / "data"))
MOUSE = SHARED / "lightning-pose-mirror-mouse-example"
OPENFIELD = SHARED / "dlc-openfield-Pranav-2018-10-30"
RESULTS = HERE / "results" / "video.json"
RUNS = HERE / "runs" / "video"


def write(section: str, payload: dict) -> None:
    write_section(RESULTS, section, payload)


def train_run(name: str, overrides: list[str]) -> tuple[Path, float]:
    from keyhead.config import load_config, template_dir
    from keyhead.engine.train import train

    base = [f"name={name}", f"output_dir={RUNS}", f"data.path={MOUSE}"]
    cfg = load_config(template_dir() / "heatmap_efficientnet_lite0.yaml", base + overrides)
    t0 = time.perf_counter()
    run = train(cfg, progress=False)
    return run, time.perf_counter() - t0


def video_metrics(run: Path, video: Path, runtime: str = "torch") -> dict:
    from keyhead.inference.video import predict_videos

    out = run / "predictions_bench"
    res = predict_videos(run, [video], out, runtime=runtime, resume=False, progress=False)[0]
    keep = ("temporal_norm_px", "pca_error_px", "mean_confidence", "n_frames", "frames_per_second")
    return {k: res.summary_data.get(k) for k in keep}


def decoder_auroc(run: Path) -> dict:
    """Test pixel error and confidence AUROC with Lightning Pose's decoder and with the calibrated one."""
    from keyhead.data.dataset import load_split
    from keyhead.data.formats import load_labels
    from keyhead.data.prepare import select_keypoints
    from keyhead.evaluation.evaluate import evaluate_frames
    from keyhead.models.build import load_run
    from keyhead.registry import DECODERS

    model, cfg = load_run(run)
    frames = select_keypoints(load_labels(cfg.data.path), model.keypoint_names)
    split = load_split(run / "split.json", frames)
    out = {}
    for decoder in ("subpixel_maxima", "calibrated_maxima"):
        model.codec.decoder, model.codec.decoder_name = DECODERS.get(decoder), decoder
        metrics, _ = evaluate_frames(model, frames, {"test": split["test"]}, cfg.data.nme_normalizer)
        out[decoder] = {k: metrics["test"].get(k) for k in ("pixel_error", "confidence_auroc")}
    return out


def accuracy(minutes: float, only: list[str] | None = None) -> None:
    video = MOUSE / "videos" / "test_vid.mp4"
    common = [f"train.max_minutes={minutes}", "train.epochs=1000", "train.milestones=[]", "train.seed=0"]
    variants = {
        "heatmap": ["model.head=heatmap"],
        "mhcrnn": ["model.head=mhcrnn"],
        "heatmap_semi": ["model.head=heatmap", f"semi.videos=[{video}]", "semi.frames=512"],
    }
    old = json.loads(RESULTS.read_text()).get("accuracy", {}).get("results", {}) if RESULTS.is_file() else {}
    results = {k: v for k, v in old.items() if only and k not in only}
    for name, extra in variants.items():
        if only and name not in only:
            continue
        print(f"[bench] training {name} for {minutes} min", flush=True)
        run, seconds = train_run(f"acc_{name}", common + extra)
        test = json.loads((run / "metrics.json").read_text())["splits"]["test"]
        t0 = time.perf_counter()
        vid = video_metrics(run, video)
        results[name] = {
            "run": str(run),
            "train_seconds": round(seconds, 1),
            "epochs": len((run / "history.csv").read_text().splitlines()) - 1,
            "test_pixel_error": test.get("pixel_error"),
            "test_confidence_auroc": test.get("confidence_auroc"),
            "video": vid,
            "video_seconds": round(time.perf_counter() - t0, 1),
            "decoders": decoder_auroc(run),
        }
        if "mhcrnn" in name:
            from keyhead.data.context import context_source
            from keyhead.data.formats import load_labels

            frames = load_labels(MOUSE)
            results[name]["context_windows"] = context_source(MOUSE, list(frames.image_paths))[1]
        print(f"[bench] {name}: {results[name]}", flush=True)
    write(
        "accuracy",
        {
            "data": str(MOUSE),
            "backbone": "efficientnet_lite0 (offline ImageNet weights)",
            "input_size": [256, 256],
            "minutes_per_model": minutes,
            "overrides": common,
            "variants": {k: v for k, v in variants.items()},
            "results": results,
        },
    )


def _predict_command(run: Path, video: Path, out: Path, runtime: str) -> float:
    """Wall seconds of a whole fresh ``keyhead predict RUN VIDEO --max-frames 1`` process (start-up included)."""
    cmd = [sys.executable, "-m", "keyhead.cli", "predict", str(run), str(video), "--max-frames", "1", "--restart"]
    cmd += ["--out", str(out), "--no-progress", "--batch-size", "1", "--runtime", runtime]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return round(time.perf_counter() - t0, 2)


def first_frame_seconds(run: Path, video: Path) -> dict:
    """Model load to first predicted frame: in this process, and whole fresh `keyhead predict` commands.

    ``onnx_export_once_s`` is the first ``--runtime onnx`` command of a run (it exports the graphs into
    ``RUN_DIR/video_onnx/``, with torch); ``fresh_command_onnx_s`` is every later one (no torch imported).
    """
    import shutil

    from keyhead.inference.video import predict_video
    from keyhead.models.build import load_run

    t0 = time.perf_counter()
    model, _ = load_run(run)
    predict_video(
        model, video, run / "first", model.keypoint_names, batch_size=1, max_frames=1, resume=False, progress=False
    )
    in_process = time.perf_counter() - t0
    shutil.rmtree(run / "video_onnx", ignore_errors=True)
    return {
        "in_process_s": round(in_process, 2),
        "fresh_command_s": _predict_command(run, video, run / "first_cmd", "torch"),
        "onnx_export_once_s": _predict_command(run, video, run / "first_cmd", "onnx"),
        "fresh_command_onnx_s": _predict_command(run, video, run / "first_cmd", "onnx"),
    }


def bf16_deviation(head: str, video: Path, frames: int = 400) -> dict | None:
    """How far ``--runtime torch-bf16`` moves the keypoints of the *trained* accuracy-part model of this head
    (untrained speed models have flat heatmaps): distance to the float32 keypoints on the first frames, px."""
    import numpy as np

    from keyhead.inference.video import predict_videos
    from keyhead.io.predictions import iter_prediction_chunks

    acc = json.loads(RESULTS.read_text()).get("accuracy", {}).get("results", {}) if RESULTS.is_file() else {}
    run = Path(acc.get(head, {}).get("run", ""))
    if not (run / "model.safetensors").is_file():
        return None
    xy = {}
    for runtime in ("torch", "torch-bf16"):
        res = predict_videos(
            run, [video], RUNS / f"bf16_{runtime}", runtime=runtime, resume=False, progress=False, max_frames=frames
        )[0]
        xy[runtime] = np.concatenate([c[1] for c in iter_prediction_chunks(res.csv)])
    d = np.linalg.norm(xy["torch"] - xy["torch-bf16"], axis=-1)
    p50, p95, p99, top = (round(float(v), 3) for v in np.nanpercentile(d, [50, 95, 99, 100]))
    return {"run": str(run), "frames": frames, "median_px": p50, "p95_px": p95, "p99_px": p99, "max_px": top}


def speed() -> None:
    import onnxruntime

    video = MOUSE / "videos" / "test_vid.mp4"
    out = {}
    for head in ("heatmap", "mhcrnn"):
        run, _ = train_run(
            f"speed_{head}",
            [
                "model.backbone=resnet18",
                "model.pretrained=false",
                f"model.head={head}",
                "train.epochs=1",
                "train.batch_size=8",
            ],
        )
        entry = {"load_to_first_frame": first_frame_seconds(run, video)}
        for runtime in ("torch", "onnx", "torch-bf16"):
            print(f"[bench] speed {head} {runtime}", flush=True)
            entry[runtime] = video_metrics(run, video, runtime)
        entry["bf16_deviation"] = bf16_deviation(head, video)
        out[head] = entry
        print(f"[bench] {head}: {entry}", flush=True)
    write(
        "speed",
        {
            "video": str(video),
            "input_size": [256, 256],
            "batch_size": 16,
            "threads": {"torch": torch.get_num_threads(), "onnxruntime": os.cpu_count()},
            "onnxruntime": onnxruntime.__version__,
            "note": (
                "frames/s of the whole prediction loop a user runs (decode + resize in a reader thread, network, "
                "heatmap decoding, CSV writing), 994 frames, weights untrained; onnx: the run's cached graphs"
            ),
            "results": out,
        },
    )


def codecs() -> None:
    from keyhead.io.video import transcode

    video = OPENFIELD / "videos" / "m3v1mp4.mp4"
    run = RUNS / "speed_heatmap"
    avi = RUNS / "openfield_mjpeg.avi"
    transcode(video, avi, "mjpeg", "avi", max_frames=300)
    out = {}
    for name, path in (("openfield_h264", video), ("openfield_mjpeg_avi", avi)):
        from keyhead.inference.video import predict_videos

        res = predict_videos(run, [path], RUNS / "codecs", max_frames=300, resume=False, progress=False)[0]
        out[name] = {
            "frames": res.n_frames,
            "frames_per_second": res.frames_per_second,
            "codec": res.summary_data["codec"],
        }
    write("codecs", out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", nargs="+", default=["accuracy", "speed", "codecs"])
    parser.add_argument("--minutes", type=float, default=7.0)
    parser.add_argument("--variants", nargs="+", help="accuracy: only these (others kept from the JSON)")
    args = parser.parse_args()
    if not MOUSE.exists():
        sys.exit(f"{MOUSE} not found (set KEYHEAD_SHARED_DATA)")
    RUNS.mkdir(parents=True, exist_ok=True)
    if "speed" in args.parts:
        speed()
    if "codecs" in args.parts:
        codecs()
    if "accuracy" in args.parts:
        accuracy(args.minutes, args.variants)


if __name__ == "__main__":
    main()
