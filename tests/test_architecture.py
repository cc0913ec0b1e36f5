"""The layering of keyhead is enforced by import-linter contracts (``[tool.importlinter]`` in pyproject.toml).

The first test runs them on the package as it is; the others copy the package, add one forbidden import to the
copy and check that the contracts catch it, so the contracts cannot silently stop checking anything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(package_parent: Path, cwd: Path) -> subprocess.CompletedProcess:
    assert LINT.exists(), "import-linter is not installed: pip install -r requirements.lock (or -e .[dev])"
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_import_contracts_hold():
    res = _lint(ROOT, ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "3 kept, 0 broken" in res.stdout


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("layered")
    shutil.copytree(ROOT / "keyhead", dst / "keyhead", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    return dst


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("io/atomic.py", "import torch", "keyhead.io.atomic -> torch"),  # io/ is torch-free
        (
            "runtime/session.py",
            "import keyhead.models.model",
            "keyhead.runtime is not allowed to import keyhead.models",
        ),
        ("models/model.py", "import keyhead.engine.train", "keyhead.models is not allowed to import keyhead.engine"),
        (
            "data/dataset.py",
            "import keyhead.inference.video",
            "keyhead.data is not allowed to import keyhead.inference",
        ),
    ],
)
def test_a_forbidden_import_breaks_a_contract(copy, module, line, broken):
    path = copy / "keyhead" / module
    original = path.read_text()
    path.write_text(original + f"\n{line}  # deliberate violation\n")
    try:
        res = _lint(copy, copy)
    finally:
        path.write_text(original)
    assert res.returncode != 0, res.stdout[-2000:]
    assert broken in res.stdout.split("Broken contracts")[1], res.stdout[-3000:]
