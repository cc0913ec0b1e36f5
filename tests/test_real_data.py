"""Training reads the real projects as they are (no conversion step): one quick epoch each, tiny backbone."""

from __future__ import annotations

import json

import pytest

from keyhead.config import load_config
from keyhead.engine.train import train


@pytest.mark.parametrize(
    "folder,n_kp",
    [
        ("lightning-pose-mirror-mouse-example", 17),
        ("dlc-openfield-Pranav-2018-10-30", 4),
        ("dlc-Reaching-Mackenzie-2018-08-30", 5),
    ],
    ids=["lightning-pose", "dlc-project", "dlc-mixed-sizes"],
)
def test_one_epoch_on_real_project(shared_data, tmp_path, folder: str, n_kp: int):
    cfg = load_config(
        None,
        [
            f"data.path={shared_data / folder}",
            f"output_dir={tmp_path}",
            "model.backbone=tiny",
            "data.input_size=[128,128]",
            "train.epochs=1",
            "train.batch_size=8",
        ],
    )
    run = train(cfg, progress=False)
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["keypoints"]) == n_kp
    test = metrics["splits"]["test"]
    assert test["n_frames"] >= 1 and test["pixel_error"] is not None
    assert len(test["per_keypoint"]) == n_kp
