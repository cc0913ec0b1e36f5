"""Per-module profile of a keypoint model: time, shapes, parameters and FLOPs, as Markdown, JSON and a bar chart.

What is timed is the model's inference: input normalisation -> backbone -> head -> decode to keypoints (for a head
with ``fomm_outputs``, FOMM's own output: keypoints and Jacobians). Every module gets a forward pre-hook and a
forward hook that read ``time.perf_counter`` (after a device synchronise on GPU), so a module's time includes its
children. Warm-up passes are excluded; mean and standard deviation are over the repeats. The hooks cost a few
microseconds per module call, so the hooked total is larger than the un-hooked total, which is timed in passes
that alternate with the hooked ones.

Grouping: *stages* (top-level parts of the model) and *blocks* (a table of input / output shape, parameters, FLOPs
and time per block, and the time of each leaf layer type inside each block). Backbones and heads may describe
their own with ``profile_layout()`` (FOMM: anti_alias, hourglass, heatmap_keypoint, jacobian; down / up blocks);
otherwise the backbone, head and decoder are the stages and the backbone's and head's children are the blocks.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (one pass, per module): it counts convolutions and
matrix products (conv, linear, matmul, attention) at 2 FLOPs per multiply-accumulate, so FLOPs = 2 x MACs;
element-wise layers (BatchNorm, ReLU, pooling, softmax) count 0.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from keyhead.errors import KeyheadError
from keyhead.evaluation.timing import timed_call
from keyhead.io.atomic import atomic_path, atomic_write
from keyhead.models.model import KeypointModel

__all__ = ["Profile", "ProfiledModel", "layer_type", "profile_model", "resolve_model"]

_LAYER_TYPES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (nn.modules.conv._ConvTransposeNd, "conv_transpose"),
    (nn.modules.conv._ConvNd, "conv"),
    (nn.modules.batchnorm._BatchNorm, "batchnorm"),
    ((nn.ReLU, nn.ReLU6), "relu"),
    ((nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d), "avgpool"),
    ((nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool2d), "maxpool"),
    (nn.Upsample, "interpolation"),
    (nn.Linear, "linear"),
    (nn.LayerNorm, "layernorm"),
)


def layer_type(module: nn.Module) -> str:
    """The layer-type row a leaf module is counted in (conv, batchnorm, relu, avgpool, interpolation, ...)."""
    for cls, name in _LAYER_TYPES:
        if isinstance(module, cls):
            return name
    return type(module).__name__.lower()


class _Decode(nn.Module):
    """The codec's decode as a module, so hooks time it."""

    def __init__(self, codec: Any) -> None:
        super().__init__()
        self.codec = codec

    def forward(self, raw: Any) -> Any:
        return self.codec.decode(raw)


class ProfiledModel(nn.Module):
    """A model's inference path with every stage a submodule (shares the model's modules, copies nothing).

    Args:
        model: the keypoint model.
    """

    def __init__(self, model: KeypointModel) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.head = model.head
        self.register_buffer("mean", model.mean.clone(), persistent=False)
        self.register_buffer("std", model.std.clone(), persistent=False)
        self.fomm = hasattr(model.head, "fomm_outputs")
        self.decode = None if self.fomm else _Decode(model.codec)

    def forward(self, x: Tensor) -> Any:
        features = self.backbone((x - self.mean) / self.std)
        if self.fomm:
            return self.head.fomm_outputs(features)
        return self.decode(self.head(features))

    def layout(self) -> dict[str, Any]:
        """Stages {name: [module paths]}, block groups {group: [(label, path)]} and total rows [(label, path)]."""
        stages: dict[str, list[str]] = {}
        blocks: dict[str, list[tuple[str, str]]] = {}
        totals: list[tuple[str, str]] = []
        for prefix in ("backbone", "head"):
            part = getattr(self, prefix)
            if hasattr(part, "profile_layout"):
                own = part.profile_layout()
                stages.update({k: [f"{prefix}.{p}" for p in v] for k, v in own["stages"].items()})
                for group, rows in own["blocks"].items():
                    blocks[group] = [(label, f"{prefix}.{p}") for label, p in rows]
                if own.get("block_total"):
                    label, p = own["block_total"]
                    totals.append((label, f"{prefix}.{p}"))
            else:
                stages[prefix] = [prefix]
                blocks[prefix] = _default_blocks(part, prefix)
                totals.append((prefix, prefix))
        if self.decode is not None:
            stages["decode"] = ["decode"]
        return {"stages": stages, "blocks": blocks, "totals": totals}


def _default_blocks(part: nn.Module, prefix: str) -> list[tuple[str, str]]:
    """The children of a part (past single-child wrappers), with plain ModuleLists / ModuleDicts expanded."""
    node, path = part, prefix
    while len(children := list(node.named_children())) == 1:
        name, node = children[0]
        path = f"{path}.{name}"
    paths = []
    for name, child in node.named_children():
        if type(child) in (nn.ModuleList, nn.ModuleDict):
            paths += [f"{path}.{name}.{n}" for n, _ in child.named_children()]
        else:
            paths.append(f"{path}.{name}")
    return [(p[len(prefix) + 1 :], p) for p in paths]


def _shape(obj: Any) -> Any:
    """Per-sample shapes (batch dimension dropped) of a tensor or a nested list / tuple / dict of tensors."""
    if isinstance(obj, Tensor):
        return list(obj.shape[1:])
    if isinstance(obj, list | tuple):
        return [_shape(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _shape(v) for k, v in obj.items()}
    return None


def _fmt_shape(s: Any) -> str:
    if s is None:
        return "-"
    if isinstance(s, list) and all(isinstance(d, int) for d in s):
        return "(" + ",".join(str(d) for d in s) + ")"
    if isinstance(s, list):
        return "[" + ", ".join(_fmt_shape(x) for x in s) + "]"
    return "{" + ", ".join(f"{k}: {_fmt_shape(v)}" for k, v in s.items()) + "}"


class _Recorder:
    """Forward pre-hooks / hooks on every module (``attach`` .. ``remove`` around a pass): time per module and pass,
    shapes of the first call."""

    def __init__(self, root: nn.Module, sync: bool) -> None:
        self.sync = sync
        self.starts: dict[str, list[float]] = defaultdict(list)
        self.current: dict[str, float] = defaultdict(float)
        self.passes: list[dict[str, float]] = []
        self.calls: dict[str, int] = defaultdict(int)
        self.shapes: dict[str, tuple[Any, Any]] = {}
        self.root = root
        self.handles: list = []

    def attach(self) -> None:
        for name, module in self.root.named_modules():
            self.handles.append(module.register_forward_pre_hook(partial(self._pre, name)))
            self.handles.append(module.register_forward_hook(partial(self._post, name)))

    def _now(self) -> float:
        if self.sync:
            torch.cuda.synchronize()
        return time.perf_counter()

    def _pre(self, name: str, module: nn.Module, args: tuple) -> None:
        self.starts[name].append(self._now())

    def _post(self, name: str, module: nn.Module, args: tuple, output: Any) -> None:
        self.current[name] += self._now() - self.starts[name].pop()
        self.calls[name] += 1
        if name not in self.shapes:
            self.shapes[name] = (_shape(args[0] if len(args) == 1 else list(args)), _shape(output))

    def end_pass(self, keep: bool) -> None:
        if keep:
            self.passes.append(dict(self.current))
        self.current.clear()

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


def _stats_ms(values: list[float]) -> tuple[float, float]:
    ms = [v * 1e3 for v in values]
    return statistics.fmean(ms), (statistics.stdev(ms) if len(ms) > 1 else 0.0)


def _flops_per_module(pipe: ProfiledModel, x: Tensor) -> dict[str, int]:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        pipe(x)
    root = type(pipe).__name__
    out: dict[str, int] = {}
    for key, ops in counter.get_flop_counts().items():
        if key == "Global":
            continue
        name = "" if key == root else key.removeprefix(root + ".")
        out[name] = int(sum(ops.values()))
    return out


@dataclass
class Profile:
    """The result of :func:`profile_model`; ``to_markdown()``, ``as_dict()`` and ``save(out_dir)``."""

    model: str
    settings: dict[str, Any]
    stages: list[dict[str, Any]]
    totals: dict[str, dict[str, float]]
    blocks: list[dict[str, Any]]
    layer_types: dict[str, dict[str, Any]]
    modules: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        s = self.settings
        h, w = s["input_size"]
        lines = [
            f"# Profile of {self.model}",
            "",
            f"Input (B, C, H, W) = ({s['batch_size']}, {s['in_channels']}, {h}, {w}), "
            f"{s['device']}, {s['threads']} threads, torch {s['torch']}; {s['repeats']} repeats after "
            f"{s['warmup']} warm-up passes; times in ms (mean and std over the repeats, forward hooks, "
            "torch.inference_mode). FLOPs from torch.utils.flop_counter.FlopCounterMode: conv / linear / matmul "
            "only, FLOPs = 2 x MACs.",
            "",
            "## Modules",
            "",
        ]
        names = [st["stage"] for st in self.stages]
        hooked, plain = self.totals["hooked"], self.totals["no_hooks"]
        header = ["", *names, "total_infer_time", "total_no_hooks"]
        rows = [
            ["mean ms", *[f"{st['mean_ms']:.4f}" for st in self.stages], f"{hooked['mean_ms']:.4f}"]
            + [f"{plain['mean_ms']:.4f}"],
            ["std ms", *[f"{st['std_ms']:.4f}" for st in self.stages], f"{hooked['std_ms']:.4f}"]
            + [f"{plain['std_ms']:.4f}"],
            ["share %", *[f"{100 * st['mean_ms'] / hooked['mean_ms']:.1f}" for st in self.stages], "100.0", "-"],
            ["params", *[f"{st['params']:,}" for st in self.stages], f"{self.totals['params']:,}", "-"],
            ["MFLOPs", *[_mflops(st["flops"]) for st in self.stages], _mflops(self.totals["flops"]), "-"],
        ]
        lines += _md_table(header, rows)
        lines += [
            "",
            "`other` is what runs outside the listed modules (input normalisation, tensor glue) plus hook cost; "
            "`total_no_hooks` is the same pass timed without hooks.",
        ]
        if self.blocks:
            lines += ["", "## Blocks", ""]
            header = ["", "input_shape", "output_shape", "# params", "MFLOPs", "mean ms", "std ms"]
            rows = [
                [
                    b["label"],
                    _fmt_shape(b["input_shape"]),
                    _fmt_shape(b["output_shape"]),
                    _params(b["params"], b.get("total", False)),
                    _mflops(b["flops"]),
                    f"{b['mean_ms']:.4f}",
                    f"{b['std_ms']:.4f}",
                ]
                for b in self.blocks
            ]
            lines += _md_table(header, rows)
        for group, table in self.layer_types.items():
            lines += ["", f"## Layer types per block: {group} (mean ms)", ""]
            cols = table["blocks"]
            rows = [
                [kind, *[f"{per[c]:.4f}" for c in cols], f"{statistics.fmean(per.values()):.4f}"]
                for kind, per in table["rows"].items()
            ]
            lines += _md_table(["layer", *cols, "average"], rows)
        return "\n".join(lines) + "\n"

    def save(self, out_dir: str | os.PathLike) -> list[Path]:
        """Write profile.md, profile.json and profile.png (time per stage and per block) to ``out_dir``."""
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise KeyheadError(f"--out {out} is a file; give a folder for profile.md, profile.json and profile.png")
        out.mkdir(parents=True, exist_ok=True)
        with atomic_write(out / "profile.md") as f:
            f.write(self.to_markdown())
        with atomic_write(out / "profile.json") as f:
            json.dump(self.as_dict(), f, indent=2)
        self.plot(out / "profile.png")
        return [out / "profile.md", out / "profile.json", out / "profile.png"]

    def plot(self, path: str | os.PathLike) -> Path:
        """Horizontal bars of mean time (error bar: std) per stage and, when there are blocks, per block."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        parts = [("stage", self.stages)]
        if any(not b["total"] for b in self.blocks):
            parts.append(("block", [b for b in self.blocks if not b["total"]]))
        heights = [max(1.5, 0.28 * len(rows) + 0.8) for _, rows in parts]
        fig, axes = plt.subplots(len(parts), 1, figsize=(8, sum(heights)), height_ratios=heights, squeeze=False)
        for ax, (key, rows) in zip(axes[:, 0], parts, strict=True):
            labels = [r["stage" if key == "stage" else "label"] for r in rows]
            ys = range(len(rows))
            ax.barh(ys, [r["mean_ms"] for r in rows], xerr=[r["std_ms"] for r in rows], color="C0", capsize=2)
            ax.set_yticks(list(ys), labels, fontsize=8)
            ax.invert_yaxis()
            ax.set_xlabel("ms per pass (mean, std over repeats)")
            ax.grid(axis="x", alpha=0.3)
        s = self.settings
        axes[0, 0].set_title(
            f"{self.model}: batch {s['batch_size']}, {s['device']}, {s['threads']} threads", fontsize=9
        )
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110)
        plt.close(fig)
        return Path(path)


def _mflops(flops: int) -> str:
    return f"{flops / 1e6:,.1f}"


def _params(n: int, total: bool) -> str:
    return f"{n:,} ({n / 1e6:.2f} M)" if total else f"{n:,}"


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


def _unique_params(modules: list[nn.Module]) -> int:
    seen = {id(p): p.numel() for m in modules for p in m.parameters()}
    return sum(seen.values())


def profile_model(
    model: KeypointModel,
    name: str = "model",
    input_size: tuple[int, int] | None = None,
    batch_size: int = 1,
    repeats: int = 20,
    warmup: int = 5,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> Profile:
    """Time every module of a model's inference pass, and count its shapes, parameters and FLOPs.

    Args:
        model: the keypoint model; it is moved to ``device`` and profiled in eval mode (its mode is restored).
        name: how the model is called in the tables.
        input_size: (H, W); default the model's input size.
        batch_size: B.
        repeats: timed passes (mean and std over these).
        warmup: untimed passes first.
        device: where to run.
        seed: for the random input images in [0, 1].

    Example:
        >>> import keyhead
        >>> m = keyhead.create_model(num_keypoints=3, backbone="tiny", input_size=(64, 64))
        >>> p = profile_model(m, repeats=2, warmup=1)
        >>> [s["stage"] for s in p.stages]
        ['backbone', 'head', 'decode', 'other']
    """
    if repeats < 1 or warmup < 0 or batch_size < 1:
        raise KeyheadError(
            f"profile: need repeats >= 1, warmup >= 0, batch_size >= 1 (got {repeats}, {warmup}, {batch_size})"
        )
    device = torch.device(device)
    h, w = input_size or model.input_size
    was_training = model.training
    pipe = ProfiledModel(model).to(device).eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch_size, model.backbone.in_channels, h, w, generator=gen).to(device)
    sync = device.type == "cuda"
    layout = pipe.layout()
    modules = dict(pipe.named_modules())

    # un-hooked and hooked passes alternate, so that both see the same drift (clock, cache, other load)
    rec, plain = _Recorder(pipe, sync), []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            seconds = timed_call(lambda: pipe(x), sync)
            rec.attach()
            try:
                pipe(x)
            finally:
                rec.remove()
            rec.end_pass(keep=i >= warmup)
            if i >= warmup:
                plain.append(seconds)
    flops = _flops_per_module(pipe, x)
    model.train(was_training)

    def row(paths: list[str]) -> dict[str, Any]:
        mean, std = _stats_ms([sum(p.get(q, 0.0) for q in paths) for p in rec.passes])
        params = _unique_params([modules[q] for q in paths])
        return {"mean_ms": mean, "std_ms": std, "params": params, "flops": sum(flops.get(q, 0) for q in paths)}

    def shapes(path: str) -> dict[str, Any]:
        inp, out = rec.shapes.get(path, (None, None))
        return {"input_shape": inp, "output_shape": out}

    stages = [{"stage": stage, "modules": paths, **row(paths)} for stage, paths in layout["stages"].items()]
    total = [p.get("", 0.0) for p in rec.passes]
    staged = [q for paths in layout["stages"].values() for q in paths]
    mean, std = _stats_ms([t - sum(p.get(q, 0.0) for q in staged) for t, p in zip(total, rec.passes, strict=True)])
    stages.append({"stage": "other", "modules": [], "mean_ms": mean, "std_ms": std, "params": 0, "flops": 0})

    blocks, layer_types = [], {}
    groups = [*layout["blocks"].items(), ("total", layout["totals"])]
    for group, rows in groups:
        called = [(label, path) for label, path in rows if rec.calls.get(path)]
        blocks += [
            {"label": label, "group": group, "path": path, **shapes(path), **row([path]), "total": group == "total"}
            for label, path in called
        ]
        if called and group != "total":
            layer_types[group] = _layer_type_table(called, modules, rec)
    mod_rows = [
        {
            "path": path,
            "type": type(m).__name__,
            "layer_type": layer_type(m),
            "calls_per_pass": rec.calls[path] // (warmup + repeats),
            **shapes(path),
            **row([path]),
        }
        for path, m in modules.items()
        if rec.calls.get(path)
    ]
    hooked_mean, hooked_std = _stats_ms(total)
    plain_mean, plain_std = _stats_ms(plain)
    settings = {
        "batch_size": batch_size,
        "in_channels": model.backbone.in_channels,
        "input_size": [h, w],
        "repeats": repeats,
        "warmup": warmup,
        "device": str(device) if device.type != "cpu" else f"cpu ({_cpu_name()})",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "timer": "time.perf_counter, forward pre/post hooks, torch.inference_mode",
        "flops": "torch.utils.flop_counter.FlopCounterMode (conv/linear/matmul; FLOPs = 2 x MACs)",
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    totals = {
        "hooked": {"mean_ms": hooked_mean, "std_ms": hooked_std},
        "no_hooks": {"mean_ms": plain_mean, "std_ms": plain_std},
        "params": _unique_params([pipe]),
        "flops": flops.get("", 0),
    }
    return Profile(name, settings, stages, totals, blocks, layer_types, mod_rows)


def _layer_type_table(rows: list[tuple[str, str]], modules: dict[str, nn.Module], rec: _Recorder) -> dict[str, Any]:
    """Mean ms per leaf layer type inside each block; ``other`` is block time outside its leaf layers."""
    n = max(len(rec.passes), 1)
    table: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys((label for label, _ in rows), 0.0))
    for label, path in rows:
        block_ms = sum(p.get(path, 0.0) for p in rec.passes) * 1e3 / n
        leaf_ms = 0.0
        for name, m in modules.items():
            inside = name == path or name.startswith(path + ".")
            if inside and not any(True for _ in m.children()) and rec.calls.get(name):
                ms = sum(p.get(name, 0.0) for p in rec.passes) * 1e3 / n
                table[layer_type(m)][label] += ms
                leaf_ms += ms
        table["other"][label] += block_ms - leaf_ms
    ordered = {k: table[k] for k in table if k != "other"}
    ordered["other"] = table["other"]
    return {"blocks": [label for label, _ in rows], "rows": ordered}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().replace(",", "x").split("x")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        vals = []
    if len(vals) not in (1, 2) or any(v < 1 for v in vals):
        raise KeyheadError(f"--input-size {text!r}: give N (square) or HxW, e.g. 256 or 256x192")
    return (vals[0], vals[-1])


def resolve_model(
    spec: str, overrides: list[str] | None = None, num_keypoints: int | None = None
) -> tuple[KeypointModel, str]:
    """A model from a run folder, a config YAML, a config template name (``fomm_kp``) or a backbone name.

    Args:
        spec: run folder | config file | template name (``keyhead config list``) | backbone name (registered or timm,
            with the default heatmap head).
        overrides: ``section.key=value`` config overrides (not for run folders).
        num_keypoints: K for configs that do not list their keypoints (default 10, FOMM's vox-256 value).

    Returns:
        (model in eval mode with random or trained weights, a description).
    """
    from keyhead.config import load_config, template_dir
    from keyhead.models.backbones import create_backbone  # noqa: F401  (registers backbones)
    from keyhead.models.build import check_components, load_run, model_from_config
    from keyhead.registry import BACKBONES

    path = Path(spec)
    if path.is_dir():
        if overrides:
            raise KeyheadError(f"{spec} is a run folder; config overrides ({overrides[0]}, ...) do not apply to it")
        model, _ = load_run(path)
        return model, f"run {path}"
    if path.is_file():
        cfg, what = load_config(path, overrides), f"config {path}"
    elif (template_dir() / f"{spec}.yaml").is_file():
        cfg, what = load_config(template_dir() / f"{spec}.yaml", overrides), spec
    else:
        from keyhead.models.backbones.timm_backbone import check_timm_name

        if spec not in BACKBONES:
            templates = [p.stem for p in sorted(template_dir().glob("*.yaml"))]
            try:
                check_timm_name(spec, extra=[*templates, *BACKBONES.names()])
            except KeyheadError as exc:
                raise KeyheadError(
                    f"profile: {spec!r} is not a run folder, a config file, a template ({', '.join(templates)}) or a "
                    f"backbone ({exc})"
                ) from None
        cfg, what = load_config(None, [f"model.backbone={spec}", *(overrides or [])]), f"{spec} + heatmap head"
    check_components(cfg)
    k = num_keypoints or len(cfg.data.keypoints or []) or 10
    model = model_from_config(cfg, [f"kp{i}" for i in range(k)], pretrained=False)
    return model.eval(), f"{what} (K={k})"
