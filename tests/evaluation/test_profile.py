"""keyhead profile: per-module timing, shapes, parameters and FLOPs, for FOMM (seed 003's layout) and any model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import keyhead
from keyhead.cli import main
from keyhead.errors import KeyheadError
from keyhead.evaluation.profiling import layer_type, parse_size, profile_model, resolve_model

SEED_BLOCK_PARAMS = {
    "down_sampling_1": 1_920,
    "down_sampling_2": 74_112,
    "down_sampling_3": 295_680,
    "down_sampling_4": 1_181_184,
    "down_sampling_5": 4_721_664,
    "upsampling_1": 4_720_128,
    "upsampling_2": 2_360_064,
    "upsampling_3": 590_208,
    "upsampling_4": 147_648,
    "upsampling_5": 36_960,
    "hour_glass": 14_129_568,
}


def test_cli_profile_fomm(tmp_path: Path, capsys):
    out = tmp_path / "prof"
    main(["profile", "fomm_kp", "--repeats", "2", "--warmup", "1", "--out", str(out)])
    printed = capsys.readouterr().out
    for name in ("profile.md", "profile.json", "profile.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    header = next(line for line in printed.splitlines() if "total_infer_time" in line)
    for stage in ("anti_alias", "hourglass", "heatmap_keypoint", "jacobian"):
        assert f" {stage} " in header
    assert "14,129,568 (14.13 M)" in printed
    assert "| down_sampling_5 | (512,4,4) | (1024,2,2) | 4,721,664 |" in printed
    assert "| upsampling_2 | (1024,4,4) | (256,8,8) | 2,360,064 |" in printed
    assert "## Layer types per block: encoder" in printed and "| avgpool |" in printed
    assert "| interpolation |" in printed

    data = json.loads((out / "profile.json").read_text())
    assert data["settings"]["repeats"] == 2 and data["settings"]["input_size"] == [256, 256]
    assert {b["label"]: b["params"] for b in data["blocks"]} == SEED_BLOCK_PARAMS
    stages = {s["stage"]: s for s in data["stages"]}
    assert stages["anti_alias"]["params"] == 0 and stages["hourglass"]["params"] == 14_129_568
    assert stages["heatmap_keypoint"]["params"] == 17_160 and stages["jacobian"]["params"] == 68_640
    assert all(s["mean_ms"] > 0 for name, s in stages.items() if name != "other")
    # the stages and 'other' add up to the hooked total, which also has an un-hooked counterpart
    hooked = data["totals"]["hooked"]["mean_ms"]
    assert sum(s["mean_ms"] for s in data["stages"]) == pytest.approx(hooked, rel=1e-6)
    assert data["totals"]["no_hooks"]["mean_ms"] > 0
    # FLOPs = 2 x MACs: down block 1 convolves 3 -> 64 channels, 3x3, at 64x64
    block1 = next(b for b in data["blocks"] if b["label"] == "down_sampling_1")
    assert block1["flops"] == 2 * 64 * 64 * 64 * 3 * 9
    assert data["totals"]["flops"] == sum(s["flops"] for s in data["stages"])


def test_profile_tiny_heatmap_model():
    torch.manual_seed(0)
    model = keyhead.create_model(num_keypoints=3, backbone="tiny", input_size=(64, 64))
    prof = profile_model(model, name="tiny", repeats=2, warmup=1)
    assert [s["stage"] for s in prof.stages] == ["backbone", "head", "decode", "other"]
    labels = [b["label"] for b in prof.blocks]
    assert labels[:4] == ["stages.0", "stages.1", "stages.2", "stages.3"] and labels[-2:] == ["backbone", "head"]
    assert prof.blocks[0]["input_shape"] == [3, 64, 64] and prof.blocks[0]["output_shape"] == [16, 16, 16]
    assert sum(b["params"] for b in prof.blocks if b["group"] == "backbone") == prof.blocks[-2]["params"]
    assert {"conv", "batchnorm", "relu"} <= set(prof.layer_types["backbone"]["rows"])
    md = prof.to_markdown()
    assert "| stages.3 | (64,4,4) | (128,2,2) |" in md and "## Layer types per block: backbone" in md
    first_conv = next(m for m in prof.modules if m["layer_type"] == "conv")
    # 3 -> 16 channels, 3x3, stride 2 onto 32x32, no bias: 2 * MACs
    assert first_conv["flops"] == 2 * 32 * 32 * 16 * 3 * 9


def test_cli_profile_backbone_name(tmp_path: Path, capsys):
    main(["profile", "tiny", "--input-size", "64", "--repeats", "2", "--warmup", "0", "--num-keypoints", "2"])
    printed = capsys.readouterr().out
    assert "tiny + heatmap head (K=2)" in printed
    header = next(line for line in printed.splitlines() if "total_infer_time" in line)
    assert [c.strip() for c in header.split("|")[2:6]] == ["backbone", "head", "decode", "other"]


def test_profile_run_folder(tmp_path: Path):
    from keyhead.config import load_config, save_config
    from keyhead.models.weights import save_weights

    cfg = load_config(None, ["model.backbone=tiny", "data.input_size=[64,64]"])
    model = keyhead.create_model(keypoint_names=["a", "b"], backbone="tiny", input_size=(64, 64))
    run = tmp_path / "run"
    run.mkdir()
    save_config(cfg, run / "config.yaml")
    (run / "keypoints.txt").write_text("a\nb\n")
    save_weights(model, run / "model.safetensors")
    loaded, description = resolve_model(str(run))
    assert description == f"run {run}" and len(loaded.keypoint_names) == 2
    prof = profile_model(loaded, repeats=1, warmup=0)
    assert prof.settings["input_size"] == [64, 64] and prof.totals["params"] == sum(
        p.numel() for p in model.parameters()
    )
    with pytest.raises(KeyheadError, match="run folder"):
        resolve_model(str(run), ["model.head=regression"])


def test_resolve_errors_and_sizes():
    with pytest.raises(KeyheadError, match="did you mean 'fomm_kp'"):
        resolve_model("fomm_k")
    assert parse_size("256") == (256, 256) and parse_size("256x192") == (256, 192) and parse_size(None) is None
    with pytest.raises(KeyheadError, match="HxW"):
        parse_size("big")
    with pytest.raises(KeyheadError, match="repeats"):
        profile_model(keyhead.create_model(num_keypoints=1, backbone="tiny", input_size=(64, 64)), repeats=0)


@pytest.mark.parametrize(
    "module,kind",
    [
        (nn.Conv2d(1, 1, 3), "conv"),
        (nn.ConvTranspose2d(1, 1, 3), "conv_transpose"),
        (nn.BatchNorm2d(1), "batchnorm"),
        (nn.ReLU(), "relu"),
        (nn.AvgPool2d(2), "avgpool"),
        (nn.Upsample(scale_factor=2), "interpolation"),
        (nn.Linear(1, 1), "linear"),
        (nn.PixelShuffle(2), "pixelshuffle"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_layer_type(module: nn.Module, kind: str):
    assert layer_type(module) == kind
