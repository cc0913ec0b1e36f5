"""Ensembles: median / mean of several runs' keypoints, the spread across members as uncertainty."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from keyhead.cli import main
from keyhead.config import RunConfig, save_config
from keyhead.errors import KeyheadError
from keyhead.inference.ensembles import combine_csvs, combine_keypoints, predict_ensemble
from keyhead.inference.images import predict_images
from keyhead.io.predictions import read_prediction_table, write_prediction_table
from keyhead.models.build import model_from_config
from keyhead.models.weights import save_weights

NAMES = ["a", "b", "c"]


def make_run(folder: Path, seed: int, names: list[str] = NAMES) -> Path:
    """A run folder with a seeded, randomly initialised tiny heatmap model."""
    torch.manual_seed(seed)
    cfg = RunConfig.model_validate({"data": {"input_size": [64, 64]}, "model": {"backbone": "tiny"}})
    folder.mkdir(parents=True)
    save_config(cfg, folder / "config.yaml")
    (folder / "keypoints.txt").write_text("\n".join(names) + "\n")
    (folder / "skeleton.json").write_text(json.dumps([]))
    save_weights(model_from_config(cfg, names, pretrained=False), folder / "model.safetensors")
    return folder


def test_combine_median_mean_variance():
    xy = np.zeros((3, 2, 1, 2))
    xy[:, 0, 0, 0] = [0.0, 2.0, 10.0]  # one member astray in frame 0
    xy[:, 1] = np.nan
    xy[0, 1, 0] = [5.0, 6.0]  # frame 1: only member 0 found the point
    conf = np.array([0.9, 0.6, 0.3])[:, None, None] * np.ones((3, 2, 1))
    med, c, var = combine_keypoints(xy, conf, "median")
    mean, _, _ = combine_keypoints(xy, conf, "mean")
    assert med[0, 0].tolist() == [2.0, 0.0] and mean[0, 0, 0] == pytest.approx(4.0)
    assert var[0, 0, 0] == pytest.approx(np.var([0.0, 2.0, 10.0])) and var[0, 0, 1] == 0.0
    assert med[1, 0].tolist() == [5.0, 6.0] and var[1, 0].tolist() == [0.0, 0.0]
    assert c[0, 0] == pytest.approx(0.6)
    with pytest.raises(KeyheadError, match="median or mean"):
        combine_keypoints(xy, conf, "max")


def test_combine_csvs_checks_members(tmp_path: Path):
    rows = ["0", "1"]
    xy = np.arange(12, dtype=np.float32).reshape(2, 3, 2)
    conf = np.full((2, 3), 0.5, np.float32)
    a = write_prediction_table(tmp_path / "a.csv", rows, NAMES, xy, conf)
    b = write_prediction_table(tmp_path / "b.csv", rows, NAMES, xy + 2, conf)
    main_csv, var_csv = combine_csvs([a, b], tmp_path / "out.csv", "mean")
    _, names, got, lik, _ = read_prediction_table(main_csv)
    assert names == NAMES and np.allclose(got, xy + 1) and np.allclose(lik, 0.5)
    lines = var_csv.read_text().splitlines()
    assert lines[2].startswith("coords,x_var,y_var") and lines[3].split(",")[1:3] == ["1.0", "1.0"]
    c = write_prediction_table(tmp_path / "c.csv", rows, ["a", "b", "z"], xy, conf)
    with pytest.raises(KeyheadError, match="share their keypoints"):
        combine_csvs([a, c], tmp_path / "x.csv")


def test_predict_ensemble_end_to_end(tmp_path: Path, capsys):
    runs = [make_run(tmp_path / f"run{i}", seed=i) for i in range(3)]
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(images / f"img{i}.png"), rng.integers(0, 255, (48, 80, 3), dtype=np.uint8))
    out = tmp_path / "pred"
    main(
        [
            "predict",
            str(runs[0]),
            str(images),
            "--ensemble",
            str(runs[1]),
            "--ensemble",
            str(runs[2]),
            "--combine",
            "median",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    rows, names, xy, lik, _ = read_prediction_table(out / "predictions.csv")
    assert rows == ["img0.png", "img1.png", "img2.png"] and names == NAMES and np.isfinite(xy).all()
    members = []
    for run in runs:  # each member alone, then the median by hand
        predict_images(run, [images], tmp_path / run.name, overlays=False, progress=False)
        members.append(read_prediction_table(tmp_path / run.name / "predictions.csv")[2])
    np.testing.assert_allclose(xy, np.median(np.stack(members), axis=0), atol=1e-4)
    var = np.loadtxt(out / "predictions_variance.csv", delimiter=",", skiprows=3, usecols=range(1, 7))
    np.testing.assert_allclose(var.reshape(3, 3, 2), np.var(np.stack(members), axis=0), rtol=1e-4, atol=1e-4)
    assert not list(out.glob(".ensemble-*"))  # member outputs are temporary
    with pytest.raises(KeyheadError, match="differ"):
        predict_ensemble([runs[0], make_run(tmp_path / "other", 0, ["x", "y", "z"])], [images], tmp_path / "o")
    with pytest.raises(KeyheadError, match="at least two"):
        predict_ensemble([runs[0]], [images])


@pytest.mark.parametrize(
    "option", [["--max-frames", "5"], ["--labeled-video"], ["--flip"]], ids=["max-frames", "labeled-video", "flip"]
)
def test_ensemble_refuses_options_it_would_ignore(tmp_path: Path, capsys, option):
    """An option the ensemble path does not implement is a one-line error, not silently dropped."""
    runs = [make_run(tmp_path / f"run{i}", seed=i) for i in range(2)]
    img = tmp_path / "img.png"
    cv2.imwrite(str(img), np.zeros((48, 80, 3), np.uint8))
    with pytest.raises(SystemExit) as info:
        main(["predict", str(runs[0]), str(img), "--ensemble", str(runs[1]), "--out", str(tmp_path / "o"), *option])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("keyhead: error: ") and option[0] in err and "--ensemble" in err
    assert not (tmp_path / "o").exists()
