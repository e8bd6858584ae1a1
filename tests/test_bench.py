"""Benchmark ratio guard: measured in one run, round-robin; asserts half the target ratio."""

from __future__ import annotations

from stevie.runtime import bench
from tests.helpers.capture import SAMPLES

TARGET_RATIO = 3.0  # sortedcontainers book vs naive dict-sort book, apply + top-20


def test_sorted_book_beats_naive_baseline():
    snap, diffs = bench.load_diffs(next((SAMPLES / "binance/spot/btcusdt").glob("l2_*")))
    assert bench.run_sorted_book(snap, diffs) == bench.run_naive_book(snap, diffs)
    best = bench.measure(
        {"sorted": lambda: bench.run_sorted_book(snap, diffs), "naive": lambda: bench.run_naive_book(snap, diffs)},
        rounds=2,
    )
    ratio = best["naive"] / best["sorted"]
    print(f"sorted book vs naive: {ratio:.2f}x")
    assert ratio >= TARGET_RATIO / 2
