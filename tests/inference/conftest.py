"""Fixtures of the video prediction tests."""

from __future__ import annotations

import pytest

from keyhead.inference.video import predict_videos
from tests.inference.test_video import write_video
from tests.inference.test_video_speed import _run_folder


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Per head: a run folder with its video graphs exported (once for the module: exporting takes seconds)."""
    root = tmp_path_factory.mktemp("video_speed")
    write_video(root / "v.mp4", n=11)
    runs = {}
    for head in ("heatmap", "mhcrnn"):
        run = _run_folder(root / head, head)
        predict_videos(run, [root / "v.mp4"], root / "warm", runtime="onnx", max_frames=1, progress=False)
        runs[head] = run
    return root / "v.mp4", runs
