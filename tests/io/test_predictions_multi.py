"""Multi-animal prediction tables: header, streamed rows, reader, and the .slp writer (one track per individual)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from keyhead.errors import KeyheadError
from keyhead.io.predictions import (
    format_instance_rows,
    is_multi_prediction_table,
    is_prediction_table,
    prediction_header,
    read_multi_prediction_table,
    read_prediction_table,
    write_prediction_table,
)

NAMES, INDIVIDUALS = ["nose", "tail", "ear"], ["female", "male"]


def _predictions(n: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (n, 2, 3, 2))
    conf = rng.uniform(0, 1, (n, 2, 3))
    xy[1, 1] = np.nan  # the male is not seen in frame 1
    conf[1, 1] = np.nan
    xy[2, 0, 2] = np.nan  # one keypoint missing
    return xy, conf


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_header_rows():
    rows = prediction_header(NAMES, "me", INDIVIDUALS).splitlines()
    assert [r.split(",")[0] for r in rows] == ["scorer", "individuals", "bodyparts", "coords"]
    assert rows[1].split(",")[1:] == ["female"] * 9 + ["male"] * 9
    assert rows[2].split(",")[1:4] == ["nose"] * 3 and rows[3].split(",")[1:4] == ["x", "y", "likelihood"]
    assert len(prediction_header(NAMES).splitlines()) == 3  # single-animal header unchanged


@pytest.mark.parametrize("chunk", [1, 3], ids=["frame-by-frame", "chunks"])
def test_streamed_rows_read_back(tmp_path, chunk):
    xy, conf = _predictions()
    text = prediction_header(NAMES, individuals=INDIVIDUALS)
    for start in range(0, len(xy), chunk):
        if chunk == 1:  # one frame: (M, K, 2) + (M, K)
            text += format_instance_rows(start, xy[start], conf[start])
        else:
            text += format_instance_rows(start, xy[start : start + chunk], conf[start : start + chunk])
    path = _write(tmp_path / "video.csv", text)
    assert is_prediction_table(path) and is_multi_prediction_table(path)
    rows, individuals, names, xy_back, conf_back = read_multi_prediction_table(path)
    assert rows == ["0", "1", "2", "3"] and individuals == INDIVIDUALS and names == NAMES
    np.testing.assert_allclose(xy_back, xy, atol=5e-5)  # 4 decimals
    np.testing.assert_allclose(conf_back, conf, atol=5e-5)
    assert ",,,," in text.splitlines()[5]  # an absent animal is empty cells


def test_full_precision_table_round_trips(tmp_path):
    xy, conf = _predictions()
    path = write_prediction_table(tmp_path / "p.csv", ["a", "b", "c", "d"], NAMES, xy, conf, "me", INDIVIDUALS)
    rows, individuals, names, xy_back, conf_back = read_multi_prediction_table(path)
    np.testing.assert_array_equal(xy_back, xy)
    np.testing.assert_array_equal(conf_back, conf)
    with pytest.raises(KeyheadError, match="it has an individuals row: read it with read_multi_prediction_table"):
        read_prediction_table(path)


def test_single_animal_table_is_not_multi(tmp_path):
    path = write_prediction_table(tmp_path / "p.csv", ["0"], ["nose"], np.zeros((1, 1, 2)), np.ones((1, 1)))
    assert is_prediction_table(path) and not is_multi_prediction_table(path)
    with pytest.raises(KeyheadError, match="4 header rows scorer/individuals/bodyparts/coords"):
        read_multi_prediction_table(path)


def test_unique_bodyparts_are_dropped(tmp_path, caplog):
    xy, conf = _predictions()
    text = prediction_header(NAMES, individuals=INDIVIDUALS).splitlines()
    extra = (
        [",k", ",single", ",corner", ",x"],
        [",k", ",single", ",corner", ",y"],
        [",k", ",single", ",corner", ",likelihood"],
    )
    header = [line + "".join(e[r] for e in extra) for r, line in enumerate(text)]
    path = _write(
        tmp_path / "p.csv", "\n".join(header) + "\n" + format_instance_rows(0, xy[0], conf[0]).strip() + ",1,2,0.5\n"
    )
    with caplog.at_level(logging.WARNING, logger="keyhead"):
        _, individuals, names, xy_back, _ = read_multi_prediction_table(path)
    assert "corner" in caplog.text and individuals == INDIVIDUALS and names == NAMES
    np.testing.assert_allclose(xy_back[0], xy[0], atol=5e-5)


BAD = {
    "non-number": ("0,1,2,0.5,1,2,0.5,1,2,0.5,1,2,0.5,1,x,0.5,1,2,0.5\n", r"row 5: male tail y 'x' is not a number"),
    "inconsistent-individuals": (None, r"column 11: individual 'male' has no 'ear' bodypart while 'female' has"),
}


@pytest.mark.parametrize("body,match", list(BAD.values()), ids=list(BAD))
def test_bad_tables_name_file_and_place(tmp_path, body, match):
    if body is None:  # the male has no ear columns
        header = prediction_header(NAMES, individuals=INDIVIDUALS).splitlines()
        text = "\n".join(line.rsplit(",", 3)[0] for line in header) + "\n0" + ",1" * 15 + "\n"
    else:
        text = prediction_header(NAMES, individuals=INDIVIDUALS) + body
    path = _write(tmp_path / "bad.csv", text)
    with pytest.raises(KeyheadError, match=match) as info:
        read_multi_prediction_table(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_multi_animal_table_converts_to_slp_with_one_track_per_individual(tmp_path):
    sio = pytest.importorskip("sleap_io")
    from keyhead.io.interop import save_predictions

    xy, conf = _predictions()
    path = write_prediction_table(tmp_path / "v.csv", ["0", "1", "2", "3"], NAMES, xy, conf, "me", INDIVIDUALS)
    out = save_predictions(path, tmp_path / "v.slp", video=tmp_path / "v.mp4", skeleton=[("nose", "tail")])
    labels = sio.load_slp(str(out), open_videos=False)
    assert [t.name for t in labels.tracks] == INDIVIDUALS
    frames = sorted(labels.labeled_frames, key=lambda f: f.frame_idx)
    assert [sorted(i.track.name for i in f.instances) for f in frames] == [
        INDIVIDUALS,
        ["female"],
        INDIVIDUALS,
        INDIVIDUALS,
    ]
    for f in frames:
        for inst in f.instances:
            m = INDIVIDUALS.index(inst.track.name)
            np.testing.assert_allclose(inst.numpy()[:, :2], xy[f.frame_idx, m], atol=1e-6)
            np.testing.assert_allclose(inst.numpy(scores=True)[:, 2], np.nan_to_num(conf[f.frame_idx, m]), atol=1e-6)
