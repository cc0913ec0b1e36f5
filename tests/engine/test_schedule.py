"""The cosine schedule over the run's budget (epochs or minutes), through the real trainer and CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from keyhead.cli import main
from keyhead.engine.callbacks import BudgetSchedule
from tests.cli_helpers import train_args as cli_train_args


def train_args(data: Path, out: Path, name: str, *extra: str) -> list[str]:
    return cli_train_args(data, out, f"name={name}", "train.threads=1", *extra)


def rates(run: Path) -> list[float]:
    with open(run / "history.csv", newline="") as f:
        return [float(row["lr"]) for row in csv.DictReader(f)]


def test_cosine_warms_up_then_anneals_to_the_final_rate_by_the_last_epoch(synth, tmp_path):
    main(
        train_args(
            synth,
            tmp_path,
            "cos",
            "train.epochs=6",
            "train.schedule=cosine",
            "train.warmup=0.2",
            "train.final_lr=0.01",
            "train.lr=0.001",
            "train.milestones=[1,2]",
        )
    )
    lr = rates(tmp_path / "cos")
    assert len(lr) == 6
    assert lr[0] < lr[1], "the first epoch warms up"
    assert all(a > b for a, b in zip(lr[1:-1], lr[2:], strict=True)), f"anneals after the warm-up: {lr}"
    # the last step of the last epoch is just short of the end: close to lr * final_lr, far below the peak
    assert 1e-5 <= lr[-1] < 1e-4
    assert max(lr) <= 0.001


def test_multistep_is_the_default_and_keeps_its_milestones(synth, tmp_path):
    main(train_args(synth, tmp_path, "steps", "train.epochs=3", "train.milestones=[1,2]", "train.lr=0.001"))
    assert rates(tmp_path / "steps") == pytest.approx([0.001, 0.0005, 0.00025])  # each epoch's own rate


def test_the_time_budget_drives_the_schedule_when_it_ends_the_run_first():
    s = BudgetSchedule(1e-3, epochs=1000, max_minutes=1.0, elapsed_s=30.0)
    p = s.progress(epoch=0, batch_idx=0, batches=10)
    assert 0.5 <= p < 0.51  # half of the minute was spent by an earlier segment, the epochs have barely started
    assert s.factor(p) == pytest.approx(0.5, abs=0.02)
    assert BudgetSchedule(1e-3, epochs=10).progress(epoch=5, batch_idx=5, batches=10) == pytest.approx(0.55)


def test_a_resumed_run_gets_what_is_left_of_its_time_budget_not_a_new_one(synth, tmp_path):
    main(train_args(synth, tmp_path, "budget", "train.epochs=2"))
    run = tmp_path / "budget"
    main(["train", "--resume", str(run), "train.epochs=5", "train.max_minutes=0.0001", "--no-progress"])
    assert len(rates(run)) == 2, "the budget was already spent by the first segment"
    assert (run / "metrics.json").is_file()
