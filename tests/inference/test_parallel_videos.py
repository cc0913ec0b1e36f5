"""Many videos through the real CLI: folders expanded, ``--jobs N`` (one model, videos in parallel) gives the same
numbers as one by one, ``--shard I/N`` splits a batch between processes (a job array) without clashes, bad values
are one-line errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from keyhead.cli import main
from keyhead.errors import KeyheadError
from keyhead.inference.parallel import parse_shard, run_workers, select_shard, split_inputs
from tests.cli_helpers import assert_user_error, cli, leftovers
from tests.inference.test_video import write_video

ROOT = Path(__file__).resolve().parents[2]
LENGTHS = {"c_walk": 9, "a_rest": 12, "b_run": 7}  # given unsorted; sorted by name: a_rest, b_run, c_walk


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """A folder of three short videos of different lengths (and a hidden file that is not a video)."""
    folder = tmp_path_factory.mktemp("session") / "videos"
    folder.mkdir()
    for stem, n in LENGTHS.items():
        write_video(folder / f"{stem}.mp4", n=n, size=(48, 40))
    (folder / "._a_rest.mp4").write_bytes(b"macOS resource fork, not a video")
    return folder


@pytest.fixture(scope="module")
def reference(run_dir: Path, videos: Path, tmp_path_factory) -> Path:
    """The folder predicted one video after another (``--jobs 1``, unsharded)."""
    out = tmp_path_factory.mktemp("reference")
    main(["predict", str(run_dir), str(videos), "--out", str(out), "--no-progress"])
    return out


def _read(csv: Path) -> pd.DataFrame:
    return pd.read_csv(csv, header=[0, 1, 2], index_col=0)


def _assert_same_predictions(out: Path, ref: Path) -> None:
    """The same files as ``ref`` (CSVs and summaries), the CSVs equal within 1e-4 (px and confidence)."""
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in ref.iterdir())
    for csv in sorted(ref.glob("*.csv")):
        got, want = _read(out / csv.name), _read(csv)
        assert list(got.columns) == list(want.columns) and got.index.tolist() == want.index.tolist(), csv.name
        assert np.allclose(got.to_numpy(float), want.to_numpy(float), atol=1e-4, equal_nan=True), csv.name


def test_folder_of_videos_is_expanded(reference: Path):
    names = sorted(p.name for p in reference.iterdir())
    assert names == sorted(f"{s}{suffix}" for s in LENGTHS for suffix in (".csv", "_video.json"))
    for stem, n in LENGTHS.items():
        assert len(_read(reference / f"{stem}.csv")) == n


def test_folder_with_images_and_videos_predicts_both(run_dir: Path, synth: Path, tmp_path: Path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_video(folder / "clip.mp4", n=5)
    for png in sorted((synth / "labeled-data").rglob("*.png"))[:2]:
        shutil.copy(png, folder / png.name)
    code, out, err = cli(capsys, "predict", run_dir, folder, "--out", tmp_path / "out", "--no-progress")
    assert code == 0, err
    assert (tmp_path / "out/clip.csv").is_file() and len(_read(tmp_path / "out/clip.csv")) == 5
    assert (tmp_path / "out/predictions.csv").is_file() and "clip.csv" in out


def test_empty_folder_keeps_its_error(run_dir: Path, tmp_path: Path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = cli(capsys, "predict", run_dir, tmp_path / "empty", "--out", tmp_path / "out", "--no-progress")
    assert_user_error(code, err, "no images found", "empty")
    assert leftovers(tmp_path / "out") == []


def test_jobs_2_gives_the_numbers_of_jobs_1(run_dir: Path, videos: Path, reference: Path, tmp_path: Path):
    import torch

    threads = torch.get_num_threads()
    main(["predict", str(run_dir), str(videos), "--out", str(tmp_path / "out"), "--jobs", "2", "--no-progress"])
    _assert_same_predictions(tmp_path / "out", reference)
    assert torch.get_num_threads() == threads  # the workers' share of the cores is given back


def test_two_shard_processes_make_one_batch(run_dir: Path, videos: Path, reference: Path, tmp_path: Path):
    """Two local processes, as a job array's tasks, predict into one folder at the same time."""
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "keyhead.cli", "predict", str(run_dir), str(videos), "--out", str(out)]
    procs = [
        subprocess.Popen([*cmd, "--shard", f"{i}/2", "--no-progress"], cwd=ROOT, env=env, stderr=subprocess.PIPE)
        for i in range(2)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    _assert_same_predictions(out, reference)


@pytest.mark.parametrize(
    "args,needle",
    [
        (("--shard", "1"), "--shard '1': give I/N"),
        (("--shard", "2/2"), "0 <= I < N"),
        (("--shard", "0/0"), "0 <= I < N"),
        (("--shard", "-1/2"), "0 <= I < N"),
        (("--shard", "a/b"), "e.g. --shard 0/4"),
        (("--jobs", "0"), "--jobs 0: give a positive number"),
        (("--jobs", "-3"), "--jobs -3"),
        (("--jobs", "2", "--runtime", "compile"), "torch.compile is not thread-safe"),
    ],
    ids=["no-slash", "I-equals-N", "N-zero", "negative", "not-numbers", "jobs-zero", "jobs-negative", "compile"],
)
def test_bad_jobs_and_shard_are_one_line_errors(args, needle, run_dir: Path, videos: Path, tmp_path: Path, capsys):
    code, _, err = cli(capsys, "predict", run_dir, videos, "--out", tmp_path / "out", *args, "--no-progress")
    assert_user_error(code, err, needle)
    assert leftovers(tmp_path / "out") == []


def test_shard_with_images_is_refused(run_dir: Path, synth: Path, tmp_path: Path, capsys):
    png = sorted((synth / "labeled-data").rglob("*.png"))[0]
    code, _, err = cli(capsys, "predict", run_dir, png, "--shard", "0/2", "--out", tmp_path / "out")
    assert_user_error(code, err, "--shard splits videos", png.name)
    assert leftovers(tmp_path / "out") == []


def test_a_failing_video_stops_the_batch(run_dir: Path, videos: Path, tmp_path: Path, capsys):
    """The first worker's error is the command's error; no video is started after it."""
    folder = tmp_path / "videos"
    shutil.copytree(videos, folder)
    (folder / "b_run.mp4").write_bytes(b"not a video")
    code, _, err = cli(capsys, "predict", run_dir, folder, "--out", tmp_path / "out", "--jobs", "2", "--no-progress")
    assert_user_error(code, err, "b_run.mp4")
    assert not (tmp_path / "out/c_walk.csv").exists()


# --- the pieces, without a model -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 5], ids=lambda n: f"{n}-shards")
def test_shards_cover_every_video_once_whatever_the_input_order(n: int):
    names = [f"v{k:02d}.mp4" for k in range(7)]
    shuffled = [names[k] for k in (3, 0, 6, 1, 5, 2, 4)]
    shards = [select_shard(shuffled, (i, n)) for i in range(n)]
    assert sorted(v for s in shards for v in s) == names
    assert [select_shard(names, (i, n)) for i in range(n)] == [sorted(s) for s in shards]
    assert all(s == [v for v in shuffled if v in s] for s in shards)  # input order kept


def test_parse_shard():
    assert parse_shard(None) is None and parse_shard("3/4") == (3, 4) and parse_shard(" 0/1 ") == (0, 1)
    for bad in ("4/4", "1/2/3", "", "x"):
        with pytest.raises(KeyheadError, match="--shard"):
            parse_shard(bad)


def test_split_inputs(tmp_path: Path):
    (tmp_path / "vids").mkdir()
    for name in ("b.MP4", "a.avi", "notes.txt"):
        (tmp_path / "vids" / name).touch()
    (tmp_path / "mixed").mkdir()
    for name in ("x.mkv", "f.png"):
        (tmp_path / "mixed" / name).touch()
    images, videos = split_inputs([tmp_path / "vids", tmp_path / "mixed", tmp_path / "z.mov", tmp_path / "i.jpg"])
    assert [p.name for p in videos] == ["a.avi", "b.MP4", "x.mkv", "z.mov"]
    assert images == [tmp_path / "mixed", tmp_path / "i.jpg"]


def test_run_workers_keeps_order_and_raises_the_first_error():
    started: list[int] = []
    lock = threading.Lock()

    def work(x: int, resource: str) -> tuple[int, str]:
        with lock:
            started.append(x)
        if x == 2:
            raise KeyheadError("item 2 is broken")
        return x * 10, resource

    results = run_workers(work, [5, 1, 3, 0], ["r0", "r1"], progress=False)
    assert [r[0] for r in results] == [50, 10, 30, 0] and {r[1] for r in results} <= {"r0", "r1"}
    started.clear()
    with pytest.raises(KeyheadError, match="item 2 is broken"):
        run_workers(work, [2, *range(10, 40)], ["r0"], progress=False)
    assert started == [2]  # nothing taken after the error
