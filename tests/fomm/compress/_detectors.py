"""Small FOMM detectors for the compression tests."""

from __future__ import annotations

import torch

import keyhead
from keyhead.fomm.detector import FommKPDetector


def make_detector(
    block_expansion: int = 4,
    max_features: int = 16,
    num_blocks: int = 2,
    separable: bool = False,
    head_separable: bool | str = False,
    seed: int = 0,
) -> FommKPDetector:
    """A 3-keypoint FOMM detector on 64x64 inputs (eval mode); separable students use the strided blur."""
    torch.manual_seed(seed)
    model = keyhead.create_model(
        num_keypoints=3,
        backbone="fomm_hourglass",
        head="fomm_kp",
        input_size=(64, 64),
        backbone_kwargs={
            "block_expansion": block_expansion,
            "max_features": max_features,
            "num_blocks": num_blocks,
            "separable": separable,
            "strided_antialias": separable,
        },
        head_kwargs={"separable": head_separable},
    )
    return FommKPDetector(model).eval()
