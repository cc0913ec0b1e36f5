"""JSON and YAML files read with limits, so that no file can hang keyhead or flood the terminal.

Both readers build plain data only (``json`` / ``yaml.safe_load``: nothing in a file can run code), cap the file
size, the nesting depth and (YAML) the number of aliases (a "billion laughs" file is refused before it expands),
and turn every failure into one short ``KeyheadError`` line that names the file. :func:`short` shortens any value
quoted in an error message.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from keyhead.errors import KeyheadError

MAX_YAML_BYTES = 8 * 2**20
MAX_JSON_BYTES = 2 * 2**30  # COCO annotation files reach hundreds of MB
MAX_DEPTH = 64
MAX_ALIASES = 256


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to about ``limit`` characters (error messages quote values, never whole files)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + " ..."


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of lists / dicts, without recursion (a deep file cannot exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((v, d + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


def _read_text(path: Path, max_bytes: int, what: str) -> str:
    if not path.is_file():
        raise KeyheadError(f"{path}: file not found; check the path")
    if path.stat().st_size > max_bytes:
        raise KeyheadError(f"{path}: {path.stat().st_size / 2**20:.0f} MiB is too large for {what}; check the file")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise KeyheadError(f"{path}: not UTF-8 text; {what} must be a text file") from None


def read_json(path: str | os.PathLike, what: str = "a JSON file", max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parse a JSON file; a clear one-line error for a missing, huge, malformed or too deeply nested file."""
    path = Path(path)
    text = _read_text(path, max_bytes, what)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KeyheadError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); fix or rewrite the file"
        ) from None
    except RecursionError:
        raise KeyheadError(f"{path}: nested more than the JSON reader allows; {what} is never that deep") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise KeyheadError(f"{path}: not valid JSON ({str(exc)[:80]}); fix or rewrite the file") from None
    if _depth(data, MAX_DEPTH) > MAX_DEPTH:
        raise KeyheadError(f"{path}: nested deeper than {MAX_DEPTH} levels; {what} is never that deep")
    return data


class _CappedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that counts aliases while it composes, so a "billion laughs" file stops early."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _TooManyAliases
        return super().compose_node(parent, index)


class _TooManyAliases(Exception):
    pass


def read_yaml(path: str | os.PathLike, what: str = "a YAML file", max_bytes: int = MAX_YAML_BYTES) -> Any:
    """Parse a YAML file safely (plain data only) with caps on size, aliases and depth."""
    path = Path(path)
    text = _read_text(path, max_bytes, what)
    loader = None
    try:
        loader = _CappedLoader(text)  # a SafeLoader, driven directly: plain data only
        data = loader.get_single_data()
    except _TooManyAliases:
        raise KeyheadError(f"{path}: more than {MAX_ALIASES} YAML aliases; write the values out") from None
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0][:100] if str(exc).strip() else type(exc).__name__
        raise KeyheadError(f"{path}: not valid YAML ({first}); fix the file") from None
    except RecursionError:
        raise KeyheadError(f"{path}: nested more than the YAML reader allows; {what} is never that deep") from None
    finally:
        if loader is not None:
            loader.dispose()
    if _depth(data, MAX_DEPTH) > MAX_DEPTH:
        raise KeyheadError(f"{path}: nested deeper than {MAX_DEPTH} levels; {what} is never that deep")
    return data
