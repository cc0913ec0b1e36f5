"""No code in data: pickles refused unless trusted (then weights_only), safe YAML, label paths kept in the project."""

from __future__ import annotations

import contextlib
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from keyhead.cli import main
from keyhead.config import load_config
from keyhead.data.formats import load_labels
from keyhead.errors import KeyheadError
from keyhead.models.build import model_from_config
from keyhead.models.weights import convert_weights, read_weights_file, trust_pickle

PACKAGE = Path(__file__).resolve().parents[1] / "keyhead"


class _Payload:
    """Unpickling this runs ``exec``: it writes a marker file (what a hostile checkpoint would do, harmlessly)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",)


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, Path]:
    """(a torch.save checkpoint that runs code when unpickled, the marker file it would write)."""
    marker = tmp_path / "marker.txt"
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "hook": _Payload(marker)}, path)
    return path, marker


def _cli(capsys, *args: str) -> tuple[int, str]:
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from keyhead.data.synth import generate

    out = tmp_path_factory.mktemp("synth") / "data"
    generate(out, n_labeled=8, image_size=(64, 64), video_frames=8, seed=0, progress=False)
    return out


def _train(data: Path, tmp_path: Path, weights: Path, *extra: str) -> list[str]:
    return [
        "train",
        f"data.path={data}",
        "data.input_size=[64,64]",
        f"output_dir={tmp_path / 'runs'}",
        "model.backbone=resnet18",
        f"model.pretrained={weights}",
        *extra,
    ]


def test_pickle_refused_without_trust(hostile, tmp_path, capsys):
    path, marker = hostile
    cfg = load_config(None, [f"model.pretrained={path}", "model.backbone=resnet18"])
    with pytest.raises(KeyheadError, match=r"pickle file .*can run code.*keyhead convert-weights .*--trust-pickle"):
        model_from_config(cfg, ["a", "b"])
    assert not marker.exists()
    code, err = _cli(capsys, "convert-weights", path, tmp_path / "out.safetensors")
    assert code == 2 and "pickle" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()


def test_pickle_that_runs_code_is_refused_even_when_trusted(hostile, tmp_path, capsys):
    path, marker = hostile
    cfg = load_config(None, [f"model.pretrained={path}", "model.backbone=resnet18", "model.trust_pickle=true"])
    with pytest.raises(KeyheadError, match="refused even with trust_pickle"):
        model_from_config(cfg, ["a", "b"])
    code, err = _cli(capsys, "convert-weights", path, tmp_path / "out.safetensors", "--trust-pickle")
    assert code == 2 and "refused even with trust_pickle" in err and "Traceback" not in err
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()
    # the file really is hostile: a plain unpickler runs its code
    torch.load(path, weights_only=False)
    assert marker.read_text() == "code ran"


def test_train_refuses_pickle_weights_before_writing_anything(synth, hostile, tmp_path, capsys):
    path, marker = hostile
    for extra in ((), ("--trust-pickle",)):
        code, err = _cli(capsys, *_train(synth, tmp_path, path, *extra))
        assert code == 2 and "Traceback" not in err
        assert "pickle" in err.strip().splitlines()[-1]
        assert not marker.exists()
        assert not (tmp_path / "runs").exists()


def test_trusted_plain_checkpoint_converts_and_loads(tmp_path, capsys):
    state = {"conv.weight": torch.randn(4, 3, 3, 3), "conv.bias": torch.randn(4)}
    src = tmp_path / "net.ckpt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 7}, src)
    with pytest.raises(KeyheadError, match="pickle"):
        read_weights_file(src)
    with trust_pickle():
        assert set(read_weights_file(src)["state_dict"]) == {"module.conv.weight", "module.conv.bias"}
    code, err = _cli(capsys, "convert-weights", src, tmp_path / "net.safetensors", "--trust-pickle")
    assert code == 0, err
    converted = load_file(str(tmp_path / "net.safetensors"))
    assert converted.keys() == state.keys()
    assert all(torch.equal(converted[k], state[k]) for k in state)
    assert convert_weights(src, tmp_path / "again.safetensors", trusted=True) == 2
    # a safetensors file is read as such whatever its suffix, with no trust needed
    (tmp_path / "again.safetensors").rename(tmp_path / "again.pth")
    assert read_weights_file(tmp_path / "again.pth").keys() == state.keys()


def test_no_unsafe_loaders_in_the_package():
    """Every torch.load passes weights_only=True; no pickle.load, pandas HDF reader, yaml.load or yaml.unsafe_load."""
    offences = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for match in re.finditer(r"torch\.load\(", text):
            depth, end = 0, match.end() - 1
            for end in range(match.end() - 1, len(text)):  # the call's closing parenthesis
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
            call = text[match.start() : end + 1]
            if "weights_only=True" not in call:
                offences.append(f"{path.name}: {call}")
        for bad in (
            "pickle.load(",
            "pickle.loads(",
            "read_hdf(",
            "HDFStore(",
            "yaml.load(",
            "yaml.unsafe_load(",
            "yaml.full_load(",
        ):
            if bad in text:
                offences.append(f"{path.name}: {bad}")
    assert not offences, offences


def test_yaml_python_tags_are_not_executed(tmp_path):
    marker = tmp_path / "yaml-marker"
    config = tmp_path / "evil.yaml"
    config.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(KeyheadError, match="not valid YAML"):
        load_config(config)
    assert not marker.exists()


def _png(path: Path) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((8, 8, 3), np.uint8))


def _coco(folder: Path, file_name: str) -> Path:
    data = {
        "images": [{"id": 1, "file_name": file_name, "width": 8, "height": 8}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "keypoints": [1, 2, 2, 3, 4, 2]}],
        "categories": [{"id": 1, "name": "x", "keypoints": ["a", "b"]}],
    }
    path = folder / "labels.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("kind", ["coco", "dlc"])
@pytest.mark.parametrize("escape", ["../secret.png", "sub/../../secret.png", "ABSOLUTE"])
def test_label_paths_cannot_leave_the_project(tmp_path, kind, escape):
    project = tmp_path / "project"
    project.mkdir()
    _png(tmp_path / "secret.png")
    name = str(tmp_path / "secret.png") if escape == "ABSOLUTE" else escape
    if kind == "coco":
        label_file = _coco(project, name)
    else:
        label_file = project / "CollectedData.csv"
        label_file.write_text(f"scorer,me,me\nbodyparts,a,a\ncoords,x,y\n{name},1,2\n")
    with pytest.raises(KeyheadError, match=r"(outside|leaves) the root folder"):
        load_labels(label_file)


def test_label_paths_inside_the_project_are_fine(tmp_path):
    _png(tmp_path / "images" / "a.png")
    frames = load_labels(_coco(tmp_path, "images/./a.png"))
    assert frames.image_paths == ["images/a.png"]
    assert pickle.dumps(frames.keypoints)  # plain arrays, nothing exotic


# --- HDF5 label tables: pandas' reader unpickles object columns and attributes; keyhead's never unpickles code --


def _evil_h5(tmp_path: Path, marker: Path) -> Path:
    """A DeepLabCut-shaped pandas table in "fixed" format with one pickled object column that runs code."""
    import pandas as pd

    columns = pd.MultiIndex.from_product(
        [["me"], ["nose", "tail"], ["x", "y"]], names=["scorer", "bodyparts", "coords"]
    )
    table = pd.DataFrame(np.ones((2, 4)), index=["labeled-data/a.png", "labeled-data/b.png"], columns=columns)
    table[("me", "evil", "x")] = [_Payload(marker), None]
    path = tmp_path / "evil.h5"
    with pytest.warns(Warning):  # PerformanceWarning: pandas pickles the object column
        table.to_hdf(path, key="df_with_missing", mode="w", format="fixed")
    return path


def test_pandas_would_run_the_payload(tmp_path):
    """The attack is real: the file makes pandas' own reader execute code (so the tests below can fail)."""
    import pandas as pd

    marker = tmp_path / "marker.txt"
    pd.read_hdf(_evil_h5(tmp_path, marker))
    assert marker.exists()


@pytest.mark.parametrize("command", ["convert", "train"])
def test_object_column_h5_is_refused_without_running_it(tmp_path, capsys, command):
    marker = tmp_path / "marker.txt"
    evil = _evil_h5(tmp_path, marker)
    out = tmp_path / "out"
    if command == "convert":
        code, err = _cli(capsys, "convert", evil, out / "labels.json")
    else:
        code, err = _cli(
            capsys, "train", f"data.path={evil}", f"output_dir={out}", "model.backbone=tiny", "--no-progress"
        )
    assert not marker.exists(), "the pickle in the .h5 file ran"
    assert code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("keyhead: error: ") and "evil.h5" in last and "pickle" in last, last
    assert len(last) < 400
    assert not out.exists() or not any(out.rglob("*.json"))


def test_pickled_table_attribute_is_refused_without_running_it(tmp_path):
    """A "table"-format file (what DeepLabCut and keyhead write) keeps column lists as pickled attributes."""
    import h5py
    import pandas as pd

    columns = pd.MultiIndex.from_product([["me"], ["nose"], ["x", "y"]], names=["scorer", "bodyparts", "coords"])
    path = tmp_path / "labels.h5"
    pd.DataFrame(np.ones((2, 2)), index=["a.png", "b.png"], columns=columns).to_hdf(
        path, key="df_with_missing", mode="w", format="table"
    )
    assert load_labels(path).keypoints.shape == (2, 1, 2)  # the honest file reads
    marker = tmp_path / "marker.txt"
    with h5py.File(path, "a") as f:
        f["df_with_missing/table"].attrs["values_block_0_kind"] = np.bytes_(pickle.dumps(_Payload(marker), 0))
    with pytest.raises(KeyheadError, match="labels.h5.*pickle"):
        load_labels(path)
    assert not marker.exists()
    with contextlib.suppress(Exception):
        pd.read_hdf(path)
    assert marker.exists(), "pandas' reader should run this payload (else the test proves nothing)"


@pytest.mark.skipif(not (Path(__file__).resolve().parents[2] / "shared" / "data").is_dir(), reason="no ../shared")
@pytest.mark.parametrize(
    "table",
    [
        "dlc-openfield-Pranav-2018-10-30/labeled-data/m4s1/CollectedData_Pranav.h5",
        "dlc-Reaching-Mackenzie-2018-08-30/labeled-data/reachingvideo1/CollectedData_Mackenzie.h5",
    ],
)
def test_real_deeplabcut_h5_reads_as_pandas_does(table):
    import pandas as pd

    from keyhead.io.hdf import read_pandas_hdf

    path = Path(__file__).resolve().parents[2] / "shared" / "data" / table
    pd.testing.assert_frame_equal(read_pandas_hdf(path), pd.read_hdf(path))
