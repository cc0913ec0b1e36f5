"""Speed roofline (issue 17): how close keyhead's video prediction is to what this machine can do, in one run.

Measured in ONE process, back to back, so the figures are ratios on the same machine state:
1. The machine's fp32 limit: a 4096x4096 matmul and a 3x3 convolution (128 -> 128 channels, 56x56, batch 16,
   channels-last) in PyTorch and in onnxruntime; GFLOP/s of the best of several runs. The larger conv figure is
   "the machine's measured conv throughput".
2. The network alone: the exact call video prediction makes (``keyhead.inference.video._video_net(...).frames``:
   backbone + head + decoder) on a random batch of 16 at the model's input size, per runtime (eager PyTorch,
   onnxruntime); frames/s and the GFLOP/s it reaches (FLOPs per frame counted by torch's FlopCounterMode, the
   counter ``keyhead profile`` uses).
3. The whole pipeline: ``keyhead predict`` on the same video (decode, resize, network, decoder, CSV) per runtime
   (eager, onnxruntime, OpenVINO, onnxruntime int8), and each runtime's keypoints against the eager float32 ones
   (mean / max px over the video); the int8 graph's own check (deviation and label error on the run's held-out
   frames) comes from its ``int8.json``.
4. Start-up: a fresh ``keyhead predict RUN VIDEO --max-frames 1`` process, eager, ONNX and OpenVINO.
5. Many videos: two videos predicted one after the other (``--jobs 1``) and at once (``--jobs 2``), whole wall time.

Ratios reported: pipeline / network-alone (target >= 0.9) and network-alone in the best runtime / the machine's
conv throughput (target >= 0.6). Models: ResNet-18 + heatmap head at 256x256 (the Lightning Pose comparison of
the README) and the shipped default template ``heatmap_efficientnet_lite0``; ResNet-18 is trained for one epoch
only (speed does not depend on the weights), the default model for 3 minutes so that its int8 deviation means
something (a one-epoch model's flat heatmaps make any perturbation move the maxima).
CPU flags (AVX2 / AVX-512 / AMX / NEON) go beside every figure.

Usage:
    flock /tmp/keyhead-heavy.lock .venv/bin/python bench/speed.py            # ~20 min -> bench/results/speed.json
    .venv/bin/python bench/speed.py --frames 64 --no-results                  # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import best_seconds, cpu_flags, machine

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("KEYHEAD_SHARED_DATA", HERE.parent.parent / "shared" / "data"))
MOUSE = SHARED / "lightning-pose-mirror-mouse-example"
RESULTS = HERE / "results" / "speed.json"
RUNS = HERE / "runs" / "speed"
MODELS = {
    "resnet18_heatmap_256": ("heatmap_resnet18", ["model.pretrained=false", "data.input_size=[256,256]"]),
    "default_efficientnet_lite0": ("heatmap_efficientnet_lite0", ["train.epochs=200", "train.max_minutes=3"]),
}
RUNTIMES = ("torch", "onnx", "openvino", "onnx-int8")
#: Lightning Pose 2.4.3's prediction loop on this kind of CPU (issue 17's side-by-side run, ResNet-18 at 256x256)
LIGHTNING_POSE_FPS = 8.3


def machine_limit(repeats: int = 5) -> dict:
    """fp32 GFLOP/s of a large matmul and of a large 3x3 convolution, in PyTorch and in onnxruntime."""
    import tempfile

    import onnxruntime as ort

    n = 4096
    a, b = torch.randn(n, n), torch.randn(n, n)
    with torch.inference_mode():
        matmul = 2 * n**3 / best_seconds(lambda: torch.mm(a, b), repeats) / 1e9
    conv = torch.nn.Conv2d(128, 128, 3, padding=1, bias=False).eval()
    x = torch.rand(16, 128, 56, 56)
    flops = 2 * 16 * 128 * 128 * 9 * 56 * 56
    conv_cl, x_cl = conv.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        torch_conv = flops / best_seconds(lambda: conv_cl(x_cl), repeats) / 1e9
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "conv.onnx"
        with torch.no_grad():
            torch.onnx.export(conv, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=False)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        xn = x.numpy()
        ort_conv = flops / best_seconds(lambda: sess.run(None, {"x": xn}), repeats) / 1e9
    return {
        "matmul_4096_gflops": round(matmul, 1),
        "conv3x3_128_56_b16_torch_gflops": round(torch_conv, 1),
        "conv3x3_128_56_b16_onnxruntime_gflops": round(ort_conv, 1),
        "conv_limit_gflops": round(max(torch_conv, ort_conv), 1),
    }


def flops_per_frame(model) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    h, w = model.input_size
    x = torch.rand(1, model.backbone.in_channels, h, w)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model.eval()(x)
    return float(counter.get_total_flops())


def train_run(name: str, template: str, overrides: list[str]) -> Path:
    from keyhead.config import load_config, template_dir
    from keyhead.engine.train import train

    base = [f"name={name}", f"output_dir={RUNS}", f"data.path={MOUSE}", "train.epochs=1", "train.batch_size=8"]
    run = RUNS / name
    record = run / "bench_overrides.json"
    if (run / "model.safetensors").is_file() and record.is_file() and json.loads(record.read_text()) == overrides:
        return run
    run = train(load_config(template_dir() / f"{template}.yaml", base + overrides), progress=False)
    (run / "bench_overrides.json").write_text(json.dumps(overrides))
    return run


def network_alone(run: Path, runtime: str, batch: int = 16, repeats: int = 8) -> float:
    """Frames/s of the call video prediction makes on a random batch (backbone + head + decoder)."""
    from keyhead.inference.video import _video_net, open_video_net

    net = _video_net(open_video_net(run, runtime), runtime)
    h, w = net.input_size
    x = np.random.default_rng(0).random((batch, net.in_channels, h, w), dtype=np.float32)
    return batch / best_seconds(lambda: net.frames(x), repeats)


def pipeline(run: Path, video: Path, runtime: str, frames: int | None) -> tuple[float, Path]:
    """Frames/s of ``keyhead predict`` on the video (first decoded frame to last row) and the CSV it wrote."""
    from keyhead.inference.video import predict_videos

    res = predict_videos(
        run, [video], run / f"pred_{runtime}", runtime=runtime, resume=False, progress=False, max_frames=frames
    )[0]
    return float(res.summary_data["frames_per_second"]), res.csv


def deviation(csv: Path, reference: Path) -> dict:
    """Mean / max distance (px) between two prediction CSVs of the same video, over every keypoint of every frame."""
    from keyhead.io.predictions import read_prediction_table

    a, b = read_prediction_table(csv)[2], read_prediction_table(reference)[2]
    d = np.linalg.norm(a - b, axis=-1)
    d = d[np.isfinite(d)]
    return {"mean_px": round(float(d.mean()), 4), "max_px": round(float(d.max()), 3)}


def many_videos(run: Path, video: Path, runtime: str, frames: int) -> dict:
    """Wall frames/s of two videos (links to one file under two names) with --jobs 1 and --jobs 2."""
    from keyhead.inference.video import predict_videos

    folder = RUNS / "many_videos"
    folder.mkdir(parents=True, exist_ok=True)
    videos = []
    for name in ("a", "b"):
        link = folder / f"{name}{video.suffix}"
        link.unlink(missing_ok=True)
        link.symlink_to(video)
        videos.append(link)
    out = {"runtime": runtime, "videos": 2, "frames_each": frames}
    for jobs in (1, 2):
        t0 = time.perf_counter()
        predict_videos(
            run,
            videos,
            folder / f"jobs{jobs}",
            runtime=runtime,
            resume=False,
            progress=False,
            max_frames=frames,
            jobs=jobs,
        )
        out[f"jobs{jobs}_fps"] = round(2 * frames / (time.perf_counter() - t0), 1)
    out["jobs2_over_jobs1"] = round(out["jobs2_fps"] / out["jobs1_fps"], 3)
    return out


def startup(run: Path, video: Path, runtime: str) -> float:
    """Wall seconds of a fresh ``keyhead predict RUN VIDEO --max-frames 1`` process (import, load, first frame)."""
    cmd = [sys.executable, "-m", "keyhead.cli", "predict", str(run), str(video), "--max-frames", "1", "--restart"]
    cmd += ["--out", str(run / "startup"), "--no-progress", "--batch-size", "1", "--runtime", runtime]
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        best = min(best, time.perf_counter() - t0)
    return round(best, 2)


def pipeline_parts(video: Path, input_size: tuple[int, int], keypoints: int = 17, batch: int = 16) -> dict:
    """Frames/s of the pipeline's parts without a network, each alone on the machine: decoding (PyAV), decoding +
    resizing + batching (the reader thread), and formatting CSV rows; with the network's frames/s they give the
    pipeline's ceiling on these cores when the parts cannot overlap (1 / sum of 1 / fps)."""
    from keyhead.inference._stream import BatchReader
    from keyhead.io.predictions import format_frame_rows
    from keyhead.io.video import iter_frames

    t0 = time.perf_counter()
    n = sum(1 for _ in iter_frames(video, 3))
    decode = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    reader = BatchReader(iter_frames(video, 3), input_size, batch)
    m = sum(len(x) for _, x, _ in reader)
    reader.close()
    read = m / (time.perf_counter() - t0)
    xy = np.random.default_rng(0).random((batch, keypoints, 2)) * 300
    conf = np.random.default_rng(1).random((batch, keypoints))
    t0 = time.perf_counter()
    for first in range(0, n, batch):
        format_frame_rows(first, xy, conf)
    rows = n / (time.perf_counter() - t0)
    return {
        "frames": n,
        "decode_fps": round(decode, 1),
        "decode_resize_batch_fps": round(read, 1),
        "csv_rows_fps": round(rows, 1),
    }


def import_breakdown(module: str = "keyhead.models.build") -> dict:
    """Seconds a fresh process spends importing ``module`` and, inside it, torch, timm and torchvision (cumulative
    times from ``python -X importtime``; best of 3): what bounds an eager start-up."""
    best: dict = {}
    for _ in range(3):
        res = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True, text=True
        )
        times = {}
        for line in res.stderr.splitlines():
            parts = [x.strip() for x in line.removeprefix("import time:").split("|")]
            if len(parts) == 3 and parts[1].isdigit() and parts[2] in (module, "torch", "timm", "torchvision"):
                times[parts[2]] = max(times.get(parts[2], 0.0), int(parts[1]) / 1e6)
        if not best or times.get(module, 1e9) < best.get(module, 1e9):
            best = times
    return {k: round(v, 2) for k, v in best.items()}


def _default_accuracy() -> dict | None:
    """The default template's mirror-mouse accuracy from bench/foundation.py's results (the benchmark accuracy)."""
    path = HERE / "results" / "foundation.json"
    if not path.is_file():
        return None
    mouse = json.loads(path.read_text()).get("mirror_mouse", {})
    return {"test_pixel_error": mouse.get("test_pixel_error"), "source": "bench/results/foundation.json mirror_mouse"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=None, help="predict only the first N frames (smoke runs)")
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--no-results", action="store_true", help="do not write bench/results/speed.json")
    ap.add_argument("--parts-only", action="store_true", help="only the pipeline parts, added to speed.json")
    args = ap.parse_args(argv)
    video = MOUSE / "videos" / "test_vid.mp4"
    if not video.is_file():
        print(f"[bench] {video} not found; nothing to do")
        return 1
    flags = cpu_flags()
    print(f"[bench] {flags}, torch threads {torch.get_num_threads()}", flush=True)
    parts = pipeline_parts(video, (256, 256))
    print(f"[bench] pipeline parts at 256x256 (no network): {parts}", flush=True)
    if args.parts_only:
        payload = json.loads(RESULTS.read_text())
        payload["pipeline_parts_256"] = {**parts, "cpu": flags}
        RESULTS.write_text(json.dumps(payload, indent=1))
        return 0
    limit = machine_limit()
    print(f"[bench] machine limit: {limit}", flush=True)
    imports = import_breakdown()
    print(f"[bench] import seconds (cumulative, fresh process): {imports}", flush=True)
    results = {}
    for name in args.models:
        template, overrides = MODELS[name]
        run = train_run(name, template, overrides)
        from keyhead.models.build import load_run

        model, _ = load_run(run)
        gflop = flops_per_frame(model) / 1e9
        entry: dict = {"template": template, "overrides": overrides, "input_size": list(model.input_size)}
        entry["gflop_per_frame"] = round(gflop, 3)
        from keyhead.export.quantize import TOLERANCE_PX, quantize_run

        csvs = {}
        for runtime in RUNTIMES:
            if runtime == "onnx-int8":  # measured whatever the deviation; "accepted" says if the default would refuse
                int8 = quantize_run(run, tolerance_px=1e9, progress=False)
                entry["int8_check"] = {
                    **int8,
                    "tolerance_px": TOLERANCE_PX,
                    "accepted": int8["mean_px"] <= TOLERANCE_PX,
                }
            pipe, csvs[runtime] = pipeline(run, video, runtime, args.frames)  # onnx exports (and caches) the graphs
            alone = network_alone(run, runtime)
            entry[runtime] = {
                "pipeline_fps": round(pipe, 1),
                "network_alone_fps": round(alone, 1),
                "network_gflops": round(alone * gflop, 1),
                "pipeline_over_network": round(pipe / alone, 3),
                "network_over_conv_limit": round(alone * gflop / limit["conv_limit_gflops"], 3),
                "pipeline_over_lightning_pose": round(pipe / LIGHTNING_POSE_FPS, 2),
                "deviation_from_eager": deviation(csvs[runtime], csvs["torch"]),
            }
            print(f"[bench] {name} {runtime}: {entry[runtime]}", flush=True)
        best = max(
            RUNTIMES,
            key=lambda r: entry[r]["pipeline_fps"] if r != "onnx-int8" or entry["int8_check"]["accepted"] else 0,
        )
        entry["best_runtime"] = best
        entry["many_videos"] = many_videos(run, video, best, min(args.frames or 400, 400))
        print(f"[bench] {name} many videos: {entry['many_videos']}", flush=True)
        entry["startup_s"] = {r: startup(run, video, r) for r in ("torch", "onnx", "openvino")}
        print(f"[bench] {name} start-up: {entry['startup_s']}", flush=True)
        results[name] = entry
    payload = {
        "cpu": flags,
        "video": str(video),
        "frames": args.frames or "all (994)",
        "batch_size": 16,
        "machine_limit": limit,
        "import_seconds": imports,
        "pipeline_parts_256": parts,
        "targets": {
            "pipeline_over_network": 0.9,
            "network_over_conv_limit": 0.6,
            "startup_torch_s": 2.0,
            "startup_onnx_s": 0.6,
            "lead_over_lightning_pose_eager": 3.0,
            "lead_over_lightning_pose_best": 4.0,
            "default_model_fps": 60.0,
        },
        "lightning_pose_fps": {"value": LIGHTNING_POSE_FPS, "source": "issue 17, same CPU kind, not re-run here"},
        "default_model_accuracy": _default_accuracy(),
        "results": results,
        "machine": machine(),
    }
    print(json.dumps(payload, indent=1))
    if not args.no_results:
        from keyhead.io.atomic import atomic_write

        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(RESULTS) as f:
            json.dump(payload, f, indent=1)
        print(f"[bench] wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
