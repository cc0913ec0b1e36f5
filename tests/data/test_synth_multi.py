"""``generate(animals=N)``: several mice in one arena, multi-animal DeepLabCut tables, true identities."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from keyhead.data import synth
from keyhead.data._synth_herd import max_animals
from keyhead.data.synth import SynthInfo, generate
from keyhead.errors import KeyheadError

SIZE, FRAMES = 96, 240
TINY = dict(n_labeled=4, image_size=(64, 64), video_frames=12, progress=False)


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> SynthInfo:
    """No occluders: every likelihood 0.0 in the video table is a keypoint under the other animal."""
    out = tmp_path_factory.mktemp("synth_multi") / "two"
    return generate(out, n_labeled=12, image_size=(SIZE, SIZE), video_frames=FRAMES, occlusion=0.0, progress=False,
                    animals=2)  # fmt: skip


def _table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, header=[0, 1, 2, 3], index_col=0)


def _xy(table: pd.DataFrame, n: int) -> np.ndarray:
    """(T, N, K, 2) from a multi-animal table (individuals in header order)."""
    x, y = (table.xs(c, axis=1, level=3).to_numpy(float) for c in "xy")
    return np.stack([x, y], -1).reshape(len(table), n, -1, 2)


def _truth(info: SynthInfo) -> tuple[np.ndarray, np.ndarray]:
    """True keypoints (T, N, K, 2) and likelihood (T, N, K) of every video frame."""
    table = _table(info.trajectory)
    return _xy(table, info.animals), table.xs("likelihood", axis=1, level=3).to_numpy(float).reshape(len(table), 2, -1)


def test_layout_headers_and_metadata(two: SynthInfo) -> None:
    assert sorted(p.name for p in two.out_dir.iterdir()) == sorted(synth._OUTPUTS)
    assert two.animals == 2 and two.video.stat().st_size > 0
    with open(two.csv, newline="") as f:
        rows = list(csv.reader(f))
    k = len(two.keypoint_names)
    assert rows[0] == ["scorer"] + ["synth"] * 4 * k
    assert rows[1] == ["individuals"] + ["animal0"] * 2 * k + ["animal1"] * 2 * k
    assert rows[2] == ["bodyparts"] + [n for n in two.keypoint_names for _ in "xy"] * 2
    assert rows[3] == ["coords"] + ["x", "y"] * 2 * k
    assert [r[0] for r in rows[4:]] == [f"labeled-data/img{i:04d}.png" for i in two.frame_indices]
    assert all((two.out_dir / r[0]).is_file() for r in rows[4:])
    meta = yaml.safe_load((two.out_dir / "keyhead_synth.yaml").read_text())
    assert meta["animals"] == 2 and meta["individuals"] == ["animal0", "animal1"]
    assert meta["labelled_frame_indices"] == two.frame_indices
    truth = _table(two.trajectory)
    assert truth.index.tolist() == list(range(FRAMES))
    assert truth.columns.get_level_values(1).unique().tolist() == ["animal0", "animal1"]
    assert set(truth.columns.get_level_values(3)) == {"x", "y", "likelihood"}


def test_labels_are_the_truth_and_hidden_parts_stay_labelled(two: SynthInfo) -> None:
    labels = _xy(_table(two.csv), 2)
    xy, likelihood = _truth(two)
    assert np.isfinite(labels).all(), "no occluders: every keypoint is labelled, also under the other animal"
    np.testing.assert_allclose(labels, xy[two.frame_indices], atol=1e-4)
    assert (labels >= 0).all() and (labels <= SIZE - 1).all()
    assert (xy >= 0).all() and (xy <= SIZE - 1).all(), "animals leave the frame"


def test_identities_are_continuous(two: SynthInfo) -> None:
    """Each animal moves a little per frame and is always nearer its own last pose than the other's (no swap)."""
    xy, _ = _truth(two)
    step = np.linalg.norm(np.diff(xy, axis=0), axis=-1)
    assert step.max() < 0.05 * SIZE, "keypoints jump between consecutive frames"
    assert np.linalg.norm(np.diff(xy, 2, axis=0), axis=-1).max() < 0.02 * SIZE, "motion is not smooth"
    assert step.mean() > 0.001 * SIZE, "the animals do not move"
    cost = np.linalg.norm(xy[1:, :, None] - xy[:-1, None], axis=-1).mean(-1)  # (T-1, now i, before j)
    assert (cost[:, 0, 0] < cost[:, 0, 1]).all() and (cost[:, 1, 1] < cost[:, 1, 0]).all()


def test_animals_cross_and_cover_each_other(two: SynthInfo) -> None:
    xy, likelihood = _truth(two)
    centroid = xy.mean(2)
    gap = np.linalg.norm(centroid[:, 0] - centroid[:, 1], axis=-1)
    assert gap.min() < 0.05 * SIZE, "the animals never cross"
    assert gap.max() > 0.2 * SIZE, "the animals never part"
    assert set(np.unique(likelihood)) == {0.0, 1.0}
    under = (likelihood == 0).any(2)  # (T, N): some keypoint of the animal is covered (no occluders here)
    assert under.any(1).sum() > 10
    assert under[:, 0].any() and under[:, 1].any(), "one animal is always on top"
    assert not (under[:, 0] & under[:, 1]).all()


def test_one_strain_with_small_differences(tmp_path: Path) -> None:
    scene = synth._Scene("animal", 0, SIZE, SIZE, 30, 30.0, 0.0, np.arange(0, 30, 5), 2)
    a, b = scene.subjects
    assert 0 < np.abs(a.coat - b.coat).max() < 0.2 * a.coat.max(), "same coat, slightly tinted"
    ratio = float(np.mean(a.scale / b.scale))
    assert 0.85 < ratio < 1.15 and abs(ratio - 1) > 0.01, "same species size, slightly different"


def test_deterministic_and_cli(tmp_path: Path) -> None:
    from keyhead.cli import main

    first = generate(tmp_path / "a", animals=2, **TINY)
    again = generate(tmp_path / "b", animals=2, **TINY)
    assert first.csv.read_bytes() == again.csv.read_bytes()
    assert first.trajectory.read_bytes() == again.trajectory.read_bytes()
    main(["synth", str(tmp_path / "c"), "--n-labeled", "4", "--size", "64", "--video-frames", "12", "--animals", "3"])
    meta = yaml.safe_load((tmp_path / "c" / "keyhead_synth.yaml").read_text())
    assert meta["animals"] == 3 and meta["individuals"] == ["animal0", "animal1", "animal2"]


def test_one_animal_is_unchanged(tmp_path: Path) -> None:
    plain = generate(tmp_path / "plain", **TINY)
    one = generate(tmp_path / "one", animals=1, **TINY)
    assert one.animals == 1
    for name in ("CollectedData.csv", "keyhead_synth.yaml", "videos/synth_vid_keypoints.csv"):
        assert (plain.out_dir / name).read_bytes() == (one.out_dir / name).read_bytes()
    assert "animals" not in yaml.safe_load((one.out_dir / "keyhead_synth.yaml").read_text())
    with open(one.csv, newline="") as f:
        assert [r[0] for r in csv.reader(f)][:3] == ["scorer", "bodyparts", "coords"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(animals=0), "1 or more"),
        (dict(animals=-2), "1 or more"),
        (dict(animals=2.5), "whole number"),
        (dict(animals=max_animals(64, 64) + 1), "larger image_size"),
        (dict(animals=4, image_size=(48, 48)), "at most 3"),
        (dict(animals=2, kind="face"), "kind='animal'"),
    ],
    ids=["zero", "negative", "fraction", "too-many", "too-many-small", "face"],
)
def test_bad_animals(kwargs: dict, match: str, tmp_path: Path) -> None:
    with pytest.raises(KeyheadError, match=match) as caught:
        generate(tmp_path / "out", **{**TINY, **kwargs})
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_read_back_as_instances(two: SynthInfo) -> None:
    from keyhead.data.formats import load_instances, read_dlc_multi_csv

    frames = load_instances(two.out_dir)
    assert frames.track_names == ["animal0", "animal1"]
    assert frames.keypoints.shape == (12, 2, len(two.keypoint_names), 2)
    np.testing.assert_array_equal(frames.tracks, np.tile([0, 1], (12, 1)))
    np.testing.assert_allclose(frames.keypoints, _truth(two)[0][two.frame_indices], atol=1e-4)
    assert frames.image_paths == [f"labeled-data/img{i:04d}.png" for i in two.frame_indices]
    truth = read_dlc_multi_csv(two.trajectory)
    assert truth.track_names == ["animal0", "animal1"] and len(truth) == FRAMES
