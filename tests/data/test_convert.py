"""Label conversions: round trips on the real datasets keep names, skeleton, missing points and coordinates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from keyhead.cli import main
from keyhead.data.formats import load_instances, load_labels, validate_frames
from keyhead.data.formats.convert import convert_labels, dlc_image_paths, write_labels
from keyhead.errors import KeyheadError
from keyhead.types import LabeledFrames


def assert_same(a: LabeledFrames, b: LabeledFrames, atol: float = 0.0, names: bool = True) -> None:
    """Same frames in the same order: coordinates (NaN where missing), names, skeleton; images readable."""
    assert len(a) == len(b)
    if names:
        assert a.keypoint_names == b.keypoint_names
        assert sorted(a.skeleton) == sorted(b.skeleton)
    assert np.array_equal(np.isnan(a.keypoints), np.isnan(b.keypoints))
    np.testing.assert_allclose(a.keypoints, b.keypoints, atol=atol, rtol=0)
    assert [Path(p).name for p in a.image_paths] == [Path(p).name for p in b.image_paths]
    validate_frames(b)  # every image of the converted labels exists where its paths say


@pytest.mark.parametrize("to", ["dlc-csv", "dlc-h5"], ids=["project-csv", "project-h5"])
def test_dlc_project_round_trip(shared_data: Path, tmp_path: Path, to: str):
    src = shared_data / "dlc-Reaching-Mackenzie-2018-08-30"
    original = load_labels(src)
    assert np.isnan(original.keypoints).any() and original.skeleton  # missing points and a skeleton to keep
    out = convert_labels(src, tmp_path / "project", to=to)
    assert (out / "config.yaml").is_file()
    tables = list((out / "labeled-data").glob("*/CollectedData_Mackenzie.*"))
    assert {t.suffix for t in tables} == ({".csv", ".h5"} if to == "dlc-h5" else {".csv"})
    back = load_labels(out)
    assert_same(original, back)
    assert back.image_paths == original.image_paths


def test_dlc_through_coco_and_h5_table(shared_data: Path, tmp_path: Path):
    src = shared_data / "dlc-openfield-Pranav-2018-10-30"
    original = load_labels(src)
    coco = convert_labels(src, tmp_path / "openfield.json")
    from_coco = load_labels(coco)
    assert_same(original, from_coco)
    h5 = write_labels(from_coco, tmp_path / "table" / "CollectedData_Pranav.h5", scorer="Pranav")
    from_h5 = load_labels(h5)
    assert_same(original, from_h5, names=False)
    assert from_h5.keypoint_names == original.keypoint_names  # (a bare table carries no skeleton)
    project = convert_labels(coco, tmp_path / "project", to="dlc-csv", scorer="Pranav")
    assert_same(original, load_labels(project))


def test_lightning_pose_round_trip_through_coco(shared_data: Path, tmp_path: Path):
    src = shared_data / "lightning-pose-mirror-mouse-example"
    original = load_labels(src)
    assert np.isnan(original.keypoints).any()
    lp = convert_labels(src, tmp_path / "lp", to="lp-csv")
    assert lp.name == "CollectedData.csv"
    assert_same(original, load_labels(lp.parent))
    coco = convert_labels(lp.parent, tmp_path / "coco" / "mouse.json")
    from_coco = load_labels(coco)
    assert_same(original, from_coco)
    back = convert_labels(coco, tmp_path / "lp2", to="lp-csv")
    again = load_labels(back.parent)
    assert_same(original, again)
    assert back.read_text().splitlines()[0].startswith("scorer,keyhead")  # COCO has no scorer: the default


def test_helen_pts_round_trip(shared_data: Path, tmp_path: Path):
    original = load_labels(shared_data / "helen-300w-68pt-subset").subset(range(12))  # 12 faces keep copying cheap
    coco = write_labels(original, tmp_path / "faces.json")
    from_coco = load_labels(coco)
    assert_same(original, from_coco)
    pts = write_labels(from_coco, tmp_path / "pts", to="pts")
    back = load_labels(pts)
    assert_same(original, back, atol=1e-4)  # .pts stores 6 decimals
    assert back.keypoint_names[36] == "right_eye_0" and back.skeleton


def test_mmpose_coco_samples(shared_data: Path, tmp_path: Path):
    src = shared_data / "mmpose-testdata-samples" / "coco" / "test_coco.json"
    original = load_labels(src)
    assert len(set(original.image_paths)) < len(original)  # several people per image
    out = convert_labels(src, tmp_path / "coco.json")
    back = load_labels(out)
    assert_same(original, back)
    assert np.array_equal(original.visibility, back.visibility)  # occluded (1) vs visible (2) kept
    people = load_instances(convert_labels(src, tmp_path / "dlc.csv"))  # several per image: a multi-animal table
    assert people.present().sum() == len(original) and people.max_instances > 1
    faces = shared_data / "mmpose-testdata-samples" / "300w" / "test_300w.json"
    original = load_labels(faces)
    original = original.subset(np.argsort(original.image_paths))  # a .pts folder is read in path order
    back = load_labels(convert_labels(faces, tmp_path / "300w_pts", to="pts"))
    assert_same(original, back, atol=1e-4)


def test_cli_convert_and_errors(shared_data: Path, tmp_path: Path, capsys):
    src = shared_data / "lightning-pose-mirror-mouse-example"
    main(["convert", str(src), str(tmp_path / "mouse.csv"), "--scorer", "rick"])
    assert "wrote" in capsys.readouterr().out
    assert_same(load_labels(src), load_labels(tmp_path / "mouse.csv"))
    with pytest.raises(KeyheadError, match="cannot hold missing points"):
        convert_labels(src, tmp_path / "pts", to="pts")
    with pytest.raises(KeyheadError, match="--to"):
        convert_labels(src, tmp_path / "somewhere")
    with pytest.raises(KeyheadError, match="choose one of"):
        convert_labels(src, tmp_path / "x.csv", to="sleap")
    with pytest.raises(SystemExit) as exc:
        main(["convert", str(src), str(tmp_path / "x.json"), "--to", "nope"])
    assert exc.value.code == 2


def test_dlc_image_paths():
    assert dlc_image_paths(["labeled-data/v1/a.png", "images/b.jpg", "c.jpg", "x/y/d.png"]) == [
        "labeled-data/v1/a.png",
        "labeled-data/images/b.jpg",
        "labeled-data/images/c.jpg",
        "labeled-data/x__y/d.png",
    ]
