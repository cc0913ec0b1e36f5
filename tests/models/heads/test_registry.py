"""Every registered head builds on a small backbone and decodes to Keypoints with a confidence in [0, 1]."""

from __future__ import annotations

import pytest
import torch

import keyhead
import keyhead.models.heads  # noqa: F401  (registers every head)
from keyhead.registry import HEADS
from keyhead.types import Keypoints

# Heads whose defaults do not fit the generic small model below: what they need instead.
NEEDS = {
    "fomm_kp": {"backbone_kwargs": {"width": 8, "out_indices": [0]}},  # predicts at the backbone stride (4)
    "unet": {"backbone": "unet_encoder", "backbone_kwargs": {"width": 4, "depth": 2}, "downsample_factor": 1},
    "dynamic": {"head_kwargs": {"dim": 32, "num_layers": 1, "num_heads": 2}},
    "vit_flatten": {"backbone": "dino_vits16", "backbone_kwargs": {"depth": 1, "embed_dim": 32, "num_heads": 2}},
    "vit_query": {"backbone": "dino_vits16", "backbone_kwargs": {"depth": 1, "embed_dim": 32, "num_heads": 2}},
    "regression_fc": {"head_kwargs": {"hidden": [16]}},
}


@pytest.mark.parametrize("name", HEADS.names())
def test_every_head_builds_and_decodes(name: str):
    torch.manual_seed(0)
    head_cls = HEADS.get(name)
    args = dict(
        num_keypoints=4,
        backbone="tiny",
        backbone_kwargs={"width": 8},
        head=name,
        loss="kl" if head_cls.output_kind == "heatmap" else "smooth_l1",
        downsample_factor=2,
        in_channels=1,
        input_size=(64, 64),
    )
    args.update(NEEDS.get(name, {}))
    model = keyhead.create_model(**args)
    shape = (2, model.context, 1, 64, 64) if model.context > 1 else (2, 1, 64, 64)
    kp = model.predict(torch.rand(shape))
    assert isinstance(kp, Keypoints)
    assert kp.xy.shape == (2, 4, 2) and kp.confidence.shape == (2, 4)
    assert torch.isfinite(kp.xy).all() and torch.isfinite(kp.confidence).all()
    assert ((kp.confidence >= 0) & (kp.confidence <= 1)).all()
    assert model.head.num_keypoints == 4
