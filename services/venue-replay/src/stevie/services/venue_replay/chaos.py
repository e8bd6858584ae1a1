"""Chaos at the venue edge (dev only): faults the replay venue injects into what it serves.

- ``ws_flap``: the venue closes its WebSocket streams (clients must reconnect and resync);
  for a duration, new stream connections are refused (503) until it ends.
- ``api_timeout``: REST answers (depth, klines, exchangeInfo) hang for ``hang_s`` seconds —
  past the clients' timeouts — one request (one shot) or every request during the duration.
- ``l2_gap``: diffs are dropped so the update-id sequence breaks: the next diff of each hit
  symbol (one shot) or every diff during the duration. The venue's own book still applies
  them, so a REST snapshot stays correct and a resync recovers.
- ``depth_spike``: bogus levels are added to a diff: the best bid's size multiplied by
  ``SIZE_SPIKE`` and a bid at ``FAR_RATIO`` × the best bid (far from the mid). Only the
  stream carries them; the venue's book (hence a REST snapshot) does not.

Pure: no I/O and no clock; every call takes ``now_ns`` (replay event time). The shell applies
the verdicts (drops, closes, sleeps). A one-shot fault ends once it has fired on every hit
symbol (``ws_flap`` and one-shot ``api_timeout``: once).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from stevie.contracts.ops import ChaosRequest, ChaosResult

TYPES = ("ws_flap", "api_timeout", "l2_gap", "depth_spike")
MAX_DURATION_S = 600.0
SIZE_SPIKE = Decimal(100_000)
FAR_RATIO = Decimal("0.001")
S = 1_000_000_000
MS = 1_000_000


@dataclass
class Fault:
    id: int
    type: str
    venues: tuple[str, ...]
    symbols: tuple[str, ...]
    start_ns: int
    end_ns: int | None  # None = one shot
    pending: set[tuple[str, str]] = field(default_factory=set)  # one shot: (venue, symbol) not hit yet

    def active(self, now_ns: int) -> bool:
        if self.end_ns is None:
            return bool(self.pending)
        return self.start_ns <= now_ns < self.end_ns

    def hits(self, venue: str, symbol: str | None = None) -> bool:
        return venue in self.venues and (symbol is None or symbol in self.symbols)


class Chaos:
    """``universe``: venue → its symbols (what can be hit)."""

    def __init__(self, universe: dict[str, list[str]]) -> None:
        self.universe = {v: sorted(s) for v, s in universe.items()}
        self.faults: list[Fault] = []
        self._ids = itertools.count(1)

    def inject(self, req: ChaosRequest, now_ns: int) -> tuple[Fault, ChaosResult]:
        """Register a fault. Raises ValueError for an unknown type / venue / symbol or a
        duration outside (0, MAX_DURATION_S]."""
        if req.type not in TYPES:
            raise ValueError(f"unknown chaos type {req.type[:40]!r}; known: {', '.join(TYPES)}")
        if req.venue is not None and req.venue not in self.universe:
            raise ValueError(f"unknown venue {req.venue[:40]!r}; known: {', '.join(self.universe)}")
        venues = (req.venue,) if req.venue else tuple(self.universe)
        symbols_all = sorted({s for v in venues for s in self.universe[v]})
        sym = req.symbol.upper() if req.symbol else None
        if sym is not None and sym not in symbols_all:
            raise ValueError(f"unknown symbol {sym[:40]!r}; known: {', '.join(symbols_all)}")
        d = req.durationS
        if d is not None and not 0 < d <= MAX_DURATION_S:
            raise ValueError(f"durationS must be in (0, {MAX_DURATION_S:g}] seconds or null (one shot)")
        symbols = (sym,) if sym else tuple(symbols_all)
        end = None if d is None else now_ns + int(d * S)
        pending: set[tuple[str, str]] = set()
        if end is None:
            if req.type in ("l2_gap", "depth_spike"):
                pending = {(v, s) for v in venues for s in symbols if s in self.universe[v]}
            else:
                pending = {(v, "*") for v in venues}
        fault = Fault(next(self._ids), req.type, venues, symbols, now_ns, end, pending)
        self.faults.append(fault)
        what = {
            "ws_flap": "streams closed" + ("; new connections refused until the end" if end else ""),
            "api_timeout": "REST answers hang past the client timeout" + ("" if end else " (next request)"),
            "l2_gap": "diffs dropped" + ("" if end else " (next diff per symbol)"),
            "depth_spike": "bogus far/huge levels injected" + ("" if end else " (next diff per symbol)"),
        }[req.type]
        result = ChaosResult(
            fault.id,
            req.type,
            list(venues),
            list(symbols),
            end is None,
            now_ns // MS,
            None if end is None else end // MS,
            what,
        )
        return fault, result

    def _take(self, type_: str, venue: str, symbol: str, now_ns: int) -> Fault | None:
        self.faults = [f for f in self.faults if (f.end_ns is None and f.pending) or (f.end_ns and now_ns < f.end_ns)]
        for f in self.faults:
            if f.type != type_ or not f.active(now_ns):
                continue
            if f.end_ns is None:
                key = (venue, symbol)
                if key in f.pending:
                    f.pending.discard(key)
                    return f
            elif f.hits(venue, None if symbol == "*" else symbol):
                return f
        return None

    def drop_diff(self, venue: str, symbol: str, now_ns: int) -> bool:
        """l2_gap: should this diff be dropped?"""
        return self._take("l2_gap", venue, symbol, now_ns) is not None

    def spike_diff(
        self, venue: str, symbol: str, diff: dict[str, Any], bids: dict[str, str], now_ns: int
    ) -> dict[str, Any]:
        """depth_spike: ``diff`` with bogus levels added (a copy), or ``diff`` itself. ``bids``:
        the venue book's bids (price string → size string) before this diff."""
        if not bids or self._take("depth_spike", venue, symbol, now_ns) is None:
            return diff
        best = max(bids, key=Decimal)
        exp = Decimal(best).as_tuple().exponent
        q = Decimal(1).scaleb(exp if isinstance(exp, int) else -8)
        far = (Decimal(best) * FAR_RATIO).quantize(q)
        size_q = Decimal(bids[best])
        huge = (size_q * SIZE_SPIKE).quantize(Decimal(1).scaleb(size_q.as_tuple().exponent))  # type: ignore[arg-type]
        out = dict(diff)
        out["b"] = [*diff["b"], [best, str(huge)], [str(far), str(huge)]]
        return out

    def hang_rest(self, venue: str, now_ns: int) -> bool:
        """api_timeout: should this REST request hang?"""
        return self._take("api_timeout", venue, "*", now_ns) is not None

    def refuse_ws(self, venue: str, now_ns: int) -> bool:
        """ws_flap with a duration: refuse new stream connections while it lasts."""
        return any(f.type == "ws_flap" and f.end_ns and f.active(now_ns) and f.hits(venue) for f in self.faults)
