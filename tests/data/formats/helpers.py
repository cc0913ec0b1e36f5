"""Tiny multi-animal label files for the format tests: images, tables, projects, written in a tmp folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from keyhead.types import InstanceFrames

MULTI_HEADER = (
    "scorer,me,me,me,me,me,me,me,me\n"
    "individuals,m1,m1,m1,m1,m2,m2,m2,m2\n"
    "bodyparts,nose,nose,tail,tail,nose,nose,tail,tail\n"
    "coords,x,y,x,y,x,y,x,y\n"
)


def png(path: Path, width: int = 32, height: int = 24, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((height, width, 3), value, np.uint8)
    image[0, 0] = (value + 7) % 256, 3, 250  # not grey: a channel swap would show
    cv2.imwrite(str(path), image)
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def one_line(info: pytest.ExceptionInfo, *names: object) -> str:
    """The error message, checked to be one line that names each of ``names``."""
    message = str(info.value)
    assert "\n" not in message, message
    for name in names:
        assert str(name) in message, (name, message)
    return message


def instances(root: Path, n: int = 3, tracked: bool = True) -> InstanceFrames:
    """n rows of 2 instance slots x 3 keypoints with PNGs under root/labeled-data; row 1 has only its second animal,
    without a track, row 2 misses one keypoint of the first."""
    paths = [f"labeled-data/vid/img{i}.png" for i in range(n)]
    for i, p in enumerate(paths):
        png(root / p, value=40 * i)
    xy = (np.arange(n * 2 * 3 * 2, dtype=np.float32).reshape(n, 2, 3, 2) + 0.25) % 23
    xy[1, 0] = np.nan
    xy[2, 0, 1] = np.nan
    tracks = np.array([[0, 1]] * n)
    tracks[1] = -1
    return InstanceFrames(
        root=root,
        image_paths=paths,
        keypoints=xy,
        keypoint_names=["nose", "left_ear", "right_ear"],
        track_names=["female", "male"] if tracked else [],
        tracks=tracks if tracked else None,
        skeleton=[("nose", "left_ear"), ("nose", "right_ear")],
        flip_pairs=[(1, 2)],
    )


def multi_project(root: Path, individuals: tuple[str, ...] = ("m1", "m2")) -> Path:
    """A multi-animal DeepLabCut project: vid_a (CSV, 3 index columns, a unique bodypart), vid_b (only .h5, m2 only)."""
    import pandas as pd

    config = {
        "scorer": "me",
        "multianimalproject": True,
        "individuals": list(individuals),
        "multianimalbodyparts": ["nose", "tail"],
        "uniquebodyparts": ["corner"],
        "bodyparts": "MULTI!",
        "skeleton": [["nose", "tail"]],
    }
    write(root / "config.yaml", yaml.safe_dump(config))
    png(root / "labeled-data/vid_a/img0.png")
    write(
        root / "labeled-data/vid_a/CollectedData_me.csv",
        "scorer,,,me,me,me,me,me,me,me,me,me,me\n"
        "individuals,,,m1,m1,m1,m1,m2,m2,m2,m2,single,single\n"
        "bodyparts,,,nose,nose,tail,tail,nose,nose,tail,tail,corner,corner\n"
        "coords,,,x,y,x,y,x,y,x,y,x,y\n"
        "labeled-data,vid_a,img0.png,1,2,3,4,5,6,7,8,0,0\n",
    )
    png(root / "labeled-data/vid_b/img7.png")
    columns = pd.MultiIndex.from_product(
        [["me"], ["m2"], ["nose", "tail"], ["x", "y"]], names=["scorer", "individuals", "bodyparts", "coords"]
    )
    index = pd.MultiIndex.from_tuples([("labeled-data", "vid_b", "img7.png")])
    pd.DataFrame([[5.0, 6.0, np.nan, 8.0]], index=index, columns=columns).to_hdf(
        root / "labeled-data/vid_b/CollectedData_me.h5", key="df_with_missing", mode="w"
    )
    return root
