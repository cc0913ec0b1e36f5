"""Helpers for tests that drive the real CLI on broken input: run it in-process, check the one-line error."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyhead.cli import main

SIZE = 64
# The smallest training settings, as key=value overrides: tiny backbone, 64x64, one epoch, no augmentation.
TINY_SETTINGS = (
    "model.backbone=tiny",
    "model.pretrained=false",
    f"data.input_size=[{SIZE},{SIZE}]",
    "train.epochs=1",
    "train.batch_size=4",
    "augment.enabled=false",
)


def cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """Run ``keyhead ARGS`` in-process; returns (exit status, stdout, stderr)."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_user_error(code: int, err: str, *needles: str) -> str:
    """Exit status 2, no traceback, and a last stderr line ``keyhead: error: ...`` that contains every needle."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    line = lines[-1]
    assert code == 2, (code, err)
    assert line.startswith("keyhead: error: "), err
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def leftovers(folder: Path) -> list[Path]:
    """Files under ``folder`` (none expected after a failed command)."""
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        f"data.path={data}",
        f"output_dir={out}",
        "name=r",
        "model.backbone=tiny",
        f"data.input_size=[{SIZE},{SIZE}]",
        "train.epochs=1",
        "train.batch_size=4",
        "augment.enabled=false",
        "--no-progress",
        *extra,
    ]


def csv_lines(project: Path) -> list[str]:
    return (project / "CollectedData.csv").read_text().splitlines()


def write_csv(project: Path, lines: list[str]) -> None:
    (project / "CollectedData.csv").write_text("\n".join(lines) + "\n")


def set_cell(project: Path, row: int, column: int, value: str) -> str:
    """Set a cell of CollectedData.csv (row and column 1-based, as messages count them); returns the image path."""
    lines = csv_lines(project)
    cells = lines[row - 1].split(",")
    cells[column - 1] = value
    lines[row - 1] = ",".join(cells)
    write_csv(project, lines)
    return cells[0]


def first_labelled_column(project: Path, row: int) -> int:
    cells = csv_lines(project)[row - 1].split(",")
    return next(j for j, c in enumerate(cells[1:], start=2) if c)
