"""The iBUG 300-W 68-point face layout: keypoint names, horizontal-flip pairs and drawing skeleton.

"right" and "left" are the subject's sides (the subject's right eye appears on the image's left), as in iBUG's
annotation guide. Indices are 0-based (point 1 of the 300-W documentation is index 0 here).
"""

from __future__ import annotations


def _group(name: str, count: int) -> list[str]:
    return [f"{name}_{i}" for i in range(count)]


IBUG68_NAMES: list[str] = [
    *_group("jaw", 17),  # 0-16
    *_group("right_brow", 5),  # 17-21
    *_group("left_brow", 5),  # 22-26
    *_group("nose_bridge", 4),  # 27-30
    *_group("nose_lower", 5),  # 31-35
    *_group("right_eye", 6),  # 36-41
    *_group("left_eye", 6),  # 42-47
    *_group("outer_lip", 12),  # 48-59
    *_group("inner_lip", 8),  # 60-67
]

IBUG68_FLIP_PAIRS: list[tuple[int, int]] = [
    *[(i, 16 - i) for i in range(8)],
    *[(17 + i, 26 - i) for i in range(5)],
    (31, 35),
    (32, 34),
    (36, 45),
    (37, 44),
    (38, 43),
    (39, 42),
    (40, 47),
    (41, 46),
    (48, 54),
    (49, 53),
    (50, 52),
    (55, 59),
    (56, 58),
    (60, 64),
    (61, 63),
    (65, 67),
]


def _chain(start: int, stop: int, closed: bool = False) -> list[tuple[str, str]]:
    idx = list(range(start, stop + 1)) + ([start] if closed else [])
    return [(IBUG68_NAMES[a], IBUG68_NAMES[b]) for a, b in zip(idx[:-1], idx[1:], strict=True)]


IBUG68_SKELETON: list[tuple[str, str]] = [
    *_chain(0, 16),
    *_chain(17, 21),
    *_chain(22, 26),
    *_chain(27, 30),
    *_chain(31, 35),
    *_chain(36, 41, closed=True),
    *_chain(42, 47, closed=True),
    *_chain(48, 59, closed=True),
    *_chain(60, 67, closed=True),
]
