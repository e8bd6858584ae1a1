"""1-minute OHLCV bars built from trades (pure).

A bar covers ``[open, open + interval)`` of trade event time; it is emitted when the first
trade of a later interval arrives (event time, no wall clock), so it never contains a trade
from its future. Minutes without trades produce no bar (as Binance klines with 0 trades
would carry the previous close; consumers that need them forward-fill).
"""

from __future__ import annotations

from collections.abc import Callable

from stevie.contracts import Bar, Trade

MINUTE_NS = 60_000_000_000


class BarBuilder:
    """Aggregates one venue+symbol's trades into bars of ``interval_ns``."""

    def __init__(
        self, venue: str, symbol: str, interval_ns: int = MINUTE_NS, init_clock: Callable[[], int] | None = None
    ) -> None:
        if interval_ns <= 0:
            raise ValueError("interval_ns must be > 0")
        self.venue, self.symbol, self.interval_ns = venue, symbol, interval_ns
        self._open_ns: int | None = None
        self._o = self._h = self._l = self._c = self._v = 0.0
        self._n = 0
        self._init_clock = init_clock

    def on_trade(self, trade: Trade) -> list[Bar]:
        """Add a trade; returns the bar it closed, if any. A trade older than the open bar
        is ignored (trades arrive in id order; an older one is a replay/duplicate)."""
        open_ns = trade.ts_event_ns - trade.ts_event_ns % self.interval_ns
        out: list[Bar] = []
        if self._open_ns is not None and open_ns < self._open_ns:
            return out
        if self._open_ns is not None and open_ns > self._open_ns:
            out.append(self._bar())
            self._open_ns = None
        if self._open_ns is None:
            self._open_ns = open_ns
            self._o = self._h = self._l = trade.price
            self._v, self._n = 0.0, 0
        self._h = max(self._h, trade.price)
        self._l = min(self._l, trade.price)
        self._c = trade.price
        self._v += trade.size
        self._n += 1
        return out

    def _bar(self) -> Bar:
        assert self._open_ns is not None
        close_ns = self._open_ns + self.interval_ns
        return Bar(
            venue=self.venue,
            symbol=self.symbol,
            interval_ns=self.interval_ns,
            open_time_ns=self._open_ns,
            open=self._o,
            high=self._h,
            low=self._l,
            close=self._c,
            volume=self._v,
            trades=self._n,
            ts_event_ns=close_ns,
            ts_init_ns=self._init_clock() if self._init_clock else close_ns,
        )
