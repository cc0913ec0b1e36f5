"""Every ``keyhead ...`` command in the README's code blocks names a real subcommand and real options.

Extend by adding README text: each new command line in a fenced code block is checked here automatically (the
commands themselves are run end to end by the tests of their features).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer

from keyhead.cli import app, main

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands(text: str) -> list[str]:
    """The ``keyhead ...`` command lines inside fenced code blocks (comments and continuation lines joined)."""
    commands = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            for part in re.split(r"&&|;|\|", line):
                tokens = shlex.split(part, comments=True)
                if tokens and Path(tokens[0]).name == "keyhead":
                    commands.append(shlex.join(tokens))
    return commands


def resolve(tokens: list[str]) -> tuple[Any, list[str]]:
    """The (click) command a token list invokes, through groups like ``config list``, and the tokens after it."""
    cmd = typer.main.get_command(app)
    rest = tokens[1:]
    while hasattr(cmd, "commands") and rest and not rest[0].startswith("-"):  # a group (typer vendors click)
        sub = cmd.commands.get(rest[0])
        assert sub is not None, f"unknown subcommand {rest[0]!r} in: {shlex.join(tokens)}"
        cmd, rest = sub, rest[1:]
    return cmd, rest


def check_command(line: str) -> None:
    tokens = shlex.split(line)
    cmd, rest = resolve(tokens)
    known = {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)} | {"--help", "--debug"}
    for tok in rest:
        if tok.startswith("--"):
            assert tok.split("=", 1)[0] in known, f"{tok} is not an option of `keyhead {cmd.name}` in: {line}"


COMMANDS = readme_commands(README.read_text(encoding="utf-8")) if README.is_file() else []


def test_readme_has_commands():
    assert len(COMMANDS) >= 5


@pytest.mark.parametrize("line", COMMANDS, ids=range(len(COMMANDS)))
def test_readme_command_exists(line: str, capsys):
    check_command(line)
    cmd_tokens = shlex.split(line)
    path = [t for t in cmd_tokens[1:3] if not t.startswith("-")]
    main([*path[: 2 if path[:1] == ["config"] else 1], "--help"])  # the help of the (sub)command renders
    assert "Usage" in capsys.readouterr().out


def test_checker_catches_mistakes():
    with pytest.raises(AssertionError, match="unknown subcommand"):
        check_command("keyhead trian cfg.yaml")
    with pytest.raises(AssertionError, match="not an option"):
        check_command("keyhead predict runs/x img.png --runtime onnx --ouput preds/")
    assert readme_commands("```bash\nkeyhead export runs/a --format onnx  # note\nls\n```\n") == [
        "keyhead export runs/a --format onnx"
    ]
