"""Distillation frames: TPS-warped and occluded copies, the teacher-labelled distillation set, CLI defaults."""

from __future__ import annotations

import inspect

import numpy as np
import torch

from keyhead.fomm.compress import CompressSettings, teacher_targets
from keyhead.fomm.compress.augment import occluded_copies, tps_copies
from keyhead.fomm.compress.pipeline import distillation_set

from ._detectors import make_detector


def frames(n: int = 4, size: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, size, size, generator=g) * 255).to(torch.uint8)


def test_occluders_cover_the_keypoints_and_nothing_far_away():
    x = frames(6)
    kp = np.full((6, 2, 2), 12.0)  # every keypoint near the top-left corner
    out = occluded_copies(x, kp, copies=2, seed=0, size=(0.1, 0.15))
    assert out.shape == (12, 3, 64, 64) and out.dtype == torch.uint8
    changed = (out.int() - x.repeat(2, 1, 1, 1).int()).abs().sum(1) > 0  # (12, H, W)
    # the ellipse (semi-axes <= 0.15 * 64 = 9.6 px) is centred within one semi-axis of (12, 12), soft edge 2 px
    assert changed[:, 12, 12].float().mean() > 0.5
    assert not changed[:, 40:, 40:].any()
    assert changed.any(dim=(1, 2)).all()  # every copy has an occluder


def test_occluded_copies_are_seeded_and_empty_without_copies():
    x = frames(3)
    kp = np.random.default_rng(0).uniform(10, 54, (3, 4, 2))
    assert torch.equal(occluded_copies(x, kp, 1, seed=5), occluded_copies(x, kp, 1, seed=5))
    assert not torch.equal(occluded_copies(x, kp, 1, seed=5), occluded_copies(x, kp, 1, seed=6))
    assert occluded_copies(x, kp, 0, seed=5).shape == (0, 3, 64, 64)


def test_tps_copies_warp_every_frame():
    x = frames(3)
    out = tps_copies(x, 2, seed=0)
    assert out.shape == (6, 3, 64, 64) and out.dtype == torch.uint8
    assert all(not torch.equal(out[i], x[i % 3]) for i in range(6))
    assert tps_copies(x, 0, seed=0).shape == (0, 3, 64, 64)


def test_distillation_set_holds_the_frames_first_and_the_teachers_answers():
    teacher = make_detector(seed=0)
    x = frames(4)
    settings = CompressSettings(augment_copies=1, occlusion_copies=2)
    out, targets = distillation_set(teacher, x, settings)
    assert len(out) == len(targets.value) == 4 * 2 * 3  # (frames + 1 warp) * (1 + 2 occluded copies)
    assert torch.equal(out[:4], x)
    again = teacher_targets(teacher, out)
    assert torch.allclose(again.value, targets.value, atol=1e-5)
    assert torch.allclose(again.jacobian, targets.jacobian, atol=1e-5)
    plain, _ = distillation_set(teacher, x, CompressSettings(augment_copies=1, occlusion_copies=0))
    assert torch.equal(plain, out[:8])


def test_cli_defaults_are_the_library_defaults():
    """``keyhead compress`` with no options runs the same configuration as ``CompressSettings()``."""
    from keyhead.cli import compress

    params = inspect.signature(compress).parameters
    defaults = CompressSettings()
    pairs = {
        "block_expansion": "block_expansion",
        "max_features": "max_features",
        "distill_steps": "distill_steps",
        "minutes": "max_minutes",
        "max_frames": "max_frames",
        "augment_copies": "augment_copies",
        "occlusion_copies": "occlusion_copies",
        "separable_head": "separable_head",
        "init": "init",
        "separable": "separable",
        "repeats": "repeats",
    }
    for cli_name, field in pairs.items():
        assert params[cli_name].default == getattr(defaults, field), cli_name
