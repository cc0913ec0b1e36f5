"""Face crops: landmark boxes, crop modes, the crop/uncrop round trip and the built-in 68-point flip pairs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from keyhead.config import load_config
from keyhead.data.dataset import KeypointDataset
from keyhead.data.face import apply_crop, landmark_boxes
from keyhead.data.formats.ibug68 import IBUG68_FLIP_PAIRS, IBUG68_NAMES
from keyhead.data.prepare import flip_pair_indices
from keyhead.errors import KeyheadError
from keyhead.types import LabeledFrames


def _frames(tmp_path, n: int = 3, k: int = 68, size: tuple[int, int] = (300, 220), seed: int = 0) -> LabeledFrames:
    """Random images (W x H = size) with a 'face' of k points in a small box somewhere off-centre."""
    rng = np.random.default_rng(seed)
    paths, kps = [], []
    for i in range(n):
        img = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / f"f{i}.png"), img)
        paths.append(f"f{i}.png")
        centre = rng.uniform([60, 50], [size[0] - 60, size[1] - 50])
        kps.append(centre + rng.uniform(-40, 40, (k, 2)))
    names = list(IBUG68_NAMES) if k == 68 else [f"kp{j}" for j in range(k)]
    return LabeledFrames(tmp_path, paths, np.stack(kps), names)


def test_landmark_boxes_are_the_tight_box_in_coco_convention():
    kp = np.array([[[10.0, 20.0], [30.0, 60.0], [np.nan, np.nan]], [[np.nan] * 2] * 3])
    boxes = landmark_boxes(kp)
    np.testing.assert_allclose(boxes[0], [10.5, 20.5, 20.0, 40.0])
    assert np.isnan(boxes[1]).all()


def test_apply_crop_modes(tmp_path):
    frames = _frames(tmp_path, n=2, k=5)
    assert apply_crop(frames, "auto").boxes is None
    assert apply_crop(frames, "landmarks").boxes.shape == (2, 4)
    with pytest.raises(KeyheadError, match="data.crop=box"):
        apply_crop(frames, "box")
    boxed = apply_crop(frames, "landmarks")
    assert apply_crop(boxed, "none").boxes is None
    assert apply_crop(boxed, "box") is boxed
    with pytest.raises(KeyheadError, match="data.crop='faces'"):
        apply_crop(frames, "faces")


def test_auto_crop_uses_landmarks_for_68_point_faces_without_boxes(tmp_path):
    faces = _frames(tmp_path, n=2)
    np.testing.assert_array_equal(apply_crop(faces, "auto").boxes, landmark_boxes(faces.keypoints))
    own = np.array([[1.0, 2.0, 30.0, 40.0]] * 2, np.float32)
    faces.boxes = own
    np.testing.assert_array_equal(apply_crop(faces, "auto").boxes, own)  # the labels' own boxes win


@pytest.mark.parametrize("margin", [0.0, 0.25, 0.6], ids=["m0", "m0.25", "m0.6"])
@pytest.mark.parametrize("input_size", [(224, 224), (96, 128)], ids=["224sq", "96x128"])
def test_crop_uncrop_round_trip_within_0_01_px(tmp_path, margin, input_size):
    frames = apply_crop(_frames(tmp_path), "landmarks")
    ds = KeypointDataset(frames, input_size, None, in_channels=1, crop_margin=margin)
    for item in range(len(ds)):
        s = ds[item]
        assert s["image"].shape == (1, *input_size)
        xy = s["keypoints"].double()
        # every landmark lands inside the input, and the crop is centred on the landmarks' box
        assert (xy[:, 0] >= -0.5).all() and (xy[:, 0] <= input_size[1] - 0.5).all()
        assert (xy[:, 1] >= -0.5).all() and (xy[:, 1] <= input_size[0] - 0.5).all()
        inv = torch.linalg.inv(s["matrix"])
        back = xy @ inv[:2, :2].T + inv[:2, 2]
        np.testing.assert_allclose(back.numpy(), frames.keypoints[item], atol=0.01)


def test_margin_sets_the_landmark_extent_in_the_input(tmp_path):
    frames = apply_crop(_frames(tmp_path, n=1), "landmarks")
    for margin in (0.25, 1.0):
        xy = KeypointDataset(frames, (224, 224), None, crop_margin=margin)[0]["keypoints"].numpy()
        extent = max(np.ptp(xy[:, 0]), np.ptp(xy[:, 1]))
        assert extent == pytest.approx(224 / (1 + margin), rel=1e-4)


def test_crop_shows_the_face_pixels(tmp_path):
    # A white square face on black: after the landmark crop the square fills the input minus the margin.
    img = np.zeros((400, 600, 3), np.uint8)
    img[100:200, 300:400] = 255
    cv2.imwrite(str(tmp_path / "sq.png"), img)
    corners = np.array([[[300.0, 100.0], [399.0, 100.0], [300.0, 199.0], [399.0, 199.0]]])
    frames = apply_crop(LabeledFrames(tmp_path, ["sq.png"], corners, ["a", "b", "c", "d"]), "landmarks")
    image = KeypointDataset(frames, (64, 64), None, crop_margin=1.0)[0]["image"][0].numpy()
    assert image[32, 32] > 0.99 and image[2, 2] < 0.01 and image[61, 61] < 0.01
    assert (image > 0.5).mean() == pytest.approx(0.25, abs=0.03)


def test_68_points_get_ibug_flip_pairs_by_default(tmp_path):
    frames = _frames(tmp_path, n=1)
    assert frames.flip_pairs == []
    assert flip_pair_indices(frames, []) == sorted(IBUG68_FLIP_PAIRS)
    # explicit config pairs win; other keypoint counts get none
    assert flip_pair_indices(frames, [("jaw_0", "jaw_16")]) == [(0, 16)]
    assert flip_pair_indices(_frames(tmp_path, n=1, k=5), []) == []


def test_config_crop_keys():
    cfg = load_config(None, ["data.crop=landmarks", "data.crop_margin=0.3"])
    assert cfg.data.crop == "landmarks" and cfg.data.crop_margin == 0.3
    with pytest.raises(KeyheadError, match="data.crop"):
        load_config(None, ["data.crop=face"])
    with pytest.raises(KeyheadError, match="crop_margin"):
        load_config(None, ["data.crop_margin=-1"])


def test_helen_crop_round_trip(shared_data):
    from keyhead.data.formats import read_pts_folder

    frames = read_pts_folder(shared_data / "helen-300w-68pt-subset" / "helen" / "trainset")
    assert frames.num_keypoints == 68 and len(frames.flip_pairs) == len(IBUG68_FLIP_PAIRS)
    frames = apply_crop(frames.subset([0, 1, 2]), "landmarks")
    ds = KeypointDataset(frames, (224, 224), None, in_channels=1)
    for item in range(len(ds)):
        s = ds[item]
        inv = torch.linalg.inv(s["matrix"])
        back = s["keypoints"].double() @ inv[:2, :2].T + inv[:2, 2]
        np.testing.assert_allclose(back.numpy(), frames.keypoints[item], atol=0.01)


@pytest.mark.parametrize("mode", ["auto", "landmarks"])
def test_coco_style_300w_faces(shared_data, mode):
    from keyhead.data.formats import load_labels

    frames = load_labels(shared_data / "mmpose-testdata-samples" / "300w" / "test_300w.json")
    assert frames.num_keypoints == 68 and flip_pair_indices(frames, []) == sorted(IBUG68_FLIP_PAIRS)
    cropped = apply_crop(frames, mode)
    # auto keeps the annotations' own face boxes; landmarks replaces them with the keypoints' box
    expected = frames.boxes if mode == "auto" else landmark_boxes(frames.keypoints)
    np.testing.assert_array_equal(cropped.boxes, expected)
    ds = KeypointDataset(cropped, (224, 224), None, in_channels=1)
    for item in range(len(ds)):
        s = ds[item]
        inv = torch.linalg.inv(s["matrix"])
        back = s["keypoints"].double() @ inv[:2, :2].T + inv[:2, 2]
        np.testing.assert_allclose(back.numpy(), frames.keypoints[item], atol=0.01)
