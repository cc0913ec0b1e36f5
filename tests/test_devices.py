"""The GPU paths, run on a CPU-only machine: which device prediction picks, a one-line error for a device that is
not there, and mixed-precision training flags through the real trainer."""

from __future__ import annotations

import json

import pytest
import torch

from keyhead.errors import KeyheadError
from keyhead.models.build import load_run, select_device
from tests.cli_helpers import assert_user_error, cli, leftovers, train_args


def test_auto_takes_a_gpu_when_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert select_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("auto") == torch.device("cuda")  # chosen, not allocated
    assert select_device("cpu") == torch.device("cpu")
    with pytest.raises(KeyheadError, match="choose auto, cpu, cuda, mps"):
        select_device("tpu")


def test_a_missing_gpu_is_a_one_line_error_and_writes_nothing(run_dir, synth, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    video = next((synth / "videos").glob("*.mp4"))
    code, _, err = cli(capsys, "predict", run_dir, video, "--device", "cuda", "--out", tmp_path / "o")
    assert_user_error(code, err, "--device cuda", "--device cpu")
    assert leftovers(tmp_path / "o") == []


def test_prediction_runs_on_the_selected_device(run_dir, synth, tmp_path, capsys):
    model, _ = load_run(run_dir, device="auto")
    assert next(model.parameters()).device.type == select_device("auto").type
    video = next((synth / "videos").glob("*.mp4"))
    code, _, err = cli(capsys, "predict", run_dir, video, "--device", "cpu", "--max-frames", "3", "--out", tmp_path)
    assert code == 0, err
    assert json.loads((tmp_path / f"{video.stem}_video.json").read_text())["n_frames"] == 3


def test_mixed_precision_training_through_the_trainer(synth, tmp_path, capsys):
    """bf16-mixed (the CPU's mixed precision; 16-mixed is CUDA's) through the real CLI and Lightning Trainer."""
    args = train_args(synth, tmp_path, "train.accelerator=cpu", "train.precision=bf16-mixed")
    code, _, err = cli(capsys, *args)
    assert code == 0, err
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["splits"]["test"]["pixel_error"] > 0
