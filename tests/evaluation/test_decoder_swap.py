"""`keyhead evaluate RUN --decoder NAME`: another heatmap decoder on the same weights, kept beside the run's own."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli_helpers import assert_user_error, cli


def test_another_decoder_writes_its_own_folder_and_keeps_the_runs_metrics(run_copy: Path, capsys):
    before = (run_copy / "metrics.json").read_text()
    calibration = (run_copy / "calibration.json").read_bytes() if (run_copy / "calibration.json").is_file() else None
    code, out, err = cli(capsys, "evaluate", run_copy, "--decoder", "argmax", "--no-progress")
    assert code == 0, err
    folder = run_copy / "eval-decoder-argmax"
    metrics = json.loads((folder / "metrics.json").read_text())
    own = json.loads(before)
    assert set(metrics["splits"]) == set(own["splits"])
    # the same weights, decoded differently: close positions, not the same numbers
    for split in own["splits"]:
        a, b = own["splits"][split]["pixel_error"], metrics["splits"][split]["pixel_error"]
        assert a != b and abs(a - b) < 0.5 * a + 4.0, (split, a, b)
    assert (folder / "predictions_test.csv").is_file()
    assert (run_copy / "metrics.json").read_text() == before, "the run's own metrics were overwritten"
    if calibration is not None:
        assert (run_copy / "calibration.json").read_bytes() == calibration, "the run's calibration was refitted"


def test_an_unknown_decoder_is_a_one_line_error_and_writes_nothing(run_copy: Path, capsys):
    code, _, err = cli(capsys, "evaluate", run_copy, "--decoder", "dark", "--no-progress")
    assert_user_error(code, err, "unknown decoder 'dark'", "argmax")
    assert not list(run_copy.glob("eval-decoder-*"))
