"""Nothing half-written, exact resume after kill -9 or Ctrl-C, and determinism (same seed -> same metrics)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from keyhead.cli import main
from keyhead.engine.checkpoint import load_optimizer, load_training_state, save_training_state
from keyhead.engine.sampler import EpochBatchSampler
from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_write
from keyhead.models.weights import load_weights

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from keyhead.data.synth import generate

    out = tmp_path_factory.mktemp("synth") / "data"
    generate(out, n_labeled=16, image_size=(64, 64), video_frames=24, seed=0, progress=False)
    return out


def train_args(data: Path, out: Path, name: str, epochs: int) -> list[str]:
    return [
        "train",
        f"data.path={data}",
        f"output_dir={out}",
        f"name={name}",
        "model.backbone=tiny",
        "data.input_size=[64,64]",
        f"train.epochs={epochs}",
        "train.batch_size=4",
        "train.milestones=[3,6]",
        "train.threads=1",
        "--no-progress",
    ]


def history(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in csv.DictReader(f)]


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())["splits"]


def assert_same_results(a: Path, b: Path) -> None:
    ha, hb = history(a), history(b)
    assert len(ha) == len(hb)
    for ra, rb in zip(ha, hb, strict=True):
        for key in ra:
            np.testing.assert_allclose(float(ra[key]), float(rb[key]), rtol=1e-6, atol=1e-7, err_msg=key)
    ma, mb = metrics(a), metrics(b)
    assert ma.keys() == mb.keys()
    for split in ma:
        for key in ("pixel_error", "rmse_px", "median_px"):
            np.testing.assert_allclose(ma[split][key], mb[split][key], rtol=1e-5, err_msg=f"{split} {key}")


def epochs_done(run: Path) -> int:
    """Finished epochs according to the resume checkpoint (0 when none yet or mid-write)."""
    try:
        state = load_training_state(run / "last.safetensors")
    except KeyheadError:
        return 0
    return 0 if state is None else int(state["epoch"]) + 1


def start_training(args: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log, "w") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "keyhead.cli", *args],
            cwd=ROOT,
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
            # a background shell starts jobs with Ctrl-C ignored; the child must see it as a terminal user's would
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )


def wait_for_epochs(proc: subprocess.Popen, run: Path, n: int, log: Path, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while epochs_done(run) < n:
        assert proc.poll() is None, f"training ended before {n} epochs: {log.read_text()[-2000:]}"
        assert time.monotonic() - t0 < timeout, "training too slow"
        time.sleep(0.02)


# --- fast: the pieces ----------------------------------------------------------------------------------------------


def test_epoch_batches_depend_only_on_seed_and_epoch():
    a, b = EpochBatchSampler(10, 4, seed=3), EpochBatchSampler(10, 4, seed=3)
    for _ in range(3):  # a's epochs 0..2 drawn in order, b jumps straight to epoch 2
        a.set_epoch(_)
        first = list(a)
    b.set_epoch(2)
    assert list(b) == first
    assert len(first) == 2 and all(len(x) == 4 for x in first)
    b.set_epoch(1)
    assert list(b) != first


def test_epoch_batches_shared_over_processes_are_the_global_batches(monkeypatch):
    sampler = EpochBatchSampler(13, 6, seed=0)
    sampler.set_epoch(5)
    whole = list(sampler)
    shares = []
    for rank in range(2):
        monkeypatch.setattr("keyhead.engine.sampler.rank_and_world", lambda r=rank: (r, 2))
        shares.append(list(sampler))
    assert [a + b for a, b in zip(*shares, strict=True)] == whole
    assert [len(s) for s in shares[0]] == [3, 3]


def test_resume_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    path = tmp_path / "last.safetensors"
    save_training_state(model, opt, path, {"epoch": 4, "best": 1.5, "wait": 2})
    assert load_training_state(path) == {"epoch": 4, "best": 1.5, "wait": 2}
    clone = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    load_weights(clone, path)
    for a, b in zip(model.state_dict().values(), clone.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    opt2 = torch.optim.Adam(clone.parameters(), lr=5e-4)
    load_optimizer(opt2, path, keep_lr=True)
    assert opt2.param_groups[0]["lr"] == 5e-4  # the schedule's rate for the resumed epoch wins
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert s1.keys() == s2.keys()
    for k in s1:
        for name in s1[k]:
            assert torch.equal(torch.as_tensor(s1[k][name]), torch.as_tensor(s2[k][name])), name
    assert not list(tmp_path.glob(".*")), "temporary files left behind"


def test_atomic_write_leaves_the_old_file_when_interrupted(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_write(target) as f:
        f.write("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_resume_needs_a_finished_epoch(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("name: x\n")
    with pytest.raises(SystemExit) as exc:
        main(["train", "--resume", str(tmp_path)])
    assert exc.value.code == 2
    assert "no epoch finished" in capsys.readouterr().err


def test_same_seed_same_metrics(synth, tmp_path):
    for name in ("a", "b"):
        main(train_args(synth, tmp_path, name, 2))
    assert_same_results(tmp_path / "a", tmp_path / "b")
    for name in ("config.yaml", "split.json"):
        a, b = ((tmp_path / run / name).read_text().replace(f"name: {run}", "") for run in ("a", "b"))
        assert a == b


# --- slow: real processes, killed ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_then_resume_ends_with_the_uninterrupted_metrics(synth, tmp_path):
    epochs = 9
    main(train_args(synth, tmp_path, "reference", epochs))
    log = tmp_path / "killed.log"
    proc = start_training(train_args(synth, tmp_path, "killed", epochs), log)
    run = tmp_path / "killed"
    try:
        wait_for_epochs(proc, run, 3, log)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = epochs_done(run)
    assert 3 <= done < epochs, f"killed after {done} epochs; the test needs an interrupted run"
    assert not (run / "metrics.json").exists()
    (run / ".last.k1ll3d9x.safetensors").write_bytes(b"half a checkpoint")  # as a kill during a write leaves it
    main(["train", "--resume", str(run), "--no-progress"])
    assert_same_results(tmp_path / "reference", run)
    assert not [p for p in run.rglob(".*") if p.is_file()], "temporary files left behind"


@pytest.mark.slow
def test_ctrl_c_leaves_a_resumable_run(synth, tmp_path):
    log = tmp_path / "interrupted.log"
    proc = start_training(train_args(synth, tmp_path, "interrupted", 9), log)
    run = tmp_path / "interrupted"
    try:
        wait_for_epochs(proc, run, 2, log)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = log.read_text()
    assert code != 0, output
    assert "Traceback" not in output, output
    assert "interrupted" in output and "--resume" in output, output
    assert epochs_done(run) >= 2
    main(["train", "--resume", str(run), "--no-progress"])
    assert epochs_done(run) == 9 and (run / "metrics.json").is_file()


@pytest.mark.parametrize(
    ("overrides", "deterministic", "ddp"),
    [
        ([], "warn", False),
        (["train.deterministic=true"], True, False),
        (["train.deterministic=false"], False, False),
        (["train.devices=2", "train.accelerator=cpu"], "warn", True),
        (["train.devices='3'", "train.accelerator=cpu"], "warn", True),
    ],
    ids=["default", "strict", "fast", "ddp-2", "ddp-string"],
)
def test_trainer_settings(overrides, deterministic, ddp):
    from keyhead.config import load_config
    from keyhead.engine.resume import trainer_kwargs

    kwargs = trainer_kwargs(load_config(None, overrides))
    assert kwargs["deterministic"] == deterministic
    assert kwargs["use_distributed_sampler"] is False  # keyhead's sampler shares the batches itself
    assert kwargs.get("benchmark", False) is (deterministic is False)
    if ddp:
        strategy = kwargs["strategy"]
        assert type(strategy).__name__ == "DDPStrategy" and strategy._process_group_backend == "gloo"
        assert kwargs["sync_batchnorm"] is False  # torch's SyncBatchNorm needs GPUs
    else:
        assert "strategy" not in kwargs
