from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyhead.data.formats import (
    IBUG68_FLIP_PAIRS,
    IBUG68_NAMES,
    load_labels,
    read_coco,
    read_dlc_csv,
    read_dlc_h5,
    read_dlc_predictions,
    read_dlc_project,
    read_pts,
    read_pts_folder,
    validate_frames,
    write_coco,
    write_dlc_csv,
    write_pts,
)
from keyhead.errors import KeyheadError
from keyhead.types import LabeledFrames

HEADER = "scorer,me,me,me,me\nbodyparts,nose,nose,tail,tail\ncoords,x,y,x,y\n"


def _png(path: Path, width: int = 32, height: int = 24) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((height, width, 3), np.uint8))
    return path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _frames(root: Path, n: int = 3) -> LabeledFrames:
    """n frames of 2 keypoints with images under root/labeled-data; frame 1 misses 'tail'."""
    paths = [f"labeled-data/img{i}.png" for i in range(n)]
    for p in paths:
        _png(root / p)
    keypoints = np.arange(n * 4, dtype=np.float32).reshape(n, 2, 2) + 0.25
    keypoints[1, 1] = np.nan
    return LabeledFrames(root, paths, keypoints, ["nose", "tail"], skeleton=[("nose", "tail")])


def _project(root: Path, bodyparts: tuple[str, ...] = ("nose", "tail")) -> Path:
    """A DeepLabCut project: vid_a (CSV, 3 index columns), vid_b (only .h5), vid_c (images, no labels)."""
    config = {"scorer": "me", "bodyparts": ["nose", "tail"], "skeleton": [["nose", "tail"]], "Task": "t"}
    _write(root / "config.yaml", yaml.safe_dump(config))
    _png(root / "labeled-data/vid_a/img0.png")
    header = f"scorer,,,me,me,me,me\nbodyparts,,,{bodyparts[0]},{bodyparts[0]},{bodyparts[1]},{bodyparts[1]}\n"
    _write(
        root / "labeled-data/vid_a/CollectedData_me.csv",
        header + "coords,,,x,y,x,y\nlabeled-data,vid_a,img0.png,1,2,3,4\n",
    )
    _png(root / "labeled-data/vid_b/img7.png")
    columns = pd.MultiIndex.from_product(
        [["me"], ["nose", "tail"], ["x", "y"]], names=["scorer", "bodyparts", "coords"]
    )
    index = pd.MultiIndex.from_tuples([("labeled-data", "vid_b", "img7.png")])
    pd.DataFrame([[5.0, 6.0, np.nan, 8.0]], index=index, columns=columns).to_hdf(
        root / "labeled-data/vid_b/CollectedData_me.h5", key="df_with_missing", mode="w"
    )
    _png(root / "labeled-data/vid_c/img0.png")
    return root


# --- DeepLabCut / Lightning Pose CSV -------------------------------------------------------------------------------


def test_dlc_csv_round_trip_is_exact_including_nan(tmp_path):
    frames = _frames(tmp_path)
    back = read_dlc_csv(write_dlc_csv(frames, tmp_path / "CollectedData.csv"))
    np.testing.assert_array_equal(back.keypoints, frames.keypoints)
    assert back.image_paths == frames.image_paths
    assert back.keypoint_names == ["nose", "tail"]
    assert back.root == tmp_path.resolve()
    assert back.visibility is None


def test_dlc_csv_three_index_columns_and_root_walk_up(tmp_path):
    _png(tmp_path / "labeled-data/vid1/img0.png")
    text = (
        "scorer,,,me,me,me,me\nbodyparts,,,nose,nose,tail,tail\ncoords,,,x,y,x,y\n"
        "labeled-data,vid1,img0.png,1.5,2.5,,\nlabeled-data,vid1,img1.png,3,4,5,\n"
    )
    frames = read_dlc_csv(_write(tmp_path / "labeled-data/vid1/CollectedData_me.csv", text))
    assert frames.root == tmp_path.resolve()
    assert frames.image_paths == ["labeled-data/vid1/img0.png", "labeled-data/vid1/img1.png"]
    np.testing.assert_array_equal(frames.keypoints[:, 0], [[1.5, 2.5], [3, 4]])
    assert np.isnan(frames.keypoints[:, 1]).all()  # empty cells, and x without y, are missing altogether


def test_dlc_csv_one_index_column_backslashes_and_explicit_root(tmp_path):
    _png(tmp_path / "proj/labeled-data/vid/img0.png")
    csv_path = _write(tmp_path / "proj/labeled-data/vid/labels.csv", HEADER + "labeled-data\\vid\\img0.png,1,2,3,4\n")
    frames = read_dlc_csv(csv_path)
    assert frames.root == (tmp_path / "proj").resolve()
    assert frames.image_paths == ["labeled-data/vid/img0.png"]
    assert read_dlc_csv(csv_path, root=tmp_path).image_paths == ["labeled-data/vid/img0.png"]


def test_dlc_csv_absolute_path_inside_root_becomes_relative(tmp_path):
    image = _png(tmp_path / "labeled-data/img0.png").resolve()
    frames = read_dlc_csv(_write(tmp_path / "c.csv", HEADER + f"{image},1,2,3,4\n"))
    assert frames.image_paths == ["labeled-data/img0.png"]


def test_dlc_csv_visibility_and_likelihood_columns(tmp_path):
    text = (
        "scorer,me,me,me,me,me,me\nbodyparts,a,a,a,b,b,b\ncoords,x,y,visibility,x,y,visibility\n"
        "img0.png,1,2,2,3,4,1\nimg1.png,,,0,3,4,2\n"
    )
    frames = read_dlc_csv(_write(tmp_path / "v.csv", text))
    np.testing.assert_array_equal(frames.visibility, [[2, 1], [0, 2]])
    assert frames.visibility.dtype == np.int8

    likelihood = np.array([[0.9, np.nan], [0.25, 1.0], [0.5, 0.125]], np.float32)
    path = write_dlc_csv(_frames(tmp_path), tmp_path / "pred.csv", likelihood=likelihood)
    frames, back = read_dlc_predictions(path)
    np.testing.assert_array_equal(back, likelihood)
    np.testing.assert_array_equal(read_dlc_csv(path).keypoints, frames.keypoints)
    with pytest.raises(KeyheadError, match="no likelihood"):
        read_dlc_predictions(write_dlc_csv(frames, tmp_path / "labels.csv"))


BAD_CSVS = {
    "non-numeric": (HEADER + "a.png,1,2,3,4\nb.png,1,abc,3,4\n", r"row 5, column 3 \(nose y\): 'abc' is not a number"),
    "duplicate-rows": (HEADER + "a.png,1,2,3,4\nb.png,1,2,3,4\n./a.png,1,2,3,4\n", "row 4 and row 6 both label a.png"),
    "dotdot-escape": (HEADER + "../a.png,1,2,3,4\n", "leaves the root folder"),
    "absolute-outside": (HEADER + "/elsewhere/a.png,1,2,3,4\n", "outside the root folder"),
    "windows-absolute": (HEADER + "C:\\data\\a.png,1,2,3,4\n", "outside the root folder"),
    "multi-animal": (
        "scorer,me,me\nindividuals,mouse1,mouse1\nbodyparts,nose,nose\ncoords,x,y\na.png,1,2\n",
        "multi-animal labels .*: read them with load_instances",
    ),
    "bad-header": ("a,b\n1,2\n3,4\n", "'scorer', 'bodyparts', 'coords'"),
    "missing-y": ("scorer,me,me\nbodyparts,nose,tail\ncoords,x,x\na.png,1,2\n", "'nose' has no y column"),
    "unknown-coord": ("scorer,me,me\nbodyparts,nose,nose\ncoords,x,z\na.png,1,2\n", "coords 'z' is not one of"),
    "extra-cells": (HEADER + "a.png,1,2,3,4,5\n", "row 4: 6 cells but the header has 5 columns"),
    "empty-path": (HEADER + ",1,2,3,4\n", "row 4: empty image path"),
    "bad-visibility": ("scorer,me,me,me\nbodyparts,a,a,a\ncoords,x,y,visibility\na.png,1,2,7\n", "visibility 7"),
    "empty-file": ("", "'scorer', 'bodyparts', 'coords'"),
}


@pytest.mark.parametrize("text,match", list(BAD_CSVS.values()), ids=list(BAD_CSVS))
def test_dlc_csv_errors_name_the_problem(tmp_path, text, match):
    path = _write(tmp_path / "bad.csv", text)
    with pytest.raises(KeyheadError, match=match) as info:
        read_dlc_csv(path)
    assert str(path) in str(info.value)


def test_dlc_h5_with_three_level_index_matches_csv(tmp_path):
    project = _project(tmp_path)
    frames = read_dlc_h5(project / "labeled-data/vid_b/CollectedData_me.h5")
    assert frames.root == project.resolve()
    assert frames.image_paths == ["labeled-data/vid_b/img7.png"]
    np.testing.assert_array_equal(frames.keypoints, [[[5, 6], [np.nan, np.nan]]])
    csv_path = write_dlc_csv(frames, tmp_path / "labeled-data/vid_b/CollectedData_me.csv")
    np.testing.assert_array_equal(read_dlc_csv(csv_path).keypoints, frames.keypoints)


def test_dlc_project_concatenates_sorted_video_folders(tmp_path):
    frames = read_dlc_project(_project(tmp_path))
    assert frames.image_paths == ["labeled-data/vid_a/img0.png", "labeled-data/vid_b/img7.png"]
    assert frames.root == tmp_path.resolve()
    assert frames.skeleton == [("nose", "tail")]
    np.testing.assert_array_equal(frames.keypoints[0], [[1, 2], [3, 4]])
    validate_frames(frames)


def test_dlc_project_bodyparts_must_match_config(tmp_path):
    _project(tmp_path, bodyparts=("nose", "tailbase"))
    with pytest.raises(KeyheadError, match=r"CollectedData_me\.csv: bodyparts .* differ from .*config\.yaml"):
        read_dlc_project(tmp_path)


# --- 300-W .pts ----------------------------------------------------------------------------------------------------


def test_read_pts_with_and_without_wrapper_is_zero_based(tmp_path):
    bare = _write(tmp_path / "bare.pts", "1.0 1.0\n10.5 20.25\n\n")
    wrapped = _write(tmp_path / "wrapped.pts", "version: 1\nn_points:  2\n{\n1.0 1.0\r\n10.5 20.25\n}\n")
    for path in (bare, wrapped):
        np.testing.assert_array_equal(read_pts(path), [[0.0, 0.0], [9.5, 19.25]])


@pytest.mark.parametrize(
    "text,match",
    [
        ("version: 1\nn_points: 3\n{\n1 1\n2 2\n}\n", "n_points is 3 but 2 points follow"),
        ("version: 1\nn_points: 2\n1 1\n2 2\n", r"not inside '\{'"),
        ("1 1\n2 x\n", "line 2: expected two numbers"),
        ("1 2 3\n", "line 1: expected two numbers"),
        ("\n\n", "empty file"),
    ],
    ids=["count-mismatch", "no-brace", "not-a-number", "three-values", "empty"],
)
def test_read_pts_errors(tmp_path, text, match):
    with pytest.raises(KeyheadError, match=match):
        read_pts(_write(tmp_path / "f.pts", text))


def test_write_pts_round_trip(tmp_path):
    points = np.random.default_rng(0).uniform(0, 500, (68, 2)).round(6)
    path = write_pts(points, tmp_path / "face.pts")
    assert path.read_text().startswith("version: 1\nn_points: 68\n{\n")
    np.testing.assert_allclose(read_pts(path), points, atol=1e-9)
    with pytest.raises(KeyheadError, match="missing points"):
        write_pts(np.full((2, 2), np.nan), tmp_path / "nan.pts")


def test_read_pts_folder_pairs_images_and_names_68_points(tmp_path):
    points = np.random.default_rng(1).uniform(0, 30, (68, 2))
    write_pts(points, tmp_path / "b/face2.pts")
    _png(tmp_path / "b/face2.PNG")
    write_pts(points + 1, tmp_path / "face1.pts")
    _png(tmp_path / "face1.jpg")
    frames = read_pts_folder(tmp_path)
    assert frames.image_paths == ["b/face2.PNG", "face1.jpg"]
    np.testing.assert_allclose(frames.keypoints[1], points + 1, atol=1e-5)
    assert frames.keypoint_names == IBUG68_NAMES and frames.flip_pairs == IBUG68_FLIP_PAIRS
    assert len(read_pts_folder(tmp_path, recursive=False)) == 1

    write_pts(points[:5], tmp_path / "five/a.pts")
    _png(tmp_path / "five/a.bmp")
    assert read_pts_folder(tmp_path / "five").keypoint_names == ["kp0", "kp1", "kp2", "kp3", "kp4"]
    with pytest.raises(KeyheadError, match=r"a\.pts: 5 points but face2\.pts has 68"):
        read_pts_folder(tmp_path)
    write_pts(points, tmp_path / "lonely/x.pts")
    with pytest.raises(KeyheadError, match=r"x\.pts: no image"):
        read_pts_folder(tmp_path / "lonely")


def test_ibug68_layout():
    assert len(IBUG68_NAMES) == len(set(IBUG68_NAMES)) == 68
    flat = [i for pair in IBUG68_FLIP_PAIRS for i in pair]
    assert len(flat) == len(set(flat)) == 58  # disjoint; the 10 centre-line points map to themselves
    centre = set(range(68)) - set(flat)
    assert centre == {8, 27, 28, 29, 30, 33, 51, 57, 62, 66}


# --- COCO ----------------------------------------------------------------------------------------------------------


def _coco(folder: Path, images_subfolder: bool = False) -> Path:
    _png(folder / ("images" if images_subfolder else "") / "a.png")
    _png(folder / "b.png")
    data = {
        "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
        "annotations": [
            {
                "id": 10,
                "image_id": 1,
                "category_id": 1,
                "keypoints": [1, 2, 2, 0, 0, 0, 5.5, 6, 1],
                "bbox": [0, 0, 9, 9],
            },
            {"id": 11, "image_id": 2, "category_id": 1, "keypoints": [0, 0, 0] * 3, "num_keypoints": 0},
            {"id": 12, "image_id": 2, "category_id": 1, "keypoints": [3, 4, 2, 7, 8, 2, 0, 0, 0]},
        ],
        "categories": [
            {"id": 1, "name": "hand", "keypoints": ["left_tip", "right_tip", "wrist"], "skeleton": [[1, 3], [2, 3]]}
        ],
    }
    return _write(folder / "labels.json", json.dumps(data))


def test_read_coco(tmp_path):
    frames = read_coco(_coco(tmp_path))
    assert frames.image_paths == ["a.png", "b.png"]  # annotation 11 has no labelled keypoint
    np.testing.assert_array_equal(frames.keypoints[0], [[1, 2], [np.nan, np.nan], [5.5, 6]])
    np.testing.assert_array_equal(frames.visibility, [[2, 0, 1], [2, 2, 0]])
    np.testing.assert_array_equal(frames.boxes[0], [0, 0, 9, 9])
    assert np.isnan(frames.boxes[1]).all()
    assert frames.skeleton == [("left_tip", "wrist"), ("right_tip", "wrist")]
    assert frames.flip_pairs == [(0, 1)]
    validate_frames(frames)


def test_read_coco_finds_images_subfolder(tmp_path):
    frames = read_coco(_coco(tmp_path, images_subfolder=True))
    assert frames.image_paths == ["images/a.png", "b.png"]
    validate_frames(frames)


def test_read_coco_errors(tmp_path):
    path = _coco(tmp_path)
    data = json.loads(path.read_text())
    data["annotations"][0]["image_id"] = 99
    with pytest.raises(KeyheadError, match="annotation id 10: image_id 99 is not in 'images'"):
        read_coco(_write(tmp_path / "missing.json", json.dumps(data)))
    data = json.loads(path.read_text())
    data["categories"].append({"id": 2, "name": "foot", "keypoints": ["heel", "toe"]})
    data["annotations"].append({"id": 13, "image_id": 1, "category_id": 2, "keypoints": [1, 1, 2, 2, 2, 2]})
    two = _write(tmp_path / "two.json", json.dumps(data))
    with pytest.raises(KeyheadError, match=r"hand \(id 1\), foot \(id 2\); pass category="):
        read_coco(two)
    assert read_coco(two, category="foot").keypoint_names == ["heel", "toe"]
    assert len(read_coco(two, category=1)) == 2
    with pytest.raises(KeyheadError, match="not valid JSON"):
        read_coco(_write(tmp_path / "broken.json", "{"))


def test_coco_round_trip(tmp_path):
    frames = _frames(tmp_path)
    frames.image_paths[2] = frames.image_paths[0]  # two subjects in one image
    path = write_coco(frames, tmp_path / "out.json")
    data = json.loads(path.read_text())
    assert len(data["images"]) == 2 and data["images"][0]["width"] == 32 and data["images"][0]["height"] == 24
    assert data["categories"][0]["skeleton"] == [[1, 2]]
    back = read_coco(path)
    np.testing.assert_array_equal(back.keypoints, frames.keypoints)
    assert back.image_paths == frames.image_paths and back.skeleton == frames.skeleton
    np.testing.assert_array_equal(back.visibility, [[2, 2], [2, 0], [2, 2]])


# --- auto-detection and validation ---------------------------------------------------------------------------------


def _layout(kind: str, root: Path) -> Path:
    if kind == "lightning-pose-folder":
        write_dlc_csv(_frames(root), root / "CollectedData.csv")
        return root
    if kind == "dlc-project":
        return _project(root)
    if kind == "pts-folder":
        write_pts(np.ones((68, 2)), root / "sub/f.pts")
        _png(root / "sub/f.jpg")
        return root
    if kind == "csv":
        return write_dlc_csv(_frames(root), root / "labels.csv")
    if kind == "h5":
        return _project(root) / "labeled-data/vid_b/CollectedData_me.h5"
    return _coco(root)


@pytest.mark.parametrize(
    "kind,n", [("lightning-pose-folder", 3), ("dlc-project", 2), ("pts-folder", 1), ("csv", 3), ("h5", 1), ("json", 2)]
)
def test_load_labels_detects_layout(tmp_path, kind, n):
    frames = load_labels(_layout(kind, tmp_path))
    assert len(frames) == n
    validate_frames(frames)


def test_load_labels_refuses_unknown_layouts(tmp_path):
    with pytest.raises(KeyheadError, match="accepted: a Lightning Pose folder"):
        load_labels(_write(tmp_path / "labels.txt", "x"))
    with pytest.raises(KeyheadError, match="accepted: "):
        load_labels(tmp_path)
    with pytest.raises(KeyheadError, match="not found"):
        load_labels(tmp_path / "nope.csv")


def test_validate_frames(tmp_path):
    frames = _frames(tmp_path)
    validate_frames(frames)
    (tmp_path / frames.image_paths[0]).unlink()
    (tmp_path / frames.image_paths[2]).unlink()
    with pytest.raises(KeyheadError, match=r"2 of 3 images not found .* labeled-data/img0\.png, labeled-data/img2"):
        validate_frames(frames)
    validate_frames(frames, check_images=False)
    frames.keypoints[1, 0, 1] = np.inf
    with pytest.raises(KeyheadError, match=r"frame 1 \(labeled-data/img1\.png\), keypoint 'nose' has an infinite"):
        validate_frames(frames, check_images=False)
    frames.keypoints[:] = np.nan
    with pytest.raises(KeyheadError, match="none of the 3 frames has a labelled keypoint"):
        validate_frames(frames, check_images=False)
    with pytest.raises(KeyheadError, match="no labelled frames"):
        validate_frames(frames.subset([]), check_images=False)


_cells = st.sampled_from(["", "1.5", "-3", "nan", "inf", "x", "a.png", "../b.png", "\\c.png", "1e400", "\0", '"'])
_rows = st.lists(st.lists(_cells, max_size=7).map(",".join), max_size=6).map("\n".join)
_headers = st.sampled_from([HEADER, "scorer,,,me,me\nbodyparts,,,a,a\ncoords,,,x,y\n", "scorer,me\n", ""])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(st.binary(max_size=200), st.tuples(_headers, _rows).map(lambda t: "".join(t).encode())))
def test_fuzzed_csv_parses_or_raises_keyhead_error(tmp_path, content):
    path = tmp_path / "fuzz.csv"
    path.write_bytes(content)
    try:
        frames = read_dlc_csv(path)
    except KeyheadError:
        return
    assert frames.keypoints.shape == (len(frames), frames.num_keypoints, 2)


# --- the real datasets (../shared/data) ----------------------------------------------------------------------------


def test_real_lightning_pose_mirror_mouse(shared_data):
    frames = load_labels(shared_data / "lightning-pose-mirror-mouse-example")
    assert frames.keypoints.shape == (90, 17, 2)
    assert np.isnan(frames.keypoints[..., 0]).mean() == pytest.approx(0.088, abs=0.002)
    validate_frames(frames)


def test_real_dlc_openfield_project(shared_data):
    frames = load_labels(shared_data / "dlc-openfield-Pranav-2018-10-30")
    assert frames.keypoints.shape == (116, 4, 2)
    assert frames.keypoint_names == ["snout", "leftear", "rightear", "tailbase"]
    assert not np.isnan(frames.keypoints).any() and frames.skeleton == []
    validate_frames(frames)


def test_real_dlc_reaching_csv_h5_and_project_agree(shared_data):
    project = shared_data / "dlc-Reaching-Mackenzie-2018-08-30"
    table = project / "labeled-data/reachingvideo1/CollectedData_Mackenzie"
    from_csv, from_h5 = read_dlc_csv(table.with_suffix(".csv")), read_dlc_h5(table.with_suffix(".h5"))
    whole = read_dlc_project(project)
    assert from_csv.keypoints.shape == (55, 5, 2)
    assert 0 < np.isnan(from_csv.keypoints).mean() < 0.5
    for other in (from_h5, whole):
        np.testing.assert_array_equal(other.keypoints, from_csv.keypoints)
        assert other.image_paths == from_csv.image_paths and other.root == from_csv.root == project.resolve()
    assert whole.skeleton == [("Hand", "Finger1"), ("Joystick1", "Joystick2")]
    validate_frames(whole)


def test_real_helen_300w_is_zero_based_inside_the_image(shared_data):
    frames = load_labels(shared_data / "helen-300w-68pt-subset/helen/trainset")
    assert frames.keypoints.shape == (508, 68, 2) and frames.keypoint_names == IBUG68_NAMES
    sizes = np.array([cv2.imread(str(frames.path(i)), cv2.IMREAD_GRAYSCALE).shape[::-1] for i in range(len(frames))])
    assert (frames.keypoints.min(axis=1) >= 0).all()
    assert (frames.keypoints.max(axis=1) <= sizes - 1).all()  # 1-based edge points land on W-1

    def mean_shape(xy: np.ndarray) -> np.ndarray:
        xy = xy - xy.mean(axis=1, keepdims=True)
        return (xy / np.linalg.norm(xy, axis=(1, 2), keepdims=True)).mean(axis=0)

    mirrored = frames.keypoints * [-1, 1]
    perm = np.arange(68)
    for a, b in IBUG68_FLIP_PAIRS:
        perm[a], perm[b] = b, a
    assert np.abs(mean_shape(mirrored[:, perm]) - mean_shape(frames.keypoints)).max() < 0.02


def test_real_mmpose_coco_and_300w(shared_data):
    coco_json = shared_data / "mmpose-testdata-samples/coco/test_coco.json"
    frames = read_coco(coco_json)
    assert frames.keypoints.shape == (12, 17, 2)  # 14 people, 2 without keypoints
    assert len(frames.skeleton) == 19 and frames.flip_pairs[0] == (1, 2) and len(frames.flip_pairs) == 8
    first = json.loads(coco_json.read_text())["annotations"][0]
    np.testing.assert_array_equal(frames.keypoints[0].ravel(), np.reshape(first["keypoints"], (17, 3))[:, :2].ravel())
    validate_frames(frames)
    faces = read_coco(shared_data / "mmpose-testdata-samples/300w/test_300w.json")
    assert faces.keypoints.shape == (2, 68, 2) and faces.keypoint_names == IBUG68_NAMES  # the category lists no names
    validate_frames(faces)
