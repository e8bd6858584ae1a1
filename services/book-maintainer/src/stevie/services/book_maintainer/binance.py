"""Binance wire format at the edge: typed decoders for the combined stream and REST depth.

Decoded with msgspec (non-strict, so Binance's decimal strings become floats) straight into
Structs; nothing untyped flows inward. Field meanings: Binance WebSocket Market Streams
(``depthUpdate``: E event time ms, T transaction time ms (USD-M), U/u/pu update ids,
b/a levels; ``trade``: t id, p price, q quantity, T trade time, m buyer-is-maker).
"""

from __future__ import annotations

import msgspec

from stevie.contracts import DepthDiff, DepthSnapshot, Trade

MS = 1_000_000


class BnDepth(msgspec.Struct, tag_field="e", tag="depthUpdate"):
    E: int
    s: str
    U: int
    u: int
    b: list[tuple[float, float]]
    a: list[tuple[float, float]]
    pu: int | None = None
    T: int | None = None


class BnTrade(msgspec.Struct, tag_field="e", tag="trade"):
    E: int
    s: str
    t: int
    p: float
    q: float
    T: int
    m: bool


class BnMarkPrice(msgspec.Struct, tag_field="e", tag="markPriceUpdate"):
    E: int
    s: str


class BnEnvelope(msgspec.Struct):
    stream: str
    data: BnDepth | BnTrade | BnMarkPrice


class BnDepthSnapshot(msgspec.Struct):
    lastUpdateId: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]
    E: int | None = None
    T: int | None = None


envelope_decoder = msgspec.json.Decoder(BnEnvelope, strict=False)
snapshot_decoder = msgspec.json.Decoder(BnDepthSnapshot, strict=False)


def to_diff(venue: str, d: BnDepth, init_ns: int) -> DepthDiff:
    """Binance depthUpdate → DepthDiff (event time = ``E``)."""
    return DepthDiff(
        venue=venue,
        symbol=d.s,
        first_update_id=d.U,
        final_update_id=d.u,
        prev_final_update_id=d.pu,
        bids=d.b,
        asks=d.a,
        ts_event_ns=d.E * MS,
        ts_init_ns=init_ns,
    )


def to_trade(venue: str, t: BnTrade, init_ns: int) -> Trade:
    """Binance trade → Trade (event time = trade time ``T``; ``m`` true means the seller was
    the aggressor)."""
    return Trade(
        venue=venue,
        symbol=t.s,
        trade_id=t.t,
        price=t.p,
        size=t.q,
        aggressor="sell" if t.m else "buy",
        ts_event_ns=t.T * MS,
        ts_init_ns=init_ns,
    )


def to_snapshot(venue: str, symbol: str, s: BnDepthSnapshot, init_ns: int) -> DepthSnapshot:
    """REST depth body → DepthSnapshot (event time = ``E`` when the venue gives one, else receive time)."""
    return DepthSnapshot(
        venue=venue,
        symbol=symbol,
        last_update_id=s.lastUpdateId,
        bids=s.bids,
        asks=s.asks,
        ts_event_ns=(s.E * MS) if s.E else init_ns,
        ts_init_ns=init_ns,
    )
