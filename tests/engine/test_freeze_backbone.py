"""Seed 001's two-stage transfer schedule: first only the new stem and head train, then everything."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import keyhead
from keyhead.config import load_config
from keyhead.engine.callbacks import FreezeBackbone, stem_conv


def _trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(
    "backbone,kwargs,stem",
    [
        ("resnet18", {}, "backbone.model.conv1"),
        ("dino_vits16", {"depth": 1, "embed_dim": 32, "num_heads": 2}, "backbone.vit.patch_embed.proj"),
    ],
    ids=["resnet18", "vit"],
)
def test_stage_one_trains_only_stem_and_head_then_everything(backbone: str, kwargs: dict, stem: str):
    torch.manual_seed(0)
    model = keyhead.create_model(
        num_keypoints=3,
        backbone=backbone,
        backbone_kwargs=kwargs,
        head="regression",
        loss="smooth_l1",
        in_channels=1,
        input_size=(64, 64),
    )
    head = {n for n, _ in model.named_parameters() if n.startswith("head.")}
    stem_params = {f"{stem}.{p}" for p, _ in stem_conv(model.backbone).named_parameters()}
    assert stem_params and all(n in dict(model.named_parameters()) for n in stem_params)
    callback = FreezeBackbone(epochs=2, train_stem=True)
    module = SimpleNamespace(epoch=0, model=model)
    model.train()
    callback.on_train_epoch_start(None, module)
    assert _trainable(model) == head | stem_params
    assert not any(m.training for m in model.backbone.modules())  # frozen BatchNorm keeps its statistics

    # one optimiser step moves the stem and the head only
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    out = model(torch.rand(2, 1, 64, 64))
    (out["coords"].square().sum() + out["log_scale"].sum()).backward()
    opt.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved == head | stem_params

    module.epoch = 2
    model.train()
    callback.on_train_epoch_start(None, module)
    assert _trainable(model) == set(dict(model.named_parameters()))


def test_without_stem_only_the_head_trains():
    model = keyhead.create_model(num_keypoints=3, backbone="tiny", head="regression", loss="smooth_l1")
    FreezeBackbone(epochs=1).on_train_epoch_start(None, SimpleNamespace(epoch=0, model=model))
    assert _trainable(model) == {n for n, _ in model.named_parameters() if n.startswith("head.")}


def test_face_resnet18_template_asks_for_the_two_stage_schedule():
    cfg = load_config(keyhead.config.template_dir() / "face_resnet18.yaml")
    assert cfg.train.freeze_backbone_epochs == 5 and cfg.train.train_stem_while_frozen
    assert cfg.train.milestones == [10, 20] and cfg.train.gamma == 0.5


def test_the_backbone_trains_again_after_the_freeze_through_the_real_trainer(tmp_path):
    """After ``freeze_backbone_epochs`` the backbone's BatchNorm layers update their statistics again.

    Through the real CLI and Lightning Trainer (with validation between epochs, which restores the mode it saw
    before validating): a backbone left in eval mode after the freeze would keep its initial statistics
    (running mean 0, no batches tracked) for the whole run.
    """
    from safetensors.torch import load_file

    from keyhead.cli import main
    from keyhead.data.synth import generate

    data = tmp_path / "data"
    generate(data, n_labeled=16, image_size=(64, 64), video_frames=20, seed=0, occlusion=0.0, progress=False)
    args = [
        "train",
        f"data.path={data}",
        f"output_dir={tmp_path / 'runs'}",
        "name=r",
        "model.backbone=tiny",
        "data.input_size=[64,64]",
        "train.epochs=2",
        "train.batch_size=4",
        "train.freeze_backbone_epochs=1",
        "augment.enabled=false",
        "--no-progress",
    ]
    try:
        main(args)
    except SystemExit as exc:
        assert exc.code in (0, None)
    state = load_file(str(tmp_path / "runs" / "r" / "last.safetensors"))
    tracked = {k: int(v) for k, v in state.items() if k.startswith("backbone.") and k.endswith("num_batches_tracked")}
    means = [v for k, v in state.items() if k.startswith("backbone.") and k.endswith("running_mean")]
    assert tracked and means
    assert all(n > 0 for n in tracked.values()), tracked  # BatchNorm saw the second epoch's batches
    assert any(float(m.abs().max()) > 0 for m in means)


def _leaf_names(backbone, layers) -> set[str]:
    ids = {id(m) for m in layers}
    return {n for n, m in backbone.model.named_modules() if id(m) in ids}


def test_freeze_stride_names_the_stem_and_the_early_stages():
    from keyhead.models.backbones import create_backbone

    lite = create_backbone("efficientnet_lite0", pretrained=False)
    names = _leaf_names(lite, lite.layers_to_stride(4))
    tops = {n.split(".")[0] if not n.startswith("blocks.") else ".".join(n.split(".")[:2]) for n in names}
    assert tops == {"conv_stem", "bn1", "blocks.0", "blocks.1"}  # stride 2 and 4 stages; blocks.2 reaches 8
    assert len(lite.layers_to_stride(8)) > len(lite.layers_to_stride(4)) > len(lite.layers_to_stride(2))
    with pytest.raises(keyhead.KeyheadError, match="strides 2, 4, 8, 16, 32"):
        lite.layers_to_stride(1)


def test_freeze_stride_keeps_early_layers_pretrained_through_the_real_trainer(tmp_path, capsys):
    """``train.freeze_stride=4`` on ResNet-18 from a weights file: after two epochs with validation between
    them, conv1 / bn1 / layer1 hold the file's weights and BatchNorm statistics exactly, layer2 on has trained."""
    import timm
    from safetensors.torch import load_file, save_file

    from keyhead.data.synth import generate
    from tests.cli_helpers import cli, train_args

    torch.manual_seed(0)
    weights = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("resnet18").state_dict().items()}, str(weights))
    data = tmp_path / "data"
    generate(data, n_labeled=16, image_size=(64, 64), video_frames=20, seed=0, occlusion=0.0, progress=False)
    args = train_args(data, tmp_path / "runs", "model.backbone=resnet18", f"model.pretrained={weights}")
    code, _, err = cli(capsys, *args, "train.epochs=2", "train.freeze_stride=4", "train.calibration=none")
    assert code == 0, err
    given = load_file(str(weights))
    state = load_file(str(tmp_path / "runs" / "r" / "last.safetensors"))
    early = [k for k in given if k.split(".")[0] in ("conv1", "bn1", "layer1")]
    later = [k for k in given if k.startswith("layer2.") and "num_batches" not in k]
    assert early and later
    for k in early:
        assert torch.equal(state[f"backbone.model.{k}"], given[k]), k
    assert not all(torch.equal(state[f"backbone.model.{k}"], given[k]) for k in later)
    assert int(state["backbone.model.layer2.0.bn1.num_batches_tracked"]) > 0


def test_freeze_stride_on_a_backbone_without_stages_is_a_one_line_error(tmp_path, capsys):
    from keyhead.data.synth import generate
    from tests.cli_helpers import assert_user_error, cli, leftovers, train_args

    data = tmp_path / "data"
    generate(data, n_labeled=8, image_size=(64, 64), video_frames=8, seed=0, occlusion=0.0, progress=False)
    code, _, err = cli(capsys, *train_args(data, tmp_path / "runs"), "train.freeze_stride=4")
    assert_user_error(code, err, "train.freeze_stride: 0")
    assert leftovers(tmp_path / "runs") == []
