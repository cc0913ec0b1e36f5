"""CentroidCodec: several centres in one map, decoded back by peak finding with NMS."""

from __future__ import annotations

import pytest
import torch

from keyhead.models.codecs import CentroidCodec
from keyhead.models.codecs.centroid import find_peaks
from keyhead.models.model import create_model


@pytest.mark.parametrize("stride", [2, 4, 8], ids=lambda s: f"stride{s}")
def test_round_trip_within_a_fiftieth_of_a_cell(stride: int) -> None:
    codec = CentroidCodec((128, 160), stride=stride, max_instances=3, sigma=1.5)
    xy = torch.tensor([[[20.3, 40.7], [100.2, 30.1], [60.6, 100.4]]])
    targets, valid = codec.encode(xy)
    assert targets.shape == (1, 1, 128 // stride, 160 // stride) and valid.all()
    kp = codec.decode(targets)
    expected = xy[0][xy[0, :, 0].argsort()]  # decoded left to right
    err = (kp.xy[0] - expected).norm(dim=-1)
    assert err.max() < 0.02 * stride, err  # a parabola through log-values is exact for a Gaussian
    assert (kp.confidence > 0.8).all()


def test_missing_instances_and_order() -> None:
    codec = CentroidCodec((64, 64), stride=4, max_instances=3, sigma=1.0, threshold=0.3)
    xy = torch.tensor([[[50.0, 10.0], [float("nan"), float("nan")], [10.0, 50.0]]])
    targets, _ = codec.encode(xy)
    kp = codec.decode(targets)
    assert kp.xy[0, 0, 0] < kp.xy[0, 1, 0]  # the two real centres first, left to right
    assert kp.confidence[0, 2] < 0.3  # the third slot is a weak peak, not an animal
    empty, valid = codec.encode(torch.full((1, 3, 2), float("nan")))
    assert empty.abs().max() == 0 and valid.all()  # a frame without animals still teaches the background


def test_nms_keeps_one_peak_per_blob() -> None:
    m = torch.zeros(1, 1, 16, 16)
    m[0, 0, 5, 5], m[0, 0, 5, 6], m[0, 0, 12, 3] = 1.0, 0.9, 0.6
    uv, value = find_peaks(m, 2)
    assert value[0].tolist() == pytest.approx([1.0, 0.6])
    assert 5.0 < uv[0, 0, 0].item() < 5.5 and uv[0, 0, 1].item() == 5.0  # pulled towards the 0.9 neighbour
    assert uv[0, 1].tolist() == [3.0, 12.0]


def test_create_model_centroids_one_map() -> None:
    model = create_model(
        keypoint_names=["instance0", "instance1"],
        backbone="tiny",
        input_size=(64, 64),
        loss="heatmap_mse_raw",
        centroids=2,
    )
    assert model(torch.rand(1, 3, 64, 64)).shape[1] == 1
    assert model.predict(torch.rand(1, 3, 64, 64)).xy.shape == (1, 2, 2)
