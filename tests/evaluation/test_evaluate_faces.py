"""``keyhead evaluate RUN --data DIR`` and ``keyhead predict --flip`` on unseen face photos with .pts files (HELEN)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from keyhead.cli import main
from keyhead.data.formats import read_dlc_predictions, read_pts


@pytest.fixture(scope="module")
def face_run(tmp_path_factory) -> Path:
    from keyhead.data.synth import generate

    root = tmp_path_factory.mktemp("face_run")
    generate(
        root / "data", kind="face", n_labeled=10, image_size=(96, 96), video_frames=10, occlusion=0.0, progress=False
    )
    main(
        [
            "train",
            f"data.path={root / 'data'}",
            f"output_dir={root / 'runs'}",
            "name=face",
            "model.backbone=tiny",
            "model.head=regression",
            "model.loss=smooth_l1",
            "data.input_size=[64,64]",
            "data.in_channels=1",
            "data.crop=landmarks",
            "train.epochs=1",
            "train.batch_size=4",
            "--no-progress",
        ]
    )
    return root / "runs" / "face"


@pytest.fixture()
def helen_photos(shared_data, tmp_path) -> Path:
    """A handful of HELEN photos with their .pts files, linked (not copied) into a new folder."""
    src = shared_data / "helen-300w-68pt-subset" / "helen" / "trainset"
    folder = tmp_path / "unseen_faces"
    folder.mkdir()
    for pts in sorted(src.glob("*.pts"))[:4]:
        for f in (pts, pts.with_suffix(".jpg")):
            (folder / f.name).symlink_to(f)
    return folder


def test_evaluate_data_on_unseen_face_photos_reports_nme_with_and_without_flip(face_run, helen_photos, capsys):
    assert json.loads((face_run / "flip_pairs.json").read_text())[0] == ["jaw_0", "jaw_16"]
    main(["evaluate", str(face_run), "--data", str(helen_photos), "--no-progress"])
    plain_out = capsys.readouterr().out
    main(["evaluate", str(face_run), "--data", str(helen_photos), "--flip", "--no-progress"])
    flip_out = capsys.readouterr().out
    assert "NME" in plain_out and "flip TTA" in flip_out
    plain = json.loads((face_run / "eval-unseen_faces" / "metrics.json").read_text())
    flipped = json.loads((face_run / "eval-unseen_faces-flip" / "metrics.json").read_text())
    assert plain["flip_tta"] is False and flipped["flip_tta"] is True
    for m in (plain["splits"]["test"], flipped["splits"]["test"]):
        assert m["n_frames"] == 4 and m["nme"] > 0 and m["n_keypoints_labelled"] == 4 * 68
        assert "reliability" in m
    assert plain["splits"]["test"]["nme"] != flipped["splits"]["test"]["nme"]
    assert (face_run / "eval-unseen_faces" / "reliability_test.png").is_file()
    # predictions are in original-photo pixels: near the labelled face, not in the 64x64 input
    preds, _ = read_dlc_predictions(face_run / "eval-unseen_faces" / "predictions_test.csv")
    truth = read_pts(helen_photos / Path(preds.image_paths[0]).with_suffix(".pts").name)
    centre_err = np.linalg.norm(np.nanmean(preds.keypoints[0], 0) - truth.mean(0))
    face_size = np.ptp(truth, axis=0).max()
    assert centre_err < face_size


def test_predict_flip_crops_to_pts_landmarks(face_run, helen_photos, tmp_path):
    main(["predict", str(face_run), str(helen_photos), "--flip", "--out", str(tmp_path / "p"), "--no-progress"])
    preds, likelihood = read_dlc_predictions(tmp_path / "p" / "predictions.csv")
    assert preds.keypoints.shape == (4, 68, 2) and np.isfinite(likelihood).all()
    assert len(list((tmp_path / "p" / "overlays").glob("*.png"))) == 4
