"""venue-replay core (pure): the replay-side book, the merged timeline, klines, exchangeInfo.

The replay rebuilds each book from the capture as it emits diffs, so a REST snapshot taken
at replay time t is exactly consistent with the diffs the stream sends after t — the
situation a book maintainer meets on the real exchange.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass
from decimal import Decimal
from functools import reduce
from typing import Any

from stevie.services.venue_replay.captures import Capture

MS = 1_000_000


class ReplayBook:
    """Levels as verbatim decimal strings, keyed by price string. ``last_update_id`` is the
    ``u`` of the last applied diff (the capture snapshot's ``lastUpdateId`` before any)."""

    def __init__(self, capture: Capture) -> None:
        snap = capture.snapshot
        self.bids: dict[str, str] = {p: q for p, q in snap["bids"]}
        self.asks: dict[str, str] = {p: q for p, q in snap["asks"]}
        self.last_update_id = int(snap["lastUpdateId"])
        self.last_event_ms = 0
        self.last_trans_ms = 0

    def apply(self, diff: dict[str, Any]) -> None:
        for side, book in (("b", self.bids), ("a", self.asks)):
            for price, qty in diff[side]:
                if float(qty) == 0.0:
                    book.pop(price, None)
                else:
                    book[price] = qty
        self.last_update_id = int(diff["u"])
        self.last_event_ms = int(diff["E"])
        self.last_trans_ms = int(diff.get("T", diff["E"]))

    def snapshot(self, limit: int) -> dict[str, Any]:
        """Binance depth response body: best ``limit`` levels per side, best first."""
        bids = sorted(self.bids.items(), key=lambda kv: -float(kv[0]))[:limit]
        asks = sorted(self.asks.items(), key=lambda kv: float(kv[0]))[:limit]
        return {"lastUpdateId": self.last_update_id, "bids": [list(b) for b in bids], "asks": [list(a) for a in asks]}


def first_live_index(capture: Capture) -> int:
    """Index of the first diff that continues the capture snapshot (Binance procedure):
    spot drops ``u <= L``, USD-M drops ``u < L``. Raises ValueError if none does."""
    last = int(capture.snapshot["lastUpdateId"])
    for i, d in enumerate(capture.diffs):
        u = int(d["u"])
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
    payload: dict[str, Any]


def timeline(captures: list[Capture]) -> list[Event]:
    """All captures merged on one event-time axis (``E``), ties by arrival order.

    Diffs start at each capture's first live diff; trades and extra streams start at the
    earliest such diff across captures (one replay clock for the whole window)."""
    per: list[list[Event]] = []
    starts = []
    for c in captures:
        i0 = first_live_index(c)
        starts.append(int(c.diffs[i0]["E"]) * MS)
        rows: list[tuple[str, dict[str, Any]]] = [("depth", d) for d in c.diffs[i0:]]
        rows += [("trade", t) for t in c.trades]
        for kind, msgs in c.extra_streams.items():
            rows += [(kind, m) for m in msgs]
        events = [Event(int(p["E"]) * MS, int(p.get("seq", 0)), c.venue, c.symbol, k, p) for k, p in rows]
        per.append(sorted(events, key=lambda e: (e.ts_ns, e.order)))
    origin = min(starts)
    merged = heapq.merge(*per, key=lambda e: (e.ts_ns, e.order))
    return [e for e in merged if e.ts_ns >= origin or e.kind == "depth"]


def wire_payload(event: Event) -> dict[str, Any]:
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
    g = reduce(math.gcd, (b - a for a, b in itertools.pairwise(ints)), 0) or 1
    return format(Decimal(g).scaleb(-decimals), "f")


def exchange_info(captures: list[Capture], server_time_ms: int) -> dict[str, Any]:
    """A Binance ``exchangeInfo`` body for the captured symbols (tick and lot size inferred
    from the recorded prices and quantities)."""
    symbols = []
    for c in captures:
        prices = [p for p, _ in c.snapshot["bids"]] + [p for p, _ in c.snapshot["asks"]]
        qtys = [q for _, q in c.snapshot["bids"]][:200]
        symbols.append(
            {
                "symbol": c.symbol,
                "status": "TRADING",
                "baseAsset": c.symbol.removesuffix("USDT"),
                "quoteAsset": "USDT",
                "filters": [
                    {"filterType": "PRICE_FILTER", "tickSize": tick_size(prices)},
                    {"filterType": "LOT_SIZE", "stepSize": tick_size(["0", *qtys])},
                ],
            }
        )
    return {"timezone": "UTC", "serverTime": server_time_ms, "symbols": symbols}


@dataclass
class _Kline:
    open_ms: int
    o: Decimal
    h: Decimal
    lo: Decimal
    c: Decimal
    v: Decimal = Decimal(0)
    quote: Decimal = Decimal(0)
    n: int = 0

    def row(self, interval_ms: int) -> list[object]:
        return [
            self.open_ms,
            *(format(x, "f") for x in (self.o, self.h, self.lo, self.c, self.v)),
            self.open_ms + interval_ms - 1,
            format(self.quote, "f"),
            self.n,
            "0",
            "0",
            "0",
        ]


def klines_from_trades(trades: list[dict[str, Any]], until_ms: int, interval_ms: int = 60_000) -> list[list[object]]:
    """Binance kline rows ``[openTime, o, h, l, c, v, closeTime, quoteVolume, trades, ...]`` of
    the *closed* intervals built from trades with trade time < ``until_ms`` (no look-ahead).
    Exact decimal arithmetic on the recorded strings."""
    out: list[_Kline] = []
    limit = until_ms - until_ms % interval_ms
    for t in trades:
        ts = int(str(t["T"]))
        if ts >= limit:
            break
        px, qty = Decimal(str(t["p"])), Decimal(str(t["q"]))
        open_ms = ts - ts % interval_ms
        if not out or out[-1].open_ms != open_ms:
            out.append(_Kline(open_ms, px, px, px, px))
        k = out[-1]
        k.h, k.lo, k.c = max(k.h, px), min(k.lo, px), px
        k.v += qty
        k.quote += px * qty
        k.n += 1
    return [k.row(interval_ms) for k in out]


DAY_MS = 86_400_000


def first_mid(snapshot: dict[str, Any]) -> float | None:
    """The mid (quote units) of a Binance depth snapshot (``{"bids": [[price, qty], …],
    "asks": …}``, prices as decimal strings); None when a side is empty or unreadable."""
    try:
        bid, ask = float(snapshot["bids"][0][0]), float(snapshot["asks"][0][0])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    mid = 0.5 * (bid + ask)
    return mid if math.isfinite(mid) and mid > 0 else None


def reanchor(rows: list[list[object]], origin_ms: int) -> list[list[object]]:
    """Shift kline rows by a whole number of days so the last bar closes at or before
    ``origin_ms`` (the replay start): recorded history then precedes the replayed window,
    time-of-day is kept and values are unchanged."""
    if not rows:
        return []
    last_close = int(str(rows[-1][6])) + 1
    shift = -((last_close - origin_ms + DAY_MS - 1) // DAY_MS) * DAY_MS
    return [[int(str(r[0])) + shift, *r[1:6], int(str(r[6])) + shift, *r[7:]] for r in rows]


def pass_shift_ms(first_ms: int, last_ms: int, session: int) -> int:
    """Event-time shift (ms) of replay pass ``session`` (0, 1, …): each pass replays the
    window one whole number of days later than the one before, so event time never goes
    back across a loop (decision clocks, audit ids and stored bars keep moving forward) and
    the time of day is kept. The step is the window's span rounded up to whole days (one
    day for every shipped window). Raises ValueError for ``last_ms < first_ms`` or a
    negative ``session``."""
    if last_ms < first_ms or session < 0:
        raise ValueError(f"bad pass: first {first_ms} last {last_ms} session {session}")
    days = (last_ms - first_ms) // DAY_MS + 1
    return session * days * DAY_MS


#: the wire fields that carry event/transaction times in ms (depth, trade, markPrice streams)
TIME_FIELDS = ("E", "T")


def shift_payload(payload: dict[str, Any], shift_ms: int) -> dict[str, Any]:
    """The Binance payload with its time fields (``E`` event time, ``T`` transaction/trade
    time — in ``markPrice`` the next funding time) moved by ``shift_ms``; other fields
    unchanged. The input is not modified; ``shift_ms == 0`` returns it as is."""
    if not shift_ms:
        return payload
    out = dict(payload)
    for k in TIME_FIELDS:
        v = out.get(k)
        if isinstance(v, int) and not isinstance(v, bool):
            out[k] = v + shift_ms
    return out


def shift_klines(rows: list[list[object]], shift_ms: int) -> list[list[object]]:
    """Kline rows (Binance array form: open time first, close time seventh) moved by
    ``shift_ms``; values unchanged."""
    if not shift_ms:
        return rows
    return [[int(str(r[0])) + shift_ms, *r[1:6], int(str(r[6])) + shift_ms, *r[7:]] for r in rows]
