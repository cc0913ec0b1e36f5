"""Top-down multi-animal pose end to end through the real CLI: train both stages, evaluate, predict and track."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from keyhead.cli import main
from keyhead.types import InstanceFrames
from tests.cli_helpers import SIZE, assert_user_error, cli

TINY_TOPDOWN = (
    "model.backbone=tiny",
    "model.pretrained=false",
    f"data.input_size=[{SIZE},{SIZE}]",
    "train.epochs=1",
    "train.max_minutes=null",
    "train.batch_size=4",
    "augment.enabled=false",
    "topdown.centroid_backbone=tiny",
    "topdown.centroid_pretrained=false",
    f"topdown.centroid_input_size=[{2 * SIZE},{2 * SIZE}]",
)


@pytest.fixture(scope="module")
def herd(tmp_path_factory) -> Path:
    from keyhead.data.synth import generate

    out = tmp_path_factory.mktemp("herd") / "data"
    generate(
        out, n_labeled=12, image_size=(128, 128), video_frames=16, seed=0, occlusion=0.0, progress=False, animals=2
    )
    return out


@pytest.fixture(scope="module")
def topdown_run(herd: Path, tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    main(
        ["train", "topdown_lite0", f"data.path={herd}", f"output_dir={runs}", "name=td", *TINY_TOPDOWN, "--no-progress"]
    )
    return runs / "td"


def test_train_writes_both_stages_and_end_to_end_metrics(topdown_run: Path) -> None:
    record = json.loads((topdown_run / "topdown.json").read_text())
    assert record["animals"] == 2 and record["crop_size"] >= 64
    assert record["track_names"] == ["animal0", "animal1"]
    for stage in ("centroid", "pose"):
        assert (topdown_run / stage / "model.safetensors").is_file()
    assert (topdown_run / "centroid" / "keypoints.txt").read_text().split() == ["instance0", "instance1"]
    split = json.loads((topdown_run / "split.json").read_text())
    metrics = json.loads((topdown_run / "metrics.json").read_text())["splits"]
    assert set(metrics) == {name for name, paths in split.items() if paths}
    for m in metrics.values():
        assert {"mean_px", "mAP", "n_matched", "n_missed", "n_false", "AP50"} <= set(m)
        assert m["n_gt"] == 2 * m["frames"]  # both animals labelled in every frame


def test_pose_stage_trains_on_the_frame_split(topdown_run: Path) -> None:
    """Every crop of an image is in the image's split: no animal of a test frame is trained on."""
    frame_split = json.loads((topdown_run / "split.json").read_text())
    pose_split = json.loads((topdown_run / "pose" / "split.json").read_text())
    for name in ("train", "val", "test"):
        assert set(pose_split[name]) == set(frame_split[name])


def test_evaluate_cli(topdown_run: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, err = cli(capsys, "evaluate", topdown_run, "--no-progress")
    assert code == 0, err
    assert "matched animals" in out and "mAP" in out


def test_predict_video_tracks_and_writes_csv_and_slp(topdown_run: Path, herd: Path, tmp_path: Path) -> None:
    import sleap_io as sio

    from keyhead.io.predictions import read_multi_prediction_table

    video = next((herd / "videos").glob("*.mp4"))
    main(["predict", str(topdown_run), str(video), "--out", str(tmp_path), "--no-progress", "--labeled-video"])
    table = tmp_path / f"{video.stem}.csv"
    rows, individuals, names, xy, conf = read_multi_prediction_table(table)
    assert individuals == ["animal0", "animal1"] and len(rows) == 16 and xy.shape[1:3] == (2, len(names))
    labels = sio.load_slp(str(tmp_path / f"{video.stem}.slp"))
    assert sorted(t.name for t in labels.tracks) == ["animal0", "animal1"]
    assert (tmp_path / f"{video.stem}_labeled.mp4").stat().st_size > 0
    summary = json.loads((tmp_path / f"{video.stem}_video.json").read_text())
    assert summary["frames"] == 16 and summary["identities"] == individuals

    # an interrupted prediction resumes from its last complete row, with the same identities as an unbroken run
    lines = table.read_text().splitlines(keepends=True)
    partial = table.with_name(table.name + ".part")
    partial.write_text("".join(lines[:-6]) + lines[-6][:5])  # 5 rows missing, the 6th cut short
    table.unlink()
    main(["predict", str(topdown_run), str(video), "--out", str(tmp_path), "--no-progress"])
    _, _, _, again, _ = read_multi_prediction_table(table)
    np.testing.assert_allclose(again, xy, atol=2e-4)


def test_predict_images_writes_a_multi_animal_table(topdown_run: Path, herd: Path, tmp_path: Path) -> None:
    images = sorted((herd / "labeled-data").rglob("*.png"))[:3]
    main(["predict", str(topdown_run), *map(str, images), "--out", str(tmp_path), "--no-progress"])
    with open(tmp_path / "predictions.csv", newline="") as f:
        header = [next(csv.reader(f)) for _ in range(2)]
    assert header[1][0] == "individuals"
    assert len(list((tmp_path / "overlays").glob("*.png"))) == 3


def test_stage_rows_from_instances() -> None:
    from keyhead.topdown.stages import auto_crop_size, centroid_frames, crop_frames, instance_centres

    kp = np.full((2, 2, 3, 2), np.nan, np.float32)
    kp[0, 0] = [[10, 10], [20, 10], [30, 30]]
    kp[0, 1] = [[100, 50], [110, 60], [120, 50]]
    kp[1, 1] = [[5, 5], [15, 5], [10, 25]]
    frames = InstanceFrames(".", ["a.png", "b.png"], kp, ["p", "q", "r"])
    centres = instance_centres(frames)
    np.testing.assert_allclose(centres[0], [[20, 20], [110, 55]])
    assert np.isnan(centres[1, 0]).all()
    np.testing.assert_allclose(instance_centres(frames, "q")[0], [[20, 10], [110, 60]])
    stage1 = centroid_frames(frames, centres)
    np.testing.assert_allclose(stage1.keypoints[1, 0], [10, 15])  # left to right, the absent instance last
    crop = auto_crop_size(frames, centres)
    assert crop % 32 == 0 and crop >= 2 * 10 * 1.2
    stage2 = crop_frames(frames, centres, crop)
    assert stage2.image_paths == ["a.png", "a.png", "b.png"]
    box = stage2.boxes[0]
    assert box[2] == box[3] == crop and box[0] + box[2] / 2 - 0.5 == pytest.approx(20)


def test_unknown_anchor_is_a_one_line_error(herd: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = cli(
        capsys, "train", "topdown_lite0", f"data.path={herd}", f"output_dir={tmp_path}", "topdown.anchor=wing_tip"
    )
    assert_user_error(code, err, "topdown.anchor", "wing_tip")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_resume_of_a_finished_topdown_run_keeps_both_stages(topdown_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "td"
    shutil.copytree(topdown_run, copy)
    before = (copy / "pose" / "model.safetensors").read_bytes()
    main(["train", "--resume", str(copy), "--no-progress"])
    assert (copy / "pose" / "model.safetensors").read_bytes() == before
    assert (copy / "metrics.json").is_file()


def test_report_of_a_topdown_run(topdown_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    page = topdown_run / "report.html"
    assert "OKS mAP" in page.read_text()  # written at the end of training
    code, out, err = cli(capsys, "report", topdown_run, "--out", tmp_path / "r.html")
    assert code == 0, err
    text = (tmp_path / "r.html").read_text()
    assert "End to end" in text and "data:image/png;base64" in text and 'href="pose/report.html"' in text


@pytest.mark.parametrize("option", [("--flip",), ("--runtime", "onnx")], ids=["flip", "onnx"])
def test_single_animal_only_predict_options_are_refused(
    topdown_run: Path, herd: Path, tmp_path: Path, capsys: pytest.CaptureFixture, option: tuple[str, ...]
) -> None:
    image = sorted((herd / "labeled-data").rglob("*.png"))[0]
    code, _, err = cli(capsys, "predict", topdown_run, image, "--out", tmp_path / "p", *option)
    assert_user_error(code, err, option[0], "multi-animal")
    assert not (tmp_path / "p").exists()
