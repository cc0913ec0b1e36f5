"""Context frames: neighbours by frame number with fallbacks, or from the video; one augmentation per window."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from keyhead.config import AugmentConfig
from keyhead.data.context import neighbour_paths
from keyhead.data.dataset import KeypointDataset
from keyhead.types import LabeledFrames


def _frames(root, names, size=(40, 32)):
    (root / "labeled-data" / "s1").mkdir(parents=True, exist_ok=True)
    for n in names:
        img = np.full((size[1], size[0]), int(n[3:7]) % 250, np.uint8)
        cv2.imwrite(str(root / "labeled-data" / "s1" / n), img)


def test_neighbours_fall_back_to_nearest_existing_frame(tmp_path):
    _frames(tmp_path, ["img0010.png", "img0011.png", "img0013.png", "img0014.png"])
    got = neighbour_paths(tmp_path, "labeled-data/s1/img0011.png", [-2, -1, 0, 1, 2, 3])
    names = [p.rsplit("/", 1)[1] for p in got]
    assert names == ["img0010.png", "img0010.png", "img0011.png", "img0011.png", "img0013.png", "img0014.png"]


def test_window_samples_share_one_augmentation(tmp_path):
    _frames(tmp_path, [f"img{i:04d}.png" for i in range(3, 8)])
    frames = LabeledFrames(
        root=tmp_path,
        image_paths=["labeled-data/s1/img0005.png"],
        keypoints=np.array([[[10.0, 12.0]]], np.float32),
        keypoint_names=["a"],
    )
    ds = KeypointDataset(frames, (32, 32), AugmentConfig(), in_channels=1, context_offsets=[-2, -1, 0, 1, 2])
    sample = ds[0]
    img = sample["image"]
    assert img.shape == (5, 1, 32, 32)
    # frames differ only by a constant grey level: after one shared affine + photometric draw they stay ordered
    means = img.flatten(1).mean(1)
    assert torch.all(means[1:] >= means[:-1] - 1e-6)
    plain = KeypointDataset(frames, (32, 32), AugmentConfig(), in_channels=1)[0]
    assert torch.allclose(plain["keypoints"], sample["keypoints"])


def test_neighbours_from_the_video_when_not_on_disk(tmp_path):
    import av

    (tmp_path / "videos").mkdir()
    w, h = 40, 32
    with av.open(str(tmp_path / "videos" / "s1.mp4"), mode="w") as c:
        s = c.add_stream("libx264", rate=25, options={"qp": "0"})
        s.width, s.height, s.pix_fmt = w, h, "yuv444p"
        for i in range(12):
            img = np.full((h, w, 3), 20 * i, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    _frames(tmp_path, ["img0006.png"], (w, h))
    frames = LabeledFrames(
        root=tmp_path,
        image_paths=["labeled-data/s1/img0006.png"],
        keypoints=np.array([[[10.0, 12.0]]], np.float32),
        keypoint_names=["a"],
    )
    ds = KeypointDataset(frames, (32, 32), None, in_channels=1, context_offsets=[-1, 0, 1])
    levels = ds[0]["image"].flatten(1).mean(1) * 255
    assert abs(levels[0].item() - 100) < 3 and abs(levels[2].item() - 140) < 3  # video frames 5 and 7
