"""Foundation benchmark: accuracy on the real datasets, training throughput, and the demo.

Writes bench/results/foundation.json (one section per part, merged into the file):
- ``mirror_mouse`` / ``openfield``: `keyhead train` with the offline-pretrained EfficientNet-Lite0 and the
  heatmap head on the data folder as it is, within a wall-clock budget; test pixel error and wall times.
- ``throughput``: training images/s of ResNet-18 + heatmap head at 256x256, batch 16, through the real
  Trainer and data pipeline (mirror-mouse frames, augmentation on), next to the data loader alone.
- ``demo``: the `keyhead demo` run's test pixel error and wall time.

Usage:
    python bench/foundation.py [--parts mirror_mouse openfield throughput demo] [--minutes 17]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from _common import write_section

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("KEYHEAD_SHARED_DATA", HERE.parent.parent / "shared" / "data"))
RESULTS = HERE / "results" / "foundation.json"
RUNS = HERE / "runs"


def write(section: str, payload: dict) -> None:
    write_section(RESULTS, section, payload)


def accuracy(section: str, data: Path, minutes: float, extra: list[str]) -> None:
    from keyhead.config import load_config, template_dir
    from keyhead.engine.train import train

    if not data.exists():
        print(f"[bench] {data} not found; skipping {section}")
        return
    shutil.rmtree(RUNS / section, ignore_errors=True)
    overrides = [
        f"data.path={data}",
        f"output_dir={RUNS}",
        f"name={section}",
        f"train.max_minutes={minutes}",
        *extra,
    ]
    cfg = load_config(template_dir() / "heatmap_efficientnet_lite0.yaml", overrides)
    t0 = time.perf_counter()
    run = train(cfg, progress=False)
    wall = time.perf_counter() - t0
    metrics = json.loads((run / "metrics.json").read_text())["splits"]
    hist = (run / "history.csv").read_text().splitlines()
    write(
        section,
        {
            "data": str(data),
            "config": cfg.model_dump(mode="json"),
            "epochs_trained": len(hist) - 1,
            "wall_s_total": round(wall, 1),
            "train_budget_min": minutes,
            "test_pixel_error": metrics["test"]["pixel_error"],
            "test_rmse_px": metrics["test"]["rmse_px"],
            "val_pixel_error": metrics.get("val", {}).get("pixel_error"),
            "train_pixel_error": metrics["train"]["pixel_error"],
            "test_confidence_auroc": metrics["test"].get("confidence_auroc"),
            "target_px": 12.0,
            "meets_target": metrics["test"]["pixel_error"] <= 12.0,
        },
    )


def throughput(batches: int = 12) -> None:
    import lightning as L

    from keyhead.config import load_config, template_dir
    from keyhead.data.dataset import make_split
    from keyhead.data.prepare import prepare_data
    from keyhead.engine.module import KeypointModule
    from keyhead.engine.train import make_loaders, quiet_lightning
    from keyhead.models.build import model_from_config

    quiet_lightning()
    data = SHARED / "lightning-pose-mirror-mouse-example"
    cfg = load_config(
        template_dir() / "heatmap_resnet18.yaml", [f"data.path={data}", "train.batch_size=16", "train.epochs=1"]
    )
    frames, flips = prepare_data(cfg)
    split = make_split(len(frames), (1.0, 0.0, 0.0), 0)
    split["train"] = split["train"] * 3  # enough batches for a steady state
    train_ds, train_dl, _ = make_loaders(cfg, frames, split, flips)

    t0 = time.perf_counter()
    n = 0
    for i, batch in enumerate(train_dl):
        n += len(batch["image"])
        if i + 1 >= batches:
            break
    loader_ips = n / (time.perf_counter() - t0)  # includes the first decode of every image (cache fill)

    times: list[float] = []

    class Timer(L.Callback):
        def on_train_batch_start(self, *a):
            self.t = time.perf_counter()

        def on_train_batch_end(self, *a):
            times.append(time.perf_counter() - self.t)

    model = model_from_config(cfg, frames.keypoint_names).use_channels_last(cfg.train.channels_last)
    module = KeypointModule(model, cfg)
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=batches,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Timer()],
        accelerator="cpu",
    )
    t0 = time.perf_counter()
    trainer.fit(module, train_dl)
    total = time.perf_counter() - t0
    steady = times[2:]
    step_ips = 16 * len(steady) / sum(steady)
    end_to_end = 16 * len(times) / total
    write(
        "throughput",
        {
            "model": "resnet18 + heatmap head, 256x256, batch 16, Adam, augmentation on, random init",
            "channels_last": cfg.train.channels_last,
            "batches_timed": len(times),
            "train_images_per_s_steady": round(step_ips, 2),
            "train_images_per_s_end_to_end": round(end_to_end, 2),
            "data_loader_only_images_per_s": round(loader_ips, 2),
            "lightning_pose_reference_images_per_s": 5.1,
            "target_images_per_s": 6.1,
            "meets_target": end_to_end >= 6.1,
        },
    )


def demo(minutes: float) -> None:
    from keyhead.demo import run_demo

    out = RUNS / "demo"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    run = run_demo(out, minutes, progress=False)
    wall = time.perf_counter() - t0
    metrics = json.loads((run / "metrics.json").read_text())["splits"]
    write(
        "demo",
        {
            "wall_s_total": round(wall, 1),
            "train_budget_min": minutes,
            "test_pixel_error": metrics["test"]["pixel_error"],
            "test_rmse_px": metrics["test"]["rmse_px"],
        },
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", default=["throughput", "mirror_mouse", "openfield", "demo"])
    ap.add_argument("--minutes", type=float, default=17.0, help="training budget per dataset (the whole run < 20 min)")
    ap.add_argument("--demo-minutes", type=float, default=4.0)
    args = ap.parse_args()
    for part in args.parts:
        print(f"[bench] {part}", flush=True)
        if part == "throughput":
            throughput()
        elif part == "mirror_mouse":
            accuracy(part, SHARED / "lightning-pose-mirror-mouse-example", args.minutes, [])
        elif part == "openfield":
            accuracy(part, SHARED / "dlc-openfield-Pranav-2018-10-30", args.minutes, [])
        elif part == "demo":
            demo(args.demo_minutes)
        else:
            sys.exit(f"unknown part {part!r}")


if __name__ == "__main__":
    main()
