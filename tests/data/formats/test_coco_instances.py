"""COCO with several annotated subjects per image: one row per image, PoseTrack track ids as identities."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from keyhead.data.formats import read_coco, read_coco_instances, write_coco_instances
from keyhead.errors import KeyheadError
from tests.data.formats.helpers import instances, one_line, png, write


def _coco(root: Path, track_ids: bool = True) -> Path:
    """Image a.png: 3 people (one without labelled keypoints), b.png: 1 person; image c.png unannotated."""
    for name in ("a.png", "b.png", "c.png"):
        png(root / name)
    people = [
        (10, 1, [1, 2, 2, 0, 0, 0], 7),
        (11, 1, [0, 0, 0, 0, 0, 0], 8),  # nothing labelled: not an instance
        (12, 1, [3, 4, 1, 5, 6, 2], 9),
        (13, 2, [7, 8, 2, 9, 10, 2], 9),
    ]
    annotations = [
        {"id": i, "image_id": im, "category_id": 1, "keypoints": kp, **({"track_id": t} if track_ids else {})}
        for i, im, kp, t in people
    ]
    data = {
        "images": [{"id": 3, "file_name": "c.png"}, {"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "keypoints": ["left_eye", "right_eye"], "skeleton": [[1, 2]]}],
    }
    return write(root / "people.json", json.dumps(data))


@pytest.mark.parametrize("track_ids", [True, False], ids=["posetrack", "plain"])
def test_read_coco_instances_one_row_per_image(tmp_path, track_ids):
    frames = read_coco_instances(_coco(tmp_path, track_ids))
    assert frames.image_paths == ["a.png", "b.png"] and frames.keypoints.shape == (2, 2, 2, 2)
    np.testing.assert_array_equal(frames.keypoints[0, 0], [[1, 2], [np.nan, np.nan]])
    np.testing.assert_array_equal(frames.keypoints[0, 1], [[3, 4], [5, 6]])
    assert np.isnan(frames.keypoints[1, 1]).all()
    np.testing.assert_array_equal(frames.visibility[0], [[2, 0], [1, 2]])
    assert frames.skeleton == [("left_eye", "right_eye")] and frames.flip_pairs == [(0, 1)]
    if track_ids:
        assert frames.track_names == ["7", "9"] and frames.tracks.tolist() == [[0, 1], [1, -1]]
    else:
        assert frames.track_names == [] and (frames.tracks == -1).all()
    assert len(read_coco(_coco(tmp_path, track_ids))) == 3  # read_coco still gives one frame per annotation


@pytest.mark.parametrize("tracked", [True, False], ids=["tracks", "no-tracks"])
def test_write_read_round_trip(tmp_path, tracked):
    frames = instances(tmp_path, tracked=tracked)
    path = write_coco_instances(frames, tmp_path / "out.json")
    data = json.loads(path.read_text())
    assert len(data["images"]) == 3 and len(data["annotations"]) == 5  # row 1 holds one instance
    back = read_coco_instances(path)
    assert back.image_paths == frames.image_paths and back.keypoint_names == frames.keypoint_names
    assert back.skeleton == frames.skeleton and back.flip_pairs == [(1, 2)]
    present = frames.present()
    for i in range(len(frames)):
        np.testing.assert_array_equal(back.keypoints[i, : present[i].sum()], frames.keypoints[i, present[i]])
        names = [frames.track_names[t] if t >= 0 else None for t in frames.tracks[i, present[i]]]
        assert [back.track_names[t] if t >= 0 else None for t in back.tracks[i, : present[i].sum()]] == names


def test_numeric_track_names_are_written_as_integer_track_ids(tmp_path):
    frames = read_coco_instances(_coco(tmp_path))
    path = write_coco_instances(frames, tmp_path / "again.json")
    assert [a["track_id"] for a in json.loads(path.read_text())["annotations"]] == [7, 9, 9]
    assert read_coco_instances(path).track_names == ["7", "9"]


def test_a_track_id_twice_in_one_image_is_refused(tmp_path):
    path = _coco(tmp_path)
    data = json.loads(path.read_text())
    data["annotations"][2]["track_id"] = 7
    bad = write(tmp_path / "bad.json", json.dumps(data))
    with pytest.raises(KeyheadError, match="annotation id 12: track_id 7 appears twice in image id 1") as info:
        read_coco_instances(bad)
    one_line(info, bad)


def test_a_bad_track_id_is_refused(tmp_path):
    data = json.loads(_coco(tmp_path).read_text())
    data["annotations"][0]["track_id"] = [1, 2]
    bad = write(tmp_path / "bad.json", json.dumps(data))
    with pytest.raises(KeyheadError, match="annotation id 10: track_id .* is not a COCO id") as info:
        read_coco_instances(bad)
    one_line(info, bad)


def test_real_mmpose_coco_people(shared_data):
    path = shared_data / "mmpose-testdata-samples/coco/test_coco.json"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    frames = read_coco_instances(path)
    single = read_coco(path)
    assert frames.keypoints.shape == (4, 5, 17, 2) and frames.present().sum() == len(single) == 12
    for i, p in enumerate(frames.image_paths):  # each image's people, in file order
        people = single.keypoints[[j for j, q in enumerate(single.image_paths) if q == p]]
        np.testing.assert_array_equal(frames.keypoints[i, : len(people)], people)
    assert frames.skeleton == single.skeleton and frames.flip_pairs == single.flip_pairs


def test_write_coco_can_record_where_its_images_are(tmp_path) -> None:
    """Stage labels of a top-down run live in the run folder and still find the images they describe."""
    import cv2

    from keyhead.data.formats import read_coco, write_coco
    from keyhead.types import LabeledFrames

    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.zeros((8, 8), np.uint8))
    frames = LabeledFrames(images, ["a.png"], np.array([[[1.0, 2.0]]]), ["nose"])
    elsewhere = tmp_path / "run" / "labels.json"
    elsewhere.parent.mkdir()
    write_coco(frames, elsewhere, record_root=True)
    back = read_coco(elsewhere)
    assert back.root == images.resolve() and back.image_paths == ["a.png"]
    write_coco(frames, elsewhere)
    assert read_coco(elsewhere).root == elsewhere.parent.resolve()
