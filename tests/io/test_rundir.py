from __future__ import annotations

import numpy as np
import pytest

from keyhead.errors import KeyheadError
from keyhead.io.images import resize_like_training, resize_matrix
from keyhead.io.rundir import check_run_dir, read_history, read_skeleton, write_skeleton


def test_skeleton_round_trip_and_absent(tmp_path):
    assert read_skeleton(tmp_path) == []
    write_skeleton(tmp_path, [("nose", "tail"), ("a", "b")])
    assert read_skeleton(tmp_path) == [("nose", "tail"), ("a", "b")]


@pytest.mark.parametrize("text", ["{not json", '{"a": 1}', '[["a"]]', "[[1, 2]]", "[" * 100000])
def test_damaged_skeleton_is_a_one_line_error(tmp_path, text):
    (tmp_path / "skeleton.json").write_text(text)
    with pytest.raises(KeyheadError, match="skeleton.json") as info:
        read_skeleton(tmp_path)
    assert "\n" not in str(info.value) and len(str(info.value)) < 200


def test_history_rows_and_damaged_history(tmp_path):
    assert read_history(tmp_path) == []
    (tmp_path / "history.csv").write_text("epoch,train_loss,val_loss\n0,1.5,\n1,1.0,0.9\n")
    rows = read_history(tmp_path)
    assert rows[1] == {"epoch": 1.0, "train_loss": 1.0, "val_loss": 0.9} and np.isnan(rows[0]["val_loss"])
    (tmp_path / "history.csv").write_text("epoch,train_loss\n0,1.5\n1,oops\n")
    with pytest.raises(KeyheadError, match=r"history.csv, row 3: a cell is not a number"):
        read_history(tmp_path)
    (tmp_path / "history.csv").write_text("epoch,train_loss\n0,1.5,7\n")
    with pytest.raises(KeyheadError, match=r"row 2: wrong number of cells"):
        read_history(tmp_path)


def test_run_dir_check_names_what_is_missing(tmp_path):
    with pytest.raises(KeyheadError, match="does not exist"):
        check_run_dir(tmp_path / "nope")
    (tmp_path / "config.yaml").write_text("x: 1\n")
    with pytest.raises(KeyheadError, match="missing model.safetensors"):
        check_run_dir(tmp_path)


def test_resize_like_training_keeps_channels_and_pixel_centres():
    img = np.zeros((40, 80, 1), np.uint8)
    img[10, 20] = 255
    out, m = resize_like_training(img, (20, 40))
    assert out.shape == (20, 40, 1) and np.allclose(m, resize_matrix((80, 40), (40, 20)))
    y, x = np.unravel_index(out[..., 0].argmax(), out.shape[:2])
    assert abs(x - (20 + 0.5) * 0.5 + 0.5) <= 1 and abs(y - (10 + 0.5) * 0.5 + 0.5) <= 1
