from __future__ import annotations

import pytest

from keyhead.config import RunConfig, load_config, save_config, template_dir
from keyhead.errors import KeyheadError


def test_defaults_round_trip(tmp_path):
    cfg = load_config(None, ["train.epochs=7", "data.input_size=[128, 96]", "model.pretrained=true"])
    assert cfg.train.epochs == 7 and cfg.data.input_size == (128, 96) and cfg.model.pretrained is True
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


@pytest.mark.parametrize(
    "override,needle",
    [
        ("train.epochz=3", "did you mean 'epochs'"),
        ("modle.head=x", "did you mean 'model'"),
        ("train.epochs=many", "train.epochs"),
        ("data.input_size=[100, 100]", "multiple of 32"),
        ("data.split=[0.5, 0.5, 0.5]", "sum to 1"),
        ("train.lr=-1", "train.lr"),
        ("noequals", "key=value"),
    ],
    ids=["typo-key", "typo-section", "wrong-type", "bad-size", "bad-split", "negative-lr", "no-equals"],
)
def test_bad_values_name_the_key(override: str, needle: str):
    with pytest.raises(KeyheadError, match=needle):
        load_config(None, [override])


def test_relative_data_path_resolves_against_the_config(tmp_path):
    (tmp_path / "proj").mkdir()
    (tmp_path / "c.yaml").write_text("data:\n  path: proj\n")
    assert load_config(tmp_path / "c.yaml").data.path == str((tmp_path / "proj").resolve())


def test_yaml_is_loaded_safely(tmp_path):
    (tmp_path / "evil.yaml").write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(KeyheadError, match="not valid YAML"):
        load_config(tmp_path / "evil.yaml")


@pytest.mark.parametrize("path", sorted(template_dir().glob("*.yaml")), ids=lambda p: p.stem)
def test_templates_are_valid(path):
    assert isinstance(load_config(path), RunConfig)
