"""Venue report roll-up (pure): fills, win rate, slippage vs arrival mid, downtime.

Inputs are rows read from PostgreSQL by the shell (``audits`` with a fill, the first 1-minute
bar closing at or after each fill + the mark-out horizon, and the book-state log).

- slippage_bps = side·(fill price − arrival mid)/arrival mid·1e4 (positive = paid), arrival
  mid = the filled venue's mid when the order was routed (Perold 1988, implementation
  shortfall against the decision price).
- win: side·(mark − fill price) > 0, mark = close of that bar (fills without a mark yet are
  not counted in the win rate).
- downtime: wall seconds inside the window during which at least one of the venue's books
  was in a state other than LIVE (union over its books), from the state-change log; a
  book's state before its first row in the window is its last row before the window.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from stevie.contracts.venues import VenueReportRow
from stevie.quant.errors import QuantInputError

NS = 1_000_000_000
_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_WINDOW_S = 366 * 86400


def parse_window(window: str | int) -> float:
    """``7d``/``24h``/``30m``/``90s``/``2w`` or an integer of seconds → seconds (0 < w ≤ 366 d).
    Raises QuantInputError."""
    m = _WINDOW.match(str(window))
    if m is None:
        raise QuantInputError(f"window must look like 7d, 24h, 30m, 90s or a number of seconds, got {window!r}")
    secs = float(m.group(1)) * _UNIT_S[m.group(2)]
    if not 0 < secs <= MAX_WINDOW_S:
        raise QuantInputError(f"window must be within (0, 366d], got {window!r}")
    return secs


@dataclass(frozen=True)
class FillRow:
    """One filled order: side +1/−1, filled base units, average price, fee and arrival mid
    and mark in quote units (mark None until its bar exists)."""

    venue: str
    side: int
    filled: float
    price: float
    fee_quote: float
    arrival_mid: float | None
    mark: float | None


@dataclass(frozen=True)
class StateRow:
    """A book entering ``state`` at wall time ``ts_ns``."""

    venue: str
    symbol: str
    state: str
    ts_ns: int


def _union_length(intervals: list[tuple[int, int]]) -> int:
    total, end = 0, None
    start = 0
    for a, b in sorted(intervals):
        if end is None or a > end:
            if end is not None:
                total += end - start
            start, end = a, b
        else:
            end = max(end, b)
    if end is not None:
        total += end - start
    return total


def downtime(rows: Iterable[StateRow], start_ns: int, end_ns: int) -> dict[str, tuple[float, float, int]]:
    """Per venue: (down seconds, observed seconds, transitions out of LIVE) within
    [start_ns, end_ns]. Rows before the window give the state the window starts in."""
    by_book: dict[tuple[str, str], list[StateRow]] = defaultdict(list)
    for r in rows:
        by_book[(r.venue, r.symbol)].append(r)
    down: dict[str, list[tuple[int, int]]] = defaultdict(list)
    seen: dict[str, list[tuple[int, int]]] = defaultdict(list)
    leaves: dict[str, int] = defaultdict(int)
    for (venue, _), rs in by_book.items():
        rs.sort(key=lambda r: r.ts_ns)
        for i, r in enumerate(rs):
            a = max(r.ts_ns, start_ns)
            b = min(rs[i + 1].ts_ns if i + 1 < len(rs) else end_ns, end_ns)
            if b <= a:
                continue
            seen[venue].append((a, b))
            if r.state != "LIVE":
                down[venue].append((a, b))
            if i > 0 and rs[i - 1].state == "LIVE" and r.state != "LIVE" and r.ts_ns >= start_ns:
                leaves[venue] += 1
    return {v: (_union_length(down[v]) / NS, _union_length(seen[v]) / NS, leaves[v]) for v in set(seen) | set(down)}


def rollup(
    venues: list[str], fills: Iterable[FillRow], states: Iterable[StateRow], start_ns: int, end_ns: int
) -> list[VenueReportRow]:
    """One row per venue (the configured ones, then any other venue found in the data)."""
    by_venue: dict[str, list[FillRow]] = defaultdict(list)
    for f in fills:
        if f.filled > 0 and math.isfinite(f.price):
            by_venue[f.venue].append(f)
    dt = downtime(states, start_ns, end_ns)
    names = list(venues) + sorted((set(by_venue) | set(dt)) - set(venues))
    out = []
    for v in names:
        fs = by_venue.get(v, [])
        slips = np.array(
            [f.side * (f.price - f.arrival_mid) / f.arrival_mid * 1e4 for f in fs if f.arrival_mid],
            dtype=float,
        )
        marked = [f for f in fs if f.mark is not None]
        wins = sum(1 for f in marked if f.mark is not None and f.side * (f.mark - f.price) > 0)
        down_s, seen_s, leaves = dt.get(v, (0.0, 0.0, 0))
        out.append(
            VenueReportRow(
                venue=v,
                fills=len(fs),
                marked=len(marked),
                winRate=wins / len(marked) if marked else None,
                slippageBps=float(slips.mean()) if slips.size else None,
                slippageBpsP95=float(np.percentile(slips, 95)) if slips.size else None,
                notionalQuote=float(sum(f.filled * f.price for f in fs)),
                feesQuote=float(sum(f.fee_quote for f in fs)),
                downtimeS=down_s,
                downtimeFraction=down_s / seen_s if seen_s > 0 else None,
                resyncs=leaves,
            )
        )
    return out
