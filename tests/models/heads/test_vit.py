from __future__ import annotations

import pytest
import torch

import keyhead

# a two-block ViT with 32 channels: 64x64 input -> 4x4 tokens of width 32
VIT = {"depth": 2, "embed_dim": 32, "num_heads": 2}


def _model(head: str, vit: dict | None = None, **head_kwargs):
    torch.manual_seed(0)
    return keyhead.create_model(
        num_keypoints=3,
        backbone="dino_vits16",
        backbone_kwargs=vit or VIT,
        head=head,
        head_kwargs=head_kwargs,
        loss="smooth_l1",
        in_channels=1,
        input_size=(64, 64),
    )


@pytest.mark.parametrize("head", ["vit_flatten", "vit_query"])
def test_shapes_and_decode(batch, head: str):
    model = _model(head)
    x, _ = batch(n=2)
    raw = model(x)
    assert raw["coords"].shape == (2, 3, 2) and raw["log_scale"].shape == (2, 3)
    kp = model.predict(x)
    assert kp.xy.shape == (2, 3, 2) and ((kp.confidence > 0) & (kp.confidence <= 1)).all()


def test_flatten_head_flattens_raw_tokens_by_default_as_the_seed():
    model = _model("vit_flatten", hidden=[16])
    first = model.head.trunk[2][0]
    assert first.in_features == 4 * 4 * 32  # N tokens x D, the seed's flatten
    projected = _model("vit_flatten", token_dim=8, hidden=[16])
    assert projected.head.trunk[2][0].in_features == 4 * 4 * 8  # keyhead's option


def test_query_attention_rows_sum_to_one(batch):
    model = _model("vit_query")
    x, _ = batch(n=2)
    feats = model.features(x)
    attn = model.head.attention(feats)
    assert attn.shape == (2, 3, 4, 4)
    assert torch.allclose(attn.sum((-2, -1)), torch.ones(2, 3), atol=1e-5)
    model(x)
    assert torch.allclose(model.head.last_attention, attn.detach(), atol=1e-6)


def test_query_head_is_the_seed_by_default(batch):
    """The seed: patch tokens as K and V (no norm, no W_k / W_v), one shared D -> 2 layer: y = W A T + b."""
    seed = _model("vit_query", uncertainty=False)
    assert seed.head.out_weight.shape == (1, 32, 2) and seed.head.query.shape == (3, 32)
    assert {n for n, _ in seed.head.named_parameters()} == {"query", "out_weight", "out_bias"}
    x, _ = batch(n=2)
    feats = seed.features(x)
    tokens = feats[-1].flatten(2).transpose(1, 2)  # (B, N, D)
    attn = torch.softmax(seed.head.query @ tokens.transpose(1, 2) / 32**0.5, -1)
    expected = (attn @ tokens) @ seed.head.out_weight[0] + seed.head.out_bias[0]
    torch.testing.assert_close(seed.head(feats)["coords"], expected, atol=1e-5, rtol=1e-5)


def test_query_head_options_per_keypoint_output_and_token_projection():
    per_kp = _model("vit_query", shared_output=False, token_projection=True)
    assert per_kp.head.out_weight.shape == (3, 32, 2)
    names = {n.split(".")[0] for n, _ in per_kp.head.named_parameters()}
    assert {"norm", "key", "value"} <= names


@pytest.mark.parametrize("head", ["vit_flatten", "vit_query"])
def test_gradients_reach_every_parameter(batch, gradients, head: str):
    x, xy = batch()
    gradients(_model(head), "smooth_l1", x, xy)


@pytest.mark.parametrize(
    "head,vit,lr",
    [("vit_flatten", VIT, 1e-3), ("vit_query", {"depth": 2, "embed_dim": 64, "num_heads": 2}, 1e-3)],
    ids=["vit_flatten", "vit_query"],
)
def test_overfits_eight_images(batch, steps, head: str, vit: dict, lr: float):
    x, xy = batch()
    model = _model(head, vit, uncertainty=False)  # the coordinate loss alone
    before = (model.predict(x).xy - xy).norm(dim=-1).mean()
    losses = steps(model, "l1", x, xy, steps=60, lr=lr)
    after = (model.predict(x).xy - xy).norm(dim=-1).mean()
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:3]) / 3
    assert after < 0.65 * before
