"""Fast video prediction: cached ONNX graphs of a run (no torch), the reading thread, CSV rows, eager vs onnx."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest
import torch

from keyhead.config import RunConfig, save_config
from keyhead.errors import KeyheadError
from keyhead.inference._stream import BatchReader
from keyhead.inference.video import predict_video, predict_videos
from keyhead.io.predictions import format_frame_rows, iter_prediction_chunks, prediction_header, read_prediction_table
from keyhead.models.model import create_model
from keyhead.models.weights import save_weights
from keyhead.runtime.video_onnx import FOLDER
from tests.inference.test_video import write_video

NAMES = ["a", "b", "c"]


def _run_folder(path, head="heatmap", seed=0):
    """A finished run folder of a tiny untrained model (config, keypoint names, weights)."""
    torch.manual_seed(seed)
    model = create_model(keypoint_names=NAMES, backbone="tiny", head=head, input_size=(64, 64)).eval()
    cfg = RunConfig.model_validate(
        {"data": {"path": str(path), "input_size": [64, 64]}, "model": {"backbone": "tiny", "head": head}}
    )
    save_config(cfg, path / "config.yaml")
    (path / "keypoints.txt").write_text("\n".join(NAMES) + "\n")
    save_weights(model, path / "model.safetensors")
    return path


def _reader_threads():
    return [t for t in threading.enumerate() if t.name == "keyhead-video-reader"]


@pytest.mark.parametrize("head", ["heatmap", "mhcrnn"])
def test_eager_and_onnx_write_the_same_csv(tmp_path, exported, head):
    video, runs = exported
    a = predict_videos(runs[head], [video], tmp_path / "a", batch_size=4, progress=False)[0]
    b = predict_videos(runs[head], [video], tmp_path / "b", batch_size=4, runtime="onnx", progress=False)[0]
    ta, tb = a.csv.read_text().splitlines(), b.csv.read_text().splitlines()
    assert ta[:3] == tb[:3] and len(ta) == len(tb) == 3 + 11
    va = np.array([[float(v) for v in r.split(",")] for r in ta[3:]])
    vb = np.array([[float(v) for v in r.split(",")] for r in tb[3:]])
    assert (va[:, 0] == np.arange(11)).all() and (vb[:, 0] == np.arange(11)).all()
    assert np.abs(va[:, 1:] - vb[:, 1:]).max() <= 2e-3  # 4-decimal CSVs; float32 kernels differ in the last digit
    assert b.summary_data["runtime"] == "onnx" and a.summary_data["n_frames"] == b.summary_data["n_frames"] == 11


def test_onnx_graphs_are_cached_in_the_run_and_reexported_for_new_weights(tmp_path, monkeypatch):
    import keyhead.export.video as video_export

    write_video(tmp_path / "v.mp4", n=5)
    run = _run_folder(tmp_path / "run")
    first = predict_videos(run, [tmp_path / "v.mp4"], tmp_path / "o", runtime="onnx", progress=False)[0]
    meta = json.loads((run / FOLDER / "meta.json").read_text())
    assert meta["keypoint_names"] == NAMES and meta["offsets"] == [0] and (run / FOLDER / "frame.onnx").is_file()

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the graphs are cached")

    monkeypatch.setattr(video_export, "export_video_graphs", no_export)
    again = predict_videos(run, [tmp_path / "v.mp4"], tmp_path / "o2", runtime="onnx", progress=False)[0]
    assert again.csv.read_text() == first.csv.read_text()
    monkeypatch.undo()
    _run_folder(run, seed=1)  # new weights: the cache is stale
    new = predict_videos(run, [tmp_path / "v.mp4"], tmp_path / "o3", runtime="onnx", progress=False)[0]
    assert json.loads((run / FOLDER / "meta.json").read_text())["fingerprint"] != meta["fingerprint"]
    assert new.csv.read_text() != first.csv.read_text()


LIGHT = """
import sys
from keyhead.cli import main
sys.argv = ["keyhead", "predict", sys.argv[1], sys.argv[2], "--runtime", "onnx", "--out", sys.argv[3], "--no-progress"]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
heavy = sorted(m for m in ("torch", "lightning", "timm", "pandas", "matplotlib") if m in sys.modules)
print("HEAVY", ",".join(heavy))
"""


@pytest.mark.parametrize("head", ["heatmap", "mhcrnn"])
def test_onnx_video_command_does_not_import_torch(tmp_path, exported, head):
    video, runs = exported
    res = subprocess.run(
        [sys.executable, "-c", LIGHT, str(runs[head]), str(video), str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "HEAVY \n" in res.stdout, res.stdout
    assert len((tmp_path / "o" / "v.csv").read_text().splitlines()) == 3 + 11


def test_reader_errors_reach_the_consumer_after_the_good_batches():
    def frames():
        for i in range(5):
            yield i, np.full((10, 12, 3), i * 20, np.uint8)
        raise KeyheadError("video x.mp4: decoding failed")

    got = []
    with pytest.raises(KeyheadError, match="x.mp4"), BatchReader(frames(), (8, 8), batch_size=2) as reader:
        for first, x, wh in reader:
            got.append((first, x.shape, wh))
    assert got == [(0, (2, 3, 8, 8), (12, 10)), (2, (2, 3, 8, 8), (12, 10))]
    assert not _reader_threads()


def test_consumer_errors_stop_the_reader_and_close_the_video(tmp_path):
    write_video(tmp_path / "v.mp4", n=40)
    model = create_model(num_keypoints=3, backbone="tiny", input_size=(64, 64)).eval()
    calls = []

    def failing_forward(x):
        calls.append(len(x))
        raise RuntimeError("out of memory")

    model.forward = failing_forward
    with pytest.raises(RuntimeError, match="out of memory"):
        predict_video(model, tmp_path / "v.mp4", tmp_path / "o", NAMES, batch_size=4, progress=False)
    assert calls == [4] and not _reader_threads()
    assert (tmp_path / "o" / "v.csv.partial").is_file() and not (tmp_path / "o" / "v.csv").exists()


def test_truncated_video_ends_cleanly(tmp_path):
    write_video(tmp_path / "v.mp4", n=60, size=(96, 80))
    data = (tmp_path / "v.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    model = create_model(num_keypoints=3, backbone="tiny", input_size=(64, 64)).eval()
    try:
        res = predict_video(model, cut, tmp_path / "o", NAMES, batch_size=8, progress=False)
    except KeyheadError as exc:
        assert "cut.mp4" in str(exc) and "\n" not in str(exc)
    else:  # FFmpeg may stop at the cut instead: the frames before it are predicted
        assert 0 < res.n_frames <= 60
        assert len(res.csv.read_text().splitlines()) == 3 + res.n_frames
    assert not _reader_threads()


def test_max_frames_stops_the_reader_early(tmp_path):
    write_video(tmp_path / "v.mp4", n=30)
    res = predict_video(_tiny(), tmp_path / "v.mp4", tmp_path / "o", NAMES, batch_size=4, max_frames=6, progress=False)
    assert res.n_frames == 6 and len(res.csv.read_text().splitlines()) == 3 + 6
    assert not _reader_threads()


def _tiny():
    torch.manual_seed(0)
    return create_model(num_keypoints=3, backbone="tiny", input_size=(64, 64)).eval()


def test_rows_are_formatted_like_dlc_with_empty_missing_values(tmp_path):
    xy = np.array([[[1.23456, -2.0], [np.nan, np.nan]], [[3.0, 4.0], [5.5, 6.25]]], np.float32)
    conf = np.array([[0.5, np.nan], [1.0, 0.125]], np.float32)
    assert format_frame_rows(7, xy, conf) == "7,1.2346,-2.0000,0.5000,,,\n8,3.0000,4.0000,1.0000,5.5000,6.2500,0.1250\n"
    csv = tmp_path / "p.csv"
    header = prediction_header(["a", "b"], "k")
    assert header == "scorer,k,k,k,k,k,k\nbodyparts,a,a,a,b,b,b\ncoords,x,y,likelihood,x,y,likelihood\n"
    csv.write_text(header + format_frame_rows(7, xy, conf))
    labels, got_xy, got_conf = next(iter_prediction_chunks(csv))
    ref = pd.read_csv(csv, header=[0, 1, 2], index_col=0).to_numpy(dtype=np.float64).reshape(2, 2, 3)
    assert labels.tolist() == [7, 8]
    np.testing.assert_array_equal(got_xy, ref[..., :2])
    np.testing.assert_array_equal(got_conf, ref[..., 2])
    # the full reader gives the same numbers, and the streamed table reads like one written whole
    rows, names, xy_t, lik_t, scorer = read_prediction_table(csv)
    assert (rows, names, scorer) == (["7", "8"], ["a", "b"], "k")
    np.testing.assert_array_equal(xy_t, ref[..., :2])


def test_bad_runtime_and_batch_size_are_one_line_errors(tmp_path):
    write_video(tmp_path / "v.mp4", n=3)
    with pytest.raises(KeyheadError, match="--runtime 'tensorrt'"):
        predict_video(_tiny(), tmp_path / "v.mp4", tmp_path / "o", NAMES, runtime="tensorrt", progress=False)
    with pytest.raises(KeyheadError, match="--batch-size 0"):
        predict_video(_tiny(), tmp_path / "v.mp4", tmp_path / "o", NAMES, batch_size=0, progress=False)
    with pytest.raises(KeyheadError, match="missing"):
        predict_videos(tmp_path, [tmp_path / "v.mp4"], runtime="onnx", progress=False)


def test_numpy_pca_errors_match_pose_pca(tmp_path):
    from keyhead.engine.semi import PosePCA
    from keyhead.inference.video import _pca_errors, load_pca

    rng = np.random.default_rng(0)
    base = rng.normal(size=(1, 4, 2)) * 50 + 100
    labels = base + rng.normal(size=(60, 4, 2)) * np.array([5.0, 1.0])
    pca = PosePCA.fit(labels, variance=0.9)
    pca.save(tmp_path / "pca.safetensors")
    xy = labels[:7] + rng.normal(size=(7, 4, 2))
    xy[2, 1] = np.nan
    want = pca.errors(torch.as_tensor(xy, dtype=torch.float32)).numpy()
    got = _pca_errors(load_pca(tmp_path / "pca.safetensors"), xy)
    np.testing.assert_allclose(got, want, atol=1e-3)
    assert np.isnan(got[2, 1]) and np.isfinite(got[0]).all()


def test_bf16_runtime_predicts_every_frame(tmp_path):
    write_video(tmp_path / "v.mp4", n=9)
    res = predict_video(_tiny(), tmp_path / "v.mp4", tmp_path / "o", NAMES, runtime="torch-bf16", progress=False)
    _, xy, conf = next(iter_prediction_chunks(res.csv))
    assert res.n_frames == 9 and res.summary_data["runtime"] == "torch-bf16"
    assert np.isfinite(xy).all() and ((xy >= -0.5) & (xy <= 47.5)).all() and ((conf >= 0) & (conf <= 1)).all()
