"""One wall-clock timer for every latency keyhead reports (model comparison, profiles, compressed detectors).

Calls of several runners are interleaved round-robin, so that each sees the same machine state (clock, caches,
other load); warm-up calls are not timed; on a GPU the device is synchronised around each timed call.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def _sync(enabled: bool) -> None:
    if enabled:
        import torch

        torch.cuda.synchronize()


def timed_call(fn: Callable[[], object], sync: bool = False) -> float:
    """Seconds of one call of ``fn`` (``sync``: CUDA-synchronised before and after)."""
    _sync(sync)
    t0 = time.perf_counter()
    fn()
    _sync(sync)
    return time.perf_counter() - t0


def time_calls(
    runners: dict[str, Callable[[], object]], repeats: int = 30, warmup: int = 5, sync: bool = False
) -> dict[str, list[float]]:
    """Milliseconds of ``repeats`` calls of each runner, the runners interleaved round-robin after ``warmup``."""
    for _ in range(warmup):
        for fn in runners.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, fn in runners.items():
            times[name].append(1e3 * timed_call(fn, sync))
    return times


def latency_summary(ms: list[float]) -> dict[str, float]:
    """Median, 10th / 90th percentiles and the fastest of a list of milliseconds."""
    q = statistics.quantiles(ms, n=10, method="inclusive") if len(ms) > 1 else [ms[0]] * 9
    return {"median_ms": statistics.median(ms), "p10_ms": q[0], "p90_ms": q[-1], "min_ms": min(ms), "repeats": len(ms)}
