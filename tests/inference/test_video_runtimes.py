"""The other video runtimes: ``--runtime openvino`` (the run's ONNX graphs run by OpenVINO) and ``--runtime onnx-int8``
(int8 graphs calibrated on the run's own labelled frames, refused beyond a tolerance), through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from safetensors.torch import load_file, save_file

from keyhead.config import load_config, save_config
from keyhead.inference.video import predict_videos
from keyhead.io.predictions import read_prediction_table
from keyhead.runtime.video_onnx import FOLDER, INT8_META
from tests.cli_helpers import assert_user_error, cli
from tests.inference.test_video import write_video
from tests.inference.test_video_speed import _run_folder

pytest.importorskip("openvino")


def _values(csv):
    _, _, xy, conf, _ = read_prediction_table(csv)
    return np.concatenate([xy.reshape(len(xy), -1), conf], axis=1)


@pytest.mark.parametrize("head", ["heatmap", "mhcrnn"])
def test_openvino_predicts_what_eager_predicts(tmp_path, exported, head):
    video, runs = exported
    a = predict_videos(runs[head], [video], tmp_path / "a", batch_size=4, progress=False)[0]
    b = predict_videos(runs[head], [video], tmp_path / "b", batch_size=4, runtime="openvino", progress=False)[0]
    assert b.summary_data["runtime"] == "openvino" and b.n_frames == 11
    assert np.abs(_values(a.csv) - _values(b.csv)).max() <= 2e-3  # 4-decimal CSVs
    assert (runs[head] / FOLDER / "openvino_cache").is_dir()  # compiled graphs kept for the next start-up


LIGHT = """
import sys
from keyhead.cli import main
sys.argv = ["keyhead", "predict", *sys.argv[1:], "--no-progress"]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
print("HEAVY", ",".join(sorted(m for m in ("torch", "timm", "matplotlib") if m in sys.modules)))
"""


def test_openvino_command_does_not_import_torch_once_the_graphs_exist(tmp_path, exported):
    video, runs = exported
    args = [str(runs["heatmap"]), str(video), "--runtime", "openvino", "--out", str(tmp_path / "o")]
    res = subprocess.run([sys.executable, "-c", LIGHT, *args], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "HEAVY \n" in res.stdout, res.stdout
    assert len((tmp_path / "o" / "v.csv").read_text().splitlines()) == 3 + 11


def test_openvino_missing_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    write_video(tmp_path / "v.mp4", n=3)
    run = _run_folder(tmp_path / "run")
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    code, _, err = cli(capsys, "predict", run, tmp_path / "v.mp4", "--runtime", "openvino", "--out", tmp_path / "o")
    assert_user_error(code, err, "pip install openvino", "--runtime onnx")
    assert not (tmp_path / "o" / "v.csv").exists()


def test_int8_export_then_predict_through_the_cli(run_copy, synth, tmp_path, capsys, monkeypatch):
    import keyhead.export.quantize as quantize

    video = next((synth / "videos").glob("*.mp4"))
    code, out, err = cli(capsys, "export", run_copy, "--format", "onnx-int8", "--int8-tolerance", "1000")
    assert code == 0, err
    record = json.loads((run_copy / FOLDER / INT8_META).read_text())
    assert record["calibration_frames"] > 0 and record["checked_frames"] > 0
    assert 0 <= record["median_px"] <= record["p95_px"] <= record["max_px"] and record["tolerance_px"] == 1000
    assert set(record["label_error_px"]) == {"float32", "int8"}
    graph = onnx.load(str(run_copy / FOLDER / record["graph"]))
    assert sum(n.op_type == "QuantizeLinear" for n in graph.graph.node) > 0  # int8 convolutions, not a copy
    calls = []
    real = quantize.quantize_run
    monkeypatch.setattr(quantize, "quantize_run", lambda run, *a, **k: calls.append(run) or real(run, 1000.0))
    code, out, err = cli(capsys, "predict", run_copy, video, "--runtime", "onnx-int8", "--out", tmp_path / "p")
    assert code == 0, err
    assert calls == []  # the exported int8 graph is used, not quantized again
    got = json.loads((tmp_path / "p" / f"{video.stem}_video.json").read_text())
    assert got["runtime"] == "onnx-int8" and got["n_frames"] > 0
    assert _values(tmp_path / "p" / f"{video.stem}.csv").shape[0] == got["n_frames"]
    weights = load_file(run_copy / "model.safetensors")  # new weights: the int8 graph is stale, quantized again
    save_file({k: v * 1.01 if v.is_floating_point() else v for k, v in weights.items()}, run_copy / "model.safetensors")
    predict_videos(run_copy, [video], tmp_path / "c", runtime="onnx-int8", max_frames=2, progress=False)
    assert len(calls) == 1
    assert json.loads((run_copy / FOLDER / INT8_META).read_text())["fingerprint"] != record["fingerprint"]


def test_int8_beyond_the_tolerance_is_refused_and_writes_nothing(run_copy, capsys):
    code, _, err = cli(capsys, "export", run_copy, "--format", "onnx-int8", "--int8-tolerance", "1e-9")
    assert_user_error(code, err, "int8", "tolerance", "--runtime onnx")
    assert not (run_copy / FOLDER / INT8_META).exists()
    assert not list((run_copy / FOLDER).glob("*.int8.onnx"))


def test_int8_needs_the_runs_labelled_frames(run_copy, capsys, tmp_path):
    cfg = load_config(run_copy / "config.yaml")
    cfg.data.path = str(tmp_path / "gone")
    save_config(cfg, run_copy / "config.yaml")
    code, _, err = cli(capsys, "export", run_copy, "--format", "onnx-int8")
    assert_user_error(code, err, "int8 calibration", "gone")


def test_openvino_sessions_side_by_side_are_not_pinned_to_one_core(exported):
    """--jobs N opens N sessions of cores / N threads: pinned, OpenVINO put them all on core 0 (half the speed)."""
    from keyhead.runtime.session import graph_session

    frame = exported[1]["heatmap"] / FOLDER / "frame.onnx"
    whole = graph_session(frame, None, "openvino")._compiled
    assert int(whole.get_property("INFERENCE_NUM_THREADS")) == (os.cpu_count() or 1)
    if (os.cpu_count() or 1) > 1:
        part = graph_session(frame, 1, "openvino")._compiled
        assert int(part.get_property("INFERENCE_NUM_THREADS")) == 1
        assert part.get_property("ENABLE_CPU_PINNING") is False


def test_int8_of_a_folder_that_is_not_a_run_is_a_one_line_error(tmp_path, capsys):
    code, _, err = cli(capsys, "export", tmp_path, "--format", "onnx-int8")
    assert_user_error(code, err, str(tmp_path))
    assert list(tmp_path.iterdir()) == []
