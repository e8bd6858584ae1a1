"""Microstructure features over event time (pure, incremental).

Definitions (Cont, Kukanov & Stoikov 2014, "The Price Impact of Order Book Events",
J. Financial Econometrics 12(1) for order-flow imbalance ideas; Cartea, Jaimungal & Penalva
2015, "Algorithmic and High-Frequency Trading", ch. 4 for the book/trade imbalances):
- OBI = (B − A)/(B + A), B and A the total sizes of the top k bid and ask levels ∈ [−1, 1].
- TI = (buy volume − sell volume)/(buy + sell) over the trade window, aggressor-signed ∈ [−1, 1].
- spread_bps = (ask − bid)/mid · 1e4.
- micro-vol = sqrt(Σ r²) of log mid-price changes inside the window (realised, not annualised),
  in bps.
- cancel rate = size removed from visible levels and not explained by trades at that price,
  per second of the window (base units / s).
Every estimator takes the event time ``ts_ns``; the window is ``[ts − window_ns, ts]``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from stevie.quant.errors import QuantInputError

Level = tuple[float, float]


def obi(bids: Sequence[Level], asks: Sequence[Level], k: int = 5) -> float:
    """Order-book imbalance over the top ``k`` levels; 0 when both sides are empty."""
    b = sum(q for _, q in bids[:k])
    a = sum(q for _, q in asks[:k])
    return 0.0 if b + a <= 0 else (b - a) / (b + a)


def spread_bps(best_bid: float, best_ask: float) -> float:
    """(ask − bid)/mid · 1e4. Raises QuantInputError on a non-positive or crossed quote."""
    if not (best_bid > 0 and best_ask > 0) or best_ask < best_bid:
        raise QuantInputError(f"invalid quote bid={best_bid} ask={best_ask}")
    return (best_ask - best_bid) / (0.5 * (best_bid + best_ask)) * 1e4


class _Window:
    """Values with timestamps inside a trailing event-time window."""

    def __init__(self, window_ns: int) -> None:
        if window_ns <= 0:
            raise QuantInputError("window_ns must be > 0")
        self.window_ns = window_ns
        self.items: deque[tuple[int, float, float]] = deque()

    def add(self, ts_ns: int, a: float, b: float = 0.0) -> None:
        if self.items and ts_ns < self.items[-1][0]:
            raise QuantInputError("event time went backwards")
        self.items.append((ts_ns, a, b))
        self.evict(ts_ns)

    def evict(self, now_ns: int) -> None:
        while self.items and self.items[0][0] < now_ns - self.window_ns:
            self.items.popleft()


class TradeImbalance:
    """TI over a trailing window: ``update(size, is_buy, ts_ns)``, ``value``."""

    def __init__(self, window_ns: int = 5_000_000_000) -> None:
        self._w = _Window(window_ns)

    def update(self, size: float, is_buy: bool, ts_ns: int) -> None:
        self._w.add(ts_ns, size if is_buy else 0.0, 0.0 if is_buy else size)

    def value(self, now_ns: int) -> float:
        self._w.evict(now_ns)
        buy = sum(i[1] for i in self._w.items)
        sell = sum(i[2] for i in self._w.items)
        return 0.0 if buy + sell <= 0 else (buy - sell) / (buy + sell)

    def reset(self) -> None:
        self._w.items.clear()


class MicroVol:
    """Realised micro-volatility (bps) of the mid over a trailing window."""

    def __init__(self, window_ns: int = 5_000_000_000) -> None:
        self._w = _Window(window_ns)
        self._last_mid: float | None = None

    def update(self, mid: float, ts_ns: int) -> None:
        if not (math.isfinite(mid) and mid > 0):
            raise QuantInputError(f"mid must be > 0, got {mid}")
        if self._last_mid is not None:
            r = math.log(mid / self._last_mid)
            self._w.add(ts_ns, r * r)
        self._last_mid = mid

    def value(self, now_ns: int) -> float:
        self._w.evict(now_ns)
        return math.sqrt(sum(i[1] for i in self._w.items)) * 1e4

    def reset(self) -> None:
        self._w.items.clear()
        self._last_mid = None


class CancelRate:
    """Unexplained size removed from visible levels per second.

    ``on_trade(price, size, ts)`` records traded size per price since the last book;
    ``on_book(bids, asks, ts)`` compares with the previous visible book: at every price still
    inside the visible range, removed = max(0, prev − new − traded there)."""

    def __init__(self, window_ns: int = 5_000_000_000) -> None:
        self._w = _Window(window_ns)
        self._prev: tuple[dict[float, float], dict[float, float]] | None = None
        self._traded: dict[float, float] = {}

    def on_trade(self, price: float, size: float) -> None:
        self._traded[price] = self._traded.get(price, 0.0) + size

    def on_book(self, bids: Sequence[Level], asks: Sequence[Level], ts_ns: int) -> None:
        cur = (dict(bids), dict(asks))
        if self._prev is not None and bids and asks:
            removed = 0.0
            lo, hi = bids[-1][0], asks[-1][0]  # only prices still inside the visible range
            for prev_side, new_side in zip(self._prev, cur, strict=True):
                for price, q in prev_side.items():
                    if lo <= price <= hi:
                        drop = q - new_side.get(price, 0.0) - self._traded.get(price, 0.0)
                        removed += max(0.0, drop)
            self._w.add(ts_ns, removed)
        self._prev = cur
        self._traded.clear()

    def value(self, now_ns: int) -> float:
        self._w.evict(now_ns)
        return sum(i[1] for i in self._w.items) / (self._w.window_ns / 1e9)

    def reset(self) -> None:
        self._w.items.clear()
        self._prev = None
        self._traded.clear()


@dataclass(frozen=True)
class MicroFeatures:
    obi: float
    ti: float
    spread_bps: float
    micro_vol_bps: float
    cancel_rate: float
    mid: float
    ts_ns: int


class MicrostructureState:
    """All features of one venue+symbol, fed by books and trades in event time."""

    def __init__(self, k: int = 5, window_ns: int = 5_000_000_000) -> None:
        self.k = k
        self.ti = TradeImbalance(window_ns)
        self.vol = MicroVol(window_ns)
        self.cancel = CancelRate(window_ns)

    def on_trade(self, price: float, size: float, is_buy: bool, ts_ns: int) -> None:
        self.ti.update(size, is_buy, ts_ns)
        self.cancel.on_trade(price, size)

    def on_book(self, bids: list[Level], asks: list[Level], ts_ns: int) -> MicroFeatures | None:
        """Update from a LIVE top-k book; None when a side is empty."""
        if not bids or not asks:
            return None
        mid = 0.5 * (bids[0][0] + asks[0][0])
        self.vol.update(mid, ts_ns)
        self.cancel.on_book(bids, asks, ts_ns)
        return MicroFeatures(
            obi(bids, asks, self.k),
            self.ti.value(ts_ns),
            spread_bps(bids[0][0], asks[0][0]),
            self.vol.value(ts_ns),
            self.cancel.value(ts_ns),
            mid,
            ts_ns,
        )

    def reset(self) -> None:
        """Forget everything (after a resync the next book is not a continuation)."""
        self.ti.reset()
        self.vol.reset()
        self.cancel.reset()
