"""Identity tracking on synthetic trajectories: crossing paths, occlusions, a fixed number of animals."""

from __future__ import annotations

import numpy as np
import pytest

from keyhead.errors import KeyheadError
from keyhead.inference.tracking import ConstantVelocityKalman, Tracker, track_sequence
from keyhead.multimetrics import tracking_metrics

NAN = np.nan
BODY = np.array([[0.0, -6.0], [5.0, 4.0], [-5.0, 4.0]])  # head and two feet around the centroid: K = 3, area 10x10


def walk(start: tuple[float, float], velocity: tuple[float, float], frames: int) -> np.ndarray:
    """(T, K, 2) poses of an animal moving at constant velocity (pixels/frame)."""
    t = np.arange(frames, dtype=np.float64)[:, None]
    centre = np.asarray(start) + t * np.asarray(velocity)
    return centre[:, None, :] + BODY


def x_crossing(speed: float = 6.0, frames: int = 20) -> np.ndarray:
    """(T, 2, K, 2): two animals on the diagonals of an X, crossing half-way between frames 9 and 10.

    At frame 9 the animals are (speed, 0) apart and each moves (speed, +-speed) per frame, so each one's next
    position is nearer to where the *other* one was (speed) than to its own last position (speed * sqrt(2)).
    """
    u = speed * (0 - 9.5)
    a = walk((50 + u, 50 + u), (speed, speed), frames)
    b = walk((50 + u, 50 - u), (speed, -speed), frames)
    return np.stack([a, b], axis=1)


def as_tracks(ids_per_frame, poses) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.asarray(ids), np.asarray(p)) for ids, p in zip(ids_per_frame, poses, strict=True)]


def gt_tracks(poses: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.arange(p.shape[0]), p) for p in poses]


def test_kalman_learns_a_constant_velocity():
    kf = ConstantVelocityKalman(np.array([10.0, 20.0]))
    for t in range(1, 15):
        kf.predict()
        kf.update(np.array([10.0 + 3 * t, 20.0 - 2 * t]))
    np.testing.assert_allclose(kf.x[2:], [3.0, -2.0], atol=0.05)
    np.testing.assert_allclose(kf.predict(), [10.0 + 3 * 15, 20.0 - 2 * 15], atol=0.2)


@pytest.mark.parametrize("cost", ["distance", "oks"])
@pytest.mark.parametrize("max_tracks", [None, 2], ids=["open", "fixed-2"])
def test_motion_keeps_identities_through_a_crossing(cost, max_tracks):
    poses = x_crossing()
    ids = track_sequence(list(poses), cost=cost, max_tracks=max_tracks)
    assert all(i.tolist() == [0, 1] for i in ids)
    m = tracking_metrics(as_tracks(ids, poses), gt_tracks(poses), threshold=5.0)
    assert m["num_switches"] == 0 and m["mota"] == 1.0 and m["idf1"] == 1.0


def test_a_nearest_pose_tracker_without_motion_swaps_at_the_crossing():
    poses = x_crossing()
    ids = track_sequence(list(poses), motion=False)
    assert [i.tolist() for i in ids] == [[0, 1]] * 10 + [[1, 0]] * 10
    m = tracking_metrics(as_tracks(ids, poses), gt_tracks(poses), threshold=5.0)
    assert m["num_switches"] == 2 and m["idf1"] == pytest.approx(0.5)


def test_crossing_with_noise_and_missing_keypoints():
    rng = np.random.default_rng(0)
    poses = x_crossing() + rng.normal(0, 0.7, (20, 2, 3, 2))
    poses[rng.random((20, 2, 3)) < 0.2] = NAN  # a fifth of the keypoints missing
    poses[4, 0] = NAN  # and one animal not found at all in frame 4
    ids = track_sequence(list(poses), scores_per_frame=[np.ones(2)] * 20)
    assert ids[4].tolist() == [-1, 1]
    assert all(i.tolist() == [0, 1] for n, i in enumerate(ids) if n != 4)


@pytest.mark.parametrize(
    ("max_age", "max_tracks", "id_after"),
    [
        pytest.param(30, None, 0, id="kept-through-occlusion"),
        pytest.param(3, None, 2, id="too-long-new-id"),
        pytest.param(3, 2, 0, id="too-long-but-2-animals-id-reused"),
    ],
)
def test_short_occlusion_keeps_the_identity(max_age, max_tracks, id_after):
    a = walk((10, 20), (3, 1), 30)
    b = walk((10, 80), (3, 0), 30)
    hidden = range(10, 15)  # animal a is missing for 5 frames
    frames = [np.stack([b[t]]) if t in hidden else np.stack([a[t], b[t]]) for t in range(30)]
    ids = track_sequence(frames, max_age=max_age, max_tracks=max_tracks)
    assert all(ids[t].tolist() == [1] for t in hidden)
    assert all(ids[t].tolist() == [0, 1] for t in range(10))
    assert all(ids[t].tolist() == [id_after, 1] for t in range(15, 30))


def test_max_tracks_drops_the_lowest_scores():
    a, b, c = walk((0, 0), (2, 0), 3), walk((0, 50), (2, 0), 3), walk((0, 100), (2, 0), 3)
    tracker = Tracker(max_tracks=2)
    for t in range(3):
        ids = tracker.update(np.stack([a[t], b[t], c[t]]), np.array([0.5, 0.9, 0.8]))
        assert ids.tolist() == [-1, 0, 1]
    assert len(tracker.tracks) == 2


def test_max_tracks_lost_id_is_reused_by_the_next_instance():
    a, b = walk((0, 0), (2, 0), 20), walk((0, 50), (2, 0), 20)
    elsewhere = walk((200, 200), (0, -2), 20)
    frames = [np.stack([a[t], b[t]]) for t in range(5)] + [a[t][None] for t in range(5, 12)]
    frames += [np.stack([a[t], elsewhere[t]]) for t in range(12, 20)]
    fixed = track_sequence(frames, max_tracks=2, max_age=3)
    assert all(i.tolist() == [0, 1] for i in fixed[12:])
    opened = track_sequence(frames, max_age=3)  # without the cap a third identity opens
    assert all(i.tolist() == [0, 2] for i in opened[12:])


def test_max_tracks_takes_over_an_unmatched_track_beyond_max_cost():
    """With both identities in use, an animal that reappears far away gets back its own identity."""
    a, b = walk((0, 0), (2, 0), 10), walk((0, 50), (2, 0), 10)
    a[6:] += np.array([300.0, 0.0])  # a jumps beyond max_cost (e.g. a missed stretch of the video)
    frames = [np.stack([a[t], b[t]]) for t in range(10)]
    assert all(i.tolist() == [0, 1] for i in track_sequence(frames, max_tracks=2, max_cost=20.0))
    opened = track_sequence(frames, max_cost=20.0)
    assert all(i.tolist() == [2, 1] for i in opened[6:])


def test_one_animal_empty_frames_and_nan_instances():
    a = walk((0, 0), (1, 1), 8)
    frames = [a[t][None] for t in range(8)]
    frames[3] = np.empty((0, 3, 2))
    frames[5] = np.stack([a[5], np.full((3, 2), NAN)])  # an all-NaN instance is ignored
    ids = track_sequence(frames)
    assert [i.tolist() for i in ids] == [[0]] * 3 + [[]] + [[0], [0, -1], [0], [0]]
    assert [i.tolist() for i in track_sequence([[], []])] == [[], []]  # a video without animals


def test_deterministic_and_reset():
    rng = np.random.default_rng(1)
    frames = [rng.uniform(0, 100, (4, 3, 2)) for _ in range(10)]
    scores = [rng.random(4) for _ in range(10)]
    first = track_sequence(frames, scores, max_tracks=3)
    second = track_sequence(frames, scores, max_tracks=3)
    assert all(np.array_equal(x, y) for x, y in zip(first, second, strict=True))
    tracker = Tracker()
    tracker.update(frames[0])
    tracker.reset()
    assert tracker.update(frames[0]).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"cost": "iou"}, "cost", id="unknown-cost"),
        pytest.param({"max_tracks": 0}, "max_tracks", id="zero-tracks"),
        pytest.param({"max_age": -1}, "max_age", id="negative-age"),
        pytest.param({"max_cost": -1.0}, "max_cost", id="negative-cost"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(KeyheadError, match=match):
        Tracker(**kwargs)


def test_bad_frames():
    tracker = Tracker()
    with pytest.raises(KeyheadError, match=r"\(P, K, 2\)"):
        tracker.update(np.zeros((2, 3)))
    tracker.update(np.zeros((1, 3, 2)))
    with pytest.raises(KeyheadError, match="keypoints"):
        tracker.update(np.zeros((1, 4, 2)))
    with pytest.raises(KeyheadError, match="scores"):
        tracker.update(np.zeros((2, 3, 2)), np.ones(3))
    with pytest.raises(KeyheadError, match="frames"):
        track_sequence([np.zeros((1, 3, 2))], [np.ones(1)] * 2)


def test_seed_restores_identities_for_a_resumed_video() -> None:
    tracker = Tracker(max_tracks=3, max_cost=50.0)
    a, b = np.zeros((1, 2)), np.full((1, 2), 80.0)
    tracker.seed(np.stack([a, b]), np.array([2, 0]))  # the last written frame: a was identity 2, b identity 0
    assert tracker.update(np.stack([b + 1, a + 1]), np.array([0.9, 0.8])).tolist() == [0, 2]
    assert tracker.update(np.full((1, 1, 2), 300.0)).tolist() == [1]  # the free identity
