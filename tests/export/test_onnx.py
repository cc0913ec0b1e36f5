"""ONNX export (model + decoder) and the torch-free onnxruntime prediction path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from keyhead.config import RunConfig, save_config
from keyhead.errors import KeyheadError
from keyhead.export.onnx import TOLERANCE_PX, export_onnx, sidecar_path
from keyhead.models.build import load_run, model_from_config
from keyhead.models.weights import save_weights
from keyhead.runtime import OnnxKeypointModel, predict_images_onnx

NAMES = ["nose", "left_ear", "right_ear", "tail"]


def make_run(folder: Path, head: str = "heatmap", decoder: str = "subpixel_maxima", channels: int = 3) -> Path:
    """A run folder holding a (randomly initialised, seeded) tiny model, as `keyhead train` would leave it."""
    torch.manual_seed(0)
    cfg = RunConfig.model_validate(
        {
            "data": {"input_size": [64, 96], "in_channels": channels},
            "model": {
                "backbone": "tiny",
                "head": head,
                "decoder": decoder,
                "loss": "kl" if head != "regression" else "l1",
            },
        }
    )
    folder.mkdir(parents=True)
    save_config(cfg, folder / "config.yaml")
    (folder / "keypoints.txt").write_text("\n".join(NAMES) + "\n")
    (folder / "skeleton.json").write_text(json.dumps([["nose", "left_ear"], ["nose", "right_ear"]]))
    model = model_from_config(cfg, NAMES, pretrained=False)
    # sharper maps than the initial ones, so the decoders see peaks as after training (the heatmap head starts
    # near uniform: Lightning Pose's Xavier gain 0.01)
    scale = 400.0 if head == "heatmap" else 4.0
    with torch.no_grad():
        for p in model.head.parameters():
            p.mul_(scale)
    save_weights(model, folder / "model.safetensors")
    return folder


def write_images(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (w, h) in enumerate(sizes):
        img = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 3)
        cv2.circle(img, (w // 3, h // 2), max(3, w // 10), (255, 255, 255), -1)
        paths.append(folder / f"img{i}.png")
        cv2.imwrite(str(paths[-1]), img)
    return paths


def eager_predictions(run: Path, images: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """keyhead's own PyTorch evaluation path (dataset resize + inverse matrix)."""
    from keyhead.data.dataset import ImageCache, KeypointDataset
    from keyhead.inference.images import predict_dataset
    from keyhead.types import LabeledFrames

    model, cfg = load_run(run)
    frames = LabeledFrames(
        images[0].parent, [p.name for p in images], np.full((len(images), len(NAMES), 2), np.nan), NAMES
    )
    cache = ImageCache(frames, cfg.data.in_channels, 10**6)
    return predict_dataset(model, KeypointDataset(frames, model.input_size, None, cache=cache), batch_size=2)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A default (heatmap + subpixel_maxima) run, exported to RUN/model.onnx."""
    run = make_run(tmp_path_factory.mktemp("exported") / "run")
    assert export_onnx(run) == run / "model.onnx"
    return run


def assert_equivalent(run: Path, tmp_path: Path) -> None:
    onnx_path = run / "model.onnx"
    if not onnx_path.is_file():
        assert export_onnx(run) == onnx_path
    assert sidecar_path(onnx_path).is_file()
    images = write_images(tmp_path / "imgs", [(96, 64), (150, 101), (40, 70)])
    xy, conf = OnnxKeypointModel(onnx_path).predict([cv2.imread(str(p))[..., ::-1].copy() for p in images], 2)
    exy, econf = eager_predictions(run, images)
    assert xy.shape == (3, len(NAMES), 2) and conf.shape == (3, len(NAMES))
    assert np.isfinite(xy).all()
    assert np.abs(xy - exy).max() < TOLERANCE_PX
    assert np.abs(conf - econf).max() < 1e-3


def test_export_matches_pytorch_default_heatmap(exported: Path, tmp_path: Path):
    run = exported
    assert_equivalent(run, tmp_path)
    meta = json.loads(sidecar_path(run / "model.onnx").read_text())
    assert meta["keypoint_names"] == NAMES and meta["input"]["height"] == 64 and meta["input"]["width"] == 96
    assert meta["skeleton"] == [["nose", "left_ear"], ["nose", "right_ear"]]
    assert len(meta["input"]["mean"]) == 3 and meta["decoder"] == "subpixel_maxima"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("head", "decoder"),
    [
        ("heatmap", "argmax"),
        ("heatmap", "soft_argmax"),
        ("heatmap", "calibrated_maxima"),
        ("heatmap", "entropy_maxima"),
        ("regression", "subpixel_maxima"),
    ],
    ids=["heatmap-argmax", "heatmap-soft_argmax", "heatmap-calibrated_maxima", "heatmap-entropy_maxima", "regression"],
)
def test_export_matches_pytorch(tmp_path: Path, head: str, decoder: str):
    assert_equivalent(make_run(tmp_path / "run", head, decoder), tmp_path)


@pytest.mark.slow
def test_dynamic_batch_and_grayscale(tmp_path: Path):
    run = make_run(tmp_path / "run", channels=1)
    model = OnnxKeypointModel(export_onnx(run, tmp_path / "out" / "gray.onnx", check=False))
    assert model.channels == 1
    for b in (1, 5):
        xy, conf = model.run(np.random.default_rng(b).random((b, 1, 64, 96), dtype=np.float32))
        assert xy.shape == (b, len(NAMES), 2) and conf.shape == (b, len(NAMES))


def test_cli_predict_onnx_does_not_import_torch(exported: Path, tmp_path: Path):
    run = exported
    write_images(tmp_path / "imgs", [(96, 64), (120, 80)])
    code = (
        "import sys\n"
        "from keyhead.cli import main\n"
        f"main(['predict', {str(run)!r}, {str(tmp_path / 'imgs')!r}, '--runtime', 'onnx', '--out', "
        f"{str(tmp_path / 'pred')!r}])\n"
        "print('TORCH_LOADED', 'torch' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "TORCH_LOADED False" in res.stdout
    lines = (tmp_path / "pred" / "predictions.csv").read_text().splitlines()
    assert lines[1].split(",")[1:4] == ["nose"] * 3 and len(lines) == 3 + 2
    assert len(list((tmp_path / "pred" / "overlays").glob("*.png"))) == 2


def test_predict_onnx_errors(tmp_path: Path):
    run = make_run(tmp_path / "run")
    with pytest.raises(KeyheadError, match="keyhead export"):
        predict_images_onnx(run, [tmp_path])
    with pytest.raises(KeyheadError, match=r"\.onnx"):
        export_onnx(run, tmp_path / "model.bin")
