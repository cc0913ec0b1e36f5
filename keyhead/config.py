"""Typed run configuration: the single source of defaults. YAML in, validated, resolved config saved per run."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_write
from keyhead.io.structured import read_yaml, short


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    path: str = Field("", description="labels: a Lightning Pose folder, DLC project, CSV, COCO JSON or .pts folder")
    input_size: tuple[int, int] = Field((256, 256), description="model input (height, width) in pixels")
    in_channels: Literal[1, 3] = 3
    split: tuple[float, float, float] = Field((0.8, 0.1, 0.1), description="train / val / test fractions")
    split_seed: int = 42
    flip_pairs: list[tuple[str, str]] = Field(default_factory=list, description="left/right keypoint name pairs")
    keypoints: list[str] | None = Field(None, description="use only these keypoints (default: all)")
    context_video: str | None = Field(
        None, description="video the labelled frames were taken from (context frames for video heads, by frame number)"
    )
    context_frames: Literal["auto", "frames", "static"] = Field(
        "auto",
        description="context windows of video heads: frames (numbered neighbours on disk, else the session video), "
        "static (the labelled frame repeated; one backbone pass), or auto (frames when they look like consecutive "
        "video frames or a video is known, else static with a warning)",
    )
    cache_max_side: int = Field(1024, description="images are cached in memory, downscaled to at most this side")
    nme_normalizer: str = Field(
        "auto",
        description="NME/PCK normaliser: auto (inter-ocular for 68-point faces, else the labels' box diagonal), "
        "interocular, bbox, none, or two keypoint names 'a,b' (their distance)",
    )
    crop: Literal["auto", "box", "landmarks", "none"] = Field(
        "auto",
        description="what the model sees: auto (the labels' boxes if any, else the landmarks' box for 68-point "
        "faces, else the whole image), box (require the labels' boxes), landmarks (box of the labelled keypoints: "
        "the 300-W face protocol), none (whole image)",
    )
    crop_margin: float = Field(
        0.25, ge=0, le=10, allow_inf_nan=False, description="the crop box is enlarged by this fraction (0.25: 1.25x)"
    )
    split_file: str | None = Field(
        None, description="a split.json (image paths per split) to reuse instead of a random split"
    )

    @field_validator("split")
    @classmethod
    def _split_sums_to_one(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(x < 0 for x in v) or abs(sum(v) - 1.0) > 1e-6 or v[0] <= 0:
            raise ValueError(
                "split must be three non-negative fractions (train > 0) that sum to 1, e.g. [0.8, 0.1, 0.1]"
            )
        return v

    @field_validator("input_size")
    @classmethod
    def _positive_size(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[0] < 32 or v[1] < 32 or v[0] % 32 or v[1] % 32:
            raise ValueError("input_size must be [height, width], each a multiple of 32 and at least 32")
        return v


class ModelConfig(_Section):
    backbone: str = "resnet18"
    pretrained: bool | str = Field(False, description="true: installed/offline weights or hub; or a local file path")
    trust_pickle: bool = Field(
        False,
        description="read a pickle (torch.save .pt/.pth/.ckpt) pretrained file, with torch.load(weights_only=True); "
        "only for files you trust (better: keyhead convert-weights once)",
    )
    backbone_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="extra backbone arguments, e.g. {activation: relu} for simple_cnn"
    )
    head: str = "heatmap"
    head_kwargs: dict[str, Any] = Field(default_factory=dict)
    downsample_factor: int = Field(2, ge=0, le=5, description="heatmap stride is 2**downsample_factor pixels")
    sigma: float = Field(1.25, gt=0, description="Gaussian target sigma in heatmap cells")
    target: Literal["gaussian", "pixel"] = Field(
        "gaussian",
        description="heatmap targets: a Gaussian at the sub-pixel position, or 'pixel': a Gaussian-filtered delta on "
        "the keypoint's nearest cell (seed 001's U-Net targets)",
    )
    loss: str = Field("kl", description="kl converges far faster than Lightning Pose's heatmap_mse from the same start")
    decoder: str | None = Field(
        None,
        description="None: the head's suggestion (fomm_kp: soft_argmax at its temperature; mhcrnn: calibrated_maxima), "
        "else subpixel_maxima",
    )
    decoder_kwargs: dict[str, Any] = Field(default_factory=dict)
    centroids: int | None = Field(
        None, ge=1, description="instance-centre model (top-down stage 1): decode this many peaks of one map"
    )


class AugmentConfig(_Section):
    enabled: bool = True
    rotation: float = Field(15.0, ge=0, description="max rotation in degrees")
    scale: tuple[float, float] = (0.85, 1.15)
    translate: float = Field(0.08, ge=0, description="max shift as a fraction of the input size")
    hflip: float = Field(
        0.0, ge=0, le=1, description="flip probability; needs data.flip_pairs when keypoints are sided"
    )
    brightness: float = Field(0.2, ge=0)
    contrast: float = Field(0.2, ge=0)
    blur: float = Field(0.1, ge=0, le=1, description="probability of a Gaussian blur")
    noise: float = Field(0.02, ge=0, description="std of additive Gaussian noise (images in [0, 1])")


class TrainConfig(_Section):
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(16, ge=1)
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["multistep", "cosine"] = Field(
        "multistep",
        description="multistep: the rate times gamma at each of `milestones` (epochs); cosine: from lr down to "
        "lr * final_lr over the whole run, which ends at `epochs` or at `max_minutes`, whichever comes first",
    )
    milestones: list[int] = Field(default_factory=list, description="MultiStepLR epochs (schedule: multistep)")
    gamma: float = Field(0.5, gt=0)
    warmup: float = Field(0.0, ge=0, lt=1, description="cosine: share of the run with a linear warm-up from 0")
    final_lr: float = Field(0.0, ge=0, le=1, description="cosine: the rate at the end, as a factor of lr")
    freeze_backbone_epochs: int = Field(0, ge=0, description="train only the head for this many epochs first")
    train_stem_while_frozen: bool = Field(
        False, description="while the backbone is frozen, still train its first (input) convolution (a new 1-ch stem)"
    )
    freeze_stride: Literal[0, 2, 4, 8, 16, 32] = Field(
        0,
        description="keep the backbone's stem and stages up to this output stride frozen for the whole run "
        "(pretrained weights and BatchNorm statistics): fewer layers to back-propagate; 0 trains everything",
    )
    early_stopping_patience: int = Field(0, ge=0, description="epochs without val improvement before stopping; 0 = off")
    val_every: int = Field(1, ge=1)
    max_minutes: float | None = Field(None, gt=0, description="wall-clock budget; training stops cleanly when spent")
    calibration: Literal["auto", "isotonic", "platt", "none"] = Field(
        "auto",
        description="fit a confidence calibration on the validation split after training: auto (platt below 1000 "
        "validation keypoints, isotonic from there), isotonic, platt (Platt scaling: steadier on small validation "
        "splits) or none (raw)",
    )
    seed: int = 0
    num_workers: int = Field(0, ge=0)
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: int | str = Field("auto", description='"auto", a device count (-1: all), or device ids "0,1"')
    precision: Literal[
        "32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16", "16-true", "bf16-true", "64-true", "64"
    ] = "32-true"
    channels_last: bool = Field(True, description="NHWC memory layout: faster convolutions on CPU and GPU")
    deterministic: bool | Literal["warn"] = Field(
        "warn",
        description="GPU kernels: true = deterministic only (error otherwise), warn = deterministic where they "
        "exist, false = fastest (cuDNN benchmark); CPU training is deterministic in every mode",
    )
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: all cores)")

    @field_validator("devices")
    @classmethod
    def _devices(cls, v: int | str) -> int | str:
        if isinstance(v, int):
            if v == 0 or v < -1:
                raise ValueError("use a device count >= 1, -1 for all devices, or auto")
            return v
        ids = [s.strip() for s in str(v).split(",") if s.strip()]
        if v != "auto" and not (ids and all(s.isdigit() for s in ids)):
            raise ValueError('use auto, a device count, or device ids such as "0,1"')
        return v


class SemiConfig(_Section):
    videos: list[str] = Field(
        default_factory=list,
        description="unlabelled videos (files, folders, or 'auto' = the project's videos/); empty = off",
    )
    losses: list[str] = Field(default_factory=lambda: ["temporal", "pca"], description="temporal and/or pca")
    frames: int = Field(512, ge=2, description="unlabelled frames decoded into memory (as clips)")
    clip_length: int = Field(4, ge=2, description="consecutive frames per clip")
    clips_per_batch: int = Field(2, ge=1, description="clips added to every training step")
    temporal_weight: float = Field(
        0.0067, ge=0, description="Lightning Pose's default (log_weight 5: exp(-5)); the loss is in pixels"
    )
    temporal_epsilon: float = Field(20.0, ge=0, description="jumps below this many pixels (original image) are free")
    pca_weight: float = Field(0.0067, ge=0, description="Lightning Pose's default (log_weight 5: exp(-5))")
    pca_variance: float = Field(0.99, gt=0, le=1, description="Pose PCA keeps components explaining this variance")
    pca_epsilon_quantile: float = Field(
        0.95, gt=0, le=1, description="epsilon = this quantile of the labels' own PCA reconstruction errors"
    )
    multiview: list[list[str]] = Field(
        default_factory=list, description="multi-view PCA: for each body part, its keypoint name in every view"
    )


class TopDownConfig(_Section):
    """Several animals per frame: an instance-centre model finds each animal, the pose model runs on a crop of it."""

    enabled: Literal["auto", "on", "off"] = Field(
        "auto", description="top-down multi-animal pose; auto = when the labels hold several instances per frame"
    )
    animals: int | None = Field(
        None, ge=1, description="animals per frame (a fixed set of identities when tracking); default: the labels' most"
    )
    anchor: str | None = Field(None, description="keypoint used as each instance's centre; default: its keypoints' box")
    crop_size: int | None = Field(
        None, ge=16, description="crop side in image pixels; default: 1.2 x the largest instance, rounded up to 32"
    )
    centroid_backbone: str = Field("efficientnet_lite0", description="backbone of the instance-centre model")
    centroid_pretrained: bool | str = Field(True, description="its weights: installed ImageNet weights or a file")
    centroid_input_size: tuple[int, int] = Field((256, 256), description="whole frame resized to this for centres")
    centroid_sigma: float = Field(1.5, gt=0, description="centre map Gaussian sigma in map cells")
    centroid_share: float = Field(
        0.3, gt=0, lt=1, description="share of train.max_minutes given to the centre model (the rest: pose on crops)"
    )
    peak_threshold: float = Field(0.2, ge=0, le=1, description="centre-map peaks below this are not instances")
    max_age: int = Field(30, ge=0, description="frames a lost identity is kept before it may be given up")
    match_distance: float | None = Field(
        None, gt=0, description="tracking: farthest (pixels) an animal may move between frames; default: crop_size / 2"
    )


class RunConfig(_Section):
    name: str = "run"
    output_dir: str = "runs"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    semi: SemiConfig = Field(default_factory=SemiConfig)
    topdown: TopDownConfig = Field(default_factory=TopDownConfig)


def _did_you_mean(section: type[BaseModel], key: str) -> str:
    close = difflib.get_close_matches(key, list(section.model_fields), n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(section.model_fields)}"


def _section_for(loc: tuple) -> type[BaseModel]:
    cls: type[BaseModel] = RunConfig
    for part in loc[:-1]:
        field = cls.model_fields.get(str(part))
        ann = getattr(field, "annotation", None) if field else None
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            cls = ann
        else:
            break
    return cls


def _friendly(err: ValidationError, source: str) -> KeyheadError:
    e = err.errors()[0]
    key = ".".join(str(p) for p in e["loc"])
    if e["type"] == "extra_forbidden":
        hint = _did_you_mean(_section_for(e["loc"]), str(e["loc"][-1]))
        return KeyheadError(f"{source}: unknown config key {key!r}{hint}")
    return KeyheadError(f"{source}: config key {key!r}: {e['msg']} (got {short(e.get('input'))})")


def parse_value(text: str) -> Any:
    """A command-line override value, read as YAML (so ``3``, ``1e-3``, ``true``, ``[1, 2]`` work)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides to a raw config dict."""
    for item in overrides:
        if "=" not in item:
            raise KeyheadError(f"override {item!r} is not of the form key=value (e.g. train.epochs=5)")
        key, value = item.split("=", 1)
        node = raw
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise KeyheadError(f"override {item!r}: {p!r} is not a section")
        node[parts[-1]] = parse_value(value)
    return raw


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config (or the defaults), apply ``key=value`` overrides, validate.

    Relative ``data.path`` values are resolved against the config file's folder.
    """
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = resolve_template(path)
        source = str(p)
        if not p.is_file():
            names = ", ".join(sorted(q.stem for q in template_dir().glob("*.yaml")))
            raise KeyheadError(f"config file {p} does not exist; give a YAML file or a template name ({names})")
        raw = read_yaml(p, "a keyhead config") or {}
        if not isinstance(raw, dict):
            raise KeyheadError(f"{p}: the config must be a mapping of sections (data, model, augment, train)")
    raw = apply_overrides(raw, overrides or [])
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as err:
        raise _friendly(err, source) from None
    if path is not None and p.parent != template_dir() and cfg.data.path and not Path(cfg.data.path).is_absolute():
        candidate = (p.parent / cfg.data.path).resolve()
        if candidate.exists() or not Path(cfg.data.path).exists():
            cfg.data.path = str(candidate)
    return cfg


def save_config(cfg: RunConfig, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically."""
    with atomic_write(path) as f:
        yaml.safe_dump(cfg.model_dump(mode="json"), f, sort_keys=False)


def template_dir() -> Path:
    return Path(__file__).parent / "configs"


def resolve_template(path: str | os.PathLike) -> Path:
    """``path`` itself, or the shipped template of that name (``face_heatmap`` -> ``configs/face_heatmap.yaml``)
    when no such file exists: ``keyhead train face_heatmap data.path=...`` works from any folder."""
    p = Path(path)
    if not p.exists() and p.name == str(path) and p.suffix in ("", ".yaml"):
        candidate = template_dir() / f"{p.stem}.yaml"
        if candidate.is_file():
            return candidate
    return p
