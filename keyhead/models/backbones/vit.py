"""DINO ViT-S/16 (timm ``vit_small_patch16_224.dino`` architecture) as a backbone: patch tokens as a stride-16 map.

Weights never come from the network: ``pretrained`` is False (random init) or the path of a local state dict of
the timm model (``.safetensors``, or a ``.pth`` that ``torch.load(weights_only=True)`` reads, e.g. DINO's own
``dino_deitsmall16_pretrain.pth``, whose names are timm's). A 3-channel patch embedding is adapted to one
channel by summing (timm's ``adapt_input_conv``), and the position embedding is resampled (bicubic) when the
model input is not the checkpoint's 224 x 224.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import timm
from timm.layers import resample_abs_pos_embed
from timm.models import adapt_input_conv
from torch import Tensor

from keyhead.errors import KeyheadError
from keyhead.models.backbones.base import IMAGENET_MEAN, IMAGENET_STD, Backbone, FeatureInfo, channel_stats
from keyhead.models.backbones.timm_backbone import load_state_dict_file
from keyhead.registry import BACKBONES

DINO_ARCH = "vit_small_patch16_224.dino"


class ViTBackbone(Backbone):
    """A timm Vision Transformer whose patch tokens are returned as one (B, D, H/p, W/p) feature map.

    Args:
        arch: timm ViT name (default DINO ViT-S/16: D = 384, 12 blocks, patch 16).
        input_size: model input (H, W), each a multiple of the patch size p; the position grid is (H/p, W/p).
        in_channels: input channels C (1 for grayscale).
        weights: None (random init) or a local state-dict file of the timm model.
        **timm_kwargs: extra ``timm.create_model`` arguments (``drop_path_rate``; ``depth`` / ``embed_dim`` /
            ``num_heads`` for small test models).

    Shapes:
        x: (B, C, H, W) -> [(B, D, H/p, W/p)]; :meth:`tokens` gives the (B, N, D) patch tokens, N = HW / p^2,
        row-major over the grid, and the (B, D) CLS token.

    Example:
        >>> import torch
        >>> bb = ViTBackbone(input_size=(64, 32), in_channels=1, depth=1, embed_dim=32, num_heads=2)
        >>> bb(torch.zeros(2, 1, 64, 32))[0].shape
        torch.Size([2, 32, 4, 2])
    """

    def __init__(
        self,
        arch: str = DINO_ARCH,
        input_size: tuple[int, int] = (224, 224),
        in_channels: int = 3,
        weights: str | Path | None = None,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__()
        if not timm.is_model(arch) or "vit" not in arch.split(".")[0]:
            raise KeyheadError(f"backbone ViT: arch {arch!r} is not a timm ViT name (e.g. {DINO_ARCH!r})")
        h, w = (int(s) for s in input_size)
        try:
            self.vit = timm.create_model(
                arch, pretrained=False, img_size=(h, w), in_chans=in_channels, num_classes=0, **timm_kwargs
            )
        except TypeError as exc:
            raise KeyheadError(f"model.backbone_kwargs for a ViT backbone: {exc}") from None
        p = self.vit.patch_embed.patch_size
        if h % p[0] or w % p[1]:
            raise KeyheadError(
                f"backbone ViT: data.input_size {(h, w)} must be a multiple of the patch size {p[0]} on both sides"
            )
        self.arch = arch
        self.patch_size = int(p[0])
        self.grid = (h // p[0], w // p[1])
        self.in_channels = in_channels
        self.weights = "random init"
        if weights is not None:
            self.load_checkpoint(Path(weights))
        self.feature_info = [FeatureInfo(int(self.vit.embed_dim), self.patch_size)]
        cfg = self.vit.pretrained_cfg
        self.mean, self.std = channel_stats(in_channels, cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD))

    def load_checkpoint(self, path: Path) -> None:
        """Load a local state dict of the timm ViT: stem adapted to ``in_channels``, position grid resampled."""
        sd = {k: v for k, v in load_state_dict_file(path).items() if not k.startswith("head.")}
        stem = "patch_embed.proj.weight"
        if stem in sd and sd[stem].ndim == 4 and sd[stem].shape[1] != self.in_channels:
            sd[stem] = adapt_input_conv(self.in_channels, sd[stem])
        pos = sd.get("pos_embed")
        own = self.vit.pos_embed
        if pos is not None and pos.ndim == 3 and pos.shape[-1] == own.shape[-1] and pos.shape[1] != own.shape[1]:
            prefix = 0 if getattr(self.vit, "no_embed_class", False) else self.vit.num_prefix_tokens
            side = int(round((pos.shape[1] - prefix) ** 0.5))
            if side * side + prefix != pos.shape[1]:
                raise KeyheadError(f"{path}: pos_embed has {pos.shape[1]} tokens, not a square grid plus CLS")
            sd["pos_embed"] = resample_abs_pos_embed(
                pos, new_size=list(self.grid), old_size=[side, side], num_prefix_tokens=prefix
            )
        result = self.vit.load_state_dict(sd, strict=False)
        if result.missing_keys or result.unexpected_keys:
            shown = ", ".join((result.missing_keys + result.unexpected_keys)[:4])
            raise KeyheadError(
                f"{path} does not fit timm model {self.arch!r}: {len(result.missing_keys)} missing and "
                f"{len(result.unexpected_keys)} unexpected keys ({shown}); pass a state dict of "
                f"timm.create_model({self.arch!r})"
            )
        self.weights = f"weights file {path}"

    def tokens(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Patch tokens (B, N, D) (row-major over the H/p x W/p grid) and the CLS token (B, D), after the final norm."""
        if tuple(x.shape[-2:]) != (self.grid[0] * self.patch_size, self.grid[1] * self.patch_size):
            raise KeyheadError(
                f"ViT backbone was built for {self.grid[0] * self.patch_size}x{self.grid[1] * self.patch_size} "
                f"inputs (data.input_size) but got {x.shape[-2]}x{x.shape[-1]}"
            )
        out = self.vit.forward_features(x)
        n_prefix = self.vit.num_prefix_tokens
        return out[:, n_prefix:], out[:, 0]

    def forward(self, x: Tensor) -> list[Tensor]:
        patches, _ = self.tokens(x)
        b, n, d = patches.shape
        return [patches.transpose(1, 2).reshape(b, d, *self.grid)]

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, grid={self.grid}, weights={self.weights!r}, {super().extra_repr()}"


@BACKBONES.register("dino_vits16")
def create_dino_vits16(
    pretrained: bool | str | Path = False,
    in_channels: int = 3,
    out_indices: Sequence[int] | None = None,
    input_size: tuple[int, int] = (224, 224),
    arch: str = DINO_ARCH,
    **timm_kwargs: Any,
) -> ViTBackbone:
    """DINO ViT-S/16 (or another timm ViT ``arch``); ``pretrained``: False or a local weights file, never a download."""
    if pretrained is True:
        raise KeyheadError(
            "backbone 'dino_vits16': no DINO weights are installed and keyhead never downloads them; set "
            "model.pretrained to a local file (a state dict of timm.create_model('vit_small_patch16_224.dino'), "
            ".safetensors or .pth) or false"
        )
    if out_indices not in (None, (0,), [0], (-1,), [-1]):
        raise KeyheadError(f"backbone 'dino_vits16' has one feature level; out_indices {out_indices} is not valid")
    weights = None if pretrained in (False, None, "") else str(pretrained)
    return ViTBackbone(arch, input_size, in_channels, weights, **timm_kwargs)
