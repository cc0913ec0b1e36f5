from __future__ import annotations

import torch

from keyhead.models.codecs import CoordCodec


def test_coord_round_trip_and_edges():
    c = CoordCodec((120, 200))
    xy = torch.tensor([[[-0.5, -0.5], [199.5, 119.5], [33.3, float("nan")]]])
    n, valid = c.encode(xy)
    assert torch.allclose(n[0, :2], torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))
    assert valid.tolist() == [[True, True, False]]
    back = c.decode({"coords": n.nan_to_num(0.0)}).xy
    assert torch.allclose(back[0, :2], xy[0, :2], atol=1e-4)  # pixels


def test_confidence_falls_with_predicted_scale():
    c = CoordCodec((64, 64))
    raw = {"coords": torch.zeros(1, 2, 2), "log_scale": torch.tensor([[-6.0, 0.0]])}
    conf = c.decode(raw).confidence
    assert conf[0, 0] > 0.9 and conf[0, 1] < 0.01
