"""Prediction on a long video keeps memory flat: peak RSS does not grow with the number of frames."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.inference.test_video import write_video

SCRIPT = """
import json, resource, sys, torch
from keyhead.models.model import create_model
from keyhead.inference.video import predict_video
torch.manual_seed(0)
m = create_model(num_keypoints=3, backbone="tiny", head=sys.argv[3], input_size=(64, 64)).eval()
predict_video(m, sys.argv[1], sys.argv[2], ["a", "b", "c"], batch_size=16, progress=False)
print(json.dumps({"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _peak_kb(video, out, head):
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(video), str(out), head], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])["maxrss_kb"]


@pytest.mark.slow
@pytest.mark.parametrize("head", ["heatmap", "mhcrnn"])
def test_peak_memory_does_not_grow_with_video_length(tmp_path, head):
    write_video(tmp_path / "short.mp4", n=100, size=(160, 120))
    write_video(tmp_path / "long.mp4", n=1500, size=(160, 120))  # 15x longer
    short = _peak_kb(tmp_path / "short.mp4", tmp_path / "o1", head)
    long = _peak_kb(tmp_path / "long.mp4", tmp_path / "o2", head)
    # 1500 decoded frames alone would be 86 MB; allow allocator noise only
    assert long - short < 25 * 1024, f"peak RSS grew from {short} kB to {long} kB"
    with open(tmp_path / "o2" / "long.csv") as f:
        assert sum(1 for _ in f) == 1500 + 3
