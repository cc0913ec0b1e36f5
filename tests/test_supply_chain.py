"""Supply chain: the lock is hashed and installed with --require-hashes; the ranges exclude known-malicious releases."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
# lightning / pytorch-lightning 2.6.2 and 2.6.3 ran credential-stealing code on import (GHSA-w37p-236h-pfx3)
MALICIOUS = {"lightning": ("2.6.2", "2.6.3"), "pytorch-lightning": ("2.6.2", "2.6.3")}


LOCKS = ("requirements.lock", "requirements-light.lock", "requirements-pip.lock")


def _lock_entries(lock: str = "requirements.lock") -> dict[str, list[tuple[str, str]]]:
    """name -> [(version, the entry's text with its hashes)], one per marker variant."""
    text = (ROOT / lock).read_text()
    entries: dict[str, list[tuple[str, str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        first = block.splitlines()[0]
        if first.startswith("#") or not first.strip():
            continue
        m = re.match(r"([A-Za-z0-9_.\-]+)==([^\s;\\]+)", first)
        assert m, f"{lock}: {first!r} is not an exact pin"
        entries.setdefault(m.group(1).lower(), []).append((m.group(2), block))
    return entries


@pytest.mark.parametrize("lock", LOCKS)
def test_every_locked_package_is_pinned_with_hashes(lock):
    entries = _lock_entries(lock)
    assert entries
    for name, variants in entries.items():
        for version, block in variants:
            assert re.search(r"--hash=sha256:[0-9a-f]{64}", block), f"{lock}: {name}=={version} has no hash"


def test_the_light_lock_agrees_with_the_full_lock():
    full, light = _lock_entries(), _lock_entries("requirements-light.lock")
    for name, variants in light.items():
        assert name in full, f"requirements-light.lock: {name} is not in requirements.lock"
        assert {v for v, _ in variants} <= {v for v, _ in full[name]}, name


def test_the_lock_keeps_the_matching_torch_pair_and_no_malicious_release():
    entries = _lock_entries()
    assert [v for v, _ in entries["torch"]] == ["2.14.1"]
    assert [v for v, _ in entries["torchvision"]] == ["0.29.2"]
    for name, bad in MALICIOUS.items():
        for version, _ in entries.get(name, []):
            assert version not in bad, f"requirements.lock pins the malicious {name}=={version}"


def test_the_ranges_exclude_the_malicious_releases():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    for name, bad in MALICIOUS.items():
        (req,) = [r for r in requirements if r.name.lower() == name]
        for version in bad:
            assert not req.specifier.contains(version), f"pyproject.toml admits {name}=={version}"
        assert req.specifier.contains("2.6.6")


def test_make_installs_with_require_hashes():
    """Every pip install of a lock is hash-checked, pip itself first (pip < 24 refuses hashed extras)."""
    makefile = (ROOT / "Makefile").read_text()
    install = [line for line in makefile.splitlines() if "pip install" in line and "-r requirements" in line]
    assert [line.split("-r ")[1].strip() for line in install] == ["requirements-pip.lock", "requirements.lock"]
    assert all("--require-hashes" in line for line in install), install
