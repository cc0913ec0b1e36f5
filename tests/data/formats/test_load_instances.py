"""Auto-detection of multi-animal labels (is_multi_instance) and load_instances over every layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from keyhead.data.formats import (
    is_multi_instance,
    load_instances,
    write_dlc_csv,
    write_dlc_multi_csv,
    write_dlc_multi_h5,
)
from keyhead.data.formats.convert import write_dlc_h5
from keyhead.types import LabeledFrames
from tests.data.formats.helpers import instances, multi_project, png, write


def _single(root: Path) -> LabeledFrames:
    png(root / "a.png")
    return LabeledFrames(root, ["a.png"], np.array([[[1.0, 2.0]]]), ["nose"])


def _coco(root: Path, same_image: bool) -> Path:
    png(root / "a.png")
    annotation = {"category_id": 1, "keypoints": [1, 2, 2], "image_id": 1}
    data = {
        "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "a.png"}],
        "annotations": [{**annotation, "id": 1}, {**annotation, "id": 2, "image_id": 1 if same_image else 2}],
        "categories": [{"id": 1, "name": "x", "keypoints": ["nose"]}],
    }
    return write(root / "c.json", json.dumps(data))


LAYOUTS = {
    "multi-csv": (lambda r: write_dlc_multi_csv(instances(r), r / "t.csv"), True, 3),
    "multi-h5": (lambda r: write_dlc_multi_h5(instances(r), r / "t.h5"), True, 3),
    "multi-project": (multi_project, True, 2),
    "multi-lp-folder": (lambda r: write_dlc_multi_csv(instances(r), r / "CollectedData.csv").parent, True, 3),
    "multi-coco": (lambda r: _coco(r, same_image=True), True, 1),
    "single-csv": (lambda r: write_dlc_csv(_single(r), r / "t.csv"), False, 1),
    "single-h5": (lambda r: write_dlc_h5(_single(r), r / "t.h5"), False, 1),
    "single-lp-folder": (lambda r: write_dlc_csv(_single(r), r / "CollectedData.csv").parent, False, 1),
    "single-coco": (lambda r: _coco(r, same_image=False), False, 2),
}


@pytest.mark.parametrize("make,multi,rows", list(LAYOUTS.values()), ids=list(LAYOUTS))
def test_detection_and_loading(tmp_path, make, multi, rows):
    path = make(tmp_path)
    assert is_multi_instance(path) is multi
    frames = load_instances(path)
    assert len(frames) == rows and (frames.max_instances > 1) is multi


@pytest.mark.parametrize(
    "name,text",
    [("missing.csv", None), ("broken.json", "{"), ("other.json", "[]"), ("text.h5", "no"), ("notes.txt", "hi")],
    ids=["missing", "broken-json", "not-coco", "not-hdf5", "other-suffix"],
)
def test_is_multi_instance_is_false_for_what_it_cannot_read(tmp_path, name, text):
    path = tmp_path / name if text is None else write(tmp_path / name, text)
    assert is_multi_instance(path) is False


def test_slp_is_multi_instance(tmp_path):
    assert is_multi_instance(write(tmp_path / "x.slp", "")) is True
