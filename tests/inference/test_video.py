"""Streaming video prediction: same numbers as direct prediction, windows across batches, resume, codecs, errors."""

from __future__ import annotations

import av
import numpy as np
import pandas as pd
import pytest
import torch

from keyhead.errors import KeyheadError
from keyhead.inference.video import predict_video
from keyhead.io.video import iter_frames, probe, transcode
from keyhead.models.model import create_model


def write_video(path, n=23, size=(48, 40), codec="libx264", fmt=None, pix_fmt="yuv420p", rate=25):
    """A moving bright square on a dark gradient; returns the frames as written (RGB uint8)."""
    w, h = size
    frames = []
    with av.open(str(path), mode="w", format=fmt) as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        for i in range(n):
            img = np.zeros((h, w, 3), np.uint8)
            img[..., 0] = np.linspace(0, 80, w, dtype=np.uint8)[None]
            x, y = 5 + i % (w - 15), 8 + (i // 2) % (h - 18)
            img[y : y + 8, x : x + 8] = 230
            frames.append(img)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return frames


def _model(head="heatmap", **kw):
    torch.manual_seed(0)
    model = create_model(num_keypoints=3, backbone="tiny", head=head, input_size=(64, 64), head_kwargs=kw).eval()
    if head == "heatmap":  # Lightning Pose's init (gain 0.01) starts near uniform: sharpen, as training would
        with torch.no_grad():
            for p in model.head.parameters():
                p.mul_(100.0)
    return model


def _direct(model, frames):
    from keyhead.data.augment import resize_matrix, warp

    x = np.stack([warp(f, resize_matrix(f.shape[1::-1], (64, 64)), (64, 64)) for f in frames]).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(x)).float() / 255.0


def _read(csv):
    df = pd.read_csv(csv, header=[0, 1, 2], index_col=0)
    arr = df.to_numpy().reshape(len(df), -1, 3)
    return df.index.to_numpy(), arr[..., :2], arr[..., 2]


def _to_original(xy, w, h):
    out = xy.copy()
    out[..., 0] = (out[..., 0] + 0.5) * w / 64 - 0.5
    out[..., 1] = (out[..., 1] + 0.5) * h / 64 - 0.5
    return out


def test_single_frame_streaming_matches_direct(tmp_path):
    frames = write_video(tmp_path / "v.mp4")
    decoded = [f for _, f in iter_frames(tmp_path / "v.mp4")]
    assert len(decoded) == len(frames)
    model = _model()
    res = predict_video(model, tmp_path / "v.mp4", tmp_path / "out", ["a", "b", "c"], batch_size=5, progress=False)
    idx, xy, conf = _read(res.csv)
    assert idx.tolist() == list(range(len(frames))) and res.n_frames == len(frames)
    kp = model.predict(_direct(model, decoded))
    assert np.allclose(xy, _to_original(kp.xy.numpy(), 48, 40), atol=2e-3)
    assert np.allclose(conf, kp.confidence.numpy(), atol=2e-4)
    assert res.summary_data["temporal_norm_px"] >= 0 and (tmp_path / "out" / "v_video.json").is_file()
    assert not (tmp_path / "out" / "v.csv.partial").exists()


@pytest.mark.parametrize("causal", [False, True], ids=["centred", "causal"])
def test_context_windows_match_direct_windows(tmp_path, causal):
    write_video(tmp_path / "v.mp4", n=13)
    decoded = [f for _, f in iter_frames(tmp_path / "v.mp4")]
    model = _model("mhcrnn", context=3 if causal else 5, causal=causal, context_grad=True)
    res = predict_video(model, tmp_path / "v.mp4", tmp_path / "o", ["a", "b", "c"], batch_size=4, progress=False)
    _, xy, conf = _read(res.csv)
    x = _direct(model, decoded)
    n = len(decoded)
    offsets = model.head.frame_offsets()
    windows = torch.stack([x[[min(max(t + o, 0), n - 1) for o in offsets]] for t in range(n)])
    kp = model.predict(windows)
    assert len(xy) == n
    assert np.allclose(xy, _to_original(kp.xy.numpy(), 48, 40), atol=2e-3)
    assert np.allclose(conf, kp.confidence.numpy(), atol=2e-4)


def test_interrupted_prediction_resumes_without_redoing_frames(tmp_path):
    write_video(tmp_path / "v.mp4", n=17)
    model = _model("mhcrnn")
    full = predict_video(model, tmp_path / "v.mp4", tmp_path / "a", ["a", "b", "c"], batch_size=4, progress=False)
    text = full.csv.read_text().splitlines(keepends=True)
    partial = tmp_path / "b" / "v.csv.partial"
    partial.parent.mkdir()
    partial.write_text("".join(text[: 3 + 9]) + text[3 + 9][:12])  # 9 rows done, the 10th cut short by a kill
    res = predict_video(model, tmp_path / "v.mp4", tmp_path / "b", ["a", "b", "c"], batch_size=4, progress=False)
    assert res.summary_data["resumed_from_frame"] == 9
    _, xy_a, c_a = _read(full.csv)
    _, xy_b, c_b = _read(res.csv)
    assert np.allclose(xy_a, xy_b, atol=1e-3) and np.allclose(c_a, c_b, atol=1e-3)


def test_mjpeg_avi_and_labeled_video(tmp_path):
    write_video(tmp_path / "v.avi", n=9, codec="mjpeg", fmt="avi", pix_fmt="yuvj420p")
    assert probe(tmp_path / "v.avi").codec == "mjpeg"
    res = predict_video(
        _model(), tmp_path / "v.avi", tmp_path / "o", ["a", "b", "c"], labeled_video=True, threshold=0.0, progress=False
    )
    assert res.n_frames == 9 and res.labeled is not None
    assert sum(1 for _ in iter_frames(res.labeled)) == 9


def test_unreadable_and_empty_videos_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 50)
    with pytest.raises(KeyheadError, match="bad.mp4"):
        predict_video(_model(), bad, tmp_path / "o", ["a", "b", "c"], progress=False)
    with pytest.raises(KeyheadError, match="does not exist"):
        predict_video(_model(), tmp_path / "missing.mp4", tmp_path / "o", ["a", "b", "c"], progress=False)
    empty = tmp_path / "empty.mp4"
    with av.open(str(empty), mode="w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
    with pytest.raises(KeyheadError, match="empty.mp4"):
        predict_video(_model(), empty, tmp_path / "o", ["a", "b", "c"], progress=False)
    assert not list((tmp_path / "o").glob("*.csv*"))


def test_real_videos_openfield_mp4_and_an_mjpeg_avi_made_from_it(shared_data, tmp_path):
    video = shared_data / "dlc-openfield-Pranav-2018-10-30" / "videos" / "m3v1mp4.mp4"
    if not video.is_file():
        pytest.skip(f"{video} not found")
    avi = transcode(video, tmp_path / "openfield.avi", "mjpeg", "avi", max_frames=12)  # FFmpeg (libav*)
    model = _model()
    a = predict_video(model, video, tmp_path / "a", ["a", "b", "c"], max_frames=12, progress=False)
    b = predict_video(model, avi, tmp_path / "b", ["a", "b", "c"], progress=False)
    assert a.n_frames == 12 and b.n_frames == 12 and b.summary_data["codec"] == "mjpeg"
    _, xy_a, _ = _read(a.csv)
    _, xy_b, _ = _read(b.csv)
    assert np.nanmean(np.abs(xy_a - xy_b)) < 0.01 * 640  # the same frames, up to JPEG loss


def test_onnx_runtime_matches_eager(tmp_path):
    write_video(tmp_path / "v.mp4", n=8)
    model = (
        _model()
    )  # a model object is exported to a temporary folder (run folders: tests/inference/test_video_speed.py)
    a = predict_video(model, tmp_path / "v.mp4", tmp_path / "a", ["a", "b", "c"], batch_size=4, progress=False)
    b = predict_video(
        model, tmp_path / "v.mp4", tmp_path / "b", ["a", "b", "c"], batch_size=4, runtime="onnx", progress=False
    )
    _, xy_a, c_a = _read(a.csv)
    _, xy_b, c_b = _read(b.csv)
    assert np.abs(xy_a - xy_b).max() < 0.05 and np.abs(c_a - c_b).max() < 1e-3
