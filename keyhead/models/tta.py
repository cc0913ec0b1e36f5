"""Test-time augmentation for any :class:`~keyhead.models.model.KeypointModel`: the horizontal-flip average.

The model predicts the image and its mirror image; the mirrored prediction is un-flipped (x -> W - 1 - x in
keyhead's pixel-centre convention, and left/right keypoints swapped back) and the two are averaged. Heads never
know: this works on the decoded :class:`~keyhead.types.Keypoints` of every head.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from keyhead.data.formats.ibug68 import IBUG68_FLIP_PAIRS, IBUG68_NAMES
from keyhead.errors import KeyheadError
from keyhead.types import Keypoints, flip_permutation

log = logging.getLogger("keyhead")

FLIP_PAIRS_FILE = "flip_pairs.json"


def unflip_keypoints(kp: Keypoints, width: int, flip_pairs: Sequence[tuple[int, int]]) -> Keypoints:
    """Map keypoints predicted on a horizontally flipped image back to the original image.

    Args:
        kp: xy (B, K, 2) in the flipped image's input pixels, confidence (B, K).
        width: W of the image in pixels (a pixel-centre x maps to W - 1 - x).
        flip_pairs: left/right index pairs.

    Returns:
        Keypoints in the original image's input pixels, in the original keypoint order.
    """
    perm = torch.as_tensor(flip_permutation(kp.xy.shape[1], flip_pairs), device=kp.xy.device)
    xy = kp.xy[:, perm].clone()
    xy[..., 0] = (width - 1) - xy[..., 0]
    return Keypoints(xy, kp.confidence[:, perm])


def average_keypoints(a: Keypoints, b: Keypoints) -> Keypoints:
    """Mean of two predictions of the same keypoints; where one is missing (NaN) the other is kept."""
    ok_a = torch.isfinite(a.xy).all(-1)
    ok_b = torch.isfinite(b.xy).all(-1)
    both = (ok_a & ok_b)[..., None]
    xy = torch.where(both, (a.xy + b.xy) / 2, torch.where(ok_a[..., None], a.xy, b.xy))
    conf = torch.where(ok_a & ok_b, (a.confidence + b.confidence) / 2, torch.where(ok_a, a.confidence, b.confidence))
    return Keypoints(xy, conf)


def flip_predict(model: torch.nn.Module, images: torch.Tensor, flip_pairs: Sequence[tuple[int, int]]) -> Keypoints:
    """Predict with horizontal-flip test-time augmentation.

    Args:
        model: a :class:`~keyhead.models.model.KeypointModel` (anything with ``predict(x) -> Keypoints``).
        images: (B, C, H, W) images (or frame windows (B, T, C, H, W)) in [0, 1]; flipped along W.
        flip_pairs: left/right keypoint index pairs (e.g. :data:`keyhead.data.formats.IBUG68_FLIP_PAIRS`);
            empty for keypoints that have no side.

    Returns:
        Keypoints: xy (B, K, 2) in input pixels, the mean of the direct and the un-flipped prediction;
        confidence (B, K) their mean (of the raw confidences, then the model's calibration if it has one: the
        order evaluation uses).

    Example:
        >>> from keyhead.models.model import create_model
        >>> m = create_model(num_keypoints=2, backbone="tiny", input_size=(64, 64))
        >>> flip_predict(m, torch.rand(1, 3, 64, 64), [(0, 1)]).xy.shape
        torch.Size([1, 2, 2])
    """
    cal = getattr(model, "calibration", None)
    if cal is not None:
        model.calibration = None
    try:
        direct = model.predict(images)
        mirrored = model.predict(torch.flip(images, dims=(-1,)))
    finally:
        if cal is not None:
            model.calibration = cal
    kp = average_keypoints(direct, unflip_keypoints(mirrored, images.shape[-1], flip_pairs))
    return kp if cal is None else Keypoints(kp.xy, cal(kp.confidence))


def save_flip_pairs(run_dir: str | os.PathLike, names: Sequence[str], flip_pairs: Sequence[tuple[int, int]]) -> None:
    """Record a run's left/right pairs (by name) so prediction can flip without reading the training labels."""
    from keyhead.io.atomic import atomic_write

    with atomic_write(Path(run_dir) / FLIP_PAIRS_FILE) as f:
        json.dump([[names[a], names[b]] for a, b in flip_pairs], f)


def run_flip_pairs(
    run_dir: str | os.PathLike, names: Sequence[str], config_pairs: Sequence[Sequence[str]] = ()
) -> list[tuple[int, int]]:
    """The left/right index pairs of a trained run, in its keypoint order.

    From the run's ``flip_pairs.json`` (written by training), else the config's ``data.flip_pairs``, else the
    iBUG pairs for a 68-point model. Without any, flipping treats every keypoint as unsided (logged).

    Args:
        run_dir: the run folder.
        names: the model's K keypoint names.
        config_pairs: the run config's ``data.flip_pairs`` (name pairs).

    Returns:
        Index pairs (a, b).
    """
    lookup = {n: i for i, n in enumerate(names)}
    path = Path(run_dir) / FLIP_PAIRS_FILE
    pairs = json.loads(path.read_text()) if path.is_file() else [list(p) for p in config_pairs]
    out = []
    for pair in pairs:
        if len(pair) != 2 or any(n not in lookup for n in pair):
            raise KeyheadError(f"{path}: flip pair {pair} does not name two of the model's keypoints; fix or delete it")
        out.append((lookup[pair[0]], lookup[pair[1]]))
    if not out and len(names) == len(IBUG68_NAMES):
        out = list(IBUG68_FLIP_PAIRS)
    if not out:
        log.warning("flip test-time augmentation without left/right pairs: every keypoint is taken as unsided")
    return sorted(set(out))
