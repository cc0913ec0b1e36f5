from __future__ import annotations

import csv
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from keyhead.data import synth
from keyhead.data._synth_subjects import Animal
from keyhead.data.synth import SynthInfo, generate
from keyhead.errors import KeyheadError

SIZE = 96
SMALL = dict(n_labeled=10, image_size=(SIZE, SIZE), video_frames=24, progress=False)


def _labels(info: SynthInfo) -> pd.DataFrame:
    return pd.read_csv(info.csv, header=[0, 1, 2], index_col=0)


def _xy(table: pd.DataFrame) -> np.ndarray:
    """(N, K, 2) from a DLC table with x, y (and maybe likelihood) columns."""
    return np.stack(
        [table.xs("x", axis=1, level=2).to_numpy(float), table.xs("y", axis=1, level=2).to_numpy(float)], -1
    )


def _sample(img: np.ndarray, xy: np.ndarray) -> float:
    """Bilinear sample of a (H, W) image at (x, y)."""
    return float(cv2.getRectSubPix(img.astype(np.float32), (1, 1), (float(xy[0]), float(xy[1])))[0, 0])


def _image(info: SynthInfo, row: int) -> np.ndarray:
    return cv2.imread(str(info.out_dir / _labels(info).index[row]))


@pytest.fixture(scope="module")
def animal(tmp_path_factory: pytest.TempPathFactory) -> SynthInfo:
    return generate(tmp_path_factory.mktemp("synth") / "animal", occlusion=0.3, **SMALL)


@pytest.fixture(scope="module")
def face(tmp_path_factory: pytest.TempPathFactory) -> SynthInfo:
    return generate(tmp_path_factory.mktemp("synth") / "face", kind="face", occlusion=0.0, **SMALL)


def test_layout_and_headers(animal: SynthInfo) -> None:
    root = animal.out_dir
    assert sorted(p.name for p in root.iterdir()) == sorted(synth._OUTPUTS)
    assert animal.video.is_file() and animal.trajectory.is_file()
    with open(animal.csv, newline="") as f:
        rows = list(csv.reader(f))
    k = len(animal.keypoint_names)
    assert rows[0] == ["scorer"] + ["synth"] * 2 * k
    assert rows[1] == ["bodyparts"] + [n for n in animal.keypoint_names for _ in "xy"]
    assert rows[2] == ["coords"] + ["x", "y"] * k
    paths = [r[0] for r in rows[3:]]
    assert paths == [f"labeled-data/img{i:04d}.png" for i in animal.frame_indices]
    assert len(set(animal.frame_indices)) == 10 and np.diff(animal.frame_indices).min() > 0
    assert animal.frame_indices != list(range(10)), "labelled frames should be spread over the video"
    for p in paths:
        assert cv2.imread(str(root / p)).shape == (SIZE, SIZE, 3)
    meta = yaml.safe_load((root / "keyhead_synth.yaml").read_text())
    assert meta["kind"] == "animal" and meta["seed"] == 0 and meta["image_size"] == [SIZE, SIZE]
    assert meta["keypoint_names"] == animal.keypoint_names == synth.Animal.names
    assert [tuple(p) for p in meta["flip_pairs"]] == [("left_ear", "right_ear"), ("left_forepaw", "right_forepaw"),
                                                      ("left_hindpaw", "right_hindpaw")]  # fmt: skip
    assert meta["labelled_frame_indices"] == animal.frame_indices
    trajectory = pd.read_csv(animal.trajectory, header=[0, 1, 2], index_col=0)
    assert trajectory.index.tolist() == list(range(24))
    assert set(trajectory.columns.get_level_values(2)) == {"x", "y", "likelihood"}


def test_face_names_and_flips(face: SynthInfo) -> None:
    assert len(face.keypoint_names) == 68 and face.keypoint_names[36] == "right_eye_0"
    assert (36, 45) in face.flip_pairs and (0, 16) in face.flip_pairs


def test_deterministic(animal: SynthInfo, tmp_path: Path) -> None:
    again = generate(tmp_path / "again", occlusion=0.3, **SMALL)
    assert again.csv.read_bytes() == animal.csv.read_bytes()
    assert again.trajectory.read_bytes() == animal.trajectory.read_bytes()
    for row in range(10):
        np.testing.assert_array_equal(_image(again, row), _image(animal, row))
    other = generate(tmp_path / "other", occlusion=0.3, seed=1, **SMALL)
    assert other.csv.read_bytes() != animal.csv.read_bytes()
    assert not np.array_equal(_image(other, 0), _image(animal, 0))


@pytest.mark.parametrize("which", ["animal", "face"])
def test_labelled_frames_are_video_frames(which: str, request: pytest.FixtureRequest) -> None:
    """Each PNG is its video frame up to the lossy codec; the animal moves enough to pin the exact frame number,
    through the frame's own sensor noise (high-pass correlation)."""
    info: SynthInfo = request.getfixturevalue(which)
    with av.open(str(info.video)) as container:
        video = [f.to_ndarray(format="bgr24").astype(np.float32) for f in container.decode(video=0)]
    assert len(video) == 24

    def high_pass(x: np.ndarray) -> np.ndarray:
        return cv2.Laplacian(x, cv2.CV_32F).ravel()

    for row, index in enumerate(info.frame_indices):
        png = _image(info, row).astype(np.float32)
        mad = np.array([np.abs(png - v).mean() for v in video])
        assert mad[index] < 6, f"labelled frame {index} differs from its video frame by {mad[index]:.1f} on average"
        assert mad[index] < mad.min() + 0.3
        if which == "animal":
            corr = [np.corrcoef(high_pass(png), high_pass(v))[0, 1] for v in video]
            assert int(np.argmax(corr)) == index


def test_occlusion_gives_nan_and_matches_trajectory(animal: SynthInfo, face: SynthInfo) -> None:
    missing = np.isnan(_xy(_labels(animal))).any(-1)
    assert 0.15 < missing.mean() < 0.45
    assert not np.isnan(_xy(_labels(face))).any()
    trajectory = pd.read_csv(animal.trajectory, header=[0, 1, 2], index_col=0)
    likelihood = trajectory.xs("likelihood", axis=1, level=2).to_numpy(float)[animal.frame_indices]
    np.testing.assert_array_equal(likelihood == 0, missing)
    true = _xy(trajectory)[animal.frame_indices]
    assert np.isfinite(true).all()
    np.testing.assert_allclose(_xy(_labels(animal))[~missing], true[~missing], atol=1e-4)


@pytest.mark.parametrize("which", ["animal", "face"])
def test_keypoints_inside_and_smooth(which: str, request: pytest.FixtureRequest) -> None:
    info: SynthInfo = request.getfixturevalue(which)
    labels = _xy(_labels(info))
    visible = labels[np.isfinite(labels[..., 0])]
    assert (visible >= 0).all() and (visible <= SIZE - 1).all()
    xy = _xy(pd.read_csv(info.trajectory, header=[0, 1, 2], index_col=0))
    step = np.linalg.norm(np.diff(xy, axis=0), axis=-1)
    assert step.max() < 0.05 * SIZE, "keypoints jump between consecutive frames"
    assert np.linalg.norm(np.diff(xy, 2, axis=0), axis=-1).max() < 0.02 * SIZE, "motion is not smooth"
    assert step.mean() > 0.001 * SIZE, "the subject does not move"


def test_animal_paws_and_ears_are_drawn_on_their_labels() -> None:
    """Rasterise the paw and ear shapes of a few frames alone: each blob's centroid is its label to 0.1 px."""
    subject = Animal(np.random.default_rng(3), np.arange(12) / 30.0, SIZE, SIZE, 30.0)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    for i in (0, 5, 11):
        parts = subject._pose(i)[1]
        for part, names in ((3, ["left_forepaw", "right_forepaw", "left_hindpaw", "right_hindpaw"]),
                            (6, ["left_ear", "right_ear"])):  # fmt: skip
            for poly, name in zip(parts[part][1], names, strict=True):
                img = np.zeros((SIZE, SIZE), np.uint8)
                synth._raster(img, [(subject._to_image(poly, i), (255,))])
                w = img / 255.0
                centroid = np.array([(w * xs).sum(), (w * ys).sum()]) / w.sum()
                label = subject.keypoints[i, subject.names.index(name)]
                assert np.abs(centroid - label).max() < 0.1, (i, name, centroid, label)


def test_animal_nose_is_the_tip_of_the_head() -> None:
    """Nose label on the silhouette's front edge: covered 1.5 px behind it, background 1.5 px ahead."""
    subject = Animal(np.random.default_rng(4), np.arange(12) / 30.0, SIZE, SIZE, 30.0)
    for i in range(0, 12, 4):
        img = np.zeros((SIZE, SIZE), np.uint8)
        synth._raster(img, [(p, (255,)) for p, _ in subject.ops(i, np.zeros(2))])
        nose, neck = subject.keypoints[i, 0], subject.keypoints[i, 3]
        d = (nose - neck) / np.linalg.norm(nose - neck)
        behind, at, ahead = (_sample(img / 255.0, nose + k * d) for k in (-1.5, 0, 1.5))
        assert behind > 0.95 and ahead < 0.05 and 0.1 < at < 0.9, (i, behind, at, ahead)


def test_face_lips_and_pupils_are_at_their_landmarks(face: SynthInfo) -> None:
    """In the rendered frames (no occluders): lips are red where the lip landmarks say, pupils dark in the eyes."""
    labels = _xy(_labels(face))
    redness, darkness = [], []
    for row in range(10):
        img = _image(face, row).astype(np.float32)
        red = img[..., 2] / (img[..., 1] + 1)
        lm = labels[row]
        lips = [(lm[51] + lm[62]) / 2, (lm[57] + lm[66]) / 2]
        redness.append(min(_sample(red, p) for p in lips) - _sample(red, lm[29]))
        eye = lm[36:42]
        if eye[4:, 1].mean() - eye[1:3, 1].mean() > 2:  # open eye
            gray = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_BGR2GRAY).astype(float)
            c = np.round(eye.mean(0)).astype(int)
            darkness.append(gray[lm[28][1].round().astype(int), lm[28][0].round().astype(int)]
                            - gray[c[1] - 1 : c[1] + 2, c[0] - 1 : c[0] + 2].min())  # fmt: skip
    assert min(redness) > 0.15, redness
    assert darkness and min(darkness) > 40, darkness


def test_refuses_foreign_folder_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "project"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    small = dict(SMALL, n_labeled=2, video_frames=4, image_size=(64, 64))
    with pytest.raises(KeyheadError, match="overwrite=True"):
        generate(out, **small)
    generate(out, overwrite=True, **small)
    assert (out / "notes.txt").read_text() == "mine" and (out / "CollectedData.csv").is_file()
    clean = tmp_path / "clean"
    first = generate(clean, **small).csv.read_bytes()
    second = generate(clean, seed=5, **small)
    assert second.csv.read_bytes() != first, "a previous synthetic dataset is replaced"
    assert sorted(p.name for p in (clean / "labeled-data").iterdir()) == sorted(
        Path(p).name for p in _labels(second).index
    )
    with pytest.raises(KeyheadError, match="is a file"):
        generate(out / "notes.txt", **small)


def test_failure_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: object, i: int) -> np.ndarray:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(synth._Scene, "render", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        generate(tmp_path / "out", **dict(SMALL, video_frames=4, n_labeled=2))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs",
    [dict(kind="horse"), dict(image_size=(63, 64)), dict(image_size=(32, 32)), dict(n_labeled=30), dict(occlusion=0.9)],
    ids=["kind", "odd-size", "tiny", "too-many-labels", "occlusion"],
)
def test_bad_arguments(kwargs: dict, tmp_path: Path) -> None:
    with pytest.raises(KeyheadError):
        generate(tmp_path / "out", **{**SMALL, **kwargs})


def test_load_labels_reads_synth_skeleton_and_flip_pairs(animal: SynthInfo) -> None:
    from keyhead.data.formats import load_labels

    frames = load_labels(animal.out_dir)
    assert frames.keypoint_names == list(animal.keypoint_names)
    assert sorted(frames.flip_pairs) == sorted(tuple(p) for p in animal.flip_pairs)
    assert len(frames.skeleton) == len(animal.skeleton)
