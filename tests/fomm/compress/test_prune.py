"""Teacher initialisation of a narrow FOMM student: channel selection through the hourglass skips."""

from __future__ import annotations

import pytest
import torch

from keyhead.errors import KeyheadError
from keyhead.fomm.compress.prune import channel_importance, init_from_teacher
from keyhead.fomm.detector import FommKPDetector

from ._detectors import make_detector


def detector(block_expansion: int, max_features: int, seed: int, head_separable=False, separable=False):
    return make_detector(block_expansion, max_features, 3, separable, head_separable, seed)


def half_dead_teacher(seed: int = 0) -> tuple[FommKPDetector, dict[str, torch.Tensor]]:
    """A 4/16 teacher whose every block has a random half of channels that are exactly 0 after the ReLU."""
    teacher = detector(4, 16, seed)
    g = torch.Generator().manual_seed(seed + 100)
    live = {}
    predictor = teacher.model.backbone.predictor
    blocks = [("down", b) for b in predictor.encoder.down_blocks] + [("up", b) for b in predictor.decoder.up_blocks]
    counts = {"down": 0, "up": 0}
    with torch.no_grad():
        for kind, block in blocks:
            n = block.norm.num_features
            keep = torch.sort(torch.randperm(n, generator=g)[: n // 2]).values
            dead = torch.ones(n, dtype=torch.bool)
            dead[keep] = False
            block.norm.weight[dead] = 0.0
            block.norm.bias[dead] = -1.0  # relu(-1) = 0 everywhere
            block.norm.bias[~dead] = 1.0  # and the live ones are clearly active
            live[f"{kind}.{counts[kind]}"] = keep
            counts[kind] += 1
    return teacher, live


def images(n: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def test_student_of_half_dead_teacher_reproduces_it_exactly():
    # the 2/8 student is exactly half as wide as the 4/16 teacher at every block: keeping the live channels, with
    # their filters restricted to the live inputs (through the skip concatenations), loses nothing
    teacher, live = half_dead_teacher()
    student = detector(2, 8, seed=7)
    x = images()
    kept = init_from_teacher(student, teacher, x, batch_size=4, recalibrate=False)
    for key, channels in live.items():
        assert kept[key] == channels.tolist(), key
    with torch.no_grad():
        t, s = teacher(x), student(x)
    assert torch.allclose(s["logits"], t["logits"], atol=1e-4)
    assert torch.allclose(s["value"], t["value"], atol=1e-5)
    assert torch.allclose(s["jacobian"], t["jacobian"], atol=1e-4)


def test_head_input_channels_follow_the_last_skip():
    teacher, live = half_dead_teacher(seed=3)
    kept = init_from_teacher(detector(2, 8, seed=1), teacher, images(4), batch_size=4, recalibrate=False)
    last = teacher.model.backbone.predictor.decoder.up_blocks[-1].norm.num_features
    assert kept["head_in"] == live["up.2"].tolist() + [last, last + 1, last + 2]  # + the 3 input channels


def test_dropped_head_inputs_are_folded_into_the_bias():
    # a live teacher (nothing dead): the narrow student differs, but its head bias takes the dropped inputs' mean
    teacher = detector(4, 16, seed=0)
    student = detector(2, 8, seed=1)
    x = images()
    kept = init_from_teacher(student, teacher, x, batch_size=4, recalibrate=False)
    t_kp, s_kp = teacher.model.head.kp, student.model.head.kp
    assert torch.equal(s_kp.weight, t_kp.weight[:, kept["head_in"]])
    assert not torch.allclose(s_kp.bias, t_kp.bias)
    mean_last = channel_importance(teacher, x)["up.2"]
    dropped = [i for i in range(len(mean_last)) if i not in kept["head_in"]]
    expected = t_kp.bias + (t_kp.weight[:, dropped].sum((2, 3)) * mean_last[dropped]).sum(1)
    assert torch.allclose(s_kp.bias, expected, atol=1e-5)


def test_recalibration_sets_student_batchnorm_statistics():
    teacher = detector(4, 16, seed=0)
    student = detector(2, 8, seed=1)
    x = images(16)
    init_from_teacher(student, teacher, x, batch_size=8)
    norm = student.model.backbone.predictor.encoder.down_blocks[0]
    conv_out = norm.conv(student.model.backbone.down(x))
    assert torch.allclose(norm.norm.running_mean, conv_out.mean((0, 2, 3)), atol=1e-4)
    assert not student.training


def test_separable_head_keeps_its_identity_jacobian_init():
    teacher = detector(4, 16, seed=0)
    student = detector(2, 8, seed=1, head_separable="jacobian")
    init_from_teacher(student, teacher, images(4), batch_size=4)
    pointwise = student.model.head.jacobian[-1]
    assert torch.count_nonzero(pointwise.weight) == 0
    assert pointwise.bias[:4].tolist() == [1.0, 0.0, 0.0, 1.0]
    assert isinstance(student.model.head.kp, torch.nn.Conv2d)


def test_refuses_separable_students_and_wider_students():
    teacher = detector(4, 16, seed=0)
    with pytest.raises(KeyheadError, match="full hourglass convolutions"):
        init_from_teacher(detector(2, 8, seed=1, separable=True), teacher, images(2))
    with pytest.raises(KeyheadError, match="wider"):
        init_from_teacher(detector(8, 32, seed=1), teacher, images(2))


def test_head_separable_option_is_validated():
    with pytest.raises(KeyheadError, match="separable must be"):
        detector(2, 8, seed=0, head_separable="kp")
