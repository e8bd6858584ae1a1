"""venue-replay core (pure): the replay-side book, the merged timeline, klines, exchangeInfo.

The replay rebuilds each book from the capture as it emits diffs, so a REST snapshot taken
at replay time t is exactly consistent with the diffs the stream sends after t — the
situation a book maintainer meets on the real exchange.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from functools import reduce

from stevie.services.venue_replay.captures import Capture

MS = 1_000_000


class ReplayBook:
    """Levels as verbatim decimal strings, keyed by price string. ``last_update_id`` is the
    ``u`` of the last applied diff (the capture snapshot's ``lastUpdateId`` before any)."""

    def __init__(self, capture: Capture) -> None:
        snap = capture.snapshot
        self.bids: dict[str, str] = {p: q for p, q in snap["bids"]}  # type: ignore[attr-defined]
        self.asks: dict[str, str] = {p: q for p, q in snap["asks"]}  # type: ignore[attr-defined]
        self.last_update_id = int(snap["lastUpdateId"])  # type: ignore[call-overload]
        self.last_event_ms = 0
        self.last_trans_ms = 0

    def apply(self, diff: dict[str, object]) -> None:
        for side, book in (("b", self.bids), ("a", self.asks)):
            for price, qty in diff[side]:  # type: ignore[attr-defined]
                if float(qty) == 0.0:
                    book.pop(price, None)
                else:
                    book[price] = qty
        self.last_update_id = int(diff["u"])  # type: ignore[call-overload]
        self.last_event_ms = int(diff["E"])  # type: ignore[call-overload]
        self.last_trans_ms = int(diff.get("T", diff["E"]))  # type: ignore[call-overload]

    def snapshot(self, limit: int) -> dict[str, object]:
        """Binance depth response body: best ``limit`` levels per side, best first."""
        bids = sorted(self.bids.items(), key=lambda kv: -float(kv[0]))[:limit]
        asks = sorted(self.asks.items(), key=lambda kv: float(kv[0]))[:limit]
        return {"lastUpdateId": self.last_update_id, "bids": [list(b) for b in bids],
                "asks": [list(a) for a in asks]}


def first_live_index(capture: Capture) -> int:
    """Index of the first diff that continues the capture snapshot (Binance procedure):
    spot drops ``u <= L``, USD-M drops ``u < L``. Raises ValueError if none does."""
    last = int(capture.snapshot["lastUpdateId"])  # type: ignore[call-overload]
    for i, d in enumerate(capture.diffs):
        u = int(d["u"])  # type: ignore[call-overload]
        if (u >= last) if capture.usdm else (u > last):
            return i
    raise ValueError(f"{capture.venue} {capture.symbol}: no diff continues the snapshot")


@dataclass(frozen=True, slots=True)
class Event:
    """One message to emit: event time (ns), venue, symbol, stream kind, Binance payload."""

    ts_ns: int
    order: int
    venue: str
    symbol: str
    kind: str  # "depth" | "trade" | e.g. "markPrice@1s"
    payload: dict[str, object]


def timeline(captures: list[Capture]) -> list[Event]:
    """All captures merged on one event-time axis (``E``), ties by arrival order.

    Diffs start at each capture's first live diff; trades and extra streams start at the
    earliest such diff across captures (one replay clock for the whole window)."""
    per: list[list[Event]] = []
    starts = []
    for c in captures:
        i0 = first_live_index(c)
        starts.append(int(c.diffs[i0]["E"]) * MS)  # type: ignore[call-overload]
        rows: list[tuple[str, dict[str, object]]] = [("depth", d) for d in c.diffs[i0:]]
        rows += [("trade", t) for t in c.trades]
        for kind, msgs in c.extra_streams.items():
            rows += [(kind, m) for m in msgs]
        events = [
            Event(int(p["E"]) * MS, int(p.get("seq", 0)), c.venue, c.symbol, k, p)  # type: ignore[call-overload]
            for k, p in rows
        ]
        per.append(sorted(events, key=lambda e: (e.ts_ns, e.order)))
    origin = min(starts)
    merged = heapq.merge(*per, key=lambda e: (e.ts_ns, e.order))
    return [e for e in merged if e.ts_ns >= origin or e.kind == "depth"]


def wire_payload(event: Event) -> dict[str, object]:
    """The Binance message as the exchange sent it (recorder columns removed)."""
    return {k: v for k, v in event.payload.items() if k not in ("seq", "recv_ns")}


def stream_kind(stream: str) -> tuple[str, str] | None:
    """``btcusdt@depth@100ms`` → ("BTCUSDT", "depth"); ``btcusdt@trade`` → ("BTCUSDT", "trade");
    ``btcusdt@markPrice@1s`` → ("BTCUSDT", "markPrice@1s"). None if not a stream we serve."""
    sym, _, rest = stream.partition("@")
    if not sym or not rest:
        return None
    if rest == "depth" or rest.startswith("depth@"):
        return sym.upper(), "depth"
    if rest in ("trade", "markPrice@1s", "markPrice"):
        return sym.upper(), "markPrice@1s" if rest.startswith("markPrice") else rest
    return None


def tick_size(prices: list[str]) -> str:
    """Tick size as the GCD of all price differences, in the strings' decimal precision."""
    decimals = max(len(p.partition(".")[2]) for p in prices)
    ints = sorted({int(Decimal(p).scaleb(decimals)) for p in prices})
    g = reduce(math.gcd, (b - a for a, b in zip(ints, ints[1:], strict=False)), 0) or 1
    return format(Decimal(g).scaleb(-decimals), "f")


def exchange_info(captures: list[Capture], server_time_ms: int) -> dict[str, object]:
    """A Binance ``exchangeInfo`` body for the captured symbols (tick and lot size inferred
    from the recorded prices and quantities)."""
    symbols = []
    for c in captures:
        prices = [p for p, _ in c.snapshot["bids"]] + [p for p, _ in c.snapshot["asks"]]  # type: ignore[operator]
        qtys = [q for _, q in c.snapshot["bids"]][:200]  # type: ignore[index]
        symbols.append({
            "symbol": c.symbol, "status": "TRADING", "baseAsset": c.symbol.removesuffix("USDT"),
            "quoteAsset": "USDT",
            "filters": [
                {"filterType": "PRICE_FILTER", "tickSize": tick_size(prices)},
                {"filterType": "LOT_SIZE", "stepSize": tick_size(["0", *qtys])},
            ],
        })
    return {"timezone": "UTC", "serverTime": server_time_ms, "symbols": symbols}


def klines_from_trades(trades: list[dict[str, object]], until_ms: int, interval_ms: int = 60_000) -> list[list[object]]:
    """Binance kline rows ``[openTime, o, h, l, c, v, closeTime, quoteVolume, trades, ...]`` of
    the *closed* intervals built from trades with trade time < ``until_ms`` (no look-ahead)."""
    rows: list[list[object]] = []
    cur: list[object] | None = None
    limit = until_ms - until_ms % interval_ms
    for t in trades:
        ts = int(t["T"])  # type: ignore[call-overload]
        if ts >= limit:
            break
        px, qty = Decimal(str(t["p"])), Decimal(str(t["q"]))
        open_ms = ts - ts % interval_ms
        if cur is None or cur[0] != open_ms:
            if cur is not None:
                rows.append(cur)
            cur = [open_ms, px, px, px, px, Decimal(0), open_ms + interval_ms - 1, Decimal(0), 0]
        cur[2] = max(cur[2], px)  # type: ignore[type-var]
        cur[3] = min(cur[3], px)  # type: ignore[type-var]
        cur[4] = px
        cur[5] += qty  # type: ignore[operator]
        cur[7] += px * qty  # type: ignore[operator]
        cur[8] += 1  # type: ignore[operator]
    if cur is not None:
        rows.append(cur)
    return [[r[0], *(format(x, "f") for x in r[1:6]), r[6], format(r[7], "f"), r[8], "0", "0", "0"] for r in rows]


def iter_due(events: list[Event], start: int, until_ns: int) -> Iterator[int]:
    """Indices from ``start`` of the events with ``ts_ns <= until_ns``."""
    i = start
    while i < len(events) and events[i].ts_ns <= until_ns:
        yield i
        i += 1
