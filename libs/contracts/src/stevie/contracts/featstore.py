"""Contracts of the feature store, its online-vs-offline parity check and the OHLCV route.

Rows (``FeatureValue``, ``FeatureSample``) are what ``stevie.store.features`` writes and reads;
``ParityRequest``/``ParityReport`` are ``features.parity`` (``GET /api/features/parity``);
``OhlcvRequest``/``OhlcvBars`` are ``reporter.ohlcv`` (``GET /api/market/ohlcv``). Times are
integer nanoseconds since the epoch unless a field says ``Ms`` (milliseconds, as the HTTP
contract's other ``ts`` fields).
"""

from __future__ import annotations

import msgspec

# The MicroFeatures fields the features service stores, in this order (units: obi and ti in
# [-1, 1], spread_bps and micro_vol_bps in basis points, cancel_rate base units per second,
# mid quote units).
FEATURES: tuple[str, ...] = ("obi", "ti", "spread_bps", "micro_vol_bps", "cancel_rate", "mid")


class FeatureValue(msgspec.Struct, frozen=True, kw_only=True):
    """One stored value: ``feature`` of ``venue``/``symbol`` at event time ``ts_event_ns``."""

    feature: str
    venue: str
    symbol: str
    ts_event_ns: int
    value: float


class FeatureSample(msgspec.Struct, frozen=True, kw_only=True):
    """Lineage of one stored feature vector: what the kernel had been fed when it computed it.

    ``run_id``: the features process; ``epoch``: kernel resets of this venue+symbol before it
    in that run; ``n``: its index within the epoch (0 = first vector after the reset);
    ``seq``: the book's last applied update id; ``levels``: levels per side of the published
    book (max of both sides); ``trade_first``/``trade_last``: ids of the first trade fed in the
    epoch and of the last fed before this book (None: no trade yet)."""

    venue: str
    symbol: str
    ts_event_ns: int
    run_id: str
    epoch: int
    n: int
    seq: int
    levels: int
    trade_first: int | None = None
    trade_last: int | None = None


class ParityRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    """Optional filters: one venue and/or one symbol (default: every stored venue+symbol)."""

    venue: str | None = None
    symbol: str | None = None


class FeatureParity(msgspec.Struct, frozen=True):
    """One feature: rows compared, largest |online − offline|, rows beyond the tolerance."""

    rowsCompared: int
    maxAbsDelta: float
    mismatches: int
    verdict: str  # "exact" | "mismatch" | "no_data"


class KeyParity(msgspec.Struct, frozen=True):
    """One venue+symbol: the capture it was recomputed from and what was compared or skipped.
    ``epochsSkipped`` counts epochs with no comparable prefix; ``rowsSkipped`` the stored
    vectors outside every comparable prefix (later passes, gaps, missing lineage)."""

    venue: str
    symbol: str
    capture: str
    epochsCompared: int
    epochsSkipped: int
    rowsCompared: int
    rowsSkipped: int
    startNs: int
    endNs: int
    reason: str = ""


class Mismatch(msgspec.Struct, frozen=True):
    """The first disagreeing value (for a human to look at)."""

    venue: str
    symbol: str
    feature: str
    tsEventNs: int
    online: float
    offline: float


class ParityReport(msgspec.Struct, frozen=True, tag=True):
    """``verdict``: ``exact`` when every compared row agrees within ``tolerance`` (and at least
    one was compared), ``mismatch`` otherwise, ``no_data`` with nothing to compare.
    ``compared`` says which rows are compared (the replay-pass rule)."""

    verdict: str
    tolerance: float
    features: dict[str, FeatureParity]
    keys: list[KeyParity]
    compared: str
    unmatchedOnline: int = 0
    firstMismatch: Mismatch | None = None


class OhlcvRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    """``symbol`` (e.g. BTCUSDT), ``interval`` (Binance names: 1m 3m 5m 15m 30m 1h 2h 4h 1d),
    ``limit`` bars (1..1000, the most recent ones), ``venue`` (``binance`` spot or
    ``binance-usdm``)."""

    symbol: str = ""
    interval: str = "1m"
    limit: int = 500
    venue: str = "binance"


class OhlcvBar(msgspec.Struct, frozen=True):
    """One bar: ``ts`` its open time (ms since the epoch, UTC); prices in quote units,
    ``volume`` in base units."""

    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float


class OhlcvBars(msgspec.Struct, frozen=True, tag=True):
    """Bars oldest first (the route answers the list as a top-level array)."""

    bars: list[OhlcvBar]
