"""The HTML run report: sections, embedded images, video traces, and a real headless browser rendering it."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from keyhead.errors import KeyheadError
from keyhead.report.html import plot_video_traces, read_video_predictions, write_report

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "") if p and Path(p).is_file()), None)


def write_video_csv(path: Path, names: list[str], t: int = 40) -> None:
    rows = ["scorer," + ",".join(["keyhead"] * 3 * len(names))]
    rows.append("bodyparts," + ",".join(n for n in names for _ in range(3)))
    rows.append("coords," + ",".join(["x", "y", "likelihood"] * len(names)))
    for i in range(t):
        cells = []
        for j in range(len(names)):
            x, y, c = 20 + 10 * np.sin(i / 5 + j), 30 + 5 * np.cos(i / 7), 0.2 if i % 9 == 0 else 0.9
            cells += [f"{x:.3f}", f"{y:.3f}" if i != 13 else "", f"{c:.2f}"]
        rows.append(f"{i}," + ",".join(cells))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny trained run (training writes report.html itself) with a video prediction in RUN/predictions/."""
    from keyhead.data.synth import generate
    from keyhead.engine.train import train

    root = tmp_path_factory.mktemp("report")
    generate(root / "data", n_labeled=16, image_size=(64, 64), video_frames=24, seed=0, progress=False)
    run = train(
        None,
        [
            f"data.path={root / 'data'}",
            f"output_dir={root / 'runs'}",
            "name=tiny",
            "model.backbone=tiny",
            "data.input_size=[64,64]",
            "train.epochs=2",
            "train.batch_size=4",
        ],
        progress=False,
    )
    names = (run / "keypoints.txt").read_text().split()
    write_video_csv(run / "predictions" / "clip.csv", names)
    (run / "predictions" / "clip_video.json").write_text(json.dumps({"video": "clip.mp4", "fps": 20.0, "n_frames": 40}))
    return run


def embedded_pngs(page: str) -> list[np.ndarray]:
    found = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    return [cv2.imdecode(np.frombuffer(base64.b64decode(b), np.uint8), cv2.IMREAD_COLOR) for b in found]


def test_training_writes_the_report(run_dir: Path):
    page = (run_dir / "report.html").read_text()
    assert "Metrics per split" in page and "Training curves" in page


def test_report_sections_and_embedded_images(run_dir: Path, tmp_path: Path):
    out = write_report(run_dir, tmp_path / "r.html")
    page = out.read_text()
    for title in (
        "Metrics per split",
        "Per keypoint",
        "Per-keypoint error",
        "Training curves",
        "Worst and median test frames",
        "Heatmaps (test)",
        "Confidence reliability (test)",
        "clip.csv",
        "Resolved config",
    ):
        assert title in page, title
    assert "model.backbone" not in page and "backbone: tiny" in page  # the YAML itself
    images = embedded_pngs(page)
    assert len(images) == 6  # keypoint errors, curves, overlays, heatmaps, reliability, video traces
    assert all(img is not None and img.shape[0] > 100 and img.std() > 5 for img in images)
    assert "<script" not in page and "http://" not in page and "https://" not in page  # offline, no scripts
    assert 'class="note"' not in page  # every section had what it needs


def test_report_without_data_notes_the_gap(run_dir: Path, tmp_path: Path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    cfg = (copy / "config.yaml").read_text()
    (copy / "config.yaml").write_text(re.sub(r"(\n  path: ).*", r"\1/nonexistent/labels", cfg, count=1))
    page = write_report(copy).read_text()
    assert "labelled data could not be read" in page
    assert len(embedded_pngs(page)) == 3  # keypoint errors, curves, video traces


def test_video_traces(tmp_path: Path):
    write_video_csv(tmp_path / "v.csv", ["a", "b"], t=30)
    names, frames, xy, lik = read_video_predictions(tmp_path / "v.csv")
    assert names == ["a", "b"] and frames.tolist() == list(range(30)) and xy.shape == (30, 2, 2)
    assert np.isnan(xy[13, :, 1]).all() and lik[9, 0] == pytest.approx(0.2)
    assert plot_video_traces(tmp_path / "v.csv", tmp_path / "v.png", fps=30).is_file()
    with pytest.raises(KeyheadError, match="not found"):
        read_video_predictions(tmp_path / "missing.csv")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(KeyheadError, match="3 header rows"):
        read_video_predictions(tmp_path / "bad.csv")


def test_report_of_a_non_run_is_a_clear_error(tmp_path: Path):
    with pytest.raises(KeyheadError, match="config.yaml"):
        write_report(tmp_path)


@pytest.mark.slow
def test_report_renders_in_headless_chromium(run_dir: Path, tmp_path: Path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    page = run_dir / "report.html"  # as training wrote it
    shot = tmp_path / "shot.png"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1280,3000",
        "--enable-logging=stderr",
        "--v=0",
        page.resolve().as_uri(),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    console = [line for line in res.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    img = cv2.imread(str(shot), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[:2] == (3000, 1280)
    assert img.std() > 20  # not blank
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 500  # plots (anti-aliased lines, heatmaps), not just text
    # matplotlib's default blue (C0, RGB 31,119,180) from the bar and curve plots is on screen
    c0 = np.all(np.abs(img.astype(int) - np.array([180, 119, 31])) < 12, axis=-1)
    assert c0.sum() > 500
