"""Run folders: what a training run leaves behind, and loading a trained model from one."""

from __future__ import annotations

import os

import torch

from keyhead.config import RunConfig, load_config
from keyhead.errors import KeyheadError
from keyhead.io.rundir import check_run_dir
from keyhead.models.calibration import CALIBRATION_FILE, load_calibration
from keyhead.models.model import KeypointModel, create_model
from keyhead.models.weights import load_weights, trust_pickle

DEVICES = ("auto", "cpu", "cuda", "mps")


def select_device(device: str = "auto") -> torch.device:
    """The device prediction runs on: ``auto`` takes CUDA when a GPU is visible, then Apple's MPS, else the CPU;
    a named device that is not there is a one-line error."""
    if device not in DEVICES:
        raise KeyheadError(f"--device {device!r}: choose {', '.join(DEVICES)}")
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if device == "auto":
        device = "cuda" if cuda else "mps" if mps else "cpu"
    elif (device == "cuda" and not cuda) or (device == "mps" and not mps):
        raise KeyheadError(f"--device {device}: no such device on this machine (torch sees none); use --device cpu")
    return torch.device(device)


def check_components(cfg: RunConfig) -> None:
    """Resolve every named component before any data is read, so a typo fails in a second."""
    import keyhead.models.decoders  # noqa: F401  (registers decoders)
    import keyhead.models.heads  # noqa: F401  (registers heads)
    from keyhead.models.backbones import check_timm_name
    from keyhead.models.losses import loss_spec
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
        target=m.target,
        head_kwargs=m.head_kwargs,
        decoder_kwargs=m.decoder_kwargs,
        backbone_kwargs=m.backbone_kwargs,
        centroids=m.centroids,
    )


def load_run(
    run_dir: str | os.PathLike, weights: str = "model.safetensors", device: str = "cpu"
) -> tuple[KeypointModel, RunConfig]:
    """Load a trained model from a run folder without touching the training data (no download, no scan).

    Args:
        run_dir: the run folder.
        weights: the weights file in it.
        device: where the model goes (:func:`select_device`: "auto", "cpu", "cuda", "mps").

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
    load_weights(
        model,
        run / weights,
        shape_hint=f"{names_file} lists {len(names)} keypoints: config.yaml, keypoints.txt and the weights must come "
        "from the same run",
    )
    model.use_channels_last(cfg.train.channels_last)
    model.calibration = load_calibration(run / CALIBRATION_FILE)
    return model.to(select_device(device)).eval(), cfg
