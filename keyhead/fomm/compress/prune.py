"""Start a narrow FOMM student from its teacher's weights (structured channel selection), not from random numbers.

For every hourglass block the student keeps the teacher's channels that carry the most signal (mean activation
after BatchNorm + ReLU over a few frames: a channel that is mostly zero matters little downstream) and takes their
filters, restricted to the kept input channels. The selection follows the tensors through the U-Net: a decoder
block's input is its predecessor's output concatenated with an encoder skip, so its kept input channels are the
predecessor's kept channels followed by the skip's (shifted by the predecessor's teacher width). The head's 7x7
convolutions keep every output and the kept inputs; what the dropped inputs contributed on average is folded into
their bias (mean-replacement), as there is no BatchNorm after them to absorb it.

The student's hourglass must have full convolutions (a depthwise-separable layer has no counterpart to copy: the
best rank-1 split of each input channel's filters, tried, lands further from the teacher than random weights); a
depthwise-separable head convolution keeps its own initialisation (the Jacobian's: FOMM's identity). Last, the
student's BatchNorm statistics are re-estimated on the frames (the kept channels see fewer inputs than they did
in the teacher).

Distillation then starts near the teacher instead of at a random function (``keyhead compress --init teacher``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from keyhead.errors import KeyheadError
from keyhead.fomm.detector import FommKPDetector
from keyhead.models.backbones.fomm import FommHourglassBackbone

__all__ = ["channel_importance", "init_from_teacher"]


def _parts(det: FommKPDetector) -> tuple[FommHourglassBackbone, nn.Module]:
    bb, head = det.model.backbone, det.model.head
    if not isinstance(bb, FommHourglassBackbone):
        raise KeyheadError(f"teacher initialisation needs a 'fomm_hourglass' backbone, got {type(bb).__name__}")
    return bb, head


def _blocks(bb: FommHourglassBackbone) -> tuple[list[nn.Module], list[nn.Module]]:
    return list(bb.predictor.encoder.down_blocks), list(bb.predictor.decoder.up_blocks)


@torch.no_grad()
def channel_importance(teacher: FommKPDetector, x: Tensor, batch_size: int = 16) -> dict[str, Tensor]:
    """Mean post-ReLU activation per output channel of every hourglass block (keys ``down.i`` / ``up.i``), and the
    mean of the anti-aliased input per channel (``input``: the hourglass's last skip, part of the head's input)."""
    bb, _ = _parts(teacher)
    down, up = _blocks(bb)
    sums: dict[str, Tensor] = {}

    def input_hook(_m, _inp, out):
        sums["input"] = sums.get("input", 0) + out.float().mean(dim=(2, 3)).sum(0)

    hooks = [bb.down.register_forward_hook(input_hook)]
    for prefix, blocks in (("down", down), ("up", up)):
        for i, block in enumerate(blocks):

            def hook(_m, _inp, out, key=f"{prefix}.{i}"):
                sums[key] = sums.get(key, 0) + out.float().mean(dim=(2, 3)).sum(0)

            hooks.append(block.relu.register_forward_hook(hook))
    teacher.eval()
    try:
        for i in range(0, len(x), batch_size):
            teacher(x[i : i + batch_size])
    finally:
        for h in hooks:
            h.remove()
    return {k: v / len(x) for k, v in sums.items()}


def _top(importance: Tensor, k: int) -> Tensor:
    if k > len(importance):
        raise KeyheadError(
            f"teacher initialisation: the student block is wider ({k}) than the teacher's ({len(importance)})"
        )
    return torch.sort(torch.topk(importance, k).indices).values


def _conv_weights(conv: nn.Module) -> tuple[Tensor, Tensor | None]:
    if isinstance(conv, nn.Conv2d) and conv.groups == 1:
        return conv.weight, conv.bias
    raise KeyheadError("teacher initialisation needs a teacher with full (not depthwise-separable) convolutions")


def _set_conv(conv: nn.Module, weight: Tensor, bias: Tensor | None) -> None:
    if not (isinstance(conv, nn.Conv2d) and conv.groups == 1):
        raise KeyheadError(
            "teacher initialisation needs a student with full hourglass convolutions (separable=false); a depthwise-"
            "separable student has no filters to take from the teacher (use init 'random')"
        )
    conv.weight.copy_(weight)
    if conv.bias is not None and bias is not None:
        conv.bias.copy_(bias)


def _copy_block(t_block: nn.Module, s_block: nn.Module, keep_in: Tensor, keep_out: Tensor) -> None:
    w, b = _conv_weights(t_block.conv)
    _set_conv(s_block.conv, w[keep_out][:, keep_in], None if b is None else b[keep_out])
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(s_block.norm, name).copy_(getattr(t_block.norm, name)[keep_out])


def _copy_head_conv(t_conv: nn.Module, s_conv: nn.Module, keep_in: Tensor, mean_in: Tensor) -> None:
    w, b = _conv_weights(t_conv)
    dropped = torch.ones(w.shape[1], dtype=torch.bool)
    dropped[keep_in] = False
    bias = (b if b is not None else torch.zeros(w.shape[0])) + (w[:, dropped].sum((2, 3)) * mean_in[dropped]).sum(1)
    _set_conv(s_conv, w[:, keep_in], bias)


@torch.no_grad()
def _recalibrate_batchnorm(student: FommKPDetector, x: Tensor, batch_size: int) -> None:
    norms = [m for m in student.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
    student.train()
    try:
        for i in range(0, len(x), batch_size):
            student(x[i : i + batch_size])
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        student.eval()


@torch.no_grad()
def init_from_teacher(
    student: FommKPDetector,
    teacher: FommKPDetector,
    x: Tensor,
    batch_size: int = 16,
    recalibrate: bool = True,
    importance: dict[str, Tensor] | None = None,
) -> dict[str, list[int]]:
    """Initialise ``student`` (a narrower FOMM detector, full hourglass convolutions) from ``teacher`` on images ``x``.

    Args:
        student: the light detector; same ``num_blocks``, input channels, keypoints and head options as the teacher.
        teacher: a detector with full convolutions (the faithful FOMM layout).
        x: float images (N, C, H, W) in [0, 1] (a few dozen frames), for the channel importance and the student's
            BatchNorm statistics.
        batch_size: frames per forward pass.
        recalibrate: re-estimate the student's BatchNorm statistics on ``x`` (otherwise the teacher's are kept).
        importance: :func:`channel_importance` of the teacher on ``x``, when already computed (several students).

    Returns:
        The kept teacher channels of every block (``down.i`` / ``up.i`` / ``head_in``), for the report.
    """
    t_bb, t_head = _parts(teacher)
    s_bb, s_head = _parts(student)
    t_down, t_up = _blocks(t_bb)
    s_down, s_up = _blocks(s_bb)
    if len(t_down) != len(s_down) or t_bb.in_channels != s_bb.in_channels:
        raise KeyheadError(
            "teacher initialisation: the student must have the teacher's num_blocks and in_channels "
            f"(teacher {len(t_down)} blocks / {t_bb.in_channels} channels, student {len(s_down)} / {s_bb.in_channels})"
        )
    if (t_head.jacobian is None) != (s_head.jacobian is None) or t_head.num_jacobian_maps != s_head.num_jacobian_maps:
        raise KeyheadError("teacher initialisation: the student's Jacobian head must match the teacher's")
    if importance is None:
        importance = channel_importance(teacher, x, batch_size)
    kept: dict[str, list[int]] = {}
    keep_in = torch.arange(t_bb.in_channels)
    skips = [keep_in]  # the kept channels of every encoder output (the input first)
    for i, (tb, sb) in enumerate(zip(t_down, s_down, strict=True)):
        keep_out = _top(importance[f"down.{i}"], sb.norm.num_features)
        _copy_block(tb, sb, keep_in, keep_out)
        kept[f"down.{i}"] = keep_out.tolist()
        skips.append(keep_out)
        keep_in = keep_out
    skips.pop()  # the deepest encoder output is the decoder's input, not a skip
    for i, (tb, sb) in enumerate(zip(t_up, s_up, strict=True)):
        keep_out = _top(importance[f"up.{i}"], sb.norm.num_features)
        _copy_block(tb, sb, keep_in, keep_out)
        kept[f"up.{i}"] = keep_out.tolist()
        keep_in = torch.cat([keep_out, tb.norm.num_features + skips.pop()])
    kept["head_in"] = keep_in.tolist()
    # mean of every head input channel: the last decoder block's activations, then the raw (anti-aliased) input
    mean_in = torch.cat([importance[f"up.{len(t_up) - 1}"], importance["input"]])
    for name in ("kp", "jacobian"):  # a separable head convolution keeps its own initialisation
        t_conv, s_conv = getattr(t_head, name), getattr(s_head, name)
        if t_conv is not None and isinstance(s_conv, nn.Conv2d):
            _copy_head_conv(t_conv, s_conv, keep_in, mean_in)
    if recalibrate:
        _recalibrate_batchnorm(student, x, batch_size)
    student.eval()
    return kept
