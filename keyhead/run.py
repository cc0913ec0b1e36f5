"""Run folders: what a training run leaves behind, and loading a trained model from one."""

from __future__ import annotations

import os

import numpy as np

from keyhead.config import RunConfig, load_config
from keyhead.engine.checkpoint import load_weights
from keyhead.errors import KeyheadError
from keyhead.model import KeypointModel, create_model
from keyhead.types import LabeledFrames
from keyhead.utils.files import check_run_dir
from keyhead.utils.weights import trust_pickle


def check_components(cfg: RunConfig) -> None:
    """Resolve every named component before any data is read, so a typo fails in a second."""
    import keyhead.decoders  # noqa: F401  (registers decoders)
    import keyhead.heads  # noqa: F401  (registers heads)
    from keyhead.backbones import check_timm_name
    from keyhead.losses import loss_spec
    from keyhead.registry import BACKBONES, DECODERS, HEADS

    HEADS.get(cfg.model.head)
    if cfg.model.backbone not in BACKBONES:
        check_timm_name(cfg.model.backbone, extra=BACKBONES.names())
    loss_spec(cfg.model.loss)
    if cfg.model.decoder is not None:
        DECODERS.get(cfg.model.decoder)


def model_from_config(cfg: RunConfig, keypoint_names: list[str], pretrained: bool | str | None = None) -> KeypointModel:
    m = cfg.model
    with trust_pickle(m.trust_pickle):
        return _create_model(cfg, keypoint_names, pretrained)


def _create_model(cfg: RunConfig, keypoint_names: list[str], pretrained: bool | str | None) -> KeypointModel:
    m = cfg.model
    return create_model(
        keypoint_names=keypoint_names,
        backbone=m.backbone,
        head=m.head,
        input_size=tuple(cfg.data.input_size),
        in_channels=cfg.data.in_channels,
        pretrained=m.pretrained if pretrained is None else pretrained,
        loss=m.loss,
        decoder=m.decoder,
        downsample_factor=m.downsample_factor,
        sigma=m.sigma,
        head_kwargs=m.head_kwargs,
        decoder_kwargs=m.decoder_kwargs,
        backbone_kwargs=m.backbone_kwargs,
    )


def load_run(run_dir: str | os.PathLike, weights: str = "model.safetensors") -> tuple[KeypointModel, RunConfig]:
    """Load a trained model from a run folder without touching the training data (no download, no scan).

    Returns:
        (model in eval mode, its resolved config).
    """
    run = check_run_dir(run_dir)
    try:
        cfg = load_config(run / "config.yaml")
    except KeyheadError as exc:
        raise KeyheadError(f"{exc} (the run may come from another keyhead version; use that version)") from None
    names_file = run / "keypoints.txt"
    if not names_file.is_file():
        raise KeyheadError(f"run folder {run} is missing keypoints.txt; it is not a finished keyhead run")
    names = [n for n in names_file.read_text().splitlines() if n]
    model = model_from_config(cfg, names, pretrained=False)
    load_weights(model, run / weights)
    model.use_channels_last(cfg.train.channels_last)
    return model.eval(), cfg


def flip_pair_indices(frames: LabeledFrames, pairs: list[tuple[str, str]]) -> list[tuple[int, int]]:
    """Name pairs from the config (or the data's own index pairs) -> index pairs; unknown names are errors.

    A 68-point set with no pairs from either source gets the iBUG 300-W pairs.
    """
    from keyhead.data.formats.ibug68 import IBUG68_FLIP_PAIRS, IBUG68_NAMES  # here: the formats import pandas

    lookup = {n: i for i, n in enumerate(frames.keypoint_names)}
    out = list(frames.flip_pairs)
    for a, b in pairs:
        for name in (a, b):
            if name not in lookup:
                raise KeyheadError(f"data.flip_pairs: keypoint {name!r} is not in the labels ({', '.join(lookup)})")
        out.append((lookup[a], lookup[b]))
    if not out and frames.num_keypoints == len(IBUG68_NAMES):
        # Any 68-point set is the iBUG 300-W layout; its left/right pairs are built in.
        out = list(IBUG68_FLIP_PAIRS)
    return sorted(set(out))


def select_keypoints(frames: LabeledFrames, names: list[str] | None) -> LabeledFrames:
    """Keep only the named keypoints (config ``data.keypoints``), in that order."""
    if not names:
        return frames
    lookup = {n: i for i, n in enumerate(frames.keypoint_names)}
    unknown = [n for n in names if n not in lookup]
    if unknown:
        raise KeyheadError(f"data.keypoints: {unknown[0]!r} is not in the labels (known: {', '.join(lookup)})")
    idx = [lookup[n] for n in names]
    remap = {old: new for new, old in enumerate(idx)}
    return LabeledFrames(
        root=frames.root,
        image_paths=frames.image_paths,
        keypoints=frames.keypoints[:, idx],
        keypoint_names=list(names),
        visibility=None if frames.visibility is None else frames.visibility[:, idx],
        boxes=frames.boxes,
        skeleton=[(a, b) for a, b in frames.skeleton if a in names and b in names],
        flip_pairs=[(remap[a], remap[b]) for a, b in frames.flip_pairs if a in remap and b in remap],
        source=frames.source,
    )


def labelled_rows(frames: LabeledFrames) -> np.ndarray:
    """Indices of frames with at least one labelled keypoint."""
    return np.flatnonzero(np.isfinite(frames.keypoints).all(-1).any(-1))
