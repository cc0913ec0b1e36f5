"""Several mice in one arena for ``keyhead.data.synth``: walks that meet and cross, who is on top, what they hide.

The animals are one strain (same coat) with a slight per-animal tint and size. Every few seconds two of them walk to a
common point from different sides, due there at the same time, and pass over each other. The one on top is drawn later;
the draw order changes only while an animal touches nobody, so an animal never pops through another.
"""

from __future__ import annotations

import cv2
import numpy as np

from keyhead.data._synth_subjects import Animal, signal
from keyhead.errors import KeyheadError

__all__ = ["Herd", "max_animals"]

_SIZE = 0.7  # body size of two animals, relative to a single one; more animals are smaller (equal floor share)
_MIN_SIZE = 0.3
_MIN_UNIT_PX = 2.5  # half a body length in pixels; below it a mouse is a smudge


def _size(n: int) -> float:
    return _SIZE * np.sqrt(2 / n)


def max_animals(h: int, w: int) -> int:
    """How many animals ``Herd`` puts in an (h, w) frame: their size shrinks with their number, down to a floor."""
    floor = max(_MIN_SIZE, _MIN_UNIT_PX / (0.1 * min(h, w)))
    return max(1, int(2 * (_SIZE / floor) ** 2 + 1e-9))


def _wrap(a: float) -> float:
    return (a + np.pi) % (2 * np.pi) - np.pi


class Herd:
    """N mice of one strain; their walks, per-frame draw order and mutual occlusion.

    Args:
        rng: random generator.
        t: (T,) frame times in seconds.
        h: image height in pixels.
        w: image width in pixels.
        fps: frame rate.
        n: number of animals N >= 2, at most ``max_animals(h, w)``.

    Attributes:
        animals: N ``Animal`` subjects; ``animals[i].keypoints`` (T, K, 2) image (x, y).
        order: (T, N) animal indices in draw order per frame, bottom first.
        hidden: (T, N, K) bool, the keypoint lies under an animal drawn above it.
        meetings: (planned, meet, a, b) frames of each crossing: planned at frame ``planned``, animals a and b meet
            around frame ``meet``.
    """

    def __init__(self, rng: np.random.Generator, t: np.ndarray, h: int, w: int, fps: float, n: int) -> None:
        unit = 0.1 * min(h, w) * _size(n)
        sizes = 1 + 0.1 * (rng.permutation(np.linspace(-0.5, 0.5, n)) + rng.uniform(-0.15, 0.15, n))
        tints = 1 + 0.08 * rng.uniform(-1, 1, (n, 3))
        paths, headings = self._walks(rng, t, h, w, fps, unit * sizes, n)
        self.animals = [
            Animal(
                np.random.default_rng(rng.integers(2**63)), t, h, w, fps, _size(n) * sizes[i], (paths[i], headings[i])
            )
            for i in range(n)
        ]
        first = self.animals[0]
        for a, tint in zip(self.animals, tints, strict=True):  # one strain: the first animal's coat, tinted
            a.coat, a.pink, a.tone = np.clip(first.coat * tint, 0, 255), first.pink, first.tone
        kps = np.stack([a.keypoints for a in self.animals], 1)  # (T, N, K, 2)
        near = self._contacts(kps, 1.4 * unit * sizes.max() * 1.1)
        self.order = self._order(rng, near)
        self.hidden = self._hidden(kps, near)

    def _walks(self, rng: np.random.Generator, t: np.ndarray, h: int, w: int, fps: float, units: np.ndarray,
               n: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Pivot paths (N, T, 2) and headings (N, T): ``Animal``'s random walk, steered through a cycle of meetings
        (two animals walk to one point, due at the same time, and pass over each other) and dispersals (they head
        for opposite sides of the arena, so the next meeting is a crossing again)."""
        dt, T = 1.0 / fps, len(t)
        margin = Animal.reach * 1.1 * units.max() + 2  # the body scale varies by 10% over time
        lo, hi = np.array([margin, margin]), np.array([w - 1 - margin, h - 1 - margin])
        if np.any(hi <= lo):
            raise KeyheadError(f"image_size {(h, w)} is too small for {n} animals; use a larger image_size")
        centre, half = (lo + hi) / 2, (hi - lo) / 2
        turn = np.stack([1.2 * signal(rng, t, 0.1, 0.6) for _ in range(n)])
        run = np.stack([np.clip(0.45 + 0.75 * signal(rng, t, 0.05, 0.4), 0, 1) for _ in range(n)])
        pos = centre + half * rng.uniform(-0.7, 0.7, (n, 2))
        th, speed, spin, steer, side = rng.uniform(0, 2 * np.pi, n), np.zeros(n), np.zeros(n), np.zeros(n), np.ones(n)
        paths, headings = np.zeros((n, T, 2)), np.zeros((n, T))
        goals: list[tuple[np.ndarray, float | None] | None] = [None] * n  # (point, due time or None)
        self.meetings: list[tuple[int, int, int, int]] = []
        meeting, t_switch = False, rng.uniform(0.2, 1.0)
        for i in range(T):
            paths[:, i], headings[:, i] = pos, th
            if t[i] >= t_switch and not meeting:
                a, b = (int(v) for v in rng.choice(n, 2, replace=False))
                gap = pos[b] - pos[a]
                point = (pos[a] + pos[b]) / 2 + rng.uniform(-0.3, 0.3) * np.array([-gap[1], gap[0]])
                point = np.clip(point, centre - 0.7 * half, centre + 0.7 * half)
                due = t[i] + np.clip(np.linalg.norm(gap) / 2 / (1.6 * units[[a, b]].mean()), 0.6, 2.0)
                goals[a] = goals[b] = (point, due)
                self.meetings.append((i, min(int(round(due * fps)), T - 1), a, b))
                meeting, t_switch = True, due + 0.6
            elif t[i] >= t_switch:
                a, b = self.meetings[-1][2:]
                away = np.array([np.cos(th[a]), np.sin(th[a])])  # a walks on, b the other way
                for j in range(n):
                    way = away if j == a else -away if j == b else rng.uniform(-1, 1, 2)
                    goals[j] = (centre + half * np.clip(0.75 * way + rng.uniform(-0.25, 0.25, 2), -0.9, 0.9), None)
                meeting, t_switch = False, t[i] + rng.uniform(0.8, 1.6)
            for j in range(n):
                u, target = units[j], None
                v_goal = 2.5 * u * run[j, i]
                if goals[j] is not None:
                    point, due = goals[j]
                    d = point - pos[j]
                    dist = np.linalg.norm(d)
                    if dist < 0.4 * u or (due is not None and t[i] > due + 0.3):
                        goals[j] = None  # reached (or late): walk on
                    else:
                        target = np.arctan2(d[1], d[0])
                        slow = max(np.cos(_wrap(target - th[j])), 0.3)  # turn before running
                        v_goal = slow * (max(v_goal, 1.2 * u) if due is None else np.clip(
                            dist / max(due - t[i], 0.25), 0.8 * u, 3.2 * u))  # fmt: skip
                steer[j] += ((target is not None) - steer[j]) * min(1.0, dt / 0.3)
                to_centre = centre - pos[j]
                near = np.clip((np.abs(to_centre / half).max() - 0.6) / 0.4, 0, 1)  # steer away from the walls
                rate = turn[j, i] * (1 - steer[j]) + 2.0 * near * np.sin(np.arctan2(to_centre[1], to_centre[0]) - th[j])
                if target is not None:
                    err = _wrap(target - th[j])
                    side[j] = np.sign(err) if abs(err) < 2.5 else side[j]  # no flip-flop with the goal behind
                    rate += 5.0 * steer[j] * side[j] * np.sin(abs(err) / 2)
                spin[j] += (rate - spin[j]) * min(1.0, dt / 0.15)  # turning starts and stops smoothly
                th[j] += spin[j] * dt
                speed[j] += (v_goal - speed[j]) * min(1.0, dt / 0.3)
                pos[j] = pos[j] + speed[j] * dt * np.array([np.cos(th[j]), np.sin(th[j])])
        reach = np.abs(paths - centre).max((0, 1))  # one squeeze for all, so meetings stay meetings
        paths = centre + (paths - centre) * min(1.0, *(half / np.maximum(reach, 1e-9)))
        ends = [m[0] for m in self.meetings[1:]] + [T]
        self.meetings = [  # where they really came closest
            (s, s + int(np.argmin(np.linalg.norm(paths[a, s:e] - paths[b, s:e], axis=-1))), a, b)
            for (s, _, a, b), e in zip(self.meetings, ends, strict=True)
        ]
        return paths, headings

    @staticmethod
    def _contacts(kps: np.ndarray, radius: float) -> np.ndarray:
        """(T, N, N) bool: two animals' skeletons come within ``radius`` pixels (their outlines may touch)."""
        edges = np.array([(Animal.names.index(a), Animal.names.index(b)) for a, b in Animal.skeleton])
        f = np.array([0.25, 0.5, 0.75])[:, None, None]
        dense = kps[:, :, edges[:, 0], None] * (1 - f.T[..., None]) + kps[:, :, edges[:, 1], None] * f.T[..., None]
        pts = np.concatenate([kps, dense.reshape(*kps.shape[:2], -1, 2)], 2)  # (T, N, P, 2)
        n = kps.shape[1]
        near = np.zeros((len(kps), n, n), bool)
        for a in range(n):
            for b in range(a + 1, n):
                d = np.linalg.norm(pts[:, a, :, None] - pts[:, b, None], axis=-1).min((1, 2))
                near[:, a, b] = near[:, b, a] = d < radius
        return near

    def _order(self, rng: np.random.Generator, near: np.ndarray) -> np.ndarray:
        """(T, N) draw order: at each planned meeting a random one of the pair goes on top, once it touches nobody."""
        T, n = near.shape[:2]
        want = np.zeros((T, n))
        want[0] = rng.permutation(n)
        level = float(n)
        for start, _, a, b in self.meetings:
            top, bottom = (a, b) if rng.random() < 0.5 else (b, a)
            want[start:, bottom], want[start:, top] = level, level + 1
            level += 2
        prio, order = want[0].copy(), np.zeros((T, n), np.int64)
        for i in range(T):
            free = ~near[i].any(1)
            prio[free] = want[i, free]
            order[i] = np.argsort(prio, kind="stable")
        return order

    def _hidden(self, kps: np.ndarray, near: np.ndarray) -> np.ndarray:
        """(T, N, K): keypoints inside the outline of an animal drawn above (exact polygons, frames in contact)."""
        T, n, k = kps.shape[:3]
        hidden = np.zeros((T, n, k), bool)
        for i in range(T):
            rank = np.argsort(self.order[i])
            for a, b in zip(*np.nonzero(np.triu(near[i])), strict=True):
                low, high = (a, b) if rank[a] < rank[b] else (b, a)
                animal = self.animals[high]
                for _, polys, _ in animal._pose(i)[1]:
                    for p in polys:
                        contour = animal._to_image(p, i).astype(np.float32)
                        for q in np.flatnonzero(~hidden[i, low]):
                            pt = (float(kps[i, low, q, 0]), float(kps[i, low, q, 1]))
                            hidden[i, low, q] = cv2.pointPolygonTest(contour, pt, False) >= 0
        return hidden
