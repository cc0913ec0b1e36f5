from __future__ import annotations

import os

import pytest

from keyhead.io.atomic import atomic_write


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "a.txt"
    with atomic_write(target) as f:
        f.write("one")
    assert target.read_text() == "one"
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write("two, half written")
        raise RuntimeError("interrupted")
    assert target.read_text() == "one"
    assert os.listdir(tmp_path) == ["a.txt"]  # no temporary file left behind
    assert (target.stat().st_mode & 0o777) == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
