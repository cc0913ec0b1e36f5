"""``keyhead compress``: a trained FOMM detector -> a light student, with latency and accuracy cost per step.

Steps (each a row of the report; latency at batch 1 on the teacher's input size, all in one process, interleaved;
the onnxruntime sessions do not spin-wait between calls, which would take the cores from the next eager model):

1. ``faithful``: the teacher as trained (eager PyTorch, fp32).
2. ``width``: the same architecture with a narrower hourglass (``block_expansion``, ``max_features``), not trained:
   with ``init="teacher"`` (the default) its weights are the teacher's strongest channels
   (:mod:`keyhead.fomm.compress.prune`), so its deviation is what pruning alone costs; with ``init="random"`` it is that
   of random weights.
3. ``separable``: + the depthwise-separable parts of the student (``separable``: every hourglass 3x3 convolution;
   ``separable_head``: the head's 7x7 convolutions, both or only the Jacobian's) and the strided anti-alias blur
   (same numbers, 1/16 of the work), initialised like row 2 where it has full convolutions. Absent when the student
   has no separable part.
4. ``distilled``: row 3 after knowledge distillation from the teacher on unlabelled frames (the light model): the
   training frames, ``augment_copies`` TPS-warped copies of each and ``occlusion_copies`` occluded copies of those
   (:mod:`keyhead.fomm.compress.augment`), all labelled by the teacher.
5. ``onnxruntime``: row 4 exported to ONNX, run by onnxruntime (fp32); ``faithful onnxruntime``: the teacher there,
   for a same-runtime speed-up.
6. ``int8 static`` / ``int8 dynamic``: row 5 quantized by onnxruntime.

The default student (16 / 128 hourglass, full 3x3 convolutions started from the teacher's, separable Jacobian
convolution) is the one that met the target on the bench (``bench/fomm.py``); depthwise-separable hourglasses are
faster in PyTorch but must start from random weights and, in a CPU-sized distillation budget, stay further from
the teacher.

Deviation: mean Euclidean distance (pixels at 256x256: distances are scaled by 256 / input width) between the
step's keypoints and the teacher's on held-out frames (every 4th block of 50 frames, never distilled on). For
scale, ``trivial: teacher mean`` predicts the teacher's mean keypoints of the distillation frames for every frame.
Each row also has the 90th percentile and the mean per keypoint, because the mean is dominated by few large
misses (on the synthetic face video: keypoints covered by occluders, where the teacher answers from context).
"""

from __future__ import annotations

import copy
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from keyhead.config import RunConfig, save_config
from keyhead.errors import KeyheadError
from keyhead.evaluation.profiling import profile_model
from keyhead.fomm.compress.augment import occluded_copies, tps_copies
from keyhead.fomm.compress.distill import TeacherTargets, distill, teacher_targets
from keyhead.fomm.compress.prune import channel_importance, init_from_teacher
from keyhead.fomm.compress.runtime import OrtDetector, PixelDetector, export_fomm_onnx, measure_latency, quantize_onnx
from keyhead.fomm.detector import FommKPDetector
from keyhead.fomm.unsupervised.evaluate import split_indices
from keyhead.fomm.unsupervised.frames import read_frames, to_model_input
from keyhead.io.atomic import atomic_path, atomic_write
from keyhead.io.images import IMAGE_SUFFIXES
from keyhead.io.video import VIDEO_SUFFIXES
from keyhead.models.build import load_run, model_from_config
from keyhead.models.heads.fomm import HEAD_SEPARABLE
from keyhead.models.weights import save_weights

__all__ = ["CompressReport", "CompressSettings", "check_settings", "compress_detector", "student_config"]


@dataclass
class CompressSettings:
    """What ``compress_detector`` does; every field is written to the report."""

    block_expansion: int = 16
    max_features: int = 128
    separable: bool = False  # depthwise-separable hourglass 3x3 convolutions (needs init "random")
    separable_head: bool | str = "jacobian"  # separable 7x7 head convolutions: True / "all", False / "none", "jacobian"
    init: str = "teacher"  # the student's first weights: "teacher" (channel selection) or "random"
    init_frames: int = 128  # distillation frames for the channel importance and BatchNorm statistics
    distill_steps: int = 100_000
    distill_batch_size: int = 16
    distill_lr: float = 2e-3
    max_minutes: float | None = 14.0
    max_frames: int = 600
    augment_copies: int = 2
    occlusion_copies: int = 1
    repeats: int = 30
    warmup: int = 5
    int8: tuple[str, ...] = ("static", "dynamic")
    teacher_onnx: bool = True  # also time the teacher in onnxruntime (the same runtime as the light model)
    calibration_frames: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        self.separable_head = {"all": True, "none": False}.get(self.separable_head, self.separable_head)


@dataclass
class CompressReport:
    """Rows (one per step), settings and file paths; ``to_markdown()``, ``as_dict()``, ``save(out_dir)``."""

    rows: list[dict[str, Any]]
    settings: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        s = self.settings
        lines = [
            f"# Compression of {s['teacher']}",
            "",
            f"Input {s['input_size'][0]}x{s['input_size'][1]}, batch 1, {s['threads']} threads, {s['device']}; "
            f"latency = median of {s['repeats']} interleaved calls after {s['warmup']} warm-up calls; deviation = "
            f"mean keypoint distance to the teacher in pixels at 256x256 on {s['held_out_frames']} held-out frames.",
            "",
            "| step | runtime | latency ms (p10-p90) | speed-up | params | GFLOPs "
            "| deviation px (median, p90) | note |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            lat = "-" if r["latency_ms"] is None else f"{r['latency_ms']:.2f} ({r['p10_ms']:.1f}-{r['p90_ms']:.1f})"
            speed = "-" if r["speedup"] is None else f"{r['speedup']:.2f}x"
            params = "-" if r["params"] is None else f"{r['params']:,}"
            flops = "-" if r["flops"] is None else f"{r['flops'] / 1e9:.3f}"
            lines.append(
                f"| {r['step']} | {r['runtime']} | {lat} | {speed} | {params} | {flops} | "
                f"{r['deviation_px']:.3f} ({r['deviation_median_px']:.3f}, {r['deviation_p90_px']:.2f}) | {r['note']} |"
            )
        return "\n".join(lines) + "\n"

    def save(self, out_dir: str | os.PathLike) -> list[Path]:
        out = Path(out_dir)
        with atomic_write(out / "compress.json") as f:
            json.dump(self.as_dict(), f, indent=2)
        with atomic_write(out / "compress.md") as f:
            f.write(self.to_markdown())
        return [out / "compress.json", out / "compress.md", self.plot(out / "compress.png")]

    def plot(self, path: str | os.PathLike) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = [r for r in self.rows if r["latency_ms"] is not None]
        labels = [r["step"] for r in rows]
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        axes[0].barh(labels, [r["latency_ms"] for r in rows], color="tab:blue")
        axes[0].set_xlabel("latency, ms (batch 1, median)")
        axes[1].barh(labels, [r["deviation_px"] for r in rows], color="tab:red")
        trivial = [r for r in self.rows if r["latency_ms"] is None]
        if trivial:
            axes[1].axvline(trivial[0]["deviation_px"], color="gray", ls="--", label=trivial[0]["step"])
            axes[1].legend(loc="lower right")
        axes[1].axvline(1.0, color="black", ls=":", lw=1)
        axes[1].set_xscale("symlog", linthresh=1.0)
        axes[1].set_xlabel("deviation from the teacher, px at 256x256 (held-out frames)")
        for ax in axes:
            ax.invert_yaxis()
        fig.suptitle(f"keyhead compress: {self.settings['teacher']}")
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        return Path(path)


def student_config(teacher_cfg: RunConfig, settings: CompressSettings, light: bool) -> RunConfig:
    """The teacher's config with the student's hourglass width; ``light``: + its separable parts, strided blur."""
    cfg = teacher_cfg.model_copy(deep=True)
    bb = dict(cfg.model.backbone_kwargs)
    bb.update(block_expansion=settings.block_expansion, max_features=settings.max_features)
    head = dict(cfg.model.head_kwargs)
    if light:
        bb["strided_antialias"] = True
        if settings.separable:
            bb["separable"] = True
        if settings.separable_head:
            head["separable"] = settings.separable_head
    cfg.model.backbone_kwargs = bb
    cfg.model.head_kwargs = head
    cfg.model.pretrained = False
    cfg.train.channels_last = False
    return cfg


def _frames_source(teacher_cfg: RunConfig, frames: str | os.PathLike | None) -> Path:
    if frames is not None:
        return Path(frames)
    path = Path(teacher_cfg.data.path)
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return path
    if path.is_dir():
        videos = sorted(p for p in (path / "videos").glob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        if videos:
            return videos[0]
        if any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
            return path
    raise KeyheadError(
        f"compress: no unlabelled frames found from the run's data.path {str(path)!r}; pass --frames VIDEO_OR_FOLDER"
    )


def _pixels(det: FommKPDetector, frames: torch.Tensor, batch_size: int = 32) -> np.ndarray:
    det.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(frames), batch_size):
            out.append(PixelDetector(det)(to_model_input(frames[i : i + batch_size]))[0])
    return torch.cat(out).numpy()


def _ort_pixels(ort: OrtDetector, frames: torch.Tensor) -> np.ndarray:
    return np.concatenate([ort(to_model_input(frames[i : i + 1])) for i in range(len(frames))])


def _count(model: torch.nn.Module, size: tuple[int, int]) -> tuple[int, int]:
    prof = profile_model(model, input_size=size, repeats=1, warmup=0)
    return int(prof.totals["params"]), int(prof.totals["flops"])


def compress_detector(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    frames: str | os.PathLike | None = None,
    settings: CompressSettings | None = None,
    progress: bool = True,
) -> CompressReport:
    """Compress a trained FOMM detector run and write the light model and the report to ``out_dir``.

    Writes ``light/`` (a keyhead run folder: config.yaml, keypoints.txt, model.safetensors; ``keyhead profile`` and
    ``keyhead predict`` load it), ``light.onnx``, ``light_int8_<mode>.onnx``, ``compress.md``, ``compress.json``
    and ``compress.png``.
    """
    settings = settings or CompressSettings()
    check_settings(settings)
    out = Path(out_dir)
    teacher_model, teacher_cfg = load_run(run_dir)
    if not hasattr(teacher_model.head, "fomm_outputs"):
        raise KeyheadError(
            f"{run_dir}: compress needs a FOMM detector run (head fomm_kp), not {teacher_cfg.model.head}"
        )
    teacher_model.use_channels_last(False)
    teacher = FommKPDetector(teacher_model).eval()
    names = list(teacher_model.keypoint_names)
    size = tuple(teacher_model.input_size)
    to256 = 256.0 / size[1]
    source = _frames_source(teacher_cfg, frames)
    video, _, _ = read_frames(source, size, teacher_model.backbone.in_channels, settings.max_frames)
    train_idx, test_idx = split_indices(len(video), True)
    train_frames, test_frames = video[train_idx], video[test_idx]
    torch.manual_seed(settings.seed)
    t0 = time.perf_counter()
    distill_frames, targets = distillation_set(teacher, train_frames, settings)
    teacher_xy = _pixels(teacher, test_frames)

    def deviation(xy: np.ndarray) -> dict[str, Any]:
        d = np.linalg.norm(xy - teacher_xy, axis=-1) * to256
        return {
            "deviation_px": float(d.mean()),
            "deviation_median_px": float(np.median(d)),
            "deviation_p90_px": float(np.quantile(d, 0.9)),
            "deviation_per_keypoint_px": dict(zip(names, np.round(d.mean(0), 3).tolist(), strict=True)),
        }

    width_model = model_from_config(student_config(teacher_cfg, settings, light=False), names, pretrained=False)
    light_cfg = student_config(teacher_cfg, settings, light=True)
    light_model = model_from_config(light_cfg, names, pretrained=False)
    width, light = FommKPDetector(width_model).eval(), FommKPDetector(light_model)
    if settings.init == "teacher":
        pick = torch.randperm(len(distill_frames), generator=torch.Generator().manual_seed(settings.seed))
        init_x = to_model_input(distill_frames[pick[: settings.init_frames]])
        importance = channel_importance(teacher, init_x)  # one teacher pass for both students
        init_from_teacher(width, teacher, init_x, importance=importance)
        init_from_teacher(light, teacher, init_x, importance=importance)
    untrained = copy.deepcopy(light).eval()
    history = distill(
        light,
        distill_frames,
        targets,
        steps=settings.distill_steps,
        batch_size=settings.distill_batch_size,
        lr=settings.distill_lr,
        max_minutes=settings.max_minutes,
        seed=settings.seed,
        progress=progress,
    )
    distill_s = time.perf_counter() - t0
    light.eval()
    light_dir = out / "light"
    save_config(light_cfg, light_dir / "config.yaml")
    with atomic_write(light_dir / "keypoints.txt") as f:
        f.write("".join(f"{n}\n" for n in names))
    save_weights(light_model, light_dir / "model.safetensors", {"teacher": str(run_dir)})

    onnx_path = export_fomm_onnx(light, out / "light.onnx")
    calib = to_model_input(train_frames[:: max(1, len(train_frames) // settings.calibration_frames)]).numpy()
    ort_runs = {"onnxruntime": OrtDetector(onnx_path)}
    if settings.teacher_onnx:
        ort_runs = {"faithful onnxruntime": OrtDetector(export_fomm_onnx(teacher, out / "teacher.onnx")), **ort_runs}
    files = {"light_run": str(light_dir), "onnx": str(onnx_path)}
    int8_errors = {}
    for mode in settings.int8:
        path = out / f"light_int8_{mode}.onnx"
        try:
            quantize_onnx(onnx_path, path, mode, calib)
            ort_runs[f"int8 {mode}"] = OrtDetector(path)
            files[f"int8_{mode}"] = str(path)
        except Exception as exc:  # onnxruntime's quantizer or kernels may not cover an operator
            int8_errors[mode] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"

    x = torch.rand(1, teacher_model.backbone.in_channels, *size, generator=torch.Generator().manual_seed(1))
    xn = x.numpy()
    separable_parts = [
        part
        for part, used in (
            ("hourglass 3x3", settings.separable),
            ("keypoint 7x7", settings.separable_head is True),
            ("Jacobian 7x7", bool(settings.separable_head)),
        )
        if used
    ]
    eager = {"faithful": teacher, "width": width, "separable": untrained, "distilled": light}
    if not separable_parts:
        del eager["separable"]
    start = "the teacher's strongest channels, not trained" if settings.init == "teacher" else "untrained"
    runners = {k: (lambda d=d: d(x)) for k, d in eager.items()}
    runners.update({k: (lambda o=o: o(xn)) for k, o in ort_runs.items()})
    latency = measure_latency(runners, settings.repeats, settings.warmup)
    base = latency["faithful"]["median_ms"]
    counts = {k: _count(d.model, size) for k, d in eager.items()}
    notes = {
        "faithful": "teacher, as trained",
        "width": f"block_expansion {settings.block_expansion}, max_features {settings.max_features}; {start}",
        "separable": f"+ depthwise-separable {', '.join(separable_parts)}, strided anti-alias; {start}",
        "distilled": f"+ distillation ({history[-1]['step'] if history else 0} steps, {distill_s:.0f} s incl. teacher)",
        "onnxruntime": "distilled, ONNX fp32",
        "faithful onnxruntime": "the teacher in onnxruntime fp32, for a same-runtime comparison",
        "int8 static": "ORT quantize_static, QDQ, per-channel, MinMax calibration",
        "int8 dynamic": "ORT quantize_dynamic, per-channel int8 weights",
    }
    rows = []
    for name in [*eager, *ort_runs]:
        xy = _pixels(eager[name], test_frames) if name in eager else _ort_pixels(ort_runs[name], test_frames)
        params, flops = counts["faithful"] if name.startswith("faithful") else counts.get(name, counts["distilled"])
        lat = latency[name]
        rows.append(
            {
                "step": name,
                "runtime": "PyTorch eager fp32"
                if name in eager
                else ("onnxruntime int8" if "int8" in name else "onnxruntime fp32"),
                "latency_ms": lat["median_ms"],
                "p10_ms": lat["p10_ms"],
                "p90_ms": lat["p90_ms"],
                "speedup": base / lat["median_ms"],
                "params": params,
                "flops": flops,
                **deviation(xy),
                "note": notes[name],
            }
        )
    mean_xy = np.broadcast_to(targets_mean_pixels(teacher, targets[: len(train_idx)]), teacher_xy.shape)
    rows.append(
        {
            "step": "trivial: teacher mean",
            "runtime": "-",
            "latency_ms": None,
            "p10_ms": None,
            "p90_ms": None,
            "speedup": None,
            "params": None,
            "flops": None,
            **deviation(mean_xy),
            "note": "the teacher's mean keypoints of the distillation frames, for every frame",
        }
    )
    report_settings = {
        "teacher": str(run_dir),
        "frames": str(source),
        "input_size": list(size),
        "frames_used": len(video),
        "distill_frames": len(distill_frames),
        "distill_augmentation": (
            f"{settings.augment_copies} TPS-warped copies per frame (affine 0.1, spline 0.01), then "
            f"{settings.occlusion_copies} occluded copies of every frame and warped copy (1-3 ellipses over the "
            "teacher's keypoints)"
        ),
        "held_out_frames": len(test_idx),
        "held_out": "every 4th block of 50 frames",
        "threads": torch.get_num_threads(),
        "device": f"cpu ({platform.processor() or platform.machine()})",
        "torch": torch.__version__,
        "int8_errors": int8_errors,
        **asdict(settings),
    }
    report = CompressReport(rows, report_settings, files, history)
    report.save(out)
    return report


def check_settings(settings: CompressSettings) -> None:
    """Refuse contradictory or unknown settings before any work is done."""
    if settings.init not in ("teacher", "random"):
        raise KeyheadError(f"compress: init must be 'teacher' or 'random', got {settings.init!r}")
    if settings.separable_head not in HEAD_SEPARABLE:
        raise KeyheadError(
            f"compress: separable_head must be all, jacobian or none (true / false), got {settings.separable_head!r}"
        )
    if settings.init == "teacher" and settings.separable:
        raise KeyheadError(
            "compress: a depthwise-separable hourglass has no filters to take from the teacher; use init 'random' "
            "with separable, or separable false (the default) with init 'teacher'"
        )
    if settings.block_expansion < 1 or settings.max_features < settings.block_expansion:
        raise KeyheadError(
            f"compress: need 1 <= block_expansion <= max_features, got {settings.block_expansion} / "
            f"{settings.max_features}"
        )


def distillation_set(
    teacher: FommKPDetector, frames: torch.Tensor, settings: CompressSettings
) -> tuple[torch.Tensor, TeacherTargets]:
    """The distillation frames and the teacher's outputs on them; the first ``len(frames)`` rows are ``frames``.

    ``frames`` (uint8 (N, C, H, W)), ``settings.augment_copies`` TPS-warped copies of each, then
    ``settings.occlusion_copies`` occluded copies of all of those, the occluders placed over the teacher's keypoints.
    """
    base = torch.cat([frames, tps_copies(frames, settings.augment_copies, settings.seed)])
    targets = teacher_targets(teacher, base)
    if settings.occlusion_copies < 1:
        return base, targets
    keypoints = teacher.to_pixels(targets.value).numpy()
    occluded = occluded_copies(base, keypoints, settings.occlusion_copies, settings.seed + 1)
    extra = teacher_targets(teacher, occluded)
    jac = None if targets.jacobian is None else torch.cat([targets.jacobian, extra.jacobian])
    merged = TeacherTargets(
        torch.cat([targets.log_heatmap, extra.log_heatmap]), torch.cat([targets.value, extra.value]), jac
    )
    return torch.cat([base, occluded]), merged


def targets_mean_pixels(teacher: FommKPDetector, targets: Any) -> np.ndarray:
    """The teacher's mean keypoints (1, K, 2) in input pixels over the distillation frames."""
    return teacher.to_pixels(targets.value.mean(0, keepdim=True)).numpy()
