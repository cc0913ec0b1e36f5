"""SLEAP .slp labels through sleap-io: user instances, tracks, skeleton, frames extracted once as PNG."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from keyhead.data.formats import load_labels, read_slp, write_slp
from keyhead.data.formats.slp import default_frames_dir
from keyhead.errors import KeyheadError
from tests.data.formats.helpers import instances, one_line, write

sio = pytest.importorskip("sleap_io")


@pytest.fixture(scope="module")
def samples(shared_data: Path) -> Path:
    folder = shared_data / "sleap-multi-animal-samples"
    if not (folder / "minimal_instance.slp").is_file():
        pytest.skip(f"SLEAP samples not found at {folder}")
    return folder.resolve()  # the reader names files by their resolved paths (../shared may be a link)


def test_minimal_instance_extracts_its_frame(samples, tmp_path):
    frames = read_slp(samples / "minimal_instance.slp", frames_dir=tmp_path)
    assert frames.keypoints.shape == (1, 2, 2, 2) and frames.keypoint_names == ["A", "B"]
    assert frames.skeleton == [("A", "B")] and frames.track_names == [] and (frames.tracks == -1).all()
    assert frames.root == tmp_path and frames.image_paths == ["centered_pair_low_quality/img000000.png"]
    assert frames.frame_indices.tolist() == [0]
    assert frames.video_paths == [str(samples / "centered_pair_low_quality.mp4")]
    image = cv2.imread(str(frames.path(0)), cv2.IMREAD_UNCHANGED)
    assert image.shape[:2] == (384, 384)
    labels = sio.load_slp(str(samples / "minimal_instance.slp"))
    np.testing.assert_allclose(frames.keypoints[0, 1], labels.labeled_frames[0].instances[1].numpy(), atol=1e-4)
    np.testing.assert_array_equal(image.reshape(384, 384, -1)[..., 0], labels.video[0][..., 0])


def test_frames_are_extracted_once_and_the_video_only_when_needed(samples, tmp_path):
    copy = tmp_path / "moved" / "minimal_instance.slp"  # beside no video
    copy.parent.mkdir()
    shutil.copyfile(samples / "minimal_instance.slp", copy)
    with pytest.raises(KeyheadError, match="centered_pair_low_quality.mp4 is missing; put the video beside") as info:
        read_slp(copy, frames_dir=tmp_path / "frames")
    one_line(info, copy)
    assert not list((tmp_path / "frames").rglob("*.png"))
    first = read_slp(samples / "minimal_instance.slp", frames_dir=tmp_path / "frames")
    stamp = first.path(0).stat().st_mtime_ns
    again = read_slp(copy, frames_dir=tmp_path / "frames")  # the PNG is there: no video needed
    assert again.path(0).stat().st_mtime_ns == stamp
    assert read_slp(copy, frames_dir=tmp_path / "elsewhere", extract=False).image_paths == first.image_paths


def test_default_frames_dir_is_in_the_keyhead_cache(samples, tmp_path, monkeypatch):
    monkeypatch.setenv("KEYHEAD_CACHE", str(tmp_path / "cache"))
    frames = read_slp(samples / "minimal_instance.slp")
    assert frames.root == default_frames_dir(samples / "minimal_instance.slp")
    assert re.fullmatch(r"minimal_instance-[0-9a-f]{12}", frames.root.name)
    assert frames.root.parent == tmp_path / "cache" / "slp-frames" and frames.path(0).is_file()


def test_clip_metadata_without_extracting(samples, tmp_path):
    frames = read_slp(samples / "clip.slp", frames_dir=tmp_path / "frames", extract=False)
    assert frames.keypoints.shape == (1500, 2, 13, 2) and len(frames.keypoint_names) == 13
    assert frames.track_names == ["female", "male"] and sorted(frames.tracks[0]) == [0, 1]
    assert (frames.tracks >= 0).all() and frames.present().all()
    assert len(frames.skeleton) == 12 and ("thorax", "head") in frames.skeleton
    assert frames.image_paths[700] == "clip/img000700.png" and frames.frame_indices[700] == 700
    assert not (tmp_path / "frames").exists()


def test_clip_reads_a_subset_of_rows(samples, tmp_path):
    frames = read_slp(samples / "clip.slp", frames_dir=tmp_path, rows=[0, 1499])
    assert frames.image_paths == ["clip/img000000.png", "clip/img001499.png"]
    assert [cv2.imread(str(frames.path(i))).shape for i in range(2)] == [(1024, 1024, 3)] * 2
    assert sorted(p.name for p in tmp_path.rglob("*.png")) == ["img000000.png", "img001499.png"]
    with pytest.raises(KeyheadError, match="row 1500 is outside its 1500 labelled frames") as info:
        read_slp(samples / "clip.slp", frames_dir=tmp_path, rows=[1500])
    one_line(info, samples / "clip.slp")


def test_write_slp_keeps_videos_keypoints_and_tracks(samples, tmp_path):
    frames = read_slp(samples / "clip.slp", frames_dir=tmp_path / "frames", extract=False).subset(range(0, 1500, 100))
    back = read_slp(write_slp(frames, tmp_path / "out.slp"), frames_dir=tmp_path / "frames", extract=False)
    np.testing.assert_allclose(back.keypoints, frames.keypoints, atol=1e-4)
    assert back.track_names == frames.track_names and np.array_equal(back.tracks, frames.tracks)
    assert back.video_paths == frames.video_paths and np.array_equal(back.frame_indices, frames.frame_indices)
    assert back.skeleton == frames.skeleton and back.image_paths == frames.image_paths


@pytest.mark.parametrize("tracked", [True, False], ids=["tracks", "no-tracks"])
def test_write_slp_of_image_labels_round_trips_through_an_image_sequence(tmp_path, tracked):
    frames = instances(tmp_path / "project", tracked=tracked)
    path = write_slp(frames, tmp_path / "labels.slp")
    back = read_slp(path, frames_dir=tmp_path / "frames")
    present = frames.present()
    assert back.keypoint_names == frames.keypoint_names and back.flip_pairs == frames.flip_pairs
    assert back.skeleton == frames.skeleton and back.track_names == frames.track_names
    for i in range(len(frames)):
        np.testing.assert_array_equal(back.keypoints[i, : present[i].sum()], frames.keypoints[i, present[i]])
        np.testing.assert_array_equal(back.tracks[i, : present[i].sum()], frames.tracks[i, present[i]])
        original = cv2.imread(str(frames.path(i)), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(cv2.imread(str(back.path(i)), cv2.IMREAD_UNCHANGED), original)
    assert back.video_paths == [str(frames.path(i).resolve()) for i in range(len(frames))]


def test_embedded_package_frames_are_read_from_the_file(samples, tmp_path):
    labels = sio.load_slp(str(samples / "minimal_instance.slp"))
    sio.save_slp(labels, str(tmp_path / "minimal.pkg.slp"), embed="user", verbose=False)
    frames = read_slp(tmp_path / "minimal.pkg.slp", frames_dir=tmp_path / "frames")
    assert frames.image_paths == ["centered_pair_low_quality/img000000.png"]
    direct = read_slp(samples / "minimal_instance.slp", frames_dir=tmp_path / "direct")
    np.testing.assert_array_equal(cv2.imread(str(frames.path(0))), cv2.imread(str(direct.path(0))))
    np.testing.assert_array_equal(frames.keypoints, direct.keypoints)


def test_load_labels_reads_single_instance_slp_and_refuses_multi(samples, tmp_path, monkeypatch):
    monkeypatch.setenv("KEYHEAD_CACHE", str(tmp_path / "cache"))
    single = instances(tmp_path / "project").subset([1])  # one animal
    frames = load_labels(write_slp(single, tmp_path / "one.slp"))
    assert frames.keypoints.shape == (1, 3, 2)
    np.testing.assert_array_equal(frames.keypoints[0], single.keypoints[0, 1])
    with pytest.raises(KeyheadError, match="multi-animal labels .row 0 has 2 instances.: read them with") as info:
        load_labels(samples / "minimal_instance.slp")
    one_line(info, samples / "minimal_instance.slp")


def test_bad_slp_files(tmp_path):
    fake = write(tmp_path / "fake.slp", "not hdf5")
    with pytest.raises(KeyheadError, match="not a readable SLEAP file") as info:
        read_slp(fake, frames_dir=tmp_path)
    one_line(info, fake)
    skeleton = sio.Skeleton(["a", "b"])
    video = sio.Video(filename=str(tmp_path / "v.mp4"), open_backend=False)
    predicted = sio.PredictedInstance.from_numpy(np.ones((2, 2)), skeleton=skeleton)
    labels = sio.Labels([sio.LabeledFrame(video=video, frame_idx=0, instances=[predicted])], skeletons=[skeleton])
    sio.save_slp(labels, str(tmp_path / "predicted.slp"), verbose=False)
    with pytest.raises(KeyheadError, match="no user-labelled instance") as info:
        read_slp(tmp_path / "predicted.slp", frames_dir=tmp_path)
    one_line(info, tmp_path / "predicted.slp")
    with pytest.raises(KeyheadError, match="file not found") as info:
        read_slp(tmp_path / "missing.slp")
    one_line(info, tmp_path / "missing.slp")
