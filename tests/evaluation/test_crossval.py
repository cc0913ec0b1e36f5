"""`keyhead evaluate --cv K`: K-fold cross-validation through the real CLI and training loop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from keyhead.crossval import fold_splits
from keyhead.errors import KeyheadError
from tests.cli_helpers import TINY_SETTINGS, assert_user_error, cli, leftovers


@pytest.mark.parametrize("n,k", [(16, 3), (10, 10), (7, 2)])
def test_every_frame_is_tested_exactly_once_and_never_trained_on_in_its_fold(n: int, k: int):
    splits = fold_splits(n, k, 0.1, seed=3)
    tested = sorted(i for s in splits for i in s["test"])
    assert tested == list(range(n))
    for s in splits:
        parts = [set(s["train"]), set(s["val"]), set(s["test"])]
        assert set.union(*parts) == set(range(n)) and sum(map(len, parts)) == n  # disjoint, complete
        assert s["val"] and s["train"]
    sizes = [len(s["test"]) for s in splits]
    assert max(sizes) - min(sizes) <= 1
    assert fold_splits(n, k, 0.1, seed=3) == splits  # deterministic
    assert fold_splits(n, k, 0.1, seed=4) != splits or n == k


def test_bad_fold_counts_are_refused():
    with pytest.raises(KeyheadError, match="--cv 1"):
        fold_splits(10, 1, 0.1, 0)
    with pytest.raises(KeyheadError, match="--cv 11"):
        fold_splits(10, 11, 0.1, 0)


def test_cv_from_the_cli_trains_k_runs_and_summarises_them(synth: Path, tmp_path: Path, capsys, monkeypatch):
    # `make demo` leaves a demo/ folder (no config.yaml) where users type commands: the template name still wins
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo" / "data").mkdir(parents=True)
    out = tmp_path / "cv"
    sets = [f"data.path={synth}", *TINY_SETTINGS]
    args = ["evaluate", "demo", "--cv", "3", "--out", out, "--no-progress"]
    for s in sets:
        args += ["--set", s]
    code, stdout, err = cli(capsys, *args)
    assert code == 0, err
    payload = json.loads((out / "cv.json").read_text())
    assert payload["k"] == 3 and len(payload["folds"]) == 3
    tested = []
    for fold in payload["folds"]:
        run = Path(fold["run_dir"])
        metrics = json.loads((run / "metrics.json").read_text())["splits"]["test"]
        assert fold["test"]["pixel_error"] == metrics["pixel_error"]
        split = json.loads((run / "split.json").read_text())
        tested += split["test"]
        assert not set(split["test"]) & set(split["train"])
    assert len(tested) == len(set(tested)) == 16  # every synthetic labelled frame once
    errors = [f["test"]["pixel_error"] for f in payload["folds"]]
    summary = payload["summary"]["pixel_error"]
    assert summary["mean"] == pytest.approx(np.mean(errors)) and summary["std"] == pytest.approx(np.std(errors, ddof=1))
    assert summary["min"] == min(errors) and summary["max"] == max(errors)
    table = (out / "cv.md").read_text()
    assert "| **mean** |" in table and "| **std** |" in table and "3-fold" in table
    assert "+-" in stdout

    # a second run skips the finished folds and gives the same summary
    code, stdout, err = cli(capsys, *args)
    assert code == 0 and stdout.count("skipped (finished)") == 3
    assert json.loads((out / "cv.json").read_text())["summary"] == payload["summary"]


def test_a_folder_that_is_neither_a_run_nor_a_template_is_refused(tmp_path: Path, capsys):
    (tmp_path / "notarun").mkdir()
    code, _, err = cli(capsys, "evaluate", tmp_path / "notarun", "--cv", "3")
    assert_user_error(code, err, "notarun", "config.yaml")


def test_cv_options_without_cv_are_refused(run_dir: Path, capsys):
    code, _, err = cli(capsys, "evaluate", run_dir, "--set", "train.epochs=2")
    assert_user_error(code, err, "--cv")


@pytest.mark.parametrize(
    "extra,needle",
    [(["--decoder", "argmax"], "--set model.decoder=argmax"), (["--flip"], "--flip"), (["--data", "x"], "--data")],
    ids=["decoder", "flip", "data"],
)
def test_single_run_options_with_cv_are_refused_not_ignored(
    tmp_path: Path, capsys, monkeypatch, extra: list[str], needle: str
):
    monkeypatch.chdir(tmp_path)  # where the folds' runs would go
    code, _, err = cli(capsys, "evaluate", "heatmap_efficientnet_lite0", "--cv", "3", *extra)
    assert_user_error(code, err, needle)
    assert leftovers(tmp_path) == []
