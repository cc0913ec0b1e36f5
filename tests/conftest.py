from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.cli_helpers import SIZE, train_args

SHARED_DATA = Path(
    os.environ.get("KEYHEAD_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets beside the project (../shared/data); tests using it skip cleanly when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA


# --- a tiny synthetic project and a run trained on it through the real CLI (one of each per test module) ---------


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from keyhead.data.synth import generate

    out = tmp_path_factory.mktemp("synth") / "data"
    generate(out, n_labeled=16, image_size=(SIZE, SIZE), video_frames=24, seed=0, occlusion=0.0, progress=False)
    return out


@pytest.fixture
def project(synth: Path, tmp_path: Path) -> Path:
    """A private copy of the synthetic project, to break."""
    dst = tmp_path / "project"
    shutil.copytree(synth, dst, ignore=shutil.ignore_patterns("videos"))
    return dst


@pytest.fixture(scope="module")
def run_dir(synth: Path, tmp_path_factory) -> Path:
    from keyhead.cli import main

    runs = tmp_path_factory.mktemp("runs")
    main([*train_args(synth, runs), "train.epochs=1"])
    return runs / "r"


@pytest.fixture
def run_copy(run_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst)
    return dst
