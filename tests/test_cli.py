"""End to end through the CLI on a tiny synthetic dataset and a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keyhead.cli import main


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    from keyhead.data.synth import generate

    out = tmp_path_factory.mktemp("synth")
    generate(out / "data", n_labeled=16, image_size=(64, 64), video_frames=24, seed=0, progress=False)
    return out / "data"


@pytest.fixture(scope="module")
def run_dir(synth_dir: Path, tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    main(
        [
            "train",
            f"data.path={synth_dir}",
            f"output_dir={runs}",
            "name=tiny",
            "model.backbone=tiny",
            "data.input_size=[64,64]",
            "train.epochs=2",
            "train.batch_size=4",
            "--no-progress",
        ]
    )
    return runs / "tiny"


def test_train_writes_a_complete_run(run_dir: Path):
    for name in (
        "config.yaml",
        "split.json",
        "keypoints.txt",
        "skeleton.json",
        "model.safetensors",
        "last.safetensors",
        "history.csv",
        "metrics.json",
        "training_curve.png",
        "overlays_test.png",
        "predictions_test.csv",
    ):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    test = metrics["splits"]["test"]
    for key in ("n_frames", "pixel_error", "rmse_px", "mse_normalized", "pck", "per_keypoint"):
        assert key in test
    assert test["n_frames"] >= 1 and test["pixel_error"] > 0
    assert not list(run_dir.glob("*.pt")) and not list(run_dir.glob("*.ckpt"))  # no pickle anywhere


def test_resume_continues(run_dir: Path, tmp_path):
    main(["train", "--resume", str(run_dir), "train.epochs=3", "--no-progress"])
    hist = (run_dir / "history.csv").read_text().splitlines()
    assert len(hist) == 1 + 3 and hist[-1].startswith("2")


def test_evaluate_and_predict(run_dir: Path, synth_dir: Path, tmp_path):
    main(["evaluate", str(run_dir), "--no-progress"])
    out = tmp_path / "pred"
    main(["predict", str(run_dir), str(synth_dir / "labeled-data"), "--out", str(out), "--no-progress"])
    lines = (out / "predictions.csv").read_text().splitlines()
    assert lines[2].startswith("coords") and lines[2].count("likelihood") > 0
    assert len(lines) == 3 + 16
    assert len(list((out / "overlays").glob("*.png"))) == 16


def test_models_lists_components(capsys):
    main(["models"])
    out = capsys.readouterr().out
    assert "heatmap" in out and "subpixel_maxima" in out and "efficientnet_lite0" in out


@pytest.mark.parametrize(
    "args,needle",
    [
        (["train", "train.epochz=3"], "did you mean 'epochs'"),
        (["train", "data.path=/nonexistent/labels"], "/nonexistent/labels"),
        (["evaluate", "/nonexistent/run"], "does not exist"),
        (["train", "model.head=heatmapp", "data.path=."], "did you mean"),
    ],
    ids=["unknown-key", "missing-data", "missing-run", "unknown-head"],
)
def test_bad_input_is_one_line_and_exit_2(args, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "args,needle",
    [
        (["train", "--out", "x"], "--out"),
        (["nosuchcommand"], "nosuchcommand"),
        (["predict"], "RUN_DIR"),
    ],
    ids=["unknown-option", "unknown-command", "missing-argument"],
)
def test_usage_errors_are_usage_errors_not_internal_errors(args, needle, capsys):
    """A mistyped command line gets click's usage message and exit status 2, never "internal error"."""
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert "internal error" not in err and "Traceback" not in err
    assert needle.lower() in err.lower() and "Usage:" in err


def test_load_run_predicts_like_the_cli(run_dir: Path, synth_dir: Path):
    import numpy as np
    import torch

    import keyhead
    from keyhead.data.dataset import read_image

    model, cfg = keyhead.load_run(run_dir)
    img = read_image(synth_dir / "labeled-data" / sorted(p.name for p in (synth_dir / "labeled-data").iterdir())[0])
    x = torch.from_numpy(img.transpose(2, 0, 1).copy()).float()[None] / 255  # already 64x64: no resize
    kp = model.predict(x)
    assert kp.xy.shape == (1, len(model.keypoint_names), 2)
    assert np.isfinite(kp.xy.numpy()).all()


def test_synth_command(tmp_path):
    main(["synth", str(tmp_path / "s"), "--n-labeled", "4", "--size", "64", "--video-frames", "8"])
    assert (tmp_path / "s" / "CollectedData.csv").is_file()
    assert len(list((tmp_path / "s" / "labeled-data").glob("*.png"))) == 4
    assert (tmp_path / "s" / "videos" / "synth_vid.mp4").stat().st_size > 0


def test_config_templates(capsys):
    main(["config", "list"])
    assert "heatmap_efficientnet_lite0" in capsys.readouterr().out
    main(["config", "show", "demo"])
    assert "efficientnet_lite0" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    """`keyhead demo` with a tiny budget: synth -> train -> evaluate -> predict -> plots, all files written."""
    main(["demo", "--out", str(tmp_path), "--minutes", "0.05", "--no-progress"])
    run = tmp_path / "runs" / "demo"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["splits"]["test"]["n_frames"] == 20
    for name in ("training_curve.png", "overlays_test.png", "predictions/predictions.csv"):
        assert (run / name).is_file(), name
    assert len(list((run / "predictions" / "overlays").glob("*.png"))) == 20
