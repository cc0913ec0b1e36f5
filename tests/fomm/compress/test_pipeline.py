"""Compression of the FOMM detector: separable students, distillation, ONNX export, int8, the whole pipeline."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import keyhead
from keyhead.fomm.compress import (
    CompressSettings,
    OrtDetector,
    PixelDetector,
    compress_detector,
    distill,
    distillation_loss,
    export_fomm_onnx,
    measure_latency,
    quantize_onnx,
    teacher_targets,
)
from keyhead.fomm.detector import FommKPDetector, kp_detector

from ._detectors import make_detector

TINY = {"block_expansion": 4, "max_features": 16, "num_blocks": 2}


def tiny_detector(separable: bool = False, seed: int = 0) -> FommKPDetector:
    return make_detector(**TINY, separable=separable, head_separable=separable, seed=seed)


def frames(n: int = 8, size: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, size, size, generator=g) * 255).to(torch.uint8)


def test_default_decoder_is_the_heads_suggestion():
    m = keyhead.create_model(
        num_keypoints=10, backbone="fomm_hourglass", head="fomm_kp", head_kwargs={"temperature": 0.2}
    )
    assert m.codec.decoder_name == "soft_argmax" and m.codec.decoder_kwargs == {"temperature": 0.2}
    explicit = keyhead.create_model(num_keypoints=10, backbone="fomm_hourglass", head="fomm_kp", decoder="argmax")
    assert explicit.codec.decoder_name == "argmax"
    assert keyhead.create_model(num_keypoints=2, backbone="tiny", input_size=(64, 64)).codec.decoder_name == (
        "subpixel_maxima"
    )
    # the decoded keypoints are FOMM's own (gaussian2kp mapped to pixels)
    det = FommKPDetector(m).eval()
    x = torch.rand(1, 3, 256, 256)
    with torch.inference_mode():
        assert torch.allclose(m.predict(x).xy, det.to_pixels(det(x)["value"]), atol=1e-3)


def test_strided_antialias_equals_blur_then_subsample():
    from keyhead.models.backbones.fomm import AntiAliasInterpolation2d

    x = torch.rand(2, 3, 64, 64)
    assert torch.allclose(AntiAliasInterpolation2d(3, 0.25)(x), AntiAliasInterpolation2d(3, 0.25, True)(x), atol=1e-6)


def test_separable_student_builds_and_matches_shapes():
    faithful = kp_detector().eval()
    student = keyhead.create_model(
        num_keypoints=10,
        backbone="fomm_hourglass",
        head="fomm_kp",
        backbone_kwargs={"block_expansion": 8, "max_features": 128, "separable": True, "strided_antialias": True},
        head_kwargs={"separable": True},
    )
    student = FommKPDetector(student).eval()
    x = torch.rand(1, 3, 256, 256)
    with torch.inference_mode():
        a, b = faithful(x), student(x)
    for key in ("value", "jacobian", "heatmap", "logits"):
        assert a[key].shape == b[key].shape, key
    assert torch.allclose(b["jacobian"], torch.eye(2).expand(1, 10, 2, 2), atol=1e-6)  # identity init kept
    n = sum(p.numel() for p in student.parameters())
    assert n < sum(p.numel() for p in faithful.parameters()) / 100
    convs = [m for m in student.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] > 1]
    assert convs and all(m.groups == m.in_channels for m in convs)  # every spatial conv is depthwise


def test_distillation_loss_falls_on_a_handful_of_frames():
    teacher, student = tiny_detector(seed=1), tiny_detector(separable=True, seed=2)
    x = frames(6)
    targets = teacher_targets(teacher, x)
    with torch.no_grad():
        before = distillation_loss(student.train()(x.float() / 255), targets, 0.1)["loss"].item()
    history = distill(student, x, targets, steps=30, batch_size=6, lr=3e-3, progress=False)
    with torch.no_grad():
        after = distillation_loss(student.train()(x.float() / 255), targets, 0.1)["loss"].item()
    assert after < 0.7 * before, (before, after)
    assert [row["step"] for row in history] == [25, 30]


def test_distillation_loss_is_zero_for_the_teacher_itself():
    teacher = tiny_detector()
    x = frames(3)
    targets = teacher_targets(teacher, x)
    with torch.no_grad():
        terms = distillation_loss(teacher(x.float() / 255), targets, 0.1)
    assert terms["loss"].abs() < 1e-5


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    det = tiny_detector(separable=True)
    path = export_fomm_onnx(det, tmp_path_factory.mktemp("onnx") / "light.onnx")
    return det, path


def test_onnx_export_matches_eager(exported):
    det, path = exported
    x = frames(3, seed=5).float() / 255
    with torch.inference_mode():
        eager = PixelDetector(det)(x)[0].numpy()
    ort = OrtDetector(path)(x)
    assert ort.shape == (3, 3, 2)
    assert np.abs(ort - eager).max() < 1e-3


def test_ort_sessions_do_not_spin(exported):
    """Spinning ORT worker threads would steal the cores from the eager models timed right after them."""
    opts = OrtDetector(exported[1]).session.get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.get_session_config_entry("session.inter_op.allow_spinning") == "0"


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_int8_path_runs(exported, tmp_path, mode):
    det, path = exported
    calib = (frames(4, seed=7).float() / 255).numpy()
    q = quantize_onnx(path, tmp_path / f"q_{mode}.onnx", mode, calib)
    out = OrtDetector(q)(calib[:2])
    assert out.shape == (2, 3, 2) and np.isfinite(out).all()
    assert not (tmp_path / f"q_{mode}.pre.onnx").exists()


def test_measure_latency_reports_medians():
    res = measure_latency({"a": lambda: sum(range(100)), "b": lambda: sum(range(1000))}, repeats=5, warmup=1)
    assert set(res) == {"a", "b"} and all(r["median_ms"] >= 0 and r["repeats"] == 5 for r in res.values())


def teacher_run(tmp_path):
    """A tiny FOMM teacher run folder whose data is a 24-frame 64x64 video."""
    from keyhead.config import RunConfig, save_config
    from keyhead.models.weights import save_weights

    teacher = tiny_detector(seed=3)
    video = tmp_path / "v.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
    for img in frames(24, seed=4).permute(0, 2, 3, 1).numpy():
        writer.write(np.ascontiguousarray(img))
    writer.release()
    run = tmp_path / "teacher"
    cfg = RunConfig.model_validate(
        {
            "data": {"path": str(video), "input_size": [64, 64]},
            "model": {"backbone": "fomm_hourglass", "backbone_kwargs": TINY, "head": "fomm_kp"},
        }
    )
    save_config(cfg, run / "config.yaml")
    (run / "keypoints.txt").write_text("a\nb\nc\n")
    save_weights(teacher.model, run / "model.safetensors")
    return run


@pytest.mark.slow
def test_compress_pipeline_end_to_end(tmp_path):
    """Teacher run folder -> light run + ONNX + int8 + report; the light run loads like any keyhead run (~20 s)."""
    run = teacher_run(tmp_path)
    settings = CompressSettings(
        block_expansion=2,
        max_features=8,
        separable=True,
        separable_head=True,
        init="random",
        distill_steps=10,
        distill_batch_size=4,
        repeats=3,
    )
    report = compress_detector(run, tmp_path / "out", settings=settings, progress=False)
    rows = {r["step"]: r for r in report.rows}
    assert list(rows)[:6] == ["faithful", "width", "separable", "distilled", "faithful onnxruntime", "onnxruntime"]
    assert rows["faithful"]["deviation_px"] == 0.0 and rows["faithful onnxruntime"]["deviation_px"] < 0.05
    assert abs(rows["onnxruntime"]["deviation_px"] - rows["distilled"]["deviation_px"]) < 0.05
    assert rows["distilled"]["note"].startswith("+ distillation (10 steps")
    for r in rows.values():  # the mean, median and p90 of the per-keypoint distances, and the mean per keypoint
        assert r["deviation_median_px"] <= r["deviation_p90_px"] + 1e-9
        per_kp = r["deviation_per_keypoint_px"]
        assert list(per_kp) == ["a", "b", "c"] and abs(np.mean(list(per_kp.values())) - r["deviation_px"]) < 0.01
    assert report.settings["distill_frames"] == 18 * 3 * 2  # 3/4 of 24 frames, + 2 warps each, + 1 occluded copy
    for name in ("compress.md", "compress.json", "compress.png", "light.onnx", "light/model.safetensors"):
        assert (tmp_path / "out" / name).is_file(), name
    light, _ = keyhead.load_run(tmp_path / "out" / "light")
    assert light.backbone.predictor.encoder.down_blocks[0].conv[0].groups == 3
    assert light.predict(torch.rand(1, 3, 64, 64)).xy.shape == (1, 3, 2)


def test_student_config_full_or_separable_head(tmp_path):
    from keyhead.config import RunConfig
    from keyhead.fomm.compress import student_config
    from keyhead.models.build import model_from_config

    cfg = RunConfig.model_validate(
        {
            "data": {"path": str(tmp_path), "input_size": [64, 64]},
            "model": {"backbone": "fomm_hourglass", "backbone_kwargs": TINY, "head": "fomm_kp"},
        }
    )
    narrow = CompressSettings(block_expansion=2, max_features=8, separable=True, separable_head=False, init="random")
    light = student_config(cfg, narrow, light=True)
    assert light.model.backbone_kwargs == {
        **TINY,
        "block_expansion": 2,
        "max_features": 8,
        "separable": True,
        "strided_antialias": True,
    }
    model = model_from_config(light, ["a", "b", "c"], pretrained=False)
    assert model.head.kp.kernel_size == (7, 7) and model.head.kp.groups == 1  # a full 7x7 keypoint convolution
    both = student_config(cfg, CompressSettings(separable_head=True), light=True)
    assert both.model.head_kwargs["separable"] is True
    default = model_from_config(student_config(cfg, CompressSettings(), light=True), ["a"], pretrained=False)
    assert default.head.kp.groups == 1 and default.head.jacobian[0].groups == default.head.jacobian[0].in_channels
    assert default.backbone.predictor.encoder.down_blocks[0].conv.groups == 1  # full 3x3 (teacher-initialised)
    width = student_config(cfg, CompressSettings(block_expansion=2, max_features=8), light=False)
    assert "separable" not in width.model.backbone_kwargs and "separable" not in width.model.head_kwargs
    assert cfg.model.backbone_kwargs == TINY  # the teacher's config is untouched


def test_separable_head_names_as_on_the_command_line():
    assert CompressSettings(separable_head="all").separable_head is True
    assert CompressSettings(separable_head="none").separable_head is False
    assert CompressSettings(separable_head="jacobian").separable_head == "jacobian"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"init": "imagenet"}, "init must be"),
        ({"separable_head": "kp"}, "separable_head must be"),
        ({"separable": True}, "no filters to take from the teacher"),
        ({"block_expansion": 64, "max_features": 32}, "block_expansion <= max_features"),
    ],
)
def test_contradictory_settings_are_refused_before_any_work(tmp_path, kwargs, match):
    from keyhead.errors import KeyheadError

    with pytest.raises(KeyheadError, match=match):
        compress_detector(tmp_path / "no_such_run", tmp_path / "out", settings=CompressSettings(**kwargs))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_compress_default_student_starts_from_the_teacher(tmp_path):
    """Default settings: a narrower full-convolution student initialised from the teacher, separable Jacobian."""
    settings = CompressSettings(
        block_expansion=2, max_features=8, distill_steps=5, distill_batch_size=4, repeats=2, int8=()
    )
    report = compress_detector(teacher_run(tmp_path), tmp_path / "out", settings=settings, progress=False)
    rows = {r["step"]: r for r in report.rows}
    assert "teacher's strongest channels" in rows["width"]["note"]
    assert rows["separable"]["note"].startswith("+ depthwise-separable Jacobian 7x7")
    assert report.settings["init"] == "teacher"
    light, _ = keyhead.load_run(tmp_path / "out" / "light")
    assert light.backbone.predictor.encoder.down_blocks[0].conv.groups == 1
    assert light.head.kp.groups == 1 and light.head.jacobian[0].groups > 1
