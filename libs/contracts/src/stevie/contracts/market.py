"""Market-data contracts: L2 depth, book views, trades and bars.

Prices are quote currency per 1 base unit (USDT for the Binance pairs); sizes are in base
units (BTC, ETH), for spot and USD-M alike (Binance API docs, "Order book" / "Trade streams").
"""

from __future__ import annotations

import enum

import msgspec

Level = tuple[float, float]
"""One price level: (price in quote units, size in base units)."""


class MarketKind(str, enum.Enum):
    """Which Binance sequencing rule a venue follows.

    SPOT: diffs carry ``U``/``u``; continuity is ``U == previous u + 1``.
    USDM: diffs also carry ``pu``; continuity is ``pu == previous u`` (update ids are global
    across symbols, so they jump). Source: Binance "How to manage a local order book correctly"
    (spot API docs and USD-M futures API docs).
    """

    SPOT = "spot"
    USDM = "usdm"


class BookState(str, enum.Enum):
    """LIVE: in sync and served. SYNCING: resynchronising, never served as truth.
    STALE: was LIVE but no update within the staleness window."""

    LIVE = "LIVE"
    SYNCING = "SYNCING"
    STALE = "STALE"


class DepthSnapshot(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """REST depth snapshot (``GET /api/v3/depth`` or ``/fapi/v1/depth``), best level first."""

    venue: str
    symbol: str
    last_update_id: int
    bids: list[Level]
    asks: list[Level]
    ts_event_ns: int
    ts_init_ns: int


class DepthDiff(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """One diff-depth event (``<sym>@depth``): absolute sizes per level, size 0 removes the level.

    ``first_update_id`` = Binance ``U``, ``final_update_id`` = ``u``,
    ``prev_final_update_id`` = ``pu`` (USD-M only, else None).
    """

    venue: str
    symbol: str
    first_update_id: int
    final_update_id: int
    prev_final_update_id: int | None
    bids: list[Level]
    asks: list[Level]
    ts_event_ns: int
    ts_init_ns: int


class BookTopK(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Top-k view of a maintained book. ``seq`` is the last applied update id (Binance ``u``)."""

    venue: str
    symbol: str
    seq: int
    state: BookState
    bids: list[Level]
    asks: list[Level]
    ts_event_ns: int
    ts_init_ns: int


class BookStatus(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """State change of a maintained book, with the reason (e.g. ``gap``, ``crossed``, ``overflow``)."""

    venue: str
    symbol: str
    state: BookState
    reason: str
    seq: int
    resyncs: int
    ts_event_ns: int
    ts_init_ns: int


class Trade(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """One exchange trade. ``aggressor`` is ``buy`` when the taker bought
    (Binance ``m`` = is_buyer_maker false)."""

    venue: str
    symbol: str
    trade_id: int
    price: float
    size: float
    aggressor: str
    ts_event_ns: int
    ts_init_ns: int


class Bar(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """OHLCV bar over ``[open_time_ns, open_time_ns + interval_ns)``; volume in base units.
    ``ts_event_ns`` is the bar close time (open + interval)."""

    venue: str
    symbol: str
    interval_ns: int
    open_time_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int
    ts_event_ns: int
    ts_init_ns: int


class MicroFeatures(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Rolling microstructure features of one venue+symbol at a book update (event time).
    obi, ti ∈ [−1, 1]; spread_bps and micro_vol_bps in basis points; cancel_rate in base
    units per second; mid in quote units."""

    venue: str
    symbol: str
    obi: float
    ti: float
    spread_bps: float
    micro_vol_bps: float
    cancel_rate: float
    mid: float
    ts_event_ns: int
    ts_init_ns: int
