"""``stevie bench``: throughput ratios measured in one run, round-robin, on a real capture.

Today: the sortedcontainers book (apply + top-20 after every diff) against a naive baseline
(a plain dict sorted for every top-20). The Rust kernel (fast-path issue) adds its rows here.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable
from pathlib import Path

from stevie.quant.book import Level, OrderBook

Diff = tuple[int, int, list[Level], list[Level]]


def load_diffs(folder: Path) -> tuple[dict[str, object], list[Diff]]:
    """Snapshot and diffs (U, u, bids, asks) of one spot capture folder."""
    snap = json.loads((folder / "depth_snapshot.json").read_text())
    diffs = []
    with gzip.open(folder / "depth_updates.jsonl.gz", "rt") as f:
        for line in f:
            d = json.loads(line)
            if d["u"] > snap["lastUpdateId"]:
                diffs.append(
                    (
                        d["U"],
                        d["u"],
                        [(float(p), float(q)) for p, q in d["b"]],
                        [(float(p), float(q)) for p, q in d["a"]],
                    )
                )
    return snap, diffs


def _levels(rows: list[list[str]]) -> list[Level]:
    return [(float(p), float(q)) for p, q in rows]


def run_sorted_book(snap: dict[str, object], diffs: list[Diff]) -> int:
    book = OrderBook(usdm=False)
    book.apply_snapshot(_levels(snap["bids"]), _levels(snap["asks"]), int(str(snap["lastUpdateId"])))  # type: ignore[arg-type]
    for first, final, b, a in diffs:
        book.apply_diff(first, final, None, b, a)
        book.top_k(20)
    return book.last_update_id


def run_naive_book(snap: dict[str, object], diffs: list[Diff]) -> int:
    bids = dict(_levels(snap["bids"]))  # type: ignore[arg-type]
    asks = dict(_levels(snap["asks"]))  # type: ignore[arg-type]
    last = 0
    for _, final, b, a in diffs:
        for side, levels in ((bids, b), (asks, a)):
            for p, q in levels:
                if q > 0:
                    side[p] = q
                else:
                    side.pop(p, None)
        sorted(bids, reverse=True)[:20]
        sorted(asks)[:20]
        last = final
    return last


def measure(fns: dict[str, Callable[[], int]], rounds: int = 3) -> dict[str, float]:
    """Best wall time (s) of each function over ``rounds`` round-robin passes."""
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best
