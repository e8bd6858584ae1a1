"""Benchmark guards: ratios measured in one run, round-robin; CI asserts half of each target
the fast path meets (absolute times are never asserted). Figures: README "Benchmarks"."""

from __future__ import annotations

import pytest

from stevie.quant.kernels import load
from stevie.runtime import bench
from tests.helpers.capture import SAMPLES

FOLDER = next((SAMPLES / "binance/spot/btcusdt").glob("l2_*"))


@pytest.fixture(scope="module")
def result():
    r = bench.run(FOLDER, events=300_000, rounds=2, loop_events=20_000)
    print(r)
    return r


def test_feature_kernel_vs_numpy(result):
    assert result.features_vs_numpy >= 5 / 2


def test_feature_kernel_vs_python_loop(result):
    assert result.features_vs_python_loop >= 40 / 2


def test_native_book_beats_sortedcontainers(result):
    # target 30x (issue 4), single-threaded native replay
    assert result.book_ratio >= 30 / 2


def test_both_benchmarked_books_end_identical():
    """The two timed paths do the same work: every level equal at the end."""
    cap = bench.load_capture(FOLDER)
    python, (native, _) = bench.python_book(cap), bench.native_replay(cap, load("native"))
    assert python.last_update_id == native.last_update_id
    assert python.levels() == native.levels()
