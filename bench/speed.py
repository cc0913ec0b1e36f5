"""Speed roofline (issue 17): how close keyhead's video prediction is to what this machine can do, in one run.

Measured in ONE process, back to back, so the figures are ratios on the same machine state:
1. The machine's fp32 limit: a 4096x4096 matmul and a 3x3 convolution (128 -> 128 channels, 56x56, batch 16,
   channels-last) in PyTorch and in onnxruntime; GFLOP/s of the best of several runs. The larger conv figure is
   "the machine's measured conv throughput".
2. The network alone: the exact call video prediction makes (``keyhead.inference.video._video_net(...).frames``:
   backbone + head + decoder) on a random batch of 16 at the model's input size, per runtime (eager PyTorch,
   onnxruntime); frames/s and the GFLOP/s it reaches (FLOPs per frame counted by torch's FlopCounterMode, the
   counter ``keyhead profile`` uses).
3. The whole pipeline: ``keyhead predict`` on the same video (decode, resize, network, decoder, CSV) per runtime.
4. Start-up: a fresh ``keyhead predict RUN VIDEO --max-frames 1`` process, eager and ONNX.

Ratios reported: pipeline / network-alone (target >= 0.9) and network-alone in the best runtime / the machine's
conv throughput (target >= 0.6). Models: ResNet-18 + heatmap head at 256x256 (the Lightning Pose comparison of
the README) and the shipped default template ``heatmap_efficientnet_lite0``; weights are trained for one epoch only
(speed does not depend on them). CPU flags (AVX2 / AVX-512 / AMX / NEON) go beside every figure.

Usage:
    flock /tmp/keyhead-heavy.lock .venv/bin/python bench/speed.py            # ~6 min -> bench/results/speed.json
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
from _common import cpu_flags, machine

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("KEYHEAD_SHARED_DATA", HERE.parent.parent / "shared" / "data"))
MOUSE = SHARED / "lightning-pose-mirror-mouse-example"
RESULTS = HERE / "results" / "speed.json"
RUNS = HERE / "runs" / "speed"
MODELS = {
    "resnet18_heatmap_256": ("heatmap_resnet18", ["model.pretrained=false", "data.input_size=[256,256]"]),
    "default_efficientnet_lite0": ("heatmap_efficientnet_lite0", []),
}


def _best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def machine_limit(repeats: int = 5) -> dict:
    """fp32 GFLOP/s of a large matmul and of a large 3x3 convolution, in PyTorch and in onnxruntime."""
    import tempfile

    import onnxruntime as ort

    n = 4096
    a, b = torch.randn(n, n), torch.randn(n, n)
    with torch.inference_mode():
        matmul = 2 * n**3 / _best_seconds(lambda: torch.mm(a, b), repeats) / 1e9
    conv = torch.nn.Conv2d(128, 128, 3, padding=1, bias=False).eval()
    x = torch.rand(16, 128, 56, 56)
    flops = 2 * 16 * 128 * 128 * 9 * 56 * 56
    conv_cl, x_cl = conv.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        torch_conv = flops / _best_seconds(lambda: conv_cl(x_cl), repeats) / 1e9
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "conv.onnx"
        with torch.no_grad():
            torch.onnx.export(conv, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=False)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        xn = x.numpy()
        ort_conv = flops / _best_seconds(lambda: sess.run(None, {"x": xn}), repeats) / 1e9
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
    if (run / "model.safetensors").is_file():
        return run
    return train(load_config(template_dir() / f"{template}.yaml", base + overrides), progress=False)


def network_alone(run: Path, runtime: str, batch: int = 16, repeats: int = 8) -> float:
    """Frames/s of the call video prediction makes on a random batch (backbone + head + decoder)."""
    from keyhead.inference.video import _video_net
    from keyhead.models.build import load_run
    from keyhead.runtime.video_onnx import cached_video_net

    model, _ = load_run(run)
    net = cached_video_net(run) if runtime == "onnx" else _video_net(model, runtime)
    if net is None:
        raise RuntimeError(f"{run}: no cached ONNX video graphs; run the onnx pipeline first")
    h, w = model.input_size
    x = np.random.default_rng(0).random((batch, model.backbone.in_channels, h, w), dtype=np.float32)
    return batch / _best_seconds(lambda: net.frames(x), repeats)


def pipeline(run: Path, video: Path, runtime: str, frames: int | None) -> float:
    from keyhead.inference.video import predict_videos

    res = predict_videos(
        run, [video], run / f"pred_{runtime}", runtime=runtime, resume=False, progress=False, max_frames=frames
    )[0]
    return float(res.summary_data["frames_per_second"])


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=None, help="predict only the first N frames (smoke runs)")
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--no-results", action="store_true", help="do not write bench/results/speed.json")
    args = ap.parse_args(argv)
    video = MOUSE / "videos" / "test_vid.mp4"
    if not video.is_file():
        print(f"[bench] {video} not found; nothing to do")
        return 1
    flags = cpu_flags()
    print(f"[bench] {flags}, torch threads {torch.get_num_threads()}", flush=True)
    limit = machine_limit()
    print(f"[bench] machine limit: {limit}", flush=True)
    results = {}
    for name in args.models:
        template, overrides = MODELS[name]
        run = train_run(name, template, overrides)
        from keyhead.models.build import load_run

        model, _ = load_run(run)
        gflop = flops_per_frame(model) / 1e9
        entry: dict = {"template": template, "overrides": overrides, "input_size": list(model.input_size)}
        entry["gflop_per_frame"] = round(gflop, 3)
        for runtime in ("torch", "onnx"):
            pipe = pipeline(run, video, runtime, args.frames)  # the onnx run exports (and caches) the graphs
            alone = network_alone(run, runtime)
            entry[runtime] = {
                "pipeline_fps": round(pipe, 1),
                "network_alone_fps": round(alone, 1),
                "network_gflops": round(alone * gflop, 1),
                "pipeline_over_network": round(pipe / alone, 3),
                "network_over_conv_limit": round(alone * gflop / limit["conv_limit_gflops"], 3),
            }
            print(f"[bench] {name} {runtime}: {entry[runtime]}", flush=True)
        entry["startup_s"] = {"torch": startup(run, video, "torch"), "onnx": startup(run, video, "onnx")}
        print(f"[bench] {name} start-up: {entry['startup_s']}", flush=True)
        results[name] = entry
    payload = {
        "cpu": flags,
        "video": str(video),
        "frames": args.frames or "all (994)",
        "batch_size": 16,
        "machine_limit": limit,
        "targets": {"pipeline_over_network": 0.9, "network_over_conv_limit": 0.6, "startup_torch_s": 2.0},
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
