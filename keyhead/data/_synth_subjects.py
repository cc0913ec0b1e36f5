"""Subjects of the synthetic datasets (``keyhead.data.synth``): a mouse seen from above and a parametric face.

A subject holds smooth per-frame pose parameters for a whole video; ``Subject.ops(i, light)`` returns frame i as filled
polygons in image pixels (x, y), and ``Subject.keypoints`` (T, K, 2) the labels, computed from the same geometry.
"""

from __future__ import annotations

import numpy as np

from keyhead.data.formats.ibug68 import IBUG68_FLIP_PAIRS, IBUG68_NAMES, IBUG68_SKELETON
from keyhead.errors import KeyheadError

Ops = list[tuple[np.ndarray, tuple[float, ...]]]  # filled polygons: ((N, 2) (x, y) pixels, BGR colour)


def signal(rng: np.random.Generator, t: np.ndarray, lo: float, hi: float, n: int = 4) -> np.ndarray:
    """A smooth random signal in [-1, 1] over times t (T,) in seconds: n sinusoids with frequencies in [lo, hi] Hz."""
    f, ph, a = rng.uniform(lo, hi, n), rng.uniform(0, 2 * np.pi, n), rng.uniform(0.5, 1.0, n)
    return (a[:, None] * np.sin(2 * np.pi * f[:, None] * t[None] + ph[:, None])).sum(0) / a.sum()


def rot(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s], [s, c]])


def ellipse(centre: np.ndarray, ax: float, ay: float, angle: float = 0.0, n: int = 28) -> np.ndarray:
    u = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([ax * np.cos(u), ay * np.sin(u)], 1) @ rot(angle).T + centre


def spline(p: np.ndarray, closed: bool = False, n: int = 5) -> np.ndarray:
    """Catmull-Rom curve through the points p (N, 2), n samples per segment; it passes through every point."""
    q = np.concatenate([p[-1:], p, p[:2]]) if closed else np.concatenate([p[:1], p, p[-1:]])
    p0, p1, p2, p3 = (q[i : len(q) - 3 + i, None] for i in range(4))
    s = (np.arange(n) / n)[None, :, None]
    c = 2 * p1 + (p2 - p0) * s + (2 * p0 - 5 * p1 + 4 * p2 - p3) * s**2 + (3 * p1 - p0 - 3 * p2 + p3) * s**3
    out = 0.5 * c.reshape(-1, 2)
    return out if closed else np.concatenate([out, p[-1:]])


def stroke(p: np.ndarray, w0: float, w1: float) -> np.ndarray:
    """Polygon of a stroke along the polyline p (N, 2) whose width tapers linearly from w0 to w1."""
    d = np.gradient(p, axis=0)
    nrm = np.stack([-d[:, 1], d[:, 0]], 1) / (np.linalg.norm(d, axis=1, keepdims=True) + 1e-9)
    half = np.linspace(w0, w1, len(p))[:, None] / 2
    return np.concatenate([p + nrm * half, (p - nrm * half)[::-1]])


def shaded(polys: list[np.ndarray], colour: np.ndarray, light: np.ndarray, layers: int = 8) -> Ops:
    """Nested, brightening copies of polygons (image pixels) that fake a lit, rounded surface; layer-major order so
    overlapping parts of one body shade as one."""
    ops = []
    for j in range(layers):
        f = j / layers
        for p in polys:
            c = p.mean(0)
            r = np.linalg.norm(p - c, axis=1).mean()
            q = c + (p - c) * (1 - 0.7 * f) + light * (0.4 * r * f)
            ops.append((q, tuple(min(255.0, v * (0.75 + 0.45 * f)) for v in colour.tolist())))
    return ops


# ---------------------------------------------------------------------------------------------------------- subjects
class Subject:
    """A subject: ``_pose`` gives frame i's local geometry, ``_to_image`` maps local points to image pixels."""

    names: list[str]
    skeleton: list[tuple[str, str]]
    flip_pairs: list[tuple[int, int]]
    keypoints: np.ndarray  # (T, K, 2) image (x, y)
    tone: float  # background brightness that contrasts with the subject

    def _pose(self, i: int) -> tuple[np.ndarray, list[tuple[str, list[np.ndarray], np.ndarray]]]:
        """(keypoints (K, 2) local, parts [("shade" | "flat", polygons (N, 2) local, BGR colour)])."""
        raise NotImplementedError

    def _to_image(self, p: np.ndarray, i: int) -> np.ndarray:
        raise NotImplementedError

    def ops(self, i: int, light: np.ndarray) -> Ops:
        out: Ops = []
        for how, polys, colour in self._pose(i)[1]:
            img_polys = [self._to_image(p, i) for p in polys]
            if how == "shade":
                out += shaded(img_polys, colour, light)
            else:
                out += [(p, tuple(colour.tolist())) for p in img_polys]
        return out


class Animal(Subject):
    """A mouse seen from above; local units: half a body length, x forward, y to the animal's right."""

    names = [
        "nose", "left_ear", "right_ear", "neck", "left_forepaw", "right_forepaw",
        "left_hindpaw", "right_hindpaw", "tail_base", "tail_mid", "tail_tip",
    ]  # fmt: skip
    skeleton = [
        ("nose", "left_ear"), ("nose", "right_ear"), ("left_ear", "neck"), ("right_ear", "neck"),
        ("neck", "left_forepaw"), ("neck", "right_forepaw"), ("neck", "tail_base"), ("tail_base", "left_hindpaw"),
        ("tail_base", "right_hindpaw"), ("tail_base", "tail_mid"), ("tail_mid", "tail_tip"),
    ]  # fmt: skip
    flip_pairs = [(1, 2), (4, 5), (6, 7)]
    _pivot = np.array([-0.4, 0.0])

    reach = 2.4  # bound on a keypoint's or outline's distance from the pivot, local units

    def __init__(self, rng: np.random.Generator, t: np.ndarray, h: int, w: int, fps: float, size: float = 1.0,
                 track: tuple[np.ndarray, np.ndarray] | None = None) -> None:  # fmt: skip
        """Draw a mouse's look and motion.

        Args:
            rng: random generator.
            t: (T,) frame times in seconds.
            h: image height in pixels.
            w: image width in pixels.
            fps: frame rate.
            size: body size relative to the default (a tenth of the image side per local unit).
            track: optional given walk, pivot positions (T, 2) image (x, y) and headings (T,) radians; the gait
                then follows its speed. Default: a random walk that stays in the image.
        """
        dt = 1.0 / fps
        unit = 0.1 * min(h, w) * size
        coat = np.array([(35, 38, 45), (45, 62, 88), (75, 95, 118), (212, 218, 224)][rng.integers(0, 4)], float)
        self.tone = rng.uniform(50, 100) if coat[0] > 150 else rng.uniform(130, 205)
        self.coat = coat * rng.uniform(0.9, 1.1, 3)
        self.pink = np.array([165, 170, 222]) * rng.uniform(0.9, 1.05)
        self.scale = unit * (1 + 0.1 * signal(rng, t, 0.02, 0.1))
        run = np.clip(0.45 + 0.75 * signal(rng, t, 0.05, 0.4), 0, 1)
        self.gait = 2 * np.pi * np.cumsum((1.0 + 2.0 * run) * dt)
        self.stride = 0.04 + 0.2 * run
        self.bend = 0.3 * signal(rng, t, 0.1, 0.5)
        self.yaw = 0.45 * signal(rng, t, 0.2, 1.0)
        self.tail = np.stack([a * signal(rng, t, 0.1, 0.7) for a in (0.5, 0.6, 0.7)], 1)
        if track is not None:
            self.path, self.heading = track
            speed = np.linalg.norm(np.gradient(self.path, axis=0), axis=-1) * fps
            run = np.clip(speed / (2.5 * unit), 0, 1)
            self.gait = 2 * np.pi * np.cumsum((1.0 + 2.0 * run) * dt)
            self.stride = 0.04 + 0.2 * run
            self.keypoints = np.stack([self._to_image(self._pose(i)[0], i) for i in range(len(t))]).astype(np.float32)
            return
        local = np.stack([self._pose(i)[0] for i in range(len(t))])
        margin = np.linalg.norm(local - self._pivot, axis=-1).max() * self.scale.max() + 2
        lo, hi = np.array([margin, margin]), np.array([w - 1 - margin, h - 1 - margin])
        if np.any(hi <= lo):
            raise KeyheadError(f"image_size {(h, w)} is too small for the animal; use at least 48 x 48 pixels")
        centre, half = (lo + hi) / 2, (hi - lo) / 2
        pos, th = centre + half * rng.uniform(-0.5, 0.5, 2), rng.uniform(0, 2 * np.pi)
        turn, speed = 1.2 * signal(rng, t, 0.1, 0.6), 2.5 * unit * run
        path, heading = np.zeros((len(t), 2)), np.zeros(len(t))
        for i in range(len(t)):
            path[i], heading[i] = pos, th
            to_centre = centre - pos
            near = np.clip((np.abs(to_centre / half).max() - 0.6) / 0.4, 0, 1)  # steer away from the walls
            th += (turn[i] + 2.0 * near * np.sin(np.arctan2(to_centre[1], to_centre[0]) - th)) * dt
            pos = pos + speed[i] * dt * np.array([np.cos(th), np.sin(th)])
        reach = np.abs(path - centre).max(0)
        self.path = centre + (path - centre) * min(1.0, *(half / np.maximum(reach, 1e-9)))
        self.heading = heading
        self.keypoints = np.stack([self._to_image(local[i], i) for i in range(len(t))]).astype(np.float32)

    def _to_image(self, p: np.ndarray, i: int) -> np.ndarray:
        return (p - self._pivot) @ (self.scale[i] * rot(self.heading[i])).T + self.path[i]

    @staticmethod
    def _body(rb: np.ndarray) -> np.ndarray:
        """Outline of the trunk: an unbent rump (x < 0) and a chest rotated by the bend rb (2, 2)."""
        x = np.array([-0.85, -0.6, -0.3, 0.0, 0.3, 0.6, 0.8, 0.95])
        half = np.array([0.33, 0.5, 0.54, 0.5, 0.45, 0.38, 0.3, 0.22])
        side = np.stack([x, half], 1)
        side[x > 0] = side[x > 0] @ rb.T
        other = np.stack([x, -half], 1)
        other[x > 0] = other[x > 0] @ rb.T
        return spline(np.concatenate([[(-1.0, 0.0)], side, other[::-1]]), closed=True, n=4)

    def _pose(self, i: int) -> tuple[np.ndarray, list[tuple[str, list[np.ndarray], np.ndarray]]]:
        rb, yaw = rot(self.bend[i]), self.bend[i] + self.yaw[i]
        rh = rot(yaw)
        neck = rb @ (0.85, 0)
        nose = neck + rh @ (0.87, 0)
        ears = [neck + rh @ (0.14, s * 0.27) for s in (-1, 1)]
        g, a = self.gait[i], self.stride[i]
        fore_at = [rb @ (0.42, s * 0.36) for s in (-1, 1)]
        hind_at = [np.array((-0.5, s * 0.42)) for s in (-1, 1)]
        fore = [fore_at[j] + rb @ (a * np.sin(g + np.pi * j), s * 0.34) for j, s in enumerate((-1, 1))]
        hind = [hind_at[j] + np.array((a * np.sin(g + np.pi * (1 - j)), s * 0.36)) for j, s in enumerate((-1, 1))]
        ang = np.pi + np.cumsum(np.repeat(self.tail[i], 6) / 6)
        tail = np.concatenate(
            [[(-0.98, 0.0)], (-0.98, 0.0) + np.cumsum(0.1 * np.stack([np.cos(ang), np.sin(ang)], 1), 0)]
        )
        kps = np.stack([nose, *ears, neck, *fore, *hind, tail[0], tail[9], tail[18]])

        coat, pink = self.coat, self.pink
        u = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        head = np.stack([0.42 + 0.45 * np.cos(u), 0.27 * np.sin(u) * (1 - 0.45 * np.maximum(np.cos(u), 0) ** 2)], 1)
        ear_col = coat * 0.55 + pink * 0.12
        parts = [
            ("flat", [stroke(tail, 0.15, 0.04)], pink * 0.72 + coat * 0.2),
            ("flat", [stroke(tail[:-2], 0.06, 0.015)], pink * 0.85 + coat * 0.1),
            ("flat", [stroke(np.stack(pq), 0.13, 0.09) for pq in zip(fore_at + hind_at, fore + hind, strict=True)],
             coat * 0.8),
            ("shade", [ellipse(p, 0.1, 0.085, self.bend[i]) for p in fore + hind], pink),
            ("shade", [self._body(rb)], coat),
            ("shade", [neck + head @ rh.T], coat * 1.05),
            ("shade", [ellipse(e, 0.15, 0.12, yaw) for e in ears], ear_col),
            ("flat", [ellipse(e + rh @ (0.02, 0), 0.08, 0.06, yaw) for e in ears], ear_col * 0.6 + pink * 0.35),
            ("flat", [ellipse(neck + rh @ (0.52, s * 0.14), 0.045, 0.035, yaw, 12) for s in (-1, 1)], coat * 0.15),
            ("shade", [ellipse(neck + rh @ (0.82, 0), 0.055, 0.05, yaw, 16)], pink * 0.9),
        ]  # fmt: skip
        return kps, parts


class Face(Subject):
    """A frontal face with the 68 iBUG landmarks; local units: half the face width, y down, origin near the eyes."""

    names, skeleton, flip_pairs = IBUG68_NAMES, IBUG68_SKELETON, IBUG68_FLIP_PAIRS
    _shoulders = np.array([[-2.3, 3.2], [-2.1, 1.95], [-1.4, 1.5], [-0.5, 1.35], [0, 1.6], [0.5, 1.35], [1.4, 1.5],
                           [2.1, 1.95], [2.3, 3.2]])  # fmt: skip

    def __init__(self, rng: np.random.Generator, t: np.ndarray, h: int, w: int) -> None:
        dark = rng.uniform(0, 1)
        self.skin = np.array([185, 200, 235]) * (1 - 0.6 * dark) * rng.uniform(0.93, 1.07, 3)
        hair = [(25, 28, 32), (30, 50, 80), (60, 110, 160), (120, 120, 125)]
        self.hair = np.array(hair[rng.choice(4, p=[0.35, 0.35, 0.15, 0.15])], float) * rng.uniform(0.85, 1.15)
        self.shirt = rng.uniform(40, 200) * rng.uniform(0.7, 1.3, 3)
        self.lip = self.skin * np.array([0.72, 0.68, 0.98])
        self.iris = rng.uniform(20, 110, 3)
        self.tone = rng.uniform(60, 210)
        self.shape = rng.uniform(-1, 1, 4)  # face width, eye spacing, mouth width, nose length
        self.mouth = np.clip(signal(rng, t, 0.2, 1.2), 0, 1) ** 1.5
        self.smile = 0.3 + 0.6 * signal(rng, t, 0.05, 0.3)
        self.brow = np.clip(signal(rng, t, 0.1, 0.5), 0, 1)
        self.gaze = 0.05 * np.stack([signal(rng, t, 0.1, 0.6) for _ in range(2)], 1)
        blinks = np.cumsum(rng.uniform(1.5, 5.0, int(t[-1] / 1.5) + 2)) - rng.uniform(0, 1.5)
        self.eye = 1 - 0.93 * np.exp(-(((t[:, None] - blinks[None]) / 0.07) ** 2)).max(1)
        self.yaw, self.pitch = 0.4 * signal(rng, t, 0.05, 0.4), 0.15 * signal(rng, t, 0.05, 0.4)
        self.roll = 0.25 * signal(rng, t, 0.03, 0.3)
        self.scale = 0.19 * min(h, w) * (1 + 0.1 * signal(rng, t, 0.02, 0.15))
        local = np.stack([self._project(self._landmarks(i), i) for i in range(len(t))])
        margin = np.linalg.norm(local, axis=-1).max() * self.scale.max() + 2
        lo, hi = np.array([margin, margin]), np.array([w - 1 - margin, h - 1 - margin])
        if np.any(hi <= lo):
            raise KeyheadError(f"image_size {(h, w)} is too small for the face; use at least 48 x 48 pixels")
        self.centre = (lo + hi) / 2 + (hi - lo) / 2 * np.stack([signal(rng, t, 0.03, 0.3) for _ in range(2)], 1)
        self.keypoints = np.stack([self._to_image(self._landmarks(i), i) for i in range(len(t))]).astype(np.float32)

    def _project(self, p: np.ndarray, i: int) -> np.ndarray:
        """Approximate out-of-plane head rotation: points move with the depth of an ellipsoid head plus a nose."""
        x, y = p[:, 0], p[:, 1]
        z = 0.6 * np.sqrt(np.clip(1 - (x / 1.05) ** 2 - ((y + 0.15) / 1.45) ** 2, 0, None))
        z = z + np.interp(y, [-0.35, 0.2, 0.38], [0.05, 0.32, 0.05]) * np.exp(-0.5 * (x / 0.12) ** 2)
        a, b = self.yaw[i], self.pitch[i]
        return np.stack([x * np.cos(a) + z * np.sin(a), y * np.cos(b) + z * np.sin(b)], 1)

    def _to_image(self, p: np.ndarray, i: int) -> np.ndarray:
        return self._project(p, i) @ (self.scale[i] * rot(self.roll[i])).T + self.centre[i]

    def _landmarks(self, i: int) -> np.ndarray:
        fw, es, mshape, nl = self.shape
        mo, sm, eo = self.mouth[i], self.smile[i], self.eye[i] * (1 - 0.2 * max(self.smile[i], 0))
        u = np.linspace(-0.54, 0.54, 17) * np.pi
        jaw = np.stack([(1 + 0.05 * fw) * np.sin(u) * (1 - 0.12 * np.cos(u) ** 2), -0.2 + 1.33 * np.cos(u)], 1)
        gap, my = 0.22 * mo, 0.62
        jaw[:, 1] += 0.8 * gap * np.clip((jaw[:, 1] - 0.3) / 0.8, 0, 1)
        bx = np.linspace(0.72, 0.16, 5) + 0.03 * es
        arch = 0.09 * np.sin(np.pi * (0.72 - bx) / 0.56)
        by = -0.56 - arch - 0.1 * self.brow[i]
        brows = np.concatenate([np.stack([-bx, by], 1), np.stack([bx[::-1], by[::-1]], 1)])
        nose = np.array([[0, -0.3], [0, -0.14], [0, 0.02], [0, 0.18], [-0.17, 0.3], [-0.09, 0.33], [0, 0.35],
                         [0.09, 0.33], [0.17, 0.3]])  # fmt: skip
        nose[3:, 1] += 0.04 * nl
        cx, up, lo = 0.4 + 0.03 * es, 0.085 * eo, 0.055 * eo
        ex = np.array([-0.19, -0.07, 0.07, 0.19, 0.07, -0.07])
        ey = np.array([0.005, -up, -up, 0.01, lo, lo]) - 0.28
        eyes = np.concatenate([np.stack([ex - cx, ey], 1), np.stack([ex + cx, ey[[3, 1, 2, 0, 4, 5]]], 1)])
        mw = 0.36 * (1 + 0.12 * sm + 0.06 * mshape)
        ox = np.array([-1, -0.55, -0.2, 0, 0.2, 0.55, 1, 0.55, 0.22, 0, -0.22, -0.55])
        oy = np.r_[0, -0.085, -0.11, -0.085, -0.11, -0.085, 0, np.array([0.075, 0.11, 0.115, 0.11, 0.075]) + gap]
        ix = np.array([-0.86, -0.3, 0, 0.3, 0.86, 0.3, 0, -0.3])
        iy = np.r_[
            0.005, np.array([-0.02, -0.015, -0.02]) - 0.15 * gap, 0.005, np.array([0.02, 0.025, 0.02]) + 0.85 * gap
        ]
        mouth = np.concatenate([np.stack([ox, oy], 1), np.stack([ix, iy], 1)]) * (mw, 1) + (0, my)
        mouth[:, 1] -= 0.07 * sm * (mouth[:, 0] / mw) ** 2
        return np.concatenate([jaw, brows, nose, eyes, mouth])

    def _pose(self, i: int) -> tuple[np.ndarray, list[tuple[str, list[np.ndarray], np.ndarray]]]:
        lm = self._landmarks(i)
        skin, hair, lip = self.skin, self.hair, self.lip
        v = np.linspace(0, np.pi, 11)[1:-1]
        top = lm[16, 1]
        forehead = np.stack([np.cos(v), top - 1.02 * np.sin(v)], 1) * (lm[16, 0], 1)
        hx = np.linspace(-1.04, 1.04, 9)
        hairline = np.stack([hx, -0.9 + 0.4 * (np.abs(hx) / 1.04) ** 3 + 0.03 * np.sin(6 * hx)], 1)
        fringe = np.concatenate([forehead * (1.04, 1.04) + (0, 0.02 * top), hairline])
        neck = np.array([[-0.5, 0.5], [0.5, 0.5], [0.56, 1.8], [-0.56, 1.8]])
        re, le = lm[36:42], lm[42:48]
        eye_parts = []
        for e in (re, le):
            r = min(0.075, 0.55 * (e[4:, 1].mean() - e[1:3, 1].mean()))  # iris height: squashed by the lids
            c = e.mean(0) + self.gaze[i] * (1, 0.3)
            eye_parts.append((spline(e, True), ellipse(c, 0.075, r, 0, 20), ellipse(c, 0.032, min(r, 0.032), 0, 12)))
        ridge = spline(lm[27:31]) + (0.05, 0)
        upper_inner = spline(lm[60:65])
        teeth = upper_inner + np.sin(np.linspace(0, np.pi, len(upper_inner)))[:, None] * (0, 0.06 * self.mouth[i])
        inner = spline(lm[60:68], True)
        parts = [
            ("shade", [ellipse(np.array((0, -0.45)), 1.2, 1.2)], hair),
            ("shade", [neck], skin * 0.68),
            ("shade", [spline(self._shoulders, True, 3)], self.shirt),
            ("shade", [ellipse(np.array((s * 1.0, -0.12)), 0.14, 0.26) for s in (-1, 1)], skin * 0.85),
            ("shade", [spline(np.concatenate([lm[:17], forehead]), True)], skin),
            ("flat", [stroke(spline(lm[:17]), 0.025, 0.025)], skin * 0.8),
            ("shade", [spline(fringe, True, 3)], hair),
            ("flat", [stroke(spline(lm[17:22]), 0.04, 0.085), stroke(spline(lm[22:27]), 0.085, 0.04)], hair * 0.9),
            ("flat", [p[0] for p in eye_parts], np.array([222.0, 228, 232])),
            ("flat", [p[1] for p in eye_parts], self.iris),
            ("flat", [p[2] for p in eye_parts], np.array([15.0, 15, 18])),
            ("flat", [stroke(np.concatenate([p[0], p[0][:1]]), 0.022, 0.022) for p in eye_parts], skin * 0.35),
            ("flat", [stroke(spline(e[:4]), 0.045, 0.03) for e in (re, le[[3, 2, 1, 0]])], hair * 0.5),
            ("flat", [stroke(ridge, 0.03, 0.05)], skin * 0.86),
            ("shade", [ellipse(lm[k] + (0, -0.05), 0.07, 0.06) for k in (31, 35)], skin * 0.95),
            ("flat", [ellipse((lm[a] + lm[b]) / 2 + (0, -0.01), 0.04, 0.022, 0, 14) for a, b in ((31, 32), (34, 35))],
             skin * 0.35),
            ("flat", [stroke(spline(lm[31:36]), 0.022, 0.022)], skin * 0.6),
            ("flat", [ellipse(lm[30] + (-0.02, 0.02), 0.05, 0.04, 0, 16)], np.clip(skin * 1.12, 0, 255)),
            ("flat", [spline(lm[48:60], True)], lip),
            ("flat", [np.concatenate([spline(lm[48:55]), upper_inner[::-1]])], lip * 0.85),
            ("flat", [inner], np.array([35.0, 25, 55])),
            ("flat", [np.concatenate([upper_inner, teeth[::-1]])], np.array([205.0, 215, 222])),
            ("flat", [stroke(np.concatenate([inner, inner[:1]]), 0.02, 0.02)], lip * 0.45),
        ]  # fmt: skip
        return lm, parts
