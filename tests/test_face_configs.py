"""Every face_* template of the facial-keypoint study trains end to end from the CLI (as shipped, small input)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from keyhead.cli import main
from keyhead.config import template_dir
from keyhead.models.build import load_run

FACE_TEMPLATES = sorted(p.stem for p in template_dir().glob("face_*.yaml"))  # every face template, new ones too


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    from keyhead.data.synth import generate

    out = tmp_path_factory.mktemp("faces") / "data"
    generate(out, kind="face", n_labeled=12, image_size=(160, 160), video_frames=24, seed=0, progress=False)
    return out


def test_the_study_has_its_families():
    study = {"face_regression_cnn", "face_resnet18", "face_unet", "face_dino_query", "face_dynamic"}
    assert study <= set(FACE_TEMPLATES)


@pytest.mark.slow
@pytest.mark.parametrize("template", FACE_TEMPLATES)
def test_face_template_trains_and_loads(faces: Path, tmp_path: Path, template: str):
    main(
        [
            "train",
            str(template_dir() / f"{template}.yaml"),
            f"data.path={faces}",
            f"output_dir={tmp_path}",
            "data.input_size=[64,64]",
            "train.epochs=1",
            "train.freeze_backbone_epochs=0",
            "--no-progress",
        ]
    )
    run = tmp_path / template
    splits = json.loads((run / "metrics.json").read_text())["splits"]
    assert math.isfinite(splits["test"]["pixel_error"])
    assert math.isfinite(splits["train"]["nme"])  # inter-ocular (a single test face may miss an eye corner)
    model, cfg = load_run(run)
    assert cfg.data.in_channels == 1
    kp = model.predict(torch.rand(1, 1, 64, 64))
    assert kp.xy.shape == (1, 68, 2) and ((kp.confidence >= 0) & (kp.confidence <= 1)).all()
