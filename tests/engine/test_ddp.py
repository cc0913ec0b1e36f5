"""Training on several processes with Lightning's DDP (gloo on CPU) matches one process; only rank 0 writes.

Why the results can match: keyhead's sampler gives every process the same (seed, epoch) order and a contiguous
half of each global batch, augmentation is drawn per (seed, epoch, frame), and DDP averages the two halves'
gradients, which is the gradient of the whole batch when the loss is a mean over equally many labelled points
(no occlusion, no augmentation moving points out of the heatmap). BatchNorm statistics are the one thing that
depends on the per-process batch; torch's SyncBatchNorm (used on GPUs) does not run on CPU, so the test freezes
the backbone (its BatchNorm layers then use their running statistics). What remains is the order of float sums
in the gradient all-reduce: relative differences of ~1e-7 per step, hence the 1e-5 tolerance.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _train(data: Path, out: Path, name: str, devices: int) -> subprocess.CompletedProcess:
    args = [
        "train",
        f"data.path={data}",
        f"output_dir={out}",
        f"name={name}",
        "model.backbone=tiny",
        "data.input_size=[64,64]",
        "train.epochs=3",
        "train.batch_size=4",
        "train.freeze_backbone_epochs=3",
        "train.accelerator=cpu",
        f"train.devices={devices}",
        "augment.enabled=false",
        "--no-progress",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "WORLD_SIZE", "KEYHEAD_DDP_RUN_DIR")}
    env["OMP_NUM_THREADS"] = "1"  # both runs: one thread per process
    return subprocess.run(
        [sys.executable, "-m", "keyhead.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
    )


def _history(run: Path) -> list[dict[str, float]]:
    with open(run / "history.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items() if k != "elapsed_s"} for row in csv.DictReader(f)]


@pytest.mark.slow
def test_two_cpu_processes_match_one(tmp_path):
    from keyhead.data.synth import generate

    data = tmp_path / "data"
    generate(data, n_labeled=16, image_size=(64, 64), video_frames=24, seed=0, occlusion=0.0, progress=False)
    out = tmp_path / "runs"
    one = _train(data, out, "one", 1)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _train(data, out, "two", 2)
    assert two.returncode == 0, two.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["one", "two"], "a DDP process made its own run folder"

    h1, h2 = _history(out / "one"), _history(out / "two")
    assert len(h1) == len(h2) == 3
    for r1, r2 in zip(h1, h2, strict=True):
        for key in r1:
            np.testing.assert_allclose(r2[key], r1[key], rtol=1e-5, atol=1e-6, err_msg=key)
    # it did train (the loss; 3 epochs of a frozen backbone from Lightning Pose's near-uniform initial heatmaps do
    # not yet beat the image-centre guess in pixels)
    assert h1[-1]["train_loss"] < h1[0]["train_loss"] and h1[-1]["val_loss"] < h1[0]["val_loss"]
    m1, m2 = (json.loads((out / n / "metrics.json").read_text())["splits"] for n in ("one", "two"))
    for split in m1:
        np.testing.assert_allclose(m2[split]["pixel_error"], m1[split]["pixel_error"], rtol=1e-4, err_msg=split)
    assert not [p for p in (out / "two").rglob(".*") if p.is_file()], "temporary files left behind"
