"""Unsupervised FOMM keypoints: TPS warps, equivariance losses, the warping generator, training, landmark regression."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

import keyhead
from keyhead.cli import main
from keyhead.fomm.detector import kp_detector
from keyhead.fomm.unsupervised import (
    TPSWarp,
    UnsupervisedConfig,
    WarpGenerator,
    equivariance_losses,
    evaluate_unsupervised,
    fit_linear_regressor,
    predict_linear,
    regression_errors,
    sparse_motions,
    train_unsupervised,
)
from keyhead.fomm.unsupervised.tps import image_grid, inverse_2x2
from keyhead.fomm.unsupervised.train import fomm_keypoints


def blob(h: int, w: int, xy_norm: tuple[float, float], sigma: float = 2.0) -> torch.Tensor:
    """A Gaussian blob (1, 1, h, w) centred at image-normalised (x, y)."""
    g = image_grid(h, w)
    px = torch.tensor([(xy_norm[0] + 1) / 2 * (w - 1), (xy_norm[1] + 1) / 2 * (h - 1)])
    pix = (g + 1) / 2 * torch.tensor([w - 1, h - 1])
    return torch.exp(-((pix - px) ** 2).sum(-1) / (2 * sigma**2))[None, None]


def centroid(img: torch.Tensor) -> torch.Tensor:
    """Intensity-weighted mean position (image-normalised) of a (1, 1, h, w) image."""
    g = image_grid(*img.shape[-2:])
    wts = img[0, 0] / img.sum()
    return (g * wts[..., None]).sum((0, 1))


def test_tps_warp_moves_frame_and_points_consistently():
    """Y(z) = X(T(z)): a blob at p in X shows up at T^-1(p) in Y, i.e. T(centroid of Y) = p (known affine)."""
    theta = torch.tensor([[[0.9, 0.1, 0.05], [-0.08, 1.1, -0.1]]])
    warp = TPSWarp(1, theta=theta, weights=torch.zeros(1, 25))
    p = torch.tensor([0.2, -0.3])
    y = warp.warp_frame(blob(96, 96, tuple(p.tolist())))
    back = warp.warp_coordinates(centroid(y).view(1, 1, 2))[0, 0]
    assert torch.allclose(back, p, atol=0.01)
    # affine Jacobian is the linear part, everywhere
    jac = warp.jacobian(torch.rand(1, 5, 2) * 2 - 1)
    assert torch.allclose(jac, theta[:, None, :, :2].expand(1, 5, 2, 2), atol=1e-6)


def test_tps_jacobian_matches_finite_differences():
    warp = TPSWarp(2, sigma_affine=0.05, sigma_tps=0.05, generator=torch.Generator().manual_seed(3))
    z = torch.rand(2, 4, 2, dtype=torch.float64) * 1.6 - 0.8
    warp.theta, warp.weights = warp.theta.double(), warp.weights.double()
    jac = warp.jacobian(z)
    eps = 1e-6
    for d in range(2):
        dz = torch.zeros_like(z)
        dz[..., d] = eps
        fd = (warp.warp_coordinates(z + dz) - warp.warp_coordinates(z - dz)) / (2 * eps)
        assert torch.allclose(jac[..., :, d], fd, atol=1e-6)


def test_equivariance_losses_vanish_for_an_equivariant_detector():
    """kp(X) = T(kp(Y)) and J(X) = dT J(Y) exactly -> both terms ~0; a detector that ignores the warp is penalised."""
    gen = torch.Generator().manual_seed(0)
    warp = TPSWarp(3, sigma_affine=0.1, sigma_tps=0.02, generator=gen)
    kp_y = torch.rand(3, 6, 2, generator=gen) * 1.6 - 0.8
    jac_y = torch.eye(2) + 0.2 * torch.randn(3, 6, 2, 2, generator=gen)
    kp_x = warp.warp_coordinates(kp_y).detach()
    jac_x = (warp.jacobian(kp_y) @ jac_y).detach()
    exact = equivariance_losses(kp_x, jac_x, kp_y, jac_y, warp)
    assert exact["equivariance_value"] < 1e-6 and exact["equivariance_jacobian"] < 1e-5
    wrong = equivariance_losses(kp_y, jac_y, kp_y, jac_y, warp)
    assert wrong["equivariance_value"] > 1e-2 and wrong["equivariance_jacobian"] > 1e-2


def test_inverse_2x2():
    m = torch.eye(2) + 0.3 * torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(inverse_2x2(m) @ m, torch.eye(2).expand(4, 3, 2, 2), atol=1e-5)


def test_generator_warp_reproduces_source_when_driving_is_source():
    torch.manual_seed(0)
    gen = WarpGenerator(num_kp=4, image_size=(32, 32)).eval()
    source = torch.rand(2, 3, 32, 32)
    kp = torch.rand(2, 4, 2) * 1.6 - 0.8
    jac = torch.eye(2) + 0.1 * torch.randn(2, 4, 2, 2)
    motions = sparse_motions(32, 32, kp, kp, jac, jac)
    assert torch.allclose(motions, image_grid(32, 32).expand(2, 5, 32, 32, 2), atol=1e-5)
    with torch.no_grad():
        out = gen(source, kp, kp, jac, jac)
        assert out["prediction"].shape == (2, 3, 32, 32)
        assert torch.allclose(gen.warp_source(source, out["deformation"]), source, atol=1e-5)


def test_fomm_keypoints_are_image_normalised():
    """Values mapped through input pixels: a heatmap peak at the centre cell is the image centre."""
    det = kp_detector(num_kp=2, block_expansion=4, max_features=16, num_blocks=2, input_size=(64, 64)).eval()
    with torch.no_grad():
        kp, jac = fomm_keypoints(det, torch.rand(1, 3, 64, 64))
    px = det.to_pixels(det(torch.rand(1, 3, 64, 64))["value"])
    assert kp.shape == (1, 2, 2) and jac.shape == (1, 2, 2, 2)
    assert torch.allclose(jac, torch.eye(2).expand(1, 2, 2, 2), atol=1e-6)  # identity init survives conjugation
    assert (px >= 0).all() and (px <= 63).all()


def test_linear_regression_recovers_known_affine_map_exactly():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(40, 6))
    a, b = rng.normal(size=(6, 8)), rng.normal(size=8)
    targets = feats @ a + b
    w = fit_linear_regressor(feats, targets)
    assert np.allclose(w[:-1], a, atol=1e-9) and np.allclose(w[-1], b, atol=1e-9)
    lm = targets.reshape(40, 4, 2)
    lm_missing = lm.copy()
    lm_missing[::3, 1] = np.nan  # missing landmarks are left out of their own fit only
    res = regression_errors(feats[:30], lm_missing[:30], feats[30:], lm[30:])
    assert res["pixel_error"] < 1e-8 and res["train_pixel_error"] < 1e-8
    assert np.allclose(predict_linear(feats, w), targets)


def _write_video(path, n=24, size=64):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (size, size))
    truth = []
    for i in range(n):
        img = np.full((size, size, 3), 40, np.uint8)
        x, y = 20 + i, 30 + (i % 7)
        cv2.circle(img, (x, y), 6, (200, 120, 60), -1)
        writer.write(img)
        truth.append((x, y))
    writer.release()
    return np.array(truth, np.float64)


@pytest.mark.slow
def test_unsupervised_train_resume_load_and_evaluate(tmp_path):
    """Train 3 steps, resume to 5, load as a keyhead run, evaluate against known trajectories (~15 s)."""
    video = tmp_path / "v.mp4"
    truth = _write_video(video)
    csv = tmp_path / "v_keypoints.csv"
    lines = ["scorer,t,t,t", "bodyparts,dot,dot,dot", "coords,x,y,likelihood"]
    lines += [f"{i},{x},{y},1.0" for i, (x, y) in enumerate(truth)]
    csv.write_text("\n".join(lines) + "\n")
    cfg = UnsupervisedConfig(
        video=str(video),
        input_size=(64, 64),
        num_kp=3,
        block_expansion=4,
        max_features=16,
        num_blocks=2,
        generator_size=32,
        generator_width=8,
        batch_size=2,
        steps=3,
        log_every=1,
        save_every=2,
    )
    run = train_unsupervised(cfg, tmp_path / "run", progress=False)
    assert json.loads((run / "state.json").read_text())["step"] == 3
    train_unsupervised(cfg.model_copy(update={"steps": 5}), run, resume=True, progress=False)
    assert json.loads((run / "state.json").read_text())["step"] == 5
    assert (run / "history.csv").read_text().count("\n") == 6  # header + 5 logged steps
    model, _ = keyhead.load_run(run)
    assert model.codec.decoder_name == "soft_argmax" and model.predict(torch.rand(1, 3, 64, 64)).xy.shape == (1, 3, 2)
    res = evaluate_unsupervised(run, csv)
    assert set(res) >= {"trained", "random_init", "settings"}
    # 24 frames are less than one 50-frame block, so every 4th frame is held out
    assert np.isfinite(res["trained"]["pixel_error"]) and res["trained"]["n_test"] == 6
    assert (run / "landmark_eval.json").is_file()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["fomm-train"], "needs a VIDEO"),
        (["fomm-train", "missing.mp4", "--out", "{tmp}/r"], "does not exist"),
        (["fomm-train", "{tmp}/notes.txt", "--out", "{tmp}/r"], "not a video"),
        (["fomm-train", "{tmp}", "--out", "{tmp}/r"], "no images"),
        (["fomm-train", "--resume", "--out", "{tmp}/nothing"], "no unsupervised run to resume"),
        (["fomm-train", "x.mp4", "--input-size", "100"], "multiple of 32"),
        (["fomm-eval", "{tmp}", "--labels", "{tmp}/notes.txt"], "not an unsupervised FOMM run"),
        (["compress", "{tmp}/nope"], "does not exist"),
        (["compress", "{tmp}/nope", "--separable"], "no filters to take from the teacher"),
        (["compress", "{tmp}/nope", "--separable-head", "kp"], "separable_head must be"),
    ],
    ids=[
        "no-video",
        "missing-video",
        "not-a-video",
        "empty-folder",
        "resume-nothing",
        "bad-size",
        "eval-not-run",
        "compress-missing",
        "compress-separable-from-teacher",
        "compress-bad-head",
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, args, needle):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SystemExit) as exc:
        main([a.replace("{tmp}", str(tmp_path)) for a in args])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and needle in err, err
