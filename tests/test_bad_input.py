"""The bad-input matrix: every case goes through the CLI and must give one error line naming the file, row,
column or key, a non-zero exit status, no traceback, and no partial output. Plus fuzzing of every label reader.
"""

from __future__ import annotations

import json
import logging
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from keyhead.config import load_config, template_dir
from keyhead.data.formats import read_coco, read_dlc_csv, read_pts, read_pts_folder
from keyhead.errors import KeyheadError
from tests.cli_helpers import (
    SIZE,
    assert_user_error,
    cli,
    csv_lines,
    first_labelled_column,
    leftovers,
    set_cell,
    train_args,
    write_csv,
)

# --- images --------------------------------------------------------------------------------------------------------


def test_missing_image(project, tmp_path, capsys):
    (project / "labeled-data" / "img0001.png").unlink()
    code, _, err = cli(capsys, *train_args(project, tmp_path / "runs"))
    assert_user_error(code, err, "img0001.png", "not found")
    assert leftovers(tmp_path / "runs") == []


def test_corrupt_image(project, tmp_path, capsys):
    (project / "labeled-data" / "img0001.png").write_bytes(b"\x89PNG garbage, not an image" * 3)
    code, _, err = cli(capsys, *train_args(project, tmp_path / "runs"))
    assert_user_error(code, err, "img0001.png", "corrupt")
    assert leftovers(tmp_path / "runs") == []


def test_truncated_image(project, tmp_path, capsys):
    path = project / "labeled-data" / "img0001.png"
    path.write_bytes(path.read_bytes()[:60])
    code, _, err = cli(capsys, *train_args(project, tmp_path / "runs"))
    assert_user_error(code, err, "img0001.png")
    assert leftovers(tmp_path / "runs") == []


def test_image_that_shrank_below_its_labels_is_refused(project, tmp_path, capsys):
    """Rule: when every labelled keypoint of a frame lies outside its image, the image changed (refused)."""
    path = project / "labeled-data" / "img0001.png"
    cv2.imwrite(str(path), cv2.resize(cv2.imread(str(path)), (16, 16)))
    code, _, err = cli(capsys, *train_args(project, tmp_path / "runs"))
    assert_user_error(code, err, "CollectedData.csv", "img0001.png", "16x16", "changed size")
    assert leftovers(tmp_path / "runs") == []


def test_image_size_recorded_in_the_run_is_checked(run_copy, capsys):
    """Rule: a run records every image's size in split.json; evaluating on a resized image is refused."""
    split = json.loads((run_copy / "split.json").read_text())
    name = next(iter(split["image_sizes"]))
    split["image_sizes"][name] = [SIZE * 2, SIZE * 2]
    (run_copy / "split.json").write_text(json.dumps(split))
    before = {p: p.stat().st_mtime_ns for p in leftovers(run_copy)}
    code, _, err = cli(capsys, "evaluate", run_copy, "--no-progress")
    assert_user_error(code, err, name, f"{SIZE}x{SIZE}", f"{SIZE * 2}x{SIZE * 2}")
    assert {p: p.stat().st_mtime_ns for p in leftovers(run_copy)} == before


# --- label tables --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (lambda lines: ["scorerx" + lines[0][6:], *lines[1:]], ("CollectedData.csv", "'scorer'")),
        (lambda lines: lines[3:], ("CollectedData.csv", "header")),
        (lambda lines: [lines[0], lines[2], lines[1], *lines[3:]], ("CollectedData.csv", "'bodyparts'")),
        (lambda lines: lines[:3], ("CollectedData.csv", "no labelled frames")),
        (lambda lines: [], ("CollectedData.csv",)),
        (lambda lines: lines[:5], ("2 labelled frames", "data.split")),
        (lambda lines: [*lines, lines[4]], ("CollectedData.csv", "row 5", "row 20", "img0001.png")),
        (lambda lines: [*lines[:4], lines[4] + ",1,2"], ("CollectedData.csv", "row 5", "cells")),
    ],
    ids=[
        "wrong-header",
        "missing-header",
        "swapped-header-rows",
        "header-only",
        "empty-file",
        "too-few-for-split",
        "duplicated-row",
        "extra-cells",
    ],
)
def test_bad_label_table(project, tmp_path, capsys, edit, needles):
    write_csv(project, edit(csv_lines(project)))
    code, _, err = cli(capsys, *train_args(project, tmp_path / "runs"))
    assert_user_error(code, err, *needles)
    assert leftovers(tmp_path / "runs") == []


@pytest.mark.parametrize(
    ("value", "needles"),
    [
        ("abc", ("row 6", "column", "'abc'", "not a number")),
        ("inf", ("img0003.png", "infinite")),
        ("-inf", ("img0003.png", "infinite")),
    ],
    ids=["text", "inf", "minus-inf"],
)
def test_bad_coordinate(project, tmp_path, capsys, value, needles):
    set_cell(project, 6, first_labelled_column(project, 6), value)
    code, _, err = cli(capsys, *train_args(project, tmp_path / "runs"))
    assert_user_error(code, err, "CollectedData.csv", *needles)
    assert leftovers(tmp_path / "runs") == []


def test_nan_coordinate_is_a_missing_keypoint(project):
    set_cell(project, 6, 2, "nan")
    frames = read_dlc_csv(project / "CollectedData.csv")
    assert np.isnan(frames.keypoints[2, 0]).all()


@pytest.mark.parametrize("value", ["-50", "1e6"], ids=["negative", "beyond-width"])
def test_out_of_image_coordinate_becomes_missing_with_a_warning(project, value, caplog):
    """Rule: a labelled point outside its image ([-0.5, W - 0.5] x [-0.5, H - 0.5]) is treated as missing."""
    from keyhead.data.checks import check_images

    set_cell(project, 6, 2, value)
    frames = read_dlc_csv(project / "CollectedData.csv")
    assert np.isfinite(frames.keypoints[2, 0]).all()
    with caplog.at_level(logging.WARNING, logger="keyhead"):
        checked, sizes = check_images(frames)
    assert np.isnan(checked.keypoints[2, 0]).all()
    assert np.isfinite(checked.keypoints[2, 1:]).all()
    assert sizes[2] == (SIZE, SIZE)
    message = " ".join(r.getMessage() for r in caplog.records)
    assert "CollectedData.csv" in message and "img0003.png" in message and "'nose'" in message
    assert "outside" in message


def test_keypoint_names_that_do_not_match_the_model(run_dir, project, capsys):
    lines = csv_lines(project)
    lines[1] = lines[1].replace("nose", "snout")
    write_csv(project, lines)
    code, _, err = cli(capsys, "evaluate", run_dir, "--data", project, "--no-progress")
    assert_user_error(code, err, "CollectedData.csv", "'nose'", "snout")
    assert not (run_dir / "eval-project").exists()


# --- configs -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("train.epoch=3", ("'train.epoch'", "did you mean 'epochs'")),
        ("trian.epochs=3", ("'trian'", "did you mean 'train'")),
        ("train.epochs=abc", ("'train.epochs'", "integer")),
        ("train.epochs=-1", ("'train.epochs'", "greater than or equal to 1")),
        ("train.batch_size=0", ("'train.batch_size'", "greater than or equal to 1")),
        ("data.input_size=[100,100]", ("'data.input_size'", "multiple of 32")),
        ("data.input_size=banana", ("'data.input_size'",)),
        ("train.lr=-0.1", ("'train.lr'", "greater than 0")),
        ("model.head=heatmapp", ("head", "did you mean 'heatmap'")),
        ("model.backbone=resnet1", ("backbone", "did you mean")),
        ("train.epochs", ("key=value",)),
    ],
    ids=[
        "unknown-key",
        "unknown-section",
        "wrong-type",
        "negative-epochs",
        "batch-size-0",
        "size-not-multiple-of-32",
        "size-wrong-type",
        "negative-lr",
        "unknown-head",
        "unknown-backbone",
        "not-key-value",
    ],
)
def test_bad_config_override(synth, tmp_path, capsys, override, needles):
    code, _, err = cli(capsys, *train_args(synth, tmp_path / "runs", override))
    assert_user_error(code, err, *needles)
    assert leftovers(tmp_path / "runs") == []


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("train:\n  epochz: 3\n", ("bad.yaml", "'train.epochz'", "did you mean 'epochs'")),
        ("train: [1, 2\n", ("bad.yaml", "not valid YAML")),
        ("- 1\n- 2\n", ("bad.yaml", "mapping")),
        ("train: !!python/object/apply:os.system ['echo hacked']\n", ("bad.yaml", "not valid YAML")),
    ],
    ids=["unknown-key", "broken-yaml", "not-a-mapping", "python-tag"],
)
def test_bad_config_file(synth, tmp_path, capsys, text, needles):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    args = train_args(synth, tmp_path / "runs")
    code, _, err = cli(capsys, args[0], config, *args[1:])
    assert_user_error(code, err, *needles)
    assert leftovers(tmp_path / "runs") == []


def test_missing_config_file_and_missing_data(tmp_path, capsys):
    code, _, err = cli(capsys, "train", tmp_path / "nope.yaml")
    assert_user_error(code, err, "nope.yaml", "does not exist")
    code, _, err = cli(capsys, *train_args(tmp_path / "nowhere", tmp_path / "runs"))
    assert_user_error(code, err, "nowhere", "not found")
    assert leftovers(tmp_path / "runs") == []


# --- run folders ---------------------------------------------------------------------------------------------------


def test_run_folder_without_weights(run_copy, capsys, tmp_path):
    (run_copy / "model.safetensors").unlink()
    code, _, err = cli(capsys, "predict", run_copy, run_copy.parent, "--out", tmp_path / "out", "--no-progress")
    assert_user_error(code, err, "model.safetensors", "missing")
    assert leftovers(tmp_path / "out") == []


def test_run_folder_without_keypoint_names(run_copy, capsys):
    (run_copy / "keypoints.txt").unlink()
    code, _, err = cli(capsys, "evaluate", run_copy, "--no-progress")
    assert_user_error(code, err, "keypoints.txt")


def test_run_folder_config_with_unknown_key(run_copy, capsys):
    config = run_copy / "config.yaml"
    config.write_text(config.read_text() + "from_the_future: 1\n")
    code, _, err = cli(capsys, "evaluate", run_copy, "--no-progress")
    assert_user_error(code, err, "config.yaml", "'from_the_future'", "another keyhead version")


def test_run_folder_from_a_newer_keyhead(run_copy, capsys):
    path = run_copy / "model.safetensors"
    state = load_file(str(path))
    save_file(state, str(path), metadata={"format": "keyhead", "format_version": "99"})
    code, _, err = cli(capsys, "evaluate", run_copy, "--no-progress")
    assert_user_error(code, err, "model.safetensors", "format version 99", "upgrade keyhead")


def test_run_folder_with_truncated_weights(run_copy, capsys):
    path = run_copy / "model.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    code, _, err = cli(capsys, "evaluate", run_copy, "--no-progress")
    assert_user_error(code, err, "model.safetensors", "truncated or corrupt")


def test_not_a_run_folder(tmp_path, capsys):
    code, _, err = cli(capsys, "evaluate", tmp_path / "nothing")
    assert_user_error(code, err, "nothing", "does not exist")
    code, _, err = cli(capsys, "train", "--resume", tmp_path)
    assert_user_error(code, err, str(tmp_path), "resumed")


# --- prediction ----------------------------------------------------------------------------------------------------


def test_predict_missing_and_corrupt_images(run_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = cli(capsys, "predict", run_dir, tmp_path / "missing.png", "--out", out, "--no-progress")
    assert_user_error(code, err, "missing.png", "does not exist")
    bad = tmp_path / "images" / "bad.png"
    bad.parent.mkdir()
    bad.write_bytes(b"not a png at all")
    code, _, err = cli(capsys, "predict", run_dir, bad.parent, "--out", out, "--no-progress")
    assert_user_error(code, err, "bad.png", "corrupt")
    assert leftovers(out) == []


def test_predict_a_text_file(run_dir, tmp_path, capsys):
    note = tmp_path / "notes.txt"
    note.write_text("hello")
    code, _, err = cli(capsys, "predict", run_dir, note, "--out", tmp_path / "out", "--no-progress")
    assert_user_error(code, err, "notes.txt")
    assert leftovers(tmp_path / "out") == []


# --- fuzzing: every reader gives a valid result or a KeyheadError, nothing else -------------------------------------

_fuzz = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
_coco_like = st.fixed_dictionaries(
    {},
    optional={
        "images": st.lists(
            st.fixed_dictionaries(
                {},
                optional={"id": st.integers(0, 3) | st.text(max_size=3), "file_name": st.text(max_size=12)},
            ),
            max_size=3,
        )
        | _json_values,
        "annotations": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "image_id": st.integers(0, 3),
                    "category_id": st.integers(0, 2),
                    "keypoints": st.lists(st.floats(allow_nan=True) | st.integers(-2, 3), max_size=9) | _json_values,
                    "bbox": st.lists(st.floats(), max_size=5) | _json_values,
                },
            ),
            max_size=3,
        )
        | _json_values,
        "categories": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "id": st.integers(0, 2),
                    "keypoints": st.lists(st.text(max_size=4), max_size=3) | _json_values,
                    "skeleton": st.lists(st.lists(st.integers(-1, 4), max_size=3), max_size=3) | _json_values,
                },
            ),
            max_size=2,
        )
        | _json_values,
    },
)


def _expect_valid_or_keyhead_error(read, path: Path) -> None:
    try:
        result = read(path)
    except KeyheadError as exc:
        assert "\n" not in str(exc).strip(), str(exc)
        return
    assert result is not None


@_fuzz
@given(content=st.one_of(st.binary(max_size=300), _coco_like.map(lambda d: json.dumps(d).encode())))
def test_fuzzed_coco_json(tmp_path, content):
    path = tmp_path / "labels.json"
    path.write_bytes(content)
    _expect_valid_or_keyhead_error(read_coco, path)


_pts_line = st.one_of(
    st.just("version: 1"),
    st.builds(lambda n: f"n_points: {n}", st.integers(-1, 4) | st.text(max_size=3)),
    st.just("{"),
    st.just("}"),
    st.builds(lambda x, y: f"{x} {y}", st.floats(allow_nan=True), st.floats(allow_nan=True)),
    st.text(max_size=10),
)


@_fuzz
@given(
    content=st.one_of(
        st.binary(max_size=200),
        st.lists(_pts_line, max_size=8).map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass")),
    )
)
def test_fuzzed_pts(tmp_path, content):
    path = tmp_path / "face.pts"
    path.write_bytes(content)
    _expect_valid_or_keyhead_error(read_pts, path)
    image = tmp_path / "face.png"
    if not image.exists():
        cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    _expect_valid_or_keyhead_error(read_pts_folder, tmp_path)


_csv_cell = st.one_of(st.just(""), st.floats(allow_nan=True).map(str), st.text(max_size=6), st.just("nan"))


@_fuzz
@given(
    rows=st.lists(st.lists(_csv_cell, min_size=1, max_size=5), max_size=6),
    header=st.sampled_from(
        [
            "scorer,me,me\nbodyparts,a,a\ncoords,x,y\n",
            "scorer,,,me,me\nbodyparts,,,a,a\ncoords,,,x,y\n",
            "scorer,me,me,me\nbodyparts,a,a,a\ncoords,x,y,likelihood\n",
            "",
        ]
    ),
)
def test_fuzzed_dlc_csv_rows(tmp_path, rows, header):
    path = tmp_path / "CollectedData.csv"
    path.write_text(header + "\n".join(",".join(r) for r in rows), encoding="utf-8", errors="surrogatepass")
    _expect_valid_or_keyhead_error(read_dlc_csv, path)


# --- videos --------------------------------------------------------------------------------------------------------


def _empty_video(path: Path) -> Path:
    """A well-formed MP4 container with a video stream and no frames."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    return path


@pytest.mark.parametrize("kind", ["garbage", "truncated", "zero-frames", "missing"])
def test_unreadable_videos(run_dir, synth, tmp_path, capsys, kind):
    video = tmp_path / "clip.mp4"
    if kind == "garbage":
        video.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 4)
    elif kind == "truncated":
        source = next((synth / "videos").glob("*.mp4"))
        video.write_bytes(source.read_bytes()[:300])
    elif kind == "zero-frames":
        _empty_video(video)
    out = tmp_path / "out"
    code, _, err = cli(capsys, "predict", run_dir, video, "--out", out, "--no-progress", "--no-overlays")
    assert_user_error(code, err, "clip.mp4")
    assert not [p for p in leftovers(out) if p.suffix == ".csv"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=300), magic=st.booleans())
def test_fuzzed_dlc_h5(tmp_path, content, magic):
    from keyhead.data.formats import read_dlc_h5

    path = tmp_path / "CollectedData.h5"
    path.write_bytes((b"\x89HDF\r\n\x1a\n" if magic else b"") + content)
    _expect_valid_or_keyhead_error(read_dlc_h5, path)


@_fuzz
@given(text=st.text(max_size=200))
def test_fuzzed_dlc_project_config(tmp_path, text):
    from keyhead.data.formats import read_dlc_project

    (tmp_path / "labeled-data").mkdir(exist_ok=True)
    (tmp_path / "config.yaml").write_text(text, encoding="utf-8", errors="surrogatepass")
    _expect_valid_or_keyhead_error(read_dlc_project, tmp_path)


# === issue 13, part two ==============================================================================

# --- configs ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("train.accelerator=tpu", "train.accelerator"),
        ("train.precision=bogus", "train.precision"),
        ("train.devices=0", "train.devices"),
        ("train.devices=one", "train.devices"),
        ("data.crop_margin=inf", "data.crop_margin"),
        ("data.crop_margin=.nan", "data.crop_margin"),
    ],
)
def test_trainer_settings_are_checked_before_anything_runs(synth, tmp_path, capsys, override, needle):
    code, _, err = cli(capsys, *train_args(synth, tmp_path / "runs", override))
    assert_user_error(code, err, needle)
    assert leftovers(tmp_path / "runs") == []


def test_a_config_argument_may_be_a_template_name(tmp_path, capsys):
    cfg = load_config("face_heatmap", [f"data.path={tmp_path / 'faces'}"])
    assert cfg.model.head == "heatmap" and cfg.data.path == str(tmp_path / "faces")  # not resolved into the package
    assert (template_dir() / "face_heatmap.yaml").is_file()
    code, _, err = cli(capsys, "train", "face_heatmap", f"data.path={tmp_path / 'missing'}", "--no-progress")
    line = assert_user_error(code, err, "missing")
    assert "config file" not in line
    code, _, err = cli(capsys, "train", "face_heatmapp", "--no-progress")
    assert_user_error(code, err, "face_heatmapp", "template name", "face_heatmap")


def test_a_yaml_alias_bomb_gets_a_short_error(tmp_path, capsys):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 40)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\ntrain: *a39\n")
    code, _, err = cli(capsys, "train", bomb, "--no-progress")
    line = assert_user_error(code, err, "bomb.yaml", "aliases")
    assert len(err) < 400 and len(line) < 200


def test_a_long_bad_value_is_quoted_short(synth, tmp_path, capsys):
    code, _, err = cli(capsys, *train_args(synth, tmp_path / "runs", "train.lr=" + "x" * 5000))
    line = assert_user_error(code, err, "train.lr")
    assert len(line) < 300


# --- label files ---------------------------------------------------------------------------------------------------


def _coco(tmp_path: Path, image_id: object, extra: str = "") -> Path:
    text = (
        '{"images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 8}], '
        '"annotations": [{"id": 1, "image_id": IMAGE_ID, "category_id": 1, "keypoints": [1, 1, 2], '
        '"num_keypoints": 1}], "categories": [{"id": 1, "name": "x", "keypoints": ["k"], "skeleton": []}]EXTRA}'
    )
    text = text.replace("IMAGE_ID", str(image_id)).replace("EXTRA", extra)
    path = tmp_path / "coco.json"
    path.write_text(text)
    return path


@pytest.mark.parametrize("image_id", ["[1, 2]", "1" * 400, "{}", '"1"', "1.5", "true"])
def test_coco_with_a_bad_image_id(tmp_path, capsys, image_id):
    code, _, err = cli(capsys, "convert", _coco(tmp_path, image_id), tmp_path / "out.csv")
    assert_user_error(code, err, "coco.json", "image_id")
    assert not (tmp_path / "out.csv").exists()


def test_deeply_nested_json_is_refused_in_one_line(tmp_path, capsys):
    path = _coco(tmp_path, "1", ', "deep": ' + "[" * 100000 + "]" * 100000)
    code, _, err = cli(capsys, "convert", path, tmp_path / "out.csv")
    assert_user_error(code, err, "coco.json", "nested")
    assert not (tmp_path / "out.csv").exists()


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))


@pytest.mark.parametrize("content", [b"", _png_header(60000, 60000)], ids=["zero-byte", "60000x60000"])
def test_empty_and_gigantic_images(project, tmp_path, capsys, content):
    (project / "labeled-data" / "img0001.png").write_bytes(content)
    code, _, err = cli(capsys, *train_args(project, tmp_path / "runs"))
    line = assert_user_error(code, err, "img0001.png")
    assert len(line) > len("keyhead: error: ") + 30  # says what is wrong, not an empty line
    assert leftovers(tmp_path / "runs") == []


# --- outputs -------------------------------------------------------------------------------------------------------


def test_output_folder_that_is_a_file(synth, run_dir, tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    code, _, err = cli(capsys, *train_args(synth, blocker))
    assert_user_error(code, err, "blocker")
    image = next((synth / "labeled-data").glob("*.png"))
    code, _, err = cli(capsys, "predict", run_dir, image, "--out", blocker, "--no-progress")
    assert_user_error(code, err, "blocker")
    assert blocker.read_text() == "a file"


def test_image_prediction_with_batch_size_zero(run_dir, synth, tmp_path, capsys):
    image = next((synth / "labeled-data").glob("*.png"))
    code, _, err = cli(capsys, "predict", run_dir, image, "--out", tmp_path / "o", "--batch-size", "0", "--no-progress")
    assert_user_error(code, err, "--batch-size")
    assert leftovers(tmp_path / "o") == []


# --- run folders ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["{broken", "[1, 2]", '{"test": "not a list"}', '{"test": [1, 2]}'])
def test_damaged_split_json(run_copy, capsys, text):
    (run_copy / "split.json").write_text(text)
    code, _, err = cli(capsys, "evaluate", run_copy, "--no-progress")
    assert_user_error(code, err, "split.json")


@pytest.mark.parametrize("text", ["epoch,train_loss\n0,abc\n", "epoch,train_loss\n0,1,2,3\n"])
def test_damaged_history_on_resume(run_copy, capsys, text):
    (run_copy / "history.csv").write_text(text)
    code, _, err = cli(capsys, "train", "--resume", run_copy, "train.epochs=2", "--no-progress")
    assert_user_error(code, err, "history.csv")


def test_garbage_optimizer_metadata_is_refused_on_resume(run_copy, capsys):
    last = run_copy / "last.safetensors"
    with safe_open(str(last), framework="pt") as f:
        meta = dict(f.metadata())
    meta["optimizer"] = json.dumps({"param_groups": "garbage", "scalars": {}})
    save_file(load_file(str(last)), str(last), metadata=meta)
    code, _, err = cli(capsys, "train", "--resume", run_copy, "train.epochs=2", "--no-progress")
    assert_user_error(code, err, "last.safetensors", "optimizer state")
