"""Shared by the bench scripts (run as ``python bench/NAME.py``, so this folder is on ``sys.path``)."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch


def cpu_flags() -> str:
    """The CPU's model and the vector extensions that decide convolution speed (AVX2 / AVX-512 / AMX / NEON)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() in ("flags", "Features"):
                flags |= set(value.split())
    except OSError:
        pass
    wanted = [("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_bf16", "AVX-512-BF16"), ("amx_tile", "AMX")]
    found = [name for flag, name in wanted if flag in flags]
    if "asimd" in flags or platform.machine() in ("arm64", "aarch64"):
        found.append("NEON")
    return f"{model}; {', '.join(found) or 'no AVX2 / AVX-512 / AMX / NEON'}"


def machine() -> dict:
    """What the numbers were measured on, and how busy it was when the bench started."""
    return {
        "cpu_flags": cpu_flags(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.is_available(),
        "load_average_at_start": os.getloadavg(),
        "platform": platform.platform(),
    }


def write_section(results: Path, section: str, payload: dict) -> None:
    """Replace one section of a results JSON (other sections kept), with the machine facts, atomically."""
    from keyhead.io.atomic import atomic_write

    data = json.loads(results.read_text()) if results.is_file() else {}
    data[section] = payload
    data["machine"] = machine()
    with atomic_write(results) as f:
        json.dump(data, f, indent=1)
    print(f"[bench] wrote {section} to {results}", flush=True)


def best_seconds(fn: Callable[[], object], repeats: int, sync: Callable[[], None] | None = None) -> float:
    """Fastest of ``repeats`` timed calls of ``fn`` after one warm-up call; ``sync`` waits for a device to finish."""
    wait = sync or (lambda: None)
    fn()
    wait()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        wait()
        best = min(best, time.perf_counter() - t0)
    return best
