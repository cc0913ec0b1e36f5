"""Knowledge distillation of a FOMM keypoint detector into a light student, on unlabelled frames.

The teacher's outputs are computed once per frame (heatmap log-probabilities, keypoints in input pixels,
Jacobians) and the student is fitted to them with

    L = KL(teacher heatmap || student heatmap) + w_kp * |kp_s - kp_t|_1 (FOMM's [-1, 1] units) + w_jac * |J_s - J_t|_1

where both heatmaps are the temperature softmax of the respective logits (FOMM's T = 0.1), KL is summed over the
map's cells and averaged over keypoints and frames.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from keyhead.engine.callbacks import warmup_cosine
from keyhead.fomm.detector import FommKPDetector
from keyhead.fomm.unsupervised.frames import to_model_input

__all__ = ["TeacherTargets", "distill", "distillation_loss", "teacher_targets"]


@dataclass
class TeacherTargets:
    """Teacher outputs per frame: log_heatmap (N, K, h, w), value (N, K, 2) in [-1, 1], jacobian (N, K, 2, 2)."""

    log_heatmap: Tensor
    value: Tensor
    jacobian: Tensor | None

    def __getitem__(self, idx: Tensor | np.ndarray) -> TeacherTargets:
        jac = None if self.jacobian is None else self.jacobian[idx]
        return TeacherTargets(self.log_heatmap[idx], self.value[idx], jac)


@torch.inference_mode()
def teacher_targets(teacher: FommKPDetector, frames: Tensor, batch_size: int = 16) -> TeacherTargets:
    """Run the teacher (eval mode) over uint8 frames (N, C, H, W)."""
    teacher.eval()
    logs, values, jacs = [], [], []
    for i in range(0, len(frames), batch_size):
        out = teacher(to_model_input(frames[i : i + batch_size]))
        t = teacher.model.head.temperature
        b, k, h, w = out["logits"].shape
        logs.append(F.log_softmax(out["logits"].reshape(b, k, h * w) / t, dim=-1).reshape(b, k, h, w))
        values.append(out["value"])
        if "jacobian" in out:
            jacs.append(out["jacobian"])
    return TeacherTargets(torch.cat(logs), torch.cat(values), torch.cat(jacs) if jacs else None)


def distillation_loss(
    student_out: dict[str, Tensor],
    target: TeacherTargets,
    temperature: float,
    weight_keypoints: float = 100.0,
    weight_jacobian: float = 1.0,
) -> dict[str, Tensor]:
    """The distillation terms and their weighted sum ("loss").

    Args:
        student_out: the student's ``fomm_outputs`` ({"logits": (B, K, h, w), "value": (B, K, 2), "jacobian"}).
        target: the teacher's outputs for the same frames.
        temperature: the heatmap softmax temperature of both.
        weight_keypoints: weight of the L1 keypoint term (FOMM units; 1 px at 256x256 is ~0.009).
        weight_jacobian: weight of the L1 Jacobian term.
    """
    b, k, h, w = student_out["logits"].shape
    log_s = F.log_softmax(student_out["logits"].reshape(b, k, h * w) / temperature, dim=-1)
    log_t = target.log_heatmap.reshape(b, k, h * w)
    terms = {"heatmap_kl": (log_t.exp() * (log_t - log_s)).sum(-1).mean()}
    terms["keypoints_l1"] = (student_out["value"] - target.value).abs().mean()
    loss = terms["heatmap_kl"] + weight_keypoints * terms["keypoints_l1"]
    if target.jacobian is not None and "jacobian" in student_out:
        terms["jacobian_l1"] = (student_out["jacobian"] - target.jacobian).abs().mean()
        loss = loss + weight_jacobian * terms["jacobian_l1"]
    terms["loss"] = loss
    return terms


def distill(
    student: FommKPDetector,
    frames: Tensor,
    targets: TeacherTargets,
    steps: int = 1500,
    batch_size: int = 16,
    lr: float = 2e-3,
    max_minutes: float | None = None,
    seed: int = 0,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Fit the student to the teacher's outputs on ``frames`` (uint8 (N, C, H, W)); Adam with cosine decay.

    The learning rate warms up over the first 5 % and then follows a cosine to 0 over the run's progress, the larger
    of steps done / ``steps`` and time spent / ``max_minutes``, so a run cut by its time budget still anneals.

    Returns:
        The history: one row per 25 steps and one for the rest (step, elapsed_s and the mean of every term).
    """
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    temperature = student.model.head.temperature
    student.train()
    history, running, start, done = [], {}, time.perf_counter(), 0
    bar = tqdm(total=steps, desc="distill", unit="step", disable=not progress)
    try:
        for step in range(1, steps + 1):
            if max_minutes is not None and time.perf_counter() - start > max_minutes * 60:
                break
            done = step
            progress = (step - 1) / steps
            if max_minutes is not None:
                progress = max(progress, (time.perf_counter() - start) / (max_minutes * 60))
            for group in opt.param_groups:
                group["lr"] = lr * warmup_cosine(progress, warmup=0.05)
            idx = rng.integers(0, len(frames), batch_size)
            terms = distillation_loss(student(to_model_input(frames[idx])), targets[idx], temperature)
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            opt.step()
            for k, v in terms.items():
                running[k] = running.get(k, 0.0) + float(v.detach())
            if step % 25 == 0:
                row = {"step": step, "elapsed_s": round(time.perf_counter() - start, 2)}
                row.update({k: v / 25 for k, v in running.items()})
                history.append(row)
                running = {}
                bar.set_postfix(loss=f"{row['loss']:.4f}", kp=f"{row['keypoints_l1']:.4f}")
            bar.update(1)
    finally:
        bar.close()
    if running:  # the last steps since the previous row
        row = {"step": done, "elapsed_s": round(time.perf_counter() - start, 2)}
        row.update({k: v / (done % 25) for k, v in running.items()})
        history.append(row)
    student.eval()
    return history
