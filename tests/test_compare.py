"""``keyhead compare`` end to end on two tiny configs (synthetic faces, tiny backbone), plus its helpers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from keyhead.cli import main
from keyhead.compare import compare, expand, parse_grid, split_values
from keyhead.errors import KeyheadError

TINY = [
    "model.backbone=tiny",
    "data.input_size=[32,32]",
    "data.in_channels=1",
    "data.crop=landmarks",
    "train.epochs=1",
    "train.batch_size=4",
]


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    from keyhead.data.synth import generate

    out = tmp_path_factory.mktemp("faces") / "data"
    generate(
        out, kind="face", n_labeled=12, image_size=(96, 96), video_frames=12, seed=0, occlusion=0.0, progress=False
    )
    return out


def test_grid_parsing_and_expansion():
    assert split_values("a,b, c") == ["a", "b", "c"]
    assert split_values("[224,224],[256,256]") == ["[224,224]", "[256,256]"]
    grid = parse_grid(["model.loss=mse,smooth_l1", "train.lr=1e-3,1e-4"])
    entries = expand(["regression_resnet18", "heatmap_resnet18"], grid)
    assert len(entries) == 8
    assert entries[0].name == "regression_resnet18-loss=mse-lr=1e-3"
    assert entries[0].overrides == ["model.loss=mse", "train.lr=1e-3"]
    assert len({e.name for e in entries}) == 8
    assert [e.name for e in expand(["demo", "demo"])] == ["demo", "demo_2"]
    with pytest.raises(KeyheadError, match="key=v1,v2"):
        parse_grid(["model.loss"])
    with pytest.raises(KeyheadError, match="neither a config file nor a template"):
        expand(["no_such_template"])


@pytest.mark.slow
def test_compare_two_tiny_configs_end_to_end(faces, tmp_path, capsys):
    out = tmp_path / "cmp"
    payload = compare(
        ["heatmap_resnet18", "regression_resnet18"],
        overrides=[f"data.path={faces}", *TINY],
        out=out,
        flip=True,
        n_overlay=2,
        latency_repeats=3,
        progress=False,
    )
    names = ["heatmap_resnet18", "regression_resnet18"]
    assert [r["model"] for r in payload["rows"]] == names
    split = json.loads((out / "split.json").read_text())
    for name in names:
        run = out / "runs" / name
        assert (run / "metrics.json").is_file() and (run / "eval-flip" / "metrics.json").is_file()
        run_split = json.loads((run / "split.json").read_text())
        assert all(run_split[k] == split[k] for k in ("train", "val", "test"))  # the same split for every model
        assert (run / "reliability_test.png").is_file()
    for row in payload["rows"]:
        assert row["nme"] is not None and row["nme"] > 0 and row["nme_flip"] is not None
        assert row["params_m"] > 0 and row["latency_ms"] > 0 and row["epochs"] == 1
    with open(out / "comparison.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["model"] for r in table] == names
    assert {"mse_normalized", "nme", "nme_flip", "pixel_error", "confidence_auroc", "params_m", "latency_ms"} <= set(
        table[0]
    )
    md = (out / "comparison.md").read_text()
    assert "| model |" in md and "NME %" in md and md.count("\n") == 4
    for name in ("curves.png", "overlays.png", "heatmaps_heatmap_resnet18.png", "compare.json"):
        assert (out / name).is_file(), name
    assert not (out / "heatmaps_regression_resnet18.png").exists()  # not a heatmap head

    # re-run through the CLI: finished models are skipped, not retrained
    before = (out / "runs" / names[0] / "model.safetensors").stat().st_mtime_ns
    capsys.readouterr()
    main(
        [
            "compare",
            *names,
            "--out",
            str(out),
            "--no-progress",
            *sum((["--set", o] for o in [f"data.path={faces}", *TINY]), []),
        ]
    )
    printed = capsys.readouterr().out
    assert printed.count("skipped (finished)") == 2
    assert (out / "runs" / names[0] / "model.safetensors").stat().st_mtime_ns == before


def test_compare_rejects_models_on_different_data(faces, tmp_path):
    with pytest.raises(KeyheadError, match="different data"):
        compare(
            ["heatmap_resnet18"],
            grid={"data.path": [str(faces), str(tmp_path)]},
            overrides=TINY,
            out=tmp_path / "x",
            progress=False,
        )


def test_compare_keep_going_reports_failed_models(faces, tmp_path):
    common = dict(overrides=[f"data.path={faces}", *TINY], out=tmp_path / "x", progress=False)
    with pytest.raises(KeyheadError, match="unknown head 'no_such_head'"):
        compare(["heatmap_resnet18"], grid={"model.head": ["no_such_head"]}, **common)
    with pytest.raises(KeyheadError, match="every model failed.*no_such_head"):
        compare(["heatmap_resnet18"], grid={"model.head": ["no_such_head"]}, keep_going=True, **common)
