"""keyhead's prediction files open in the tools researchers analyse poses with: movement and sleap-io (real packages).

The CSVs of ``keyhead predict`` (a video's and the images') load in movement as DeepLabCut and Lightning Pose files
and in sleap-io; ``keyhead convert`` turns them into SLEAP ``.slp`` / ``.analysis.h5`` and NWB (ndx-pose) files
through sleap-io, which load back in sleap-io and movement with the same numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from keyhead.cli import main
from keyhead.io.predictions import read_prediction_table
from tests.cli_helpers import SIZE, train_args

movement_load = pytest.importorskip("movement.io.load_poses", reason="movement is a test dependency (dev extra)")
sio = pytest.importorskip("sleap_io")


def keyhead(*args: object) -> None:
    """Run ``keyhead ARGS`` in-process and require success."""
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        assert exc.code in (0, None), f"keyhead {' '.join(map(str, args))} exited {exc.code}"


@pytest.fixture(scope="module")
def predicted(tmp_path_factory) -> dict[str, Path]:
    """A tiny run, its video predictions and its image predictions, through the real CLI."""
    from keyhead.data.synth import generate

    root = tmp_path_factory.mktemp("interop")
    data = root / "data"
    generate(data, n_labeled=12, image_size=(SIZE, SIZE), video_frames=20, seed=0, occlusion=0.0, progress=False)
    keyhead(*train_args(data, root / "runs"))
    run = root / "runs" / "r"
    video = next((data / "videos").glob("*.mp4"))
    images = sorted((data / "labeled-data").rglob("*.png"))[:3]
    keyhead("predict", run, video, "--out", root / "pred", "--no-progress")
    keyhead("predict", run, *images, "--out", root / "img", "--no-progress", "--no-overlays")
    return {"run": run, "video": video, "csv": root / "pred" / f"{video.stem}.csv", "images": root / "img"}


def _table(path: Path):
    _, names, xy, lik, _ = read_prediction_table(path)
    return names, xy, lik


@pytest.mark.parametrize("source", ["DeepLabCut", "LightningPose"])
def test_video_csv_loads_in_movement(predicted, source):
    names, xy, lik = _table(predicted["csv"])
    ds = movement_load.from_file(predicted["csv"], source_software=source, fps=30)
    assert list(ds.keypoints.values) == names
    position = ds.position.values[:, :, :, 0].transpose(0, 2, 1)  # (time, space, keypoints, individuals)
    np.testing.assert_allclose(position, xy, atol=1e-3)
    np.testing.assert_allclose(ds.confidence.values[:, :, 0], lik, atol=1e-3)


def test_image_csv_loads_in_movement(predicted):
    """movement's file readers want frame numbers as rows; an image table goes through pandas (or .slp, below)."""
    import pandas as pd

    names, xy, lik = _table(predicted["images"] / "predictions.csv")
    df = pd.read_csv(predicted["images"] / "predictions.csv", header=[0, 1, 2], index_col=0)
    ds = movement_load.from_dlc_style_df(df, fps=None)
    assert list(ds.keypoints.values) == names
    np.testing.assert_allclose(ds.position.values[:, :, :, 0].transpose(0, 2, 1), xy, atol=1e-5)
    np.testing.assert_allclose(ds.confidence.values[:, :, 0], lik, atol=1e-5)


@pytest.mark.parametrize("suffix", [".slp", ".analysis.h5", ".nwb"])
def test_convert_video_predictions_for_sleap_io_and_movement(predicted, tmp_path, suffix):
    names, xy, lik = _table(predicted["csv"])
    out = tmp_path / f"session{suffix}"
    keyhead("convert", predicted["csv"], out, "--skeleton", predicted["run"])
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # written in place, no temporary left behind
    labels = sio.load_file(str(out))
    assert [n.name for n in labels.skeletons[0].nodes] == names
    assert len(labels.labeled_frames) == len(xy)
    got = np.stack([lf.instances[0].numpy()[:, :2] for lf in sorted(labels.labeled_frames, key=lambda f: f.frame_idx)])
    np.testing.assert_allclose(got, xy, atol=1e-3)
    if suffix == ".nwb":  # sleap-io names the pose-estimation container after the video and the track
        module = next(k for k in _nwb_modules(out) if k.startswith("SLEAP_VIDEO"))
        ds = movement_load.from_nwb_file(out, processing_module_key=module, pose_estimation_key="track=animal")
    else:
        ds = movement_load.from_file(out, source_software="SLEAP", fps=30)
        assert Path(labels.videos[0].filename).name == predicted["video"].name
    order = [list(ds.keypoints.values).index(n) for n in names]  # movement's NWB reader sorts keypoints by name
    np.testing.assert_allclose(ds.position.values[:, :, order, 0].transpose(0, 2, 1), xy, atol=1e-3)
    np.testing.assert_allclose(ds.confidence.values[:, order, 0], lik, atol=1e-3)
    if suffix == ".slp":
        assert len(labels.skeletons[0].edges) > 0


def _nwb_modules(path: Path) -> list[str]:
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(path), "r") as io:
        return list(io.read().processing)


def test_convert_image_predictions_to_slp(predicted, tmp_path):
    names, xy, _ = _table(predicted["images"] / "predictions.csv")
    out = tmp_path / "images.slp"
    keyhead("convert", predicted["images"] / "predictions.csv", out)
    labels = sio.load_slp(str(out))
    assert len(labels.labeled_frames) == len(xy)
    assert len(labels.videos[0].filename) == len(xy)  # an image sequence, one image per row
    ds = movement_load.from_sleap_file(out)
    assert list(ds.keypoints.values) == names
    np.testing.assert_allclose(ds.position.values[:, :, :, 0].transpose(0, 2, 1), xy, atol=1e-3)


def test_convert_predictions_to_an_unknown_format(predicted, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["convert", str(predicted["csv"]), str(tmp_path / "x.parquet")])
    assert info.value.code == 2
    assert "NAME.slp, NAME.nwb or NAME.analysis.h5" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
