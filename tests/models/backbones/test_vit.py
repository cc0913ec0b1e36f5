from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from keyhead.errors import KeyheadError
from keyhead.models.backbones import create_backbone
from keyhead.models.backbones.vit import DINO_ARCH, ViTBackbone

SMALL = {"depth": 1, "embed_dim": 32, "num_heads": 2}


def test_dino_vits16_architecture():
    bb = create_backbone("dino_vits16", in_channels=1, input_size=(224, 224))
    assert bb.arch == DINO_ARCH and bb.weights == "random init"
    assert [(f.channels, f.stride) for f in bb.feature_info] == [(384, 16)]
    assert len(bb.vit.blocks) == 12 and bb.grid == (14, 14)
    with torch.no_grad():
        patches, cls = bb.tokens(torch.rand(1, 1, 224, 224))
    assert patches.shape == (1, 196, 384) and cls.shape == (1, 384)  # 197 tokens, CLS split off


def test_tokens_and_grid_agree():
    torch.manual_seed(0)
    bb = ViTBackbone(input_size=(64, 32), in_channels=1, **SMALL).eval()
    x = torch.rand(2, 1, 64, 32)
    with torch.no_grad():
        patches, _ = bb.tokens(x)
        grid = bb(x)[0]
    assert grid.shape == (2, 32, 4, 2)
    # row-major: token n is grid cell (n // w, n % w)
    assert torch.equal(grid[:, :, 1, 0], patches[:, 2]) and torch.equal(grid[:, :, 3, 1], patches[:, 7])


def test_local_weights_file_adapts_stem_and_resamples_positions(tmp_path):
    torch.manual_seed(0)
    source = timm.create_model(DINO_ARCH, pretrained=False, img_size=64, **SMALL)  # RGB, 4x4 grid
    sd = source.state_dict()
    path = tmp_path / "dino.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    bb = create_backbone("dino_vits16", pretrained=str(path), in_channels=1, input_size=(96, 64), **SMALL)
    assert bb.weights == f"weights file {path}"
    own = bb.vit.state_dict()
    # grayscale stem: the RGB filters summed (timm's adapt_input_conv), not re-initialised
    assert torch.allclose(own["patch_embed.proj.weight"], sd["patch_embed.proj.weight"].sum(1, keepdim=True))
    assert own["pos_embed"].shape == (1, 1 + 6 * 4, 32)  # 4x4 grid resampled to 6x4, CLS kept
    assert torch.equal(own["pos_embed"][:, 0], sd["pos_embed"][:, 0])
    assert torch.equal(own["blocks.0.attn.qkv.weight"], sd["blocks.0.attn.qkv.weight"])


def test_weights_of_another_model_are_a_clear_error(tmp_path):
    other = timm.create_model(DINO_ARCH, pretrained=False, img_size=64, depth=2, embed_dim=32, num_heads=2)
    path = tmp_path / "deeper.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(path))
    with pytest.raises(KeyheadError, match="does not fit timm model"):
        create_backbone("dino_vits16", pretrained=str(path), input_size=(64, 64), **SMALL)


def test_never_downloads():
    with pytest.raises(KeyheadError, match="never downloads"):
        create_backbone("dino_vits16", pretrained=True)


def test_input_size_must_be_a_multiple_of_the_patch():
    with pytest.raises(KeyheadError, match="multiple of the patch size 16"):
        create_backbone("dino_vits16", input_size=(72, 64), **SMALL)
    bb = create_backbone("dino_vits16", input_size=(64, 64), **SMALL)
    with pytest.raises(KeyheadError, match="built for 64x64"):
        bb(torch.rand(1, 3, 96, 96))
