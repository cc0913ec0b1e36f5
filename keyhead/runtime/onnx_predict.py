"""Predict with an exported ONNX model (``keyhead export``) using onnxruntime, NumPy and OpenCV only, no torch.

Preprocessing follows the sidecar ``<model>.onnx.json`` and matches keyhead's own evaluation path: the whole image
is resized to the model input with one affine matrix (pixel centres at integer coordinates), scaled to [0, 1], and
the predicted keypoints are mapped back to original-image pixels with the inverse matrix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from keyhead.errors import KeyheadError
from keyhead.io.atomic import atomic_path, make_dir
from keyhead.io.images import collect_images, read_image, resize_like_training, to_network_input
from keyhead.io.predictions import write_prediction_table
from keyhead.runtime.session import ort_session

PRED = (40, 40, 230)  # BGR red, as keyhead's overlays (prediction red)


def resolve_onnx(run_or_onnx: str | os.PathLike) -> Path:
    """A ``.onnx`` file as given, or ``RUN_DIR/model.onnx`` for a run folder.

    Raises:
        KeyheadError: no such file, or a run folder that was not exported yet.
    """
    path = Path(run_or_onnx)
    if path.is_dir():
        path = path / "model.onnx"
        if not path.is_file():
            raise KeyheadError(
                f"{path} does not exist; export the run first: keyhead export {run_or_onnx} --format onnx"
            )
    elif not path.is_file():
        raise KeyheadError(f"{path} does not exist; pass a run folder or a .onnx file from `keyhead export`")
    elif path.suffix.lower() != ".onnx":
        raise KeyheadError(f"{path}: --runtime onnx needs a run folder or a .onnx file from `keyhead export`")
    return path


class OnnxKeypointModel:
    """An exported keyhead model run by onnxruntime.

    Args:
        path: the ``.onnx`` file (its sidecar ``<path>.json`` must sit beside it) or a run folder.
        threads: onnxruntime intra-op threads (default: onnxruntime's).

    Example:
        >>> model = OnnxKeypointModel("runs/heatmap_lite0/model.onnx")  # doctest: +SKIP
        >>> xy, conf = model.predict([image])  # (1, K, 2) original pixels, (1, K)  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        self.path = resolve_onnx(path)
        side = Path(str(self.path) + ".json")
        if not side.is_file():
            raise KeyheadError(f"{side} is missing; export again with keyhead export RUN_DIR --format onnx")
        try:
            self.meta = json.loads(side.read_text(encoding="utf-8"))
            spec = self.meta["input"]
            self.input_size = (int(spec["height"]), int(spec["width"]))
            self.channels = int(spec["channels"])
            self.keypoint_names = [str(n) for n in self.meta["keypoint_names"]]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise KeyheadError(f"{side}: not a keyhead ONNX sidecar ({exc}); export the run again") from None
        self.skeleton = [(str(a), str(b)) for a, b in self.meta.get("skeleton", [])]
        self.session = ort_session(self.path, threads)

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, C) uint8 image -> ((C, h, w) float32 in [0, 1], 3x3 original -> input matrix)."""
        out, m = resize_like_training(image, self.input_size)
        return to_network_input(out), m

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The raw graph: (B, C, h, w) float32 in [0, 1] -> (xy (B, K, 2) input pixels, confidence (B, K))."""
        xy, conf = self.session.run(None, {"image": np.ascontiguousarray(batch, dtype=np.float32)})
        return xy, conf

    def predict(self, images: list[np.ndarray], batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints of (H, W, C) uint8 images of any sizes.

        Returns:
            xy (N, K, 2) (x, y) in original-image pixels, confidence (N, K).
        """
        k = len(self.keypoint_names)
        xs, cs = [np.zeros((0, k, 2), np.float32)], [np.zeros((0, k), np.float32)]
        for start in range(0, len(images), batch_size):
            pairs = [self.preprocess(img) for img in images[start : start + batch_size]]
            xy, conf = self.run(np.stack([p[0] for p in pairs]))
            inv = np.stack([np.linalg.inv(p[1]) for p in pairs])
            xy = np.einsum("bij,bkj->bki", inv[:, :2, :2], xy.astype(np.float64)) + inv[:, None, :2, 2]
            xs.append(xy.astype(np.float32))
            cs.append(conf.astype(np.float32))
        return np.concatenate(xs), np.concatenate(cs)


def draw_predictions(
    image: np.ndarray, xy: np.ndarray, confidence: np.ndarray, threshold: float, skeleton: list[tuple[int, int]]
) -> np.ndarray:
    """BGR overlay of one image: predictions red, hollow below ``threshold``, skeleton lines."""
    img = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.shape[-1] == 1 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    r = max(2, round(max(img.shape[:2]) / 150))
    scale = 16

    def pt(p: np.ndarray) -> tuple[int, int]:
        return int(round(p[0] * scale)), int(round(p[1] * scale))

    for a, b in skeleton:
        if np.isfinite(xy[a]).all() and np.isfinite(xy[b]).all():
            cv2.line(img, pt(xy[a]), pt(xy[b]), PRED, 1, cv2.LINE_AA, 4)
    for j, p in enumerate(xy):
        if np.isfinite(p).all():
            cv2.circle(img, pt(p), r * scale, PRED, -1 if confidence[j] >= threshold else 1, cv2.LINE_AA, 4)
    return img


def predict_images_onnx(
    model_path: str | os.PathLike,
    inputs: list[str | os.PathLike],
    out_dir: str | os.PathLike | None = None,
    overlays: bool = True,
    threshold: float = 0.5,
    batch_size: int = 16,
) -> Path:
    """``keyhead predict --runtime onnx``: ``predictions.csv`` (x, y, likelihood) and ``overlays/``, no torch.

    Args:
        model_path: a run folder holding ``model.onnx`` or the ``.onnx`` file.
        inputs: images or folders of images.
        out_dir: output folder (default: ``predictions/`` beside the ``.onnx`` file).
        overlays: also draw the predictions on each image.
        threshold: confidence below which points are drawn hollow.
        batch_size: images per onnxruntime call.

    Returns:
        The output folder.
    """
    model = OnnxKeypointModel(model_path)
    images = collect_images(inputs, "; --runtime onnx with a .onnx file predicts images")
    root = Path(os.path.commonpath([str(p.parent) for p in images]))
    rows = [p.relative_to(root).as_posix() for p in images]
    if batch_size < 1:
        raise KeyheadError(f"--batch-size {batch_size}: give a positive number of images per forward pass")
    out = make_dir(Path(out_dir) if out_dir is not None else model.path.parent / "predictions")
    lookup = {n: i for i, n in enumerate(model.keypoint_names)}
    skeleton = [(lookup[a], lookup[b]) for a, b in model.skeleton if a in lookup and b in lookup]
    xy_all, conf_all = [], []
    for start in range(0, len(images), batch_size):
        chunk = [read_image(p, model.channels) for p in images[start : start + batch_size]]
        xy, conf = model.predict(chunk, batch_size)
        xy_all.append(xy)
        conf_all.append(conf)
        if overlays:
            (out / "overlays").mkdir(parents=True, exist_ok=True)
            for row, img, p_xy, p_conf in zip(rows[start:], chunk, xy, conf, strict=False):
                target = out / "overlays" / (row.replace("/", "__").rsplit(".", 1)[0] + ".png")
                with atomic_path(target) as tmp:
                    cv2.imwrite(str(tmp), draw_predictions(img, p_xy, p_conf, threshold, skeleton))
    csv_path = write_prediction_table(
        out / "predictions.csv", rows, model.keypoint_names, np.concatenate(xy_all), np.concatenate(conf_all)
    )
    print(f"predicted {len(images)} images with onnxruntime -> {csv_path}")
    return out
