"""Semi-supervised pieces: Pose PCA (single and multi-view), epsilon-insensitive losses, clip pool, end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from keyhead.config import load_config
from keyhead.engine.semi import ClipPool, PosePCA, complete_keypoints


def _poses(n=60, k=5, seed=0):
    """Poses that are a 2-parameter family (translation) + tiny noise: a PCA of rank 2 explains them."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 100, (k, 2))
    shift = rng.normal(0, 20, (n, 1, 2))
    return (base + shift + rng.normal(0, 0.01, (n, k, 2))).astype(np.float32)


def test_pca_reconstructs_in_family_poses_and_flags_outliers():
    kp = _poses()
    pca = PosePCA.fit(kp, variance=0.99)
    assert pca.components.shape[1] == 2
    ok = pca.errors(torch.as_tensor(kp[:5]))
    assert float(ok.max()) < 0.1
    bad = torch.as_tensor(kp[:1]).clone()
    bad[0, 3] += torch.tensor([15.0, -10.0])  # one keypoint off the pose manifold
    err = pca.errors(bad)[0]
    assert err[3] > 5 and pca.loss(bad) > 0
    assert float(pca.loss(torch.as_tensor(kp[:5]))) == 0.0  # inside epsilon: no penalty


def test_multiview_pca_is_exact_for_consistent_views():
    rng = np.random.default_rng(1)
    pts3d = rng.uniform(-1, 1, (80, 3, 3))  # 80 frames, 3 body parts, (X, Y, Z)
    top = pts3d[..., [0, 1]] * 50 + 100  # view 1 sees X, Y
    side = pts3d[..., [0, 2]] * 40 + 30  # view 2 sees X, Z
    kp = np.concatenate([top, side], axis=1).astype(np.float32)  # keypoints: part0..2 top, part0..2 side
    groups = [[0, 3], [1, 4], [2, 5]]
    pca = PosePCA.fit(kp, groups=groups)
    assert pca.components.shape == (4, 3)
    assert float(pca.errors(torch.as_tensor(kp)).max()) < 1e-3
    wrong = torch.as_tensor(kp[:1]).clone()
    wrong[0, 4, 0] += 10  # part 1's x disagrees between the views
    assert pca.errors(wrong)[0, 4] > 3


def test_complete_keypoints_drops_the_often_missing_one():
    kp = _poses(n=40, k=4)
    kp[:30, 1] = np.nan  # keypoint 1 missing in most frames
    assert complete_keypoints(kp, min_rows=30) == [0, 2, 3]
    pca = PosePCA.fit(kp)
    assert torch.isnan(pca.errors(torch.as_tensor(kp[:2]))[:, 1]).all()


def test_clip_pool_reads_consecutive_frames(tmp_path):
    from tests.inference.test_video import write_video

    write_video(tmp_path / "v.mp4", n=30, size=(64, 48))
    pool = ClipPool([tmp_path / "v.mp4"], (32, 32), 1, n_frames=12, clip_length=3, seed=0)
    assert pool.clips.shape == (4, 3, 1, 32, 32) and pool.scale == (2.0, 1.5)
    a, b = pool.sample(2, step=5), pool.sample(2, step=5)
    assert torch.equal(a, b) and a.shape == (2, 3, 1, 32, 32)


@pytest.mark.slow
def test_semi_supervised_training_end_to_end(tmp_path):
    from keyhead.data.synth import generate
    from keyhead.engine.train import train

    generate(tmp_path / "data", n_labeled=24, image_size=(64, 64), video_frames=40, seed=0, progress=False)
    cfg = load_config(
        None,
        [
            f"data.path={tmp_path / 'data'}",
            "data.input_size=[64,64]",
            "model.backbone=tiny",
            "train.epochs=2",
            "train.batch_size=8",
            f"output_dir={tmp_path / 'runs'}",
            "semi.videos=[auto]",
            "semi.frames=16",
        ],
    )
    run = train(cfg, progress=False)
    assert (run / "pca.safetensors").is_file() and (run / "semi.json").is_file()
    from keyhead.inference.video import predict_videos

    res = predict_videos(run, [tmp_path / "data" / "videos" / "synth_vid.mp4"], progress=False)[0]
    assert res.n_frames == 40 and res.summary_data["pca_error_px"] is not None
