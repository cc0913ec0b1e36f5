"""Multi-animal DeepLabCut / Lightning Pose tables and projects: reading, writing, and one-line errors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from keyhead.data.formats import (
    load_instances,
    load_labels,
    read_dlc_multi_csv,
    read_dlc_multi_h5,
    read_dlc_multi_project,
    write_dlc_multi_csv,
    write_dlc_multi_h5,
)
from keyhead.data.formats.dlc_multi import identity_blocks
from keyhead.errors import KeyheadError
from keyhead.io.predictions import read_multi_prediction_table
from tests.data.formats.helpers import MULTI_HEADER, instances, multi_project, one_line, png, write


def test_read_multi_csv_slots_are_individuals(tmp_path):
    path = write(tmp_path / "CollectedData.csv", MULTI_HEADER + "a.png,1,2,3,4,5,6,7,8\nb.png,1,2,,,,,,\n")
    frames = read_dlc_multi_csv(path)
    assert frames.keypoints.shape == (2, 2, 2, 2)
    assert frames.track_names == ["m1", "m2"] and frames.keypoint_names == ["nose", "tail"]
    assert frames.tracks.tolist() == [[0, 1], [0, -1]]  # m2 is absent from b.png
    np.testing.assert_array_equal(frames.keypoints[0, 1], [[5, 6], [7, 8]])
    assert np.isnan(frames.keypoints[1, 0, 1]).all() and np.isnan(frames.keypoints[1, 1]).all()


def test_unique_bodyparts_are_dropped_with_a_warning(tmp_path, caplog):
    project = multi_project(tmp_path)
    with caplog.at_level(logging.WARNING, logger="keyhead"):
        frames = read_dlc_multi_csv(project / "labeled-data/vid_a/CollectedData_me.csv")
    assert "corner" in caplog.text and "single" in caplog.text
    assert frames.track_names == ["m1", "m2"] and frames.keypoint_names == ["nose", "tail"]
    assert frames.root == project.resolve() and frames.image_paths == ["labeled-data/vid_a/img0.png"]


@pytest.mark.parametrize("tracked", [True, False], ids=["tracks", "no-tracks"])
@pytest.mark.parametrize("suffix", [".csv", ".h5"], ids=["csv", "h5"])
def test_write_read_round_trip(tmp_path, suffix, tracked):
    frames = instances(tmp_path, tracked=tracked)
    writer, reader = (
        (write_dlc_multi_csv, read_dlc_multi_csv) if suffix == ".csv" else (write_dlc_multi_h5, read_dlc_multi_h5)
    )
    back = reader(writer(frames, tmp_path / f"CollectedData{suffix}"))
    names, block = identity_blocks(frames)
    assert back.track_names == names == (["female", "male", "animal0"] if tracked else ["animal0", "animal1"])
    assert back.image_paths == frames.image_paths and back.keypoint_names == frames.keypoint_names
    for i, m in zip(*np.nonzero(block >= 0), strict=True):  # every instance lands in its individual's block
        np.testing.assert_array_equal(back.keypoints[i, block[i, m]], frames.keypoints[i, m])
        assert back.tracks[i, block[i, m]] == block[i, m]
    assert np.isfinite(back.keypoints).sum() == np.isfinite(frames.keypoints).sum()


def test_write_with_likelihood_is_a_multi_animal_prediction_table(tmp_path):
    frames = instances(tmp_path, tracked=False)
    likelihood = np.linspace(0, 1, 3 * 2 * 3).reshape(3, 2, 3)
    path = write_dlc_multi_csv(frames, tmp_path / "pred.csv", likelihood=likelihood)
    rows, individuals, names, xy, lik = read_multi_prediction_table(path)
    assert rows == frames.image_paths and individuals == ["animal0", "animal1"] and names == frames.keypoint_names
    np.testing.assert_array_equal(xy, frames.keypoints)
    np.testing.assert_allclose(lik[0], likelihood[0])
    assert np.isnan(lik[1, 0]).all()  # an absent animal has no likelihood either


def test_two_instances_on_one_track_are_refused(tmp_path):
    frames = instances(tmp_path)
    frames.tracks[0] = [1, 1]
    with pytest.raises(KeyheadError) as info:
        write_dlc_multi_csv(frames, tmp_path / "x.csv")
    one_line(info, "row 0", "labeled-data/vid/img0.png", "two instances on track 'male'")
    assert not (tmp_path / "x.csv").exists()


BAD = {
    "duplicate-block": (
        "scorer,me,me,me,me\nindividuals,m1,m1,m1,m1\nbodyparts,nose,nose,nose,nose\ncoords,x,y,x,y\na.png,1,2,3,4\n",
        r"column 4 \(m1 nose x\): a second 'm1 nose x' column \(the first is column 2",
    ),
    "split-block": (
        "scorer,me,me,me,me,me,me\nindividuals,m1,m1,m2,m2,m1,m1\nbodyparts,nose,nose,nose,nose,tail,tail\n"
        "coords,x,y,x,y,x,y\na.png,1,2,3,4,5,6\n",
        r"column 6 \(m1 tail x\): a second block of individual 'm1'",
    ),
    "missing-bodypart": (
        "scorer,me,me,me,me,me,me\nindividuals,m1,m1,m1,m1,m2,m2\nbodyparts,nose,nose,tail,tail,nose,nose\n"
        "coords,x,y,x,y,x,y\na.png,1,2,3,4,5,6\n",
        r"column 6 \(m2 nose x\): individual 'm2' has no 'tail' bodypart while 'm1' has",
    ),
    "extra-bodypart": (
        "scorer,me,me,me,me,me,me\nindividuals,m1,m1,m2,m2,m2,m2\nbodyparts,nose,nose,nose,nose,ear,ear\n"
        "coords,x,y,x,y,x,y\na.png,1,2,3,4,5,6\n",
        r"individual 'm2' has a 'ear' bodypart while 'm1' has not",
    ),
    "wrong-cell-count": (MULTI_HEADER + "a.png,1,2,3,4,5,6,7,8,9\n", "row 5: 10 cells but the header has 9 columns"),
    "non-number": (MULTI_HEADER + "a.png,1,abc,3,4,5,6,7,8\n", r"row 5, column 3 \(m1 nose y\): 'abc' is not a number"),
    "empty-individual": (
        "scorer,me,me,me,me\nindividuals,m1,m1,,\nbodyparts,nose,nose,nose,nose\ncoords,x,y,x,y\na.png,1,2,3,4\n",
        r"column 4 \(nose x\): empty individuals cell",
    ),
    "three-header-rows": ("scorer,me,me\nbodyparts,nose,nose\ncoords,x,y\na.png,1,2\n", "the first 4 rows must start"),
    "only-unique": (
        "scorer,me,me\nindividuals,single,single\nbodyparts,corner,corner\ncoords,x,y\na.png,1,2\n",
        "no individual but 'single'",
    ),
}


@pytest.mark.parametrize("text,match", list(BAD.values()), ids=list(BAD))
def test_bad_multi_csv_names_file_and_place(tmp_path, text, match):
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(KeyheadError, match=match) as info:
        read_dlc_multi_csv(path)
    one_line(info, path)


def test_bad_multi_h5_names_file(tmp_path):
    path = multi_project(tmp_path) / "labeled-data/vid_b/CollectedData_me.h5"
    frames = read_dlc_multi_h5(path)
    assert frames.track_names == ["m2"] and frames.image_paths == ["labeled-data/vid_b/img7.png"]
    single = write(tmp_path / "single.csv", "scorer,me,me\nbodyparts,nose,nose\ncoords,x,y\na.png,1,2\n")
    from keyhead.data.formats.convert import write_dlc_h5

    h5 = write_dlc_h5(load_labels(single), tmp_path / "single.h5")
    with pytest.raises(KeyheadError, match="columns have 3 levels") as info:
        read_dlc_multi_h5(h5)
    one_line(info, h5)


def test_multi_project_puts_individuals_in_config_order(tmp_path):
    project = multi_project(tmp_path, individuals=("m0", "m1", "m2"))
    frames = read_dlc_multi_project(project)
    assert frames.track_names == ["m0", "m1", "m2"] and frames.keypoint_names == ["nose", "tail"]
    assert frames.image_paths == ["labeled-data/vid_a/img0.png", "labeled-data/vid_b/img7.png"]
    assert frames.tracks.tolist() == [[-1, 1, 2], [-1, -1, 2]]
    np.testing.assert_array_equal(frames.keypoints[1, 2], [[5, 6], [np.nan, np.nan]])
    assert frames.skeleton == [("nose", "tail")]
    assert load_instances(project).track_names == frames.track_names


def test_multi_project_refuses_an_unknown_individual(tmp_path):
    project = multi_project(tmp_path, individuals=("m1",))
    with pytest.raises(KeyheadError) as info:
        read_dlc_multi_project(project)
    one_line(info, "vid_a/CollectedData_me.csv", "individual 'm2' is not in", "config.yaml")


def test_lightning_pose_folder_with_individuals_reads_its_metadata(tmp_path):
    write_dlc_multi_csv(instances(tmp_path), tmp_path / "CollectedData.csv")
    meta = {"skeleton": [["nose", "left_ear"]], "flip_pairs": [["left_ear", "right_ear"]]}
    write(tmp_path / "keyhead_synth.yaml", yaml.safe_dump(meta))
    frames = load_instances(tmp_path)
    assert frames.track_names == ["female", "male", "animal0"]
    assert frames.skeleton == [("nose", "left_ear")] and frames.flip_pairs == [(1, 2)]


@pytest.mark.parametrize("layout", ["csv", "lightning-pose-folder", "project"])
def test_load_labels_points_multi_animal_input_to_load_instances(tmp_path, layout):
    if layout == "project":
        path = multi_project(tmp_path)
        shown = path / "config.yaml"
    else:
        png(tmp_path / "a.png")
        shown = write(tmp_path / "CollectedData.csv", MULTI_HEADER + "a.png,1,2,3,4,5,6,7,8\n")
        path = shown if layout == "csv" else tmp_path
    with pytest.raises(KeyheadError, match="multi-animal .*: read them with load_instances and train them") as info:
        load_labels(path)
    one_line(info, shown)


def test_single_animal_layouts_still_read_as_before(tmp_path):
    path = write(tmp_path / "labels.csv", "scorer,me,me\nbodyparts,nose,nose\ncoords,x,y\na.png,1,2\n")
    frames = load_instances(path)
    assert frames.keypoints.shape == (1, 1, 1, 2) and frames.track_names == []
    assert load_labels(path).keypoints.shape == (1, 1, 2)


def test_identity_blocks_without_tracks_are_slots(tmp_path):
    frames = instances(Path(tmp_path), tracked=False)
    names, block = identity_blocks(frames)
    assert names == ["animal0", "animal1"] and block.tolist() == [[0, 1], [-1, 1], [0, 1]]
