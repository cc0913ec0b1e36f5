"""More hostile or careless input through the real CLI: run folders that do not fit together, a pickle where a PCA
belongs, smoothing a binary file, two videos with the same name, symlinks out of the project, EXIF-rotated photos.

Each case answers ``keyhead: error: <file / key>: <what>; <fix>`` with exit 2 and leaves nothing half-written.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file, save_file

from keyhead.data.checks import image_size
from keyhead.data.formats import load_labels
from keyhead.errors import KeyheadError
from keyhead.io.images import read_image
from tests.cli_helpers import assert_user_error, cli, leftovers


def _an_image(synth: Path) -> Path:
    return next(p for p in sorted((synth / "labeled-data").rglob("*.png")))


def test_keypoints_txt_of_another_count(run_copy, synth, tmp_path, capsys):
    names = (run_copy / "keypoints.txt").read_text().split()
    (run_copy / "keypoints.txt").write_text("\n".join([*names, "extra"]) + "\n")
    out = tmp_path / "out"
    code, _, err = cli(capsys, "predict", run_copy, _an_image(synth), "--out", out, "--no-progress")
    line = assert_user_error(code, err, "model.safetensors", "keypoints.txt")
    assert "size mismatch" not in line
    assert leftovers(out) == []


def test_weights_of_another_keypoint_count(run_copy, synth, tmp_path, capsys):
    weights = run_copy / "model.safetensors"
    k = len((run_copy / "keypoints.txt").read_text().split())
    state = load_file(str(weights))
    cut = {name: (t[: k - 1].clone() if t.ndim and t.shape[0] == k else t) for name, t in state.items()}
    assert any(cut[n].shape != state[n].shape for n in state)
    save_file(cut, str(weights), metadata={"format": "keyhead", "format_version": "1"})
    code, _, err = cli(capsys, "evaluate", run_copy)
    line = assert_user_error(code, err, "model.safetensors", "expects")
    assert "size mismatch" not in line


def test_a_pickle_where_the_pca_belongs(tmp_path, capsys):
    from keyhead.inference.video import load_pca

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "pca.safetensors"
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(KeyheadError, match=r"pca\.safetensors: not a readable safetensors file") as info:
        load_pca(path)
    assert "header too large" not in str(info.value) and len(str(info.value)) < 300
    assert not marker.exists()
    save_file({"mean": __import__("torch").zeros(3)}, str(path))  # a safetensors file without the PCA's arrays
    with pytest.raises(KeyheadError, match=r"pca\.safetensors: .*components"):
        load_pca(path)


def test_smooth_an_h5_file(tmp_path, capsys):
    import h5py

    path = tmp_path / "session.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(10)
    code, _, err = cli(capsys, "smooth", path)
    assert_user_error(code, err, "session.h5")
    assert leftovers(tmp_path) == [path]


def test_two_videos_with_the_same_name(run_dir, synth, tmp_path, capsys):
    source = next((synth / "videos").glob("*.mp4"))
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(source, tmp_path / folder / "session.mp4")
    out = tmp_path / "out"
    code, _, err = cli(
        capsys,
        "predict",
        run_dir,
        tmp_path / "a" / "session.mp4",
        tmp_path / "b" / "session.mp4",
        "--out",
        out,
        "--no-progress",
        "--max-frames",
        "2",
    )
    assert_user_error(code, err, "session.mp4", "same name")
    assert leftovers(out) == []


def test_a_symlink_out_of_the_project_is_refused_like_dotdot(tmp_path):
    project = tmp_path / "project"
    (project / "images").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "secret.png"), np.zeros((8, 8, 3), np.uint8))
    (project / "images" / "a.png").symlink_to(tmp_path / "secret.png")
    (project / "CollectedData.csv").write_text("scorer,me,me\nbodyparts,a,a\ncoords,x,y\nimages/a.png,1,2\n")
    with pytest.raises(KeyheadError, match=r"images/a\.png.*leaves the root folder"):
        load_labels(project / "CollectedData.csv")


def test_a_symlinked_folder_inside_the_project_is_fine(tmp_path):
    project = tmp_path / "project"
    (project / "store").mkdir(parents=True)
    cv2.imwrite(str(project / "store" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    (project / "images").symlink_to(project / "store")
    (project / "CollectedData.csv").write_text("scorer,me,me\nbodyparts,a,a\ncoords,x,y\nimages/a.png,1,2\n")
    assert load_labels(project / "CollectedData.csv").image_paths[0].endswith("images/a.png")


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_exif_rotated_photos_have_one_size(tmp_path, orientation):
    """The label check (header) and the pixel reader agree on a phone photo's size whatever its EXIF orientation."""
    path = tmp_path / "photo.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.full((48, 64, 3), 128, np.uint8)).save(path, exif=exif.tobytes())
    pixels = read_image(path)
    assert image_size(path) == (pixels.shape[1], pixels.shape[0])
    assert pixels.shape[:2] == ((64, 48) if orientation in (6, 8) else (48, 64))


def test_cli_train_refuses_a_symlink_out_of_the_project(project, tmp_path, capsys):
    image = next(p for p in sorted((project / "labeled-data").rglob("*.png")))
    outside = tmp_path / "outside.png"
    shutil.move(image, outside)
    image.symlink_to(outside)
    out = tmp_path / "runs"
    code, _, err = cli(
        capsys, "train", f"data.path={project}", f"output_dir={out}", "model.backbone=tiny", "--no-progress"
    )
    assert_user_error(code, err, image.name, "leaves the root folder", "symbolic link")
    assert leftovers(out) == []


def test_cli_video_prediction_with_a_pickle_as_the_pca(run_copy, synth, tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (run_copy / "pca.safetensors").write_bytes(pickle.dumps(Payload()))
    video = next((synth / "videos").glob("*.mp4"))
    out = tmp_path / "out"
    code, _, err = cli(capsys, "predict", run_copy, video, "--out", out, "--no-progress", "--max-frames", "2")
    assert_user_error(code, err, "pca.safetensors", "not a readable safetensors file")
    assert not marker.exists()
    assert not [p for p in leftovers(out) if p.suffix in (".csv", ".json")]
