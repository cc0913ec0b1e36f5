from __future__ import annotations

import pytest
import torch

import keyhead
from keyhead.engine.checkpoint import load_optimizer, save_optimizer
from keyhead.errors import KeyheadError
from keyhead.models.weights import load_weights, save_weights


def test_weights_round_trip_without_pickle(tmp_path):
    torch.manual_seed(0)
    a = keyhead.create_model(num_keypoints=3, backbone="tiny", input_size=(64, 64))
    b = keyhead.create_model(num_keypoints=3, backbone="tiny", input_size=(64, 64))
    save_weights(a, tmp_path / "w.safetensors")
    assert (tmp_path / "w.safetensors").read_bytes()[:8] != b"\x80\x04\x95"  # not a pickle stream
    load_weights(b, tmp_path / "w.safetensors")
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(a.eval()(x), b.eval()(x))


def test_weights_of_another_model_are_refused(tmp_path):
    save_weights(
        keyhead.create_model(num_keypoints=3, backbone="tiny", input_size=(64, 64)), tmp_path / "w.safetensors"
    )
    other = keyhead.create_model(num_keypoints=5, backbone="tiny", head="regression", loss="mse", input_size=(64, 64))
    with pytest.raises(KeyheadError, match="do not fit"):
        load_weights(other, tmp_path / "w.safetensors")


def test_corrupt_weights_file(tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"garbage")
    with pytest.raises(KeyheadError, match="not a readable safetensors"):
        load_weights(
            keyhead.create_model(num_keypoints=3, backbone="tiny", input_size=(64, 64)), tmp_path / "w.safetensors"
        )


def test_optimizer_state_round_trip(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 4)).pow(2).sum().backward()
        opt.step()
    save_optimizer(opt, tmp_path / "opt.safetensors")
    fresh = torch.optim.Adam(model.parameters(), lr=1.0)
    load_optimizer(fresh, tmp_path / "opt.safetensors")
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for pid in a["state"]:
        for key, val in a["state"][pid].items():
            assert torch.equal(torch.as_tensor(val), torch.as_tensor(b["state"][pid][key]))
