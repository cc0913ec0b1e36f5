"""Synthetic labelled keypoint projects: keyhead's embedded default dataset.

``generate`` renders one seeded, deterministic recording session in the Lightning Pose / DeepLabCut layout::

    out_dir/
      CollectedData.csv                labels of the labelled frames (3 header rows, scorer ``synth``); NaN = occluded
      labeled-data/img0042.png         labelled frames, lossless; the number is the frame's index in the video
      videos/synth_vid.mp4             every frame (libx264 yuv420p, else mpeg4, else OpenCV mp4v)
      videos/synth_vid_keypoints.csv   true keypoints of every video frame (see below)
      keyhead_synth.yaml               metadata: kind, seed, sizes, names, skeleton, flip pairs, generator version

``synth_vid_keypoints.csv`` uses DeepLabCut's video-prediction layout (coords ``x, y, likelihood``; the index column
is the frame number, as ``read_dlc_predictions`` reads it). It gives the true position of every keypoint in every
frame, occluded ones included; ``likelihood`` is 1.0 where the keypoint is visible and 0.0 where an occluder hides it.

A session has one procedurally textured background (different per seed) under slowly drifting light, one subject
moving smoothly (global rotation, scale and translation, articulated joints), moving textured occluders, smooth
brightness / contrast / focus changes and sensor noise. The labelled frames are a seeded, spread-out subset of the
video frames, rendered by the same code. Shapes are rasterised at 4x and area-averaged, so labels sit on the rendered
geometry to about 0.1 px (pixel centres at integer (x, y)).

Kinds: ``animal``, a mouse seen from above (11 keypoints, trotting gait, wagging tail), and ``face``, a parametric
face with the 68 iBUG landmarks (expressions, blinks, head roll and an approximate yaw / pitch).

Several animals (``animals=N``, N >= 2): N mice of one strain in the arena, each slightly tinted and sized, crossing
and walking over each other every few seconds; who is on top changes only while an animal touches nobody. The layout
is the same, but both CSVs are multi-animal DeepLabCut tables (4 header rows scorer / individuals / bodyparts /
coords; individuals ``animal0`` .. ``animal{N-1}``, one identity per animal for the whole video). Keypoints covered by
another animal stay labelled in ``CollectedData.csv`` (occluders still give NaN); in ``synth_vid_keypoints.csv`` their
``likelihood`` is 0.0 like an occluded one. ``keyhead_synth.yaml`` adds ``animals`` and ``individuals``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import yaml
from tqdm.auto import tqdm

from keyhead.data._synth_herd import Herd, max_animals
from keyhead.data._synth_subjects import Animal, Face, Ops, Subject, rot, signal
from keyhead.data.formats.dlc import write_dlc_csv
from keyhead.data.formats.dlc_multi import write_dlc_multi_csv
from keyhead.errors import KeyheadError
from keyhead.types import InstanceFrames, LabeledFrames

__all__ = ["SynthInfo", "generate"]

GENERATOR_VERSION = 1
VIDEO_NAME = "synth_vid"
_SS = 4  # supersampling factor of the rasteriser
_OUTPUTS = ("CollectedData.csv", "labeled-data", "videos", "keyhead_synth.yaml")


@dataclass(frozen=True)
class SynthInfo:
    """What ``generate`` wrote.

    Attributes:
        out_dir: the project folder.
        csv: ``CollectedData.csv``, the labels of the labelled frames.
        video: ``videos/synth_vid.mp4``.
        trajectory: ``videos/synth_vid_keypoints.csv``, the true keypoints of every video frame.
        keypoint_names: K names.
        skeleton: pairs of keypoint names.
        flip_pairs: pairs of keypoint indices swapped by a horizontal flip.
        n_labeled: number of labelled frames.
        frame_indices: video frame index of each labelled frame, in CSV row order.
        kind: ``animal`` or ``face``.
        animals: number of animals N; from 2 on both CSVs are multi-animal tables.
    """

    out_dir: Path
    csv: Path
    video: Path
    trajectory: Path
    keypoint_names: list[str]
    skeleton: list[tuple[str, str]]
    flip_pairs: list[tuple[int, int]]
    n_labeled: int
    frame_indices: list[int]
    kind: str
    animals: int = 1


def _box(pts: np.ndarray, h: int, w: int) -> tuple[int, int, int, int] | None:
    x0, y0 = np.maximum(np.floor(pts.min(0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(pts.max(0)).astype(int) + 2, (w, h))
    return None if x0 >= x1 or y0 >= y1 else (x0, y0, x1, y1)


def _raster(img: np.ndarray, ops: Ops) -> None:
    """Fill the polygons ``ops`` on img (H, W, C) uint8 in place, supersampled 4x and area-averaged.

    Pixels no polygon reaches are left exactly as they were (nearest upsampling then area downsampling).
    """
    box = _box(np.concatenate([p for p, _ in ops]), *img.shape[:2])
    if box is None:
        return
    x0, y0, x1, y1 = box
    big = cv2.resize(img[y0:y1, x0:x1], None, fx=_SS, fy=_SS, interpolation=cv2.INTER_NEAREST)
    for p, colour in ops:
        q = np.round(((p - (x0, y0) + 0.5) * _SS - 0.5) * 16).astype(np.int32)
        cv2.fillPoly(big, [q], colour, cv2.LINE_8, shift=4)
    img[y0:y1, x0:x1] = cv2.resize(big, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)


def _value_noise(rng: np.random.Generator, h: int, w: int, octaves: int, cells: int) -> np.ndarray:
    """Multi-octave value noise (h, w) float32 in about [0, 1]."""
    acc, total = np.zeros((h, w), np.float32), 0.0
    for o in range(octaves):
        n = cells * 2**o + 1
        amp = 0.55**o
        acc += amp * cv2.resize(rng.random((n, n), dtype=np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
    return acc / total


def _background(rng: np.random.Generator, h: int, w: int, tone: float) -> np.ndarray:
    """A floor-like texture (h, w, 3) uint8 of mean brightness about ``tone``: noise, gradient, blobs, lines."""
    c1 = tone * rng.uniform(0.85, 1.15, 3)
    c2 = c1 * rng.uniform(0.55, 0.85)
    img = c1 + (c2 - c1) * _value_noise(rng, h, w, 6, int(rng.integers(1, 4)))[..., None]
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w) - 0.5
    a = rng.uniform(0, 2 * np.pi)
    img *= (1 + rng.uniform(0.1, 0.4) * (xx * np.cos(a) + yy * np.sin(a)))[..., None]
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(3, 8)):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(2, w // 5 + 3)), int(rng.integers(2, h // 5 + 3)))
        colour = (c1 * rng.uniform(0.6, 1.3)).clip(0, 255).tolist()
        cv2.ellipse(img, centre, axes, rng.uniform(0, 180), 0, 360, colour, -1, cv2.LINE_AA)
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(1.0, 3.0))
    for _ in range(rng.integers(2, 8)):
        p1, p2 = rng.uniform(-0.2, 1.2, (2, 2)) * (w, h)
        colour = (c1 * rng.uniform(0.4, 1.4)).clip(0, 255).tolist()
        thickness = int(rng.integers(1, 4))
        cv2.line(img, tuple(int(v) for v in p1), tuple(int(v) for v in p2), colour, thickness, cv2.LINE_AA)
    grain = cv2.GaussianBlur(rng.normal(0, tone * 0.05, (h, w)).astype(np.float32), (0, 0), 0.7)  # floor texture
    return np.clip(img + grain[..., None], 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------------------- scene
class _Occluders:
    """Textured blobs drifting across the frame, sized so that about ``occlusion`` of the labelled keypoints are
    hidden. Each shape is star-shaped about its centre, so a keypoint is covered iff its "critical scale" (the
    shape scale that puts it on the outline) is below the shared scale: the scale is a quantile of those values."""

    _M = 20  # outline vertices

    def __init__(self, rng: np.random.Generator, t: np.ndarray, h: int, w: int, keypoints: np.ndarray,
                 rows: np.ndarray, occlusion: float) -> None:  # fmt: skip
        n = 0 if occlusion <= 0 else int(rng.integers(2, 4))
        theta = 2 * np.pi * np.arange(self._M) / self._M
        self.r0 = 0.14 * min(h, w)
        self.shapes = []
        ratio = np.full(keypoints.shape[:2], np.inf)
        yy, xx = (np.mgrid[0:48, 0:48] - 23.5) / 23.5 * 1.35
        for _ in range(n):
            k = np.arange(2, 5)[:, None]
            radii = 1 + (rng.uniform(0, 0.15, (3, 1)) * np.cos(k * theta + rng.uniform(0, 6.3, (3, 1)))).sum(0)
            verts = radii[:, None] * np.stack([np.cos(theta), np.sin(theta)], 1)
            aspect = np.exp(rng.uniform(-0.7, 0.7)) ** np.array([0.5, -0.5])
            angle = rng.uniform(0, 2 * np.pi) + 0.8 * signal(rng, t, 0.02, 0.2)
            centre = np.stack([(0.5 + 0.6 * signal(rng, t, 0.03, 0.15)) * s for s in (w, h)], 1)
            colour = rng.uniform(40, 200) * rng.uniform(0.75, 1.25, 3)
            shade = 1 - 0.35 * (xx**2 + yy**2) / 1.35**2
            tex = colour * (0.6 + 0.6 * _value_noise(rng, 48, 48, 4, 2) * shade)[..., None]
            if rng.random() < 0.5:
                tex *= (1 + 0.2 * np.sin(rng.uniform(6, 14) * (xx + rng.uniform(-1, 1) * yy)))[..., None]
            self.shapes.append((verts, aspect, angle, centre, np.clip(tex, 0, 255).astype(np.uint8)))
            ratio = np.minimum(ratio, self._critical_scale(keypoints, verts, aspect, angle, centre))
        self.s = min(float(np.quantile(ratio[rows], occlusion)), 2.2) if n else 0.0
        self.covers = ratio < self.s

    def _critical_scale(self, pts: np.ndarray, verts: np.ndarray, aspect: np.ndarray, angle: np.ndarray,
                        centre: np.ndarray) -> np.ndarray:  # fmt: skip
        """(T, K): the shape scale at which points pts (T, K, 2) lie on the outline."""
        d = pts - centre[:, None]
        c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
        lx, ly = (c * d[..., 0] + s * d[..., 1]) / aspect[0], (c * d[..., 1] - s * d[..., 0]) / aspect[1]
        phi = np.mod(np.arctan2(ly, lx), 2 * np.pi)
        idx = np.floor(phi / (2 * np.pi / self._M)).astype(int) % self._M
        v0, v1 = verts[idx], verts[(idx + 1) % self._M]
        e = v1 - v0
        lam = (v0[..., 0] * v1[..., 1] - v0[..., 1] * v1[..., 0]) / (np.cos(phi) * e[..., 1] - np.sin(phi) * e[..., 0])
        return np.hypot(lx, ly) / (lam * self.r0)

    def draw(self, img: np.ndarray, i: int) -> None:
        h, w = img.shape[:2]
        for verts, aspect, angle, centre, tex in self.shapes:
            a = rot(angle[i]) * aspect * (self.s * self.r0)  # local outline units -> image pixels
            poly = verts @ a.T + centre[i]
            box = _box(poly, h, w)
            if box is None:
                continue
            x0, y0, x1, y1 = box
            alpha = np.zeros((y1 - y0, x1 - x0), np.uint8)
            _raster(alpha, [(poly - (x0, y0), (255,))])
            m = a * (1.35 / 23.5)
            m = np.concatenate([m, (centre[i] - (x0, y0) - m @ (23.5, 23.5))[:, None]], 1)
            warped = cv2.warpAffine(tex, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            roi = img[y0:y1, x0:x1].astype(np.float32)
            img[y0:y1, x0:x1] = (roi + (warped - roi) * (alpha[..., None] / np.float32(255)) + 0.5).astype(np.uint8)


class _Scene:
    """Everything about one session; ``render(i)`` draws video frame i (H, W, 3) BGR uint8.

    ``keypoints`` (T, N, K, 2) are the N subjects' true keypoints, ``visible`` (T, N, K) says which are inside the
    image and not under an occluder, ``hidden`` (T, N, K) which lie under another animal (drawn above them).
    """

    def __init__(self, kind: str, seed: int, h: int, w: int, n_frames: int, fps: float, occlusion: float,
                 rows: np.ndarray, animals: int = 1) -> None:  # fmt: skip
        rng = np.random.default_rng([seed, ("animal", "face").index(kind), *([animals] if animals > 1 else [])])
        t = np.arange(n_frames) / fps
        self.seed, self.h, self.w = seed, h, w
        if animals > 1:
            herd = Herd(rng, t, h, w, fps, animals)
            self.subjects: list[Subject] = list(herd.animals)
            self.order, self.hidden = herd.order, herd.hidden
        else:
            self.subjects = [Animal(rng, t, h, w, fps) if kind == "animal" else Face(rng, t, h, w)]
            self.order = np.zeros((n_frames, 1), np.int64)
            self.hidden = np.zeros((n_frames, 1, len(self.subjects[0].names)), bool)
        self.subject = self.subjects[0]
        self.background = _background(rng, h, w, self.subject.tone)
        self.keypoints = np.stack([s.keypoints for s in self.subjects], 1)
        self.occluders = _Occluders(rng, t, h, w, self.keypoints.reshape(n_frames, -1, 2), rows, occlusion)
        inside = np.all((self.keypoints >= 0) & (self.keypoints <= (w - 1, h - 1)), axis=-1)
        self.visible = inside & ~self.occluders.covers.reshape(inside.shape)
        a = rng.uniform(0, 2 * np.pi)
        self.light = np.array([np.cos(a), np.sin(a)])
        self.gain = 1 + 0.08 * signal(rng, t, 0.02, 0.15)
        self.tilt = 0.15 * signal(rng, t, 0.02, 0.15)
        self.tilt_dir = rng.uniform(0, 2 * np.pi) + 0.8 * signal(rng, t, 0.02, 0.1)
        self.contrast = 1 + 0.12 * signal(rng, t, 0.03, 0.2)
        self.brightness = 10 * signal(rng, t, 0.03, 0.2)
        self.blur = 0.75 + 0.2 * signal(rng, t, 0.05, 0.5)
        self.noise = rng.uniform(1.5, 4.0) * rng.standard_normal((2 * h, 2 * w, 3), dtype=np.float32)
        self.yy, self.xx = np.mgrid[0:h, 0:w].astype(np.float32) / max(h, w) - 0.5

    def render(self, i: int) -> np.ndarray:
        img = self.background.copy()
        for j in self.order[i]:
            _raster(img, self.subjects[j].ops(i, self.light))
        self.occluders.draw(img, i)
        tilt = self.tilt[i] * (self.xx * np.cos(self.tilt_dir[i]) + self.yy * np.sin(self.tilt_dir[i]))
        f = img.astype(np.float32) * (self.gain[i] * self.contrast[i] * (1 + tilt))[..., None]
        f += 128 * (1 - self.contrast[i]) + self.brightness[i] + 0.5
        img = cv2.GaussianBlur(np.clip(f, 0, 255, out=f).astype(np.uint8), (0, 0), self.blur[i])
        # sensor noise: a fresh random window of a noise field twice the frame size, cheaper than new samples
        dy, dx = np.random.default_rng([self.seed, 7, i]).integers(0, (self.h, self.w))
        f = img + self.noise[dy : dy + self.h, dx : dx + self.w] + np.float32(0.5)
        return np.clip(f, 0, 255, out=f).astype(np.uint8)


# ------------------------------------------------------------------------------------------------------------ output
class _VideoWriter:
    """MP4 writer: PyAV with libx264 (yuv420p), else PyAV mpeg4, else OpenCV's mp4v."""

    def __init__(self, path: Path, h: int, w: int, fps: float) -> None:
        self.codec, self._cv = "mp4v", None
        try:
            import av
        except ImportError:
            av = None
        for name in ("libx264", "mpeg4") if av is not None else ():
            try:
                av.codec.Codec(name, "w")
            except av.codec.codec.UnknownCodecError:
                continue
            self.codec, self._av = name, av
            self._container = av.open(str(path), mode="w")
            self._stream = self._container.add_stream(name, rate=Fraction(fps).limit_denominator(1001))
            self._stream.width, self._stream.height, self._stream.pix_fmt = w, h, "yuv420p"
            if name == "libx264":
                self._stream.options = {"crf": "16", "preset": "veryfast"}
            else:
                self._stream.bit_rate = int(w * h * fps * 2)
            return
        self._cv = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not self._cv.isOpened():
            raise KeyheadError(f"{path}: no MP4 encoder works here (tried PyAV libx264, mpeg4, OpenCV mp4v)")

    def write(self, frame: np.ndarray) -> None:
        """Append frame (H, W, 3) BGR uint8."""
        if self._cv is not None:
            self._cv.write(frame)
            return
        for packet in self._stream.encode(self._av.VideoFrame.from_ndarray(frame, format="bgr24")):
            self._container.mux(packet)

    def close(self) -> None:
        if self._cv is not None:
            self._cv.release()
            return
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()


def _track_names(n: int) -> list[str]:
    return [f"animal{i}" for i in range(n)]


def _check_animals(animals: int, kind: str, h: int, w: int) -> None:
    if isinstance(animals, bool) or not isinstance(animals, (int, np.integer)) or animals < 1:
        raise KeyheadError(f"animals={animals!r}: give a whole number of animals, 1 or more")
    if animals > 1 and kind != "animal":
        raise KeyheadError(f"animals={animals} needs kind='animal'; the {kind} kind has one subject per video")
    most = max_animals(h, w)
    if animals > most:
        raise KeyheadError(
            f"animals={animals}: at most {most} fit a {h}x{w} frame; use fewer animals or a larger image_size"
        )


def _write_instances(tmp: Path, scene: _Scene, rows: np.ndarray, image_paths: list[str],
                     skeleton: list[tuple[str, str]], flips: list[tuple[int, int]], source: str) -> None:  # fmt: skip
    """Write a several-animal scene's ``CollectedData.csv`` and ``videos/synth_vid_keypoints.csv`` into tmp.

    Labels are NaN where outside the image or under an occluder, labelled (visibility 1) under another animal;
    the video table's likelihood is 1.0 where a keypoint is seen, else 0.0.
    """
    n_frames, n = scene.keypoints.shape[:2]
    names, tracks = list(scene.subject.names), np.arange(n)
    visibility = np.where(scene.visible, np.where(scene.hidden, 1, 2), 0).astype(np.int8)
    labels = InstanceFrames(
        root=tmp,
        image_paths=image_paths,
        keypoints=np.where(scene.visible[..., None], scene.keypoints, np.nan)[rows],
        keypoint_names=names,
        track_names=_track_names(n),
        tracks=np.broadcast_to(tracks, (len(rows), n)),
        visibility=visibility[rows],
        skeleton=skeleton,
        flip_pairs=flips,
        frame_indices=rows,
        source=source,
    )
    write_dlc_multi_csv(labels, tmp / "CollectedData.csv", scorer="synth")
    every = InstanceFrames(
        root=tmp,
        image_paths=[str(i) for i in range(n_frames)],
        keypoints=scene.keypoints,
        keypoint_names=names,
        track_names=_track_names(n),
        tracks=np.broadcast_to(tracks, (n_frames, n)),
        visibility=visibility,
        frame_indices=np.arange(n_frames),
    )
    seen = (scene.visible & ~scene.hidden).astype(np.float32)
    write_dlc_multi_csv(every, tmp / "videos" / f"{VIDEO_NAME}_keypoints.csv", scorer="synth", likelihood=seen)


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Accept a new or empty folder or a previous synthetic dataset (it has ``keyhead_synth.yaml``); else refuse
    unless ``overwrite``."""
    if out_dir.exists() and not out_dir.is_dir():
        raise KeyheadError(f"{out_dir} is a file; give generate() a folder")
    entries = sorted(p.name for p in out_dir.iterdir()) if out_dir.is_dir() else []
    if entries and "keyhead_synth.yaml" not in entries and not overwrite:
        raise KeyheadError(
            f"{out_dir} is not empty and not a synthetic dataset (it holds {', '.join(entries[:3])}...); choose an "
            "empty or new folder, or pass overwrite=True to replace the dataset's files there (others are kept)"
        )


def _install(tmp: Path, out_dir: Path) -> None:
    """Move the finished dataset in ``tmp`` to ``out_dir``, replacing a previous one; other files in it are kept."""
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    try:
        for name in ("labeled-data", "CollectedData.csv", "videos", "keyhead_synth.yaml"):
            src, dst = tmp / name, out_dir / name
            if name == "videos" and dst.is_dir():
                for f in src.iterdir():
                    os.replace(f, dst / f.name)
                continue
            if dst.exists():
                os.replace(dst, trash / name)
            os.replace(src, dst)
    finally:
        shutil.rmtree(trash, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


def generate(
    out_dir: str | os.PathLike,
    kind: Literal["animal", "face"] = "animal",
    n_labeled: int = 200,
    image_size: tuple[int, int] = (256, 256),
    video_frames: int = 600,
    fps: float = 30.0,
    seed: int = 0,
    occlusion: float = 0.15,
    progress: bool = True,
    overwrite: bool = False,
    animals: int = 1,
) -> SynthInfo:
    """Render a synthetic labelled project (labelled frames, their CSV, the session's video and its true keypoints).

    The same arguments always give the same labels and pixels. The dataset is built in a temporary folder beside
    ``out_dir`` and moved into place when complete; a previous synthetic dataset there is replaced.

    Args:
        out_dir: project folder to write; new, empty, or a previous synthetic dataset.
        kind: ``"animal"`` (mouse from above, 11 keypoints) or ``"face"`` (68 iBUG landmarks).
        n_labeled: number of labelled frames, a seeded spread-out subset of the video frames.
        image_size: (height, width) in pixels, even numbers of at least 48.
        video_frames: number of video frames T.
        fps: video frame rate; motion is defined in seconds, so a higher rate gives smaller steps.
        seed: random seed.
        occlusion: target fraction of labelled keypoints hidden by occluders (NaN in the CSV), in [0, 0.6].
        progress: show a progress bar.
        overwrite: also write into a non-empty folder that is not a synthetic dataset: its ``CollectedData.csv``,
            ``labeled-data/``, ``videos/synth_vid*`` and ``keyhead_synth.yaml`` are replaced, other files kept.
        animals: number of mice N in the arena (``kind="animal"`` only). From 2 on they are one strain with a
            slight per-animal tint and size, smaller than a lone one, cross and cover each other, and both CSVs are
            multi-animal DeepLabCut tables with individuals ``animal0`` .. ``animal{N-1}`` (see the module docstring).

    Returns:
        What was written.

    Example:
        >>> info = generate("/tmp/synth_doc", n_labeled=4, image_size=(64, 64), video_frames=8, progress=False,
        ...                 overwrite=True)
        >>> info.csv.name, len(info.keypoint_names)
        ('CollectedData.csv', 11)
    """
    out_dir = Path(out_dir)
    h, w = image_size
    if kind not in ("animal", "face"):
        raise KeyheadError(f"kind={kind!r}: use 'animal' or 'face'")
    if h < 48 or w < 48 or h % 2 or w % 2:
        raise KeyheadError(f"image_size={image_size}: use even (height, width) of at least 48 pixels (MP4 needs even)")
    if not 1 <= n_labeled <= video_frames:
        raise KeyheadError(f"n_labeled={n_labeled} must be in [1, video_frames={video_frames}]; raise video_frames")
    if not 0 <= occlusion <= 0.6 or fps <= 0 or seed < 0:
        raise KeyheadError(f"occlusion={occlusion} must be in [0, 0.6], fps={fps} positive and seed={seed} >= 0")
    _check_animals(animals, kind, h, w)
    _check_out_dir(out_dir, overwrite)

    rng = np.random.default_rng([seed, 99])
    edges = np.floor(np.linspace(0, video_frames, n_labeled + 1)).astype(int)
    rows = edges[:-1] + rng.integers(0, np.diff(edges))
    scene = _Scene(kind, seed, h, w, video_frames, fps, occlusion, rows, animals)
    digits = max(4, len(str(video_frames - 1)))
    image_paths = [f"labeled-data/img{i:0{digits}d}.png" for i in rows]
    names, flips = list(scene.subject.names), [tuple(p) for p in scene.subject.flip_pairs]
    skeleton = [tuple(p) for p in scene.subject.skeleton]

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.synth-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()  # not mkdtemp: the folder becomes out_dir, so it keeps the umask's permissions, not 0700
    try:
        (tmp / "labeled-data").mkdir()
        (tmp / "videos").mkdir()
        writer = _VideoWriter(tmp / "videos" / f"{VIDEO_NAME}.mp4", h, w, fps)
        labelled = dict(zip(rows.tolist(), image_paths, strict=True))
        try:
            for i in tqdm(range(video_frames), desc=f"synth {kind}", unit="frame", disable=not progress):
                frame = scene.render(i)
                writer.write(frame)
                if i in labelled and not cv2.imwrite(str(tmp / labelled[i]), frame):
                    raise KeyheadError(f"could not write {tmp / labelled[i]}")
        finally:
            writer.close()
        kps = np.where(scene.visible[..., None], scene.keypoints, np.nan)[rows]
        if animals == 1:
            frames = LabeledFrames(
                tmp, image_paths, kps[:, 0], names, skeleton=skeleton, flip_pairs=flips, source=str(out_dir)
            )
            write_dlc_csv(frames, tmp / "CollectedData.csv", scorer="synth")
            every = LabeledFrames(tmp, [str(i) for i in range(video_frames)], scene.keypoints[:, 0], names)
            visible = scene.visible[:, 0].astype(np.float32)
            write_dlc_csv(every, tmp / "videos" / f"{VIDEO_NAME}_keypoints.csv", "synth", visible)
        else:
            _write_instances(tmp, scene, rows, image_paths, skeleton, flips, str(out_dir))
        meta = {
            "generator": "keyhead.data.synth",
            "version": GENERATOR_VERSION,
            "kind": kind,
            **({"animals": animals, "individuals": _track_names(animals)} if animals > 1 else {}),
            "seed": int(seed),
            "image_size": [h, w],
            "n_labeled": n_labeled,
            "video_frames": video_frames,
            "fps": float(fps),
            "occlusion": float(occlusion),
            "labelled_missing_fraction": round(float(np.isnan(kps[..., 0]).mean()), 4),
            "video_codec": writer.codec,
            "keypoint_names": names,
            "skeleton": [list(p) for p in skeleton],
            "flip_pairs": [[names[a], names[b]] for a, b in flips],
            "labelled_frame_indices": rows.tolist(),
        }
        (tmp / "keyhead_synth.yaml").write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
        _install(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SynthInfo(
        out_dir=out_dir,
        csv=out_dir / "CollectedData.csv",
        video=out_dir / "videos" / f"{VIDEO_NAME}.mp4",
        trajectory=out_dir / "videos" / f"{VIDEO_NAME}_keypoints.csv",
        keypoint_names=names,
        skeleton=skeleton,
        flip_pairs=flips,
        n_labeled=n_labeled,
        frame_indices=rows.tolist(),
        kind=kind,
        animals=animals,
    )
