"""Flip test-time augmentation: the un-flip convention, pair swaps, averaging, and the run's flip pairs."""

from __future__ import annotations

import json

import pytest
import torch

from keyhead.data.formats.ibug68 import IBUG68_FLIP_PAIRS, IBUG68_NAMES
from keyhead.errors import KeyheadError
from keyhead.models.model import create_model
from keyhead.models.tta import average_keypoints, flip_permutation, flip_predict, run_flip_pairs, unflip_keypoints
from keyhead.types import Keypoints


class DotModel(torch.nn.Module):
    """Finds two bright dots: keypoint 0 is the dot on the image's left, keypoint 1 the one on its right.

    Mirror-equivariant with the pair (0, 1) swapped: on the mirrored image the left dot is the mirror of the right
    one. Confidence is the dot's brightness, so a pair swap is visible in the confidence too.
    """

    def predict(self, x: torch.Tensor) -> Keypoints:
        img = x[:, 0]
        b, h, w = img.shape
        flat = img.flatten(1)
        top2 = flat.topk(2, dim=1).indices
        ys, xs = (top2 // w).float(), (top2 % w).float()
        order = xs.argsort(dim=1)
        xy = torch.stack([xs.gather(1, order), ys.gather(1, order)], dim=-1)
        conf = flat.gather(1, top2).gather(1, order)
        return Keypoints(xy, conf)


class FixedModel(torch.nn.Module):
    """Predicts the same points whatever the image: not equivariant, so flip TTA must average."""

    def __init__(self, xy: torch.Tensor, conf: torch.Tensor) -> None:
        super().__init__()
        self.xy, self.conf = xy, conf

    def predict(self, x: torch.Tensor) -> Keypoints:
        return Keypoints(self.xy.expand(len(x), -1, -1).clone(), self.conf.expand(len(x), -1).clone())


def _dots(w: int = 40, h: int = 30) -> torch.Tensor:
    x = torch.zeros(2, 1, h, w)
    x[0, 0, 5, 3], x[0, 0, 20, 31] = 0.9, 0.6
    x[1, 0, 12, 17], x[1, 0, 2, 22] = 0.5, 0.8
    return x


def test_flip_permutation_swaps_pairs_and_rejects_bad_ones():
    assert flip_permutation(5, [(0, 4), (1, 3)]) == [4, 3, 2, 1, 0]
    perm = flip_permutation(68, IBUG68_FLIP_PAIRS)
    assert [perm[p] for p in perm] == list(range(68))
    assert perm[36] == 45 and perm[30] == 30  # outer eye corners swap, the nose tip stays
    with pytest.raises(KeyheadError, match="two pairs"):
        flip_permutation(4, [(0, 1), (1, 2)])
    with pytest.raises(KeyheadError, match="not two different"):
        flip_permutation(4, [(0, 4)])


def test_unflip_uses_pixel_centre_convention():
    kp = Keypoints(torch.tensor([[[0.0, 1.0], [9.0, 2.0], [4.5, 3.0]]]), torch.tensor([[0.1, 0.2, 0.3]]))
    back = unflip_keypoints(kp, width=10, flip_pairs=[(0, 1)])
    # x -> W - 1 - x: pixel 0 <-> pixel 9, the image centre 4.5 stays; keypoints 0 and 1 swap
    assert back.xy.tolist() == [[[0.0, 2.0], [9.0, 1.0], [4.5, 3.0]]]
    assert back.confidence[0].tolist() == pytest.approx([0.2, 0.1, 0.3])


def test_equivariant_model_gives_the_same_result_with_flip_tta():
    model, x = DotModel(), _dots()
    direct = model.predict(x)
    tta = flip_predict(model, x, [(0, 1)])
    torch.testing.assert_close(tta.xy, direct.xy)
    torch.testing.assert_close(tta.confidence, direct.confidence)
    assert direct.xy[0].tolist() == [[3.0, 5.0], [31.0, 20.0]]


def test_without_the_pair_swap_the_result_is_wrong():
    model, x = DotModel(), _dots()
    direct, wrong = model.predict(x), flip_predict(model, x, [])
    # unswapped, each keypoint is averaged with the mirror of the other dot: the midpoint in x
    assert not torch.allclose(wrong.xy, direct.xy)
    torch.testing.assert_close(wrong.xy[..., 0], direct.xy[..., 0].mean(-1, keepdim=True).expand(-1, 2))


def test_non_equivariant_model_is_averaged():
    xy = torch.tensor([[[2.0, 3.0], [30.0, 4.0]]])
    model = FixedModel(xy, torch.tensor([[0.2, 0.8]]))
    out = flip_predict(model, torch.zeros(1, 1, 10, 40), [(0, 1)])
    # flipped prediction un-flipped: kp0 <- mirror of (30, 4) = (9, 4); kp1 <- mirror of (2, 3) = (37, 3)
    assert out.xy.tolist() == [[[5.5, 3.5], [33.5, 3.5]]]
    assert out.confidence[0].tolist() == pytest.approx([0.5, 0.5])


def test_missing_prediction_keeps_the_other():
    a = Keypoints(torch.tensor([[[1.0, 1.0], [float("nan")] * 2]]), torch.tensor([[0.4, 0.0]]))
    b = Keypoints(torch.tensor([[[3.0, 1.0], [5.0, 6.0]]]), torch.tensor([[0.6, 0.9]]))
    out = average_keypoints(a, b)
    assert out.xy.tolist() == [[[2.0, 1.0], [5.0, 6.0]]]
    assert out.confidence[0].tolist() == pytest.approx([0.5, 0.9])


def test_flip_tta_of_a_real_model_is_mirror_equivariant():
    # TTA makes any model equivariant: TTA on the mirrored image = mirror of TTA on the image.
    torch.manual_seed(0)
    model = create_model(num_keypoints=4, backbone="tiny", input_size=(64, 64), head="heatmap").eval()
    pairs = [(0, 3)]
    x = torch.rand(2, 3, 64, 64)
    tta = flip_predict(model, x, pairs)
    tta_mirror = flip_predict(model, x.flip(-1), pairs)
    back = unflip_keypoints(tta_mirror, 64, pairs)
    torch.testing.assert_close(back.xy, tta.xy, atol=1e-3, rtol=0)
    torch.testing.assert_close(back.confidence, tta.confidence, atol=1e-5, rtol=0)


def test_run_flip_pairs_sources(tmp_path):
    names = ["l_eye", "r_eye", "nose"]
    assert run_flip_pairs(tmp_path, names, [["l_eye", "r_eye"]]) == [(0, 1)]
    assert run_flip_pairs(tmp_path, list(IBUG68_NAMES)) == sorted(IBUG68_FLIP_PAIRS)
    assert run_flip_pairs(tmp_path, names) == []
    (tmp_path / "flip_pairs.json").write_text(json.dumps([["r_eye", "l_eye"]]))
    assert run_flip_pairs(tmp_path, names, [["nose", "l_eye"]]) == [(1, 0)]
    (tmp_path / "flip_pairs.json").write_text(json.dumps([["r_eye", "ear"]]))
    with pytest.raises(KeyheadError, match="flip_pairs.json"):
        run_flip_pairs(tmp_path, names)
