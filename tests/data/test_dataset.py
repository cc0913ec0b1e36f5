from __future__ import annotations

import cv2
import numpy as np
import pytest

from keyhead.config import AugmentConfig
from keyhead.data.dataset import KeypointDataset, load_split, make_split, save_split
from keyhead.errors import KeyheadError
from keyhead.types import LabeledFrames


def dot_frames(tmp_path, sizes=((120, 90), (200, 160))) -> LabeledFrames:
    """Images with one bright Gaussian dot per keypoint at known sub-pixel positions."""
    rng = np.random.default_rng(0)
    paths, kps = [], []
    for n, (w, h) in enumerate(sizes):
        pts = np.array([[0.3, 0.3], [0.7, 0.4], [0.45, 0.72]]) * (w, h) + rng.uniform(0, 1, (3, 2))
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.zeros((h, w), np.float64)
        for x, y in pts:
            img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 4.0**2))
        cv2.imwrite(str(tmp_path / f"img{n}.png"), np.clip(img * 200, 0, 255).astype(np.uint8))
        paths.append(f"img{n}.png")
        kps.append(pts)
    return LabeledFrames(tmp_path, paths, np.array(kps, np.float32), ["a", "b", "c"])


def peak_near(image: np.ndarray, xy: np.ndarray, r: int = 9) -> np.ndarray:
    """Intensity-weighted centroid of the image around xy (pixel-centre coordinates)."""
    x0, y0 = int(round(xy[0])), int(round(xy[1]))
    patch = image[max(0, y0 - r) : y0 + r + 1, max(0, x0 - r) : x0 + r + 1].astype(np.float64)
    patch = np.clip(patch - patch.max() * 0.3, 0, None)
    yy, xx = np.mgrid[0 : patch.shape[0], 0 : patch.shape[1]]
    return np.array(
        [(xx * patch).sum() / patch.sum() + max(0, x0 - r), (yy * patch).sum() / patch.sum() + max(0, y0 - r)]
    )


@pytest.mark.parametrize("augment", [False, True], ids=["resize", "augmented"])
def test_keypoints_follow_the_image(tmp_path, augment: bool):
    frames = dot_frames(tmp_path)
    cfg = AugmentConfig(rotation=30, scale=(0.8, 1.2), translate=0.05, brightness=0, contrast=0, blur=0, noise=0)
    ds = KeypointDataset(frames, (96, 128), cfg if augment else None, in_channels=1, seed=3)
    for item in range(len(ds)):
        s = ds[item]
        img = s["image"][0].numpy()
        for xy in s["keypoints"].numpy():
            if 10 < xy[0] < 118 and 10 < xy[1] < 86:
                assert np.abs(peak_near(img, xy) - xy).max() < 0.35  # pixels


def test_flip_swaps_pairs(tmp_path):
    frames = dot_frames(tmp_path)
    cfg = AugmentConfig(rotation=0, scale=(1, 1), translate=0, hflip=1.0, brightness=0, contrast=0, blur=0, noise=0)
    plain = KeypointDataset(frames, (96, 128), None, in_channels=1)[0]["keypoints"].numpy()
    flipped = KeypointDataset(frames, (96, 128), cfg, flip_pairs=[(0, 1)], in_channels=1)[0]["keypoints"].numpy()
    # keypoint 0 of the flipped sample is keypoint 1 of the original, mirrored: x -> W - 1 - x
    assert np.allclose(flipped[0], [127 - plain[1, 0], plain[1, 1]], atol=1e-4)
    assert np.allclose(flipped[2], [127 - plain[2, 0], plain[2, 1]], atol=1e-4)


@pytest.mark.parametrize("pairs", [[(0, 1), (1, 2)], [(0, 9)], [(2, 2)]])
def test_flip_pairs_are_checked_as_at_test_time(tmp_path, pairs):
    """The training flip uses the same checked permutation as flip test-time augmentation."""
    with pytest.raises(KeyheadError, match="flip pair"):
        KeypointDataset(dot_frames(tmp_path), (96, 128), None, flip_pairs=pairs, in_channels=1)


def test_augmentation_is_deterministic_per_epoch(tmp_path):
    frames = dot_frames(tmp_path)
    ds = KeypointDataset(frames, (64, 64), AugmentConfig(), in_channels=1, seed=1)
    a = ds[0]["keypoints"]
    assert np.array_equal(a, ds[0]["keypoints"])
    ds.epoch = 1
    assert not np.array_equal(a, ds[0]["keypoints"])


def test_split_deterministic_and_saved(tmp_path):
    s1, s2 = make_split(50, (0.8, 0.1, 0.1), 42), make_split(50, (0.8, 0.1, 0.1), 42)
    assert s1 == s2 and [len(s1[k]) for k in ("train", "val", "test")] == [40, 5, 5]
    assert sorted(s1["train"] + s1["val"] + s1["test"]) == list(range(50))
    frames = LabeledFrames(tmp_path, [f"{i}.png" for i in range(50)], np.zeros((50, 1, 2)), ["a"])
    save_split(s1, frames, tmp_path / "split.json")
    assert load_split(tmp_path / "split.json", frames) == s1
    with pytest.raises(KeyheadError, match="no labelled frames"):
        make_split(0, (0.8, 0.1, 0.1), 0)


def test_split_keeps_every_subject_of_an_image_together(tmp_path) -> None:
    """Rows sharing an image (COCO people, top-down crops) share a split, also after a round trip through split.json."""
    from keyhead.config import RunConfig
    from keyhead.data.prepare import initial_split

    paths = [f"img{i // 2}.png" for i in range(40)]  # 20 images, 2 subjects each
    frames = LabeledFrames(tmp_path, paths, np.zeros((40, 1, 2), np.float32), ["a"])
    split = initial_split(RunConfig(), frames)
    owner = {p: name for name, idx in split.items() for i in idx for p in [paths[i]]}
    assert all(owner[paths[i]] == name for name, idx in split.items() for i in idx)
    assert sorted(i for idx in split.values() for i in idx) == list(range(40))
    save_split(split, frames, tmp_path / "split.json")
    assert load_split(tmp_path / "split.json", frames) == split
