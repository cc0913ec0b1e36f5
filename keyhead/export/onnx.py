"""``keyhead export``: a run's whole model (backbone, head and decoder) as ONNX, with a JSON preprocessing sidecar.

The exported graph maps images (B, C, H, W) float32 in [0, 1] (already resized to the model input) to keypoints
``xy`` (B, K, 2) in input pixels and ``confidence`` (B, K); the batch axis is dynamic and the backbone's mean/std
normalisation is inside the graph. ``keyhead.runtime`` runs it with onnxruntime + NumPy only (no torch).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_path, atomic_write
from keyhead.io.rundir import read_skeleton
from keyhead.models.build import load_run
from keyhead.models.model import KeypointModel

SIDECAR_SUFFIX = ".json"
FORMAT = "keyhead-onnx"
#: exported and eager PyTorch keypoints must agree this closely (input pixels) or the export is refused
TOLERANCE_PX = 0.05


def sidecar_path(onnx_path: str | os.PathLike) -> Path:
    """``model.onnx`` -> ``model.onnx.json`` (the preprocessing description beside the graph)."""
    return Path(str(onnx_path) + SIDECAR_SUFFIX)


def export_graph(
    module: nn.Module,
    example: torch.Tensor,
    path: Path,
    input_name: str,
    outputs: list[str],
    opset: int,
    what: str,
    hint: str = "",
) -> None:
    """Trace ``module`` on ``example`` into an ONNX file at ``path`` with a dynamic batch axis (the dynamo exporter).

    Every keyhead export goes through here; a failure is one line naming ``what`` and the exporter's first line.
    """
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module.eval(),
                (example,),
                input_names=[input_name],
                output_names=outputs,
                dynamic_shapes={input_name: {0: torch.export.Dim("batch", min=1, max=4096)}},
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
        program.save(str(path))
    except Exception as exc:  # the exporter raises many types; the first line names the operator
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KeyheadError(f"{what} could not be exported to ONNX ({first}){hint}") from None


class ExportedKeypointModel(nn.Module):
    """Model + decoder as one module: images (B, C, H, W) in [0, 1] -> (xy (B, K, 2) input px, confidence (B, K))."""

    def __init__(self, model: KeypointModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kp = self.model.decode(self.model(image), batch_groups=False)  # ONNX needs a static group count
        return kp.xy, kp.confidence


def preprocessing(model: KeypointModel, skeleton: list[tuple[str, str]], run_dir: str | None = None) -> dict:
    """The sidecar: everything a runtime needs to feed the graph and read its outputs."""
    h, w = model.input_size
    c = model.backbone.in_channels
    return {
        "format": FORMAT,
        "version": 1,
        "input": {
            "name": "image",
            "shape": ["batch", c, h, w],
            "dtype": "float32",
            "height": h,
            "width": w,
            "channels": c,
            "color": "rgb" if c == 3 else "gray",
            "scale": "pixel value / 255, so [0, 1]",
            "resize": (
                "the whole image resized to (width, height) with bilinear interpolation, pixel centres at integer "
                "coordinates: x_input = (x + 0.5) * width / image_width - 0.5 (cv2.warpAffine with that matrix)"
            ),
            "mean": [float(v) for v in np.asarray(model.backbone.mean).ravel()],
            "std": [float(v) for v in np.asarray(model.backbone.std).ravel()],
            "normalization": "(x - mean) / std is applied inside the graph; feed [0, 1] values",
        },
        "outputs": {
            "xy": "(batch, K, 2) float32 (x, y) in input pixels; map back with the inverse of the resize",
            "confidence": "(batch, K) float32 in [0, 1]",
        },
        "keypoint_names": list(model.keypoint_names),
        "skeleton": [list(p) for p in skeleton],
        "head": type(model.head).__name__,
        "decoder": model.codec.decoder_name,
        "run": run_dir,
    }


def export_onnx(
    run_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    opset: int = 18,
    check: bool = True,
    batch: int = 2,
) -> Path:
    """Export a run's model with its decoder to ONNX (dynamic batch) and write the JSON sidecar beside it.

    Args:
        run_dir: a finished run folder.
        out: the ``.onnx`` file (default ``RUN_DIR/model.onnx``); the sidecar is ``<out>.json``.
        opset: ONNX opset version.
        check: run the graph with onnxruntime on random images and compare with eager PyTorch; an export whose
            keypoints differ by more than ``TOLERANCE_PX`` input pixels is refused (nothing is written).
        batch: batch size of the example input used for tracing (the exported batch axis is dynamic).

    Returns:
        The ``.onnx`` path.

    Raises:
        KeyheadError: the run folder is incomplete, the model cannot be exported, or the check fails.

    Example:
        >>> export_onnx("runs/heatmap_lite0")  # doctest: +SKIP
        PosixPath('runs/heatmap_lite0/model.onnx')
    """
    run = Path(run_dir)
    model, _ = load_run(run)
    if model.context > 1:
        raise KeyheadError(
            f"{run}: head {type(model.head).__name__} reads {model.context}-frame windows; ONNX export covers "
            "single-frame heads (video prediction can still use --runtime onnx for its per-frame network)"
        )
    model = model.use_channels_last(False).eval()
    wrapper = ExportedKeypointModel(model).eval()
    h, w = model.input_size
    gen = torch.Generator().manual_seed(0)
    example = torch.rand(batch, model.backbone.in_channels, h, w, generator=gen)
    target = Path(out) if out is not None else run / "model.onnx"
    if target.suffix.lower() != ".onnx":
        raise KeyheadError(f"--out {target}: name the file *.onnx")
    with atomic_path(target) as tmp:
        export_graph(wrapper, example, tmp, "image", ["xy", "confidence"], opset, f"{run}: the model")
        if check:
            diff = check_onnx(tmp, wrapper, n=3)
            if diff > TOLERANCE_PX:
                raise KeyheadError(
                    f"{run}: the ONNX graph's keypoints differ from PyTorch's by {diff:.3f} px "
                    f"(> {TOLERANCE_PX}); not exported"
                )
    with atomic_write(sidecar_path(target)) as f:
        json.dump(preprocessing(model, read_skeleton(run), str(run.resolve())), f, indent=1)
    return target


def check_onnx(onnx_path: str | os.PathLike, wrapper: nn.Module, n: int = 3, seed: int = 1) -> float:
    """Largest keypoint difference (input pixels) between onnxruntime and eager PyTorch on ``n`` random images.

    Keypoints whose eager confidence is NaN are left out; a NaN in one and not the other counts as infinite.
    """
    import onnxruntime as ort

    model = wrapper.model
    h, w = model.input_size
    x = torch.rand(n, model.backbone.in_channels, h, w, generator=torch.Generator().manual_seed(seed))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    xy, _ = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        eager = model.predict(x).xy.numpy()
    if (np.isnan(xy) != np.isnan(eager)).any():
        return float("inf")
    both = np.isfinite(xy) & np.isfinite(eager)
    return float(np.abs(xy - eager)[both].max(initial=0.0))
