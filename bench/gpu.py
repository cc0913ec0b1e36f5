"""GPU figures (issue 17, item 5), one prepared script for a session that is lent the GPU machine.

Measured in one process on the first CUDA device (``--device cpu`` runs the same steps on the CPU, as a smoke test
of the script itself; its figures are not GPU figures and are not written to bench/results/gpu.json):
1. The device's limit: a square matmul (8192; fp32 with TF32 off, TF32, bf16, fp16) and a 3x3 convolution
   (256 channels, 56x56, batch 64, channels-last; fp32 / bf16 / fp16), TFLOP/s, best of several runs.
2. Training images/s of the default template's model (``heatmap_efficientnet_lite0``, 256x256) and of ResNet-18 +
   heatmap head: forward, loss, backward and AdamW step on a random batch, fp32 and mixed precision (bf16 / fp16
   autocast, the trainer's ``train.precision: bf16-mixed`` / ``16-mixed``).
3. The network alone (backbone + head + decoder) at batch 64, frames/s and TFLOP/s against the measured limit.
4. The whole ``keyhead predict`` pipeline on mirror-mouse ``test_vid.mp4`` (decode, resize, network, CSV) with
   ``--runtime torch`` and ``torch-bf16`` on the device, and the load time of a run folder (``load_run``).

Usage (on the GPU machine, from the repository root; ~5 min):
    .venv/bin/python bench/gpu.py                          # -> bench/results/gpu.json
    .venv/bin/python bench/gpu.py --device cpu --quick     # smoke test anywhere (no results written)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from _common import best_seconds, cpu_flags, machine

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "gpu.json"
MOUSE = HERE.parent.parent / "shared" / "data" / "lightning-pose-mirror-mouse-example"
MODELS = {"default_efficientnet_lite0": "efficientnet_lite0", "resnet18_heatmap": "resnet18"}


def _syncer(device: torch.device):
    """What waits for the device's queued work before a timer is read (None on the CPU)."""
    return torch.cuda.synchronize if device.type == "cuda" else None


def device_limit(device: torch.device, quick: bool) -> dict:
    sync = _syncer(device)
    n, repeats = (1024, 2) if quick else (8192, 10)
    out = {}
    for name, dtype, tf32 in (
        ("fp32", torch.float32, False),
        ("tf32", torch.float32, True),
        ("bf16", torch.bfloat16, False),
        ("fp16", torch.float16, False),
    ):
        if device.type == "cpu" and name in ("tf32", "fp16"):
            continue
        torch.backends.cuda.matmul.allow_tf32 = tf32
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        out[f"matmul_{name}_tflops"] = round(2 * n**3 / best_seconds(lambda a=a, b=b: a @ b, repeats, sync) / 1e12, 2)
    torch.backends.cuda.matmul.allow_tf32 = False
    c, hw, batch = (64, 28, 4) if quick else (256, 56, 64)
    conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False).to(device, memory_format=torch.channels_last).eval()
    x = torch.rand(batch, c, hw, hw, device=device).to(memory_format=torch.channels_last)
    flops = 2 * batch * c * c * 9 * hw * hw
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        if device.type == "cpu" and name == "fp16":
            continue
        ctx = (lambda d=dtype: torch.autocast(device.type, dtype=d)) if dtype else torch.no_grad
        with torch.inference_mode(), ctx():
            out[f"conv3x3_{name}_tflops"] = round(flops / best_seconds(lambda: conv(x), repeats, sync) / 1e12, 2)
    return out


def _model(backbone: str, device: torch.device):
    from keyhead.models.model import create_model

    names = [f"k{i}" for i in range(17)]
    return create_model(keypoint_names=names, backbone=backbone, head="heatmap", input_size=(256, 256)).to(device)


def training(backbone: str, device: torch.device, quick: bool) -> dict:
    """Training images/s on random batches: forward, heatmap MSE, backward, AdamW step."""
    sync = _syncer(device)
    batch, steps = (4, 2) if quick else (32, 20)
    model = _model(backbone, device).train().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, 256, 256, device=device).to(memory_format=torch.channels_last)
    out = {"batch": batch}
    modes = [("fp32", None), ("bf16_mixed", torch.bfloat16)] + (
        [("fp16_mixed", torch.float16)] if device.type == "cuda" else []
    )
    for name, dtype in modes:
        scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

        def step(dtype=dtype, scaler=scaler) -> None:
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    y = model(x)
                    loss = y.float().square().mean()
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()

        out[f"{name}_images_per_s"] = round(batch * steps / best_seconds(step, 1 if quick else 3, sync), 1)
    return out


def network_alone(backbone: str, device: torch.device, limit: dict, quick: bool) -> dict:
    sync = _syncer(device)
    from torch.utils.flop_counter import FlopCounterMode

    model = _model(backbone, device).eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model.predict(torch.rand(1, 3, 256, 256, device=device))
    flop = counter.get_total_flops()
    batch = 4 if quick else 64
    x = torch.rand(batch, 3, 256, 256, device=device)
    out = {"gflop_per_frame": round(flop / 1e9, 3), "batch": batch}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        ctx = (lambda d=dtype: torch.autocast(device.type, dtype=d)) if dtype else torch.no_grad
        with torch.inference_mode(), ctx():
            fps = batch / best_seconds(lambda: model.predict(x), 2 if quick else 10, sync)
        ref = limit.get(f"conv3x3_{name}_tflops")
        out[name] = {"frames_per_s": round(fps, 1), "tflops": round(fps * flop / 1e12, 3)}
        if ref:
            out[name]["over_conv_limit"] = round(fps * flop / 1e12 / ref, 3)
    return out


def pipeline(device: torch.device, quick: bool, work: Path) -> dict:
    """A run trained one epoch on mirror-mouse on the device, then ``predict_videos`` per runtime, and its load time."""
    from keyhead.config import load_config, template_dir
    from keyhead.engine.train import train
    from keyhead.inference.video import predict_videos
    from keyhead.models.build import load_run

    video = MOUSE / "videos" / "test_vid.mp4"
    if not video.is_file():
        return {"skipped": f"{video} not found"}
    over = [f"data.path={MOUSE}", f"output_dir={work}", "name=gpu", "train.epochs=1", "train.batch_size=16"]
    over.append(f"train.accelerator={'cpu' if device.type == 'cpu' else 'gpu'}")
    run = train(load_config(template_dir() / "heatmap_efficientnet_lite0.yaml", over), progress=False)
    t0 = time.perf_counter()
    load_run(run, device=device.type)
    if device.type == "cuda":
        torch.cuda.synchronize()
    out = {"load_run_s": round(time.perf_counter() - t0, 3)}
    for runtime in ("torch", "torch-bf16"):
        res = predict_videos(
            run,
            [video],
            work / runtime,
            batch_size=64 if device.type == "cuda" else 16,
            runtime=runtime,
            resume=False,
            progress=False,
            max_frames=64 if quick else None,
            device=device.type,
        )[0]
        out[runtime] = {"frames_per_s": res.frames_per_second, "frames": res.n_frames}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--work", type=Path, default=HERE / "runs" / "gpu")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("[gpu] no CUDA device here; run on the GPU machine, or --device cpu --quick as a smoke test")
        return 1
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else cpu_flags()
    print(f"[gpu] {name}", flush=True)
    limit = device_limit(device, args.quick)
    print(f"[gpu] limit: {limit}", flush=True)
    payload: dict = {"device": name, "limit": limit, "models": {}, "machine": machine()}
    for key, backbone in MODELS.items():
        payload["models"][key] = {
            "training": training(backbone, device, args.quick),
            "network_alone": network_alone(backbone, device, limit, args.quick),
        }
        print(f"[gpu] {key}: {payload['models'][key]}", flush=True)
    payload["pipeline_default_model"] = pipeline(device, args.quick, args.work)
    print(f"[gpu] pipeline: {payload['pipeline_default_model']}", flush=True)
    if device.type == "cuda" and not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(payload, indent=1))
        print(f"[gpu] wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
