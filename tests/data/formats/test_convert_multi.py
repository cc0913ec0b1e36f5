"""keyhead convert round-trips multi-animal labels: DLC tables and projects, Lightning Pose, COCO and SLEAP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from keyhead.cli import main
from keyhead.data.formats import load_instances, write_dlc_multi_csv
from keyhead.data.formats.convert import convert_labels, target_format
from keyhead.errors import KeyheadError
from keyhead.types import InstanceFrames
from tests.data.formats.helpers import instances, one_line

pytest.importorskip("sleap_io")


def _by_identity(frames: InstanceFrames) -> dict[tuple[int, str], np.ndarray]:
    """(row, identity) -> (K, 2) keypoints of every present instance (untracked ones by their slot)."""
    out = {}
    for i, m in zip(*np.nonzero(frames.present()), strict=True):
        t = frames.tracks[i, m]
        name = frames.track_names[t] if t >= 0 else f"#{m}"
        out[int(i), name] = frames.keypoints[i, m]
    return out


@pytest.mark.parametrize(
    "out,to",
    [
        ("t.csv", None),
        ("t.h5", None),
        ("project", "dlc-csv"),
        ("project", "dlc-h5"),
        ("lp", "lp-csv"),
        ("c.json", None),
        ("s.slp", None),
    ],
    ids=["dlc-csv", "dlc-h5", "project-csv", "project-h5", "lp-csv", "coco", "slp"],
)
def test_multi_animal_round_trip(tmp_path, monkeypatch, out, to):
    monkeypatch.setenv("KEYHEAD_CACHE", str(tmp_path / "cache"))
    src = write_dlc_multi_csv(instances(tmp_path / "src"), tmp_path / "src" / "CollectedData_me.csv", scorer="me")
    original = load_instances(src)
    written = convert_labels(src, tmp_path / "out" / out, to=to)
    back = load_instances(written.parent if to == "lp-csv" else written)
    assert back.keypoint_names == original.keypoint_names
    if to in ("dlc-csv", "dlc-h5", "lp-csv") or out.endswith((".csv", ".h5")):
        assert back.track_names == original.track_names  # individuals, in order
    got, want = _by_identity(back), _by_identity(original)
    assert got.keys() == want.keys()
    for key, xy in want.items():
        np.testing.assert_array_equal(got[key], xy)
    assert all(back.path(i).is_file() for i in range(len(back)))


def test_slp_to_dlc_table_and_back_to_slp(tmp_path, monkeypatch, shared_data):
    slp = shared_data / "sleap-multi-animal-samples" / "minimal_instance.slp"
    if not slp.is_file():
        pytest.skip(f"{slp} not found")
    monkeypatch.setenv("KEYHEAD_CACHE", str(tmp_path / "cache"))
    table = convert_labels(slp, tmp_path / "dlc" / "CollectedData_keyhead.csv")
    frames = load_instances(table)
    assert frames.track_names == ["animal0", "animal1"] and frames.path(0).is_file()  # the frame was copied
    np.testing.assert_allclose(frames.keypoints, load_instances(slp).keypoints, atol=1e-9)
    main(["convert", str(table), str(tmp_path / "again.slp")])
    again = load_instances(tmp_path / "again.slp")
    np.testing.assert_allclose(again.keypoints, frames.keypoints, atol=1e-4)
    assert again.track_names == ["animal0", "animal1"]


def test_pts_refuses_multi_animal_labels(tmp_path):
    src = write_dlc_multi_csv(instances(tmp_path / "src"), tmp_path / "src" / "t.csv")
    with pytest.raises(KeyheadError, match="a .pts file holds one subject per image: convert to coco") as info:
        convert_labels(src, tmp_path / "pts", to="pts")
    one_line(info, src)


def test_slp_is_a_target_format():
    assert target_format(Path("x.slp"), None) == "slp" and target_format(Path("x"), "slp") == "slp"
