from __future__ import annotations

import time

from keyhead.evaluation.timing import latency_summary, time_calls


def test_time_calls_interleaves_and_skips_warmup():
    order: list[str] = []
    runners = {"a": lambda: order.append("a"), "b": lambda: (order.append("b"), time.sleep(0.002))}
    times = time_calls(runners, repeats=3, warmup=2)
    assert order == ["a", "b"] * 5  # warm-up then timed calls, round-robin
    assert len(times["a"]) == len(times["b"]) == 3 and min(times["b"]) >= 2.0 > max(times["a"])


def test_latency_summary():
    s = latency_summary([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s["median_ms"] == 3.0 and s["min_ms"] == 1.0 and s["repeats"] == 5 and s["p10_ms"] < s["p90_ms"]
