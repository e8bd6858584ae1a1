"""Venue registry and smart-order-routing contracts (request/reply of the ``venues`` service).

JSON field names are the HTTP contract (MISSION.md: ``latencyMs``, ``spread_bps``, ``topDepth``,
``feeBps``, ``reliabilityScore``, ``rateRemaining``; ``{venue, score, reasons}``). Costs are
in basis points of the order's notional; sizes in base units; depth in quote units.
"""

from __future__ import annotations

import msgspec


class VenueRegistryRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    """``symbol``: only that symbol's rows ('' = every venue × symbol)."""

    symbol: str = ""


class VenueInfo(msgspec.Struct, frozen=True):
    """One venue × symbol as the router sees it now.

    kind: ``spot`` or ``perp``. state: the book's LIVE/SYNCING/STALE. latencyMs: EWMA of the
    measured REST and WebSocket round trips (ms; null before the first sample), with the two
    EWMAs apart. spread_bps: (ask − bid)/mid·1e4 of the LIVE book (null otherwise).
    topDepth: quote units resting within ``topDepthBps`` of the mid, both sides. feeBps /
    makerFeeBps: taker / maker fee (bps). reliabilityScore: EWMA in [0, 1] of the venue's
    health (resyncs, disconnects, errors, staleness). rateRemaining: REST request weight left
    in the budgeter's window (null when the budgeter does not know the venue). microVolBps:
    realised micro-volatility of the mid over the features window (bps). resyncs: book resyncs
    seen. ts: event time of the book (ms, null before one)."""

    venue: str
    symbol: str
    kind: str
    state: str
    latencyMs: float | None
    restLatencyMs: float | None
    wsLatencyMs: float | None
    spread_bps: float | None
    topDepth: float | None
    topDepthBps: float
    feeBps: float
    makerFeeBps: float
    reliabilityScore: float
    rateRemaining: int | None
    microVolBps: float | None
    resyncs: int
    ts: int | None


class VenueRegistry(msgspec.Struct, frozen=True, tag=True):
    venues: list[VenueInfo]


class VenueScoreRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    """Score a taker order of ``size`` base units of ``symbol`` (``side`` buy or sell)."""

    symbol: str
    size: float
    side: str = "buy"


class CostBreakdown(msgspec.Struct, frozen=True):
    """Expected all-in cost (bps of notional) of one order on one venue:
    ``score = feeBps + impactBps + halfSpreadBps + latencyBps + failureBps``.

    impactBps: walk-the-book slippage of the average fill against the touch (the part beyond
    the displayed depth is charged at the last level plus the shortfall penalty).
    latencyBps: σ_micro·√latency (σ per √s from the venue's micro-vol). failureBps:
    (1 − reliability)·failure cost."""

    feeBps: float
    impactBps: float
    halfSpreadBps: float
    latencyBps: float
    failureBps: float
    filledFraction: float


class VenueAlternative(msgspec.Struct, frozen=True):
    """One candidate venue: ``eligible`` false (and ``score`` null) when its book is not LIVE
    and fresh or it has no request budget left; ``reason`` says why."""

    venue: str
    eligible: bool
    score: float | None
    cost: CostBreakdown | None
    reason: str
    midQuote: float | None


class VenueScore(msgspec.Struct, frozen=True, tag=True):
    """The cheapest eligible venue: ``score`` = its expected all-in cost (bps); ``reasons``
    explain the choice (cost parts, the runner-up, spot/perp basis, skipped venues);
    ``alternatives`` = every venue, cheapest first, ineligible ones last. ``basisBps`` =
    (mid − reference spot mid)/reference spot mid·1e4 per venue."""

    venue: str
    symbol: str
    side: str
    size: float
    score: float
    reasons: list[str]
    alternatives: list[VenueAlternative]
    basisBps: dict[str, float]
    cost: CostBreakdown
    midQuote: float


class VenueRoute(msgspec.Struct, frozen=True):
    """What an order's audit records about its routing: the venue chosen (and the one filled,
    which differs only when execution does not track the chosen venue's book), its expected
    cost (bps, null when the venues service did not answer) and the reasons; ``arrivalMid``:
    the filled venue's mid at routing time (quote units) — the slippage reference."""

    chosen: str
    filled: str
    scoreBps: float | None
    reasons: list[str]
    arrivalMid: float | None = None
    alternatives: dict[str, float | None] = {}


class VenueReportRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    """``window``: ``7d``, ``24h``, ``30m``, ``90s`` or an integer number of seconds."""

    window: str | int = "7d"


class VenueReportRow(msgspec.Struct, frozen=True):
    """Per venue over the window. fills: audits with a non-zero fill. winRate: share of the
    marked fills whose mark-out side·(mark − fill price) > 0, mark = close of the first
    1-minute bar of that venue closing at or after the fill time + ``markoutS`` (null when none
    is marked yet). slippageBps: mean side·(fill price − arrival mid)/arrival mid·1e4
    (positive = paid). notionalQuote, feesQuote: sums. downtimeS: wall seconds any of the
    venue's books was not LIVE within the window; downtimeFraction: downtimeS over the part of
    the window the venue was observed; resyncs: transitions out of LIVE."""

    venue: str
    fills: int
    marked: int
    winRate: float | None
    slippageBps: float | None
    slippageBpsP95: float | None
    notionalQuote: float
    feesQuote: float
    downtimeS: float
    downtimeFraction: float | None
    resyncs: int


class VenueReport(msgspec.Struct, frozen=True, tag=True):
    """``windowS`` seconds of wall time ending at ``windowEnd`` (ms since epoch, when the
    report was made); fills are selected by the time Stevie recorded them."""

    window: str
    windowS: float
    windowStart: int
    windowEnd: int
    markoutS: float
    venues: list[VenueReportRow]


class VenueHealth(msgspec.Struct, frozen=True):
    """One venue's inputs to the score besides its books: ``kind`` spot|perp, taker / maker
    fee (bps), ``latencyMs`` (EWMA of the measured REST and WebSocket round trips, ms; null
    before the first), ``reliabilityScore`` in [0, 1], ``rateRemaining`` (REST weight left;
    null when unknown)."""

    venue: str
    kind: str
    feeBps: float
    makerFeeBps: float
    latencyMs: float | None
    reliabilityScore: float
    rateRemaining: int | None


class VenueScoring(msgspec.Struct, frozen=True, tag=True):
    """Published by the venues service every ``tickS`` on ``{root}.venues.scoring``: what its
    score needs besides the books and features every subscriber sees on the bus, so a
    subscriber scores with the same pure core (``stevie.services.venues.core.Registry``).
    ``symbols``: the symbols scored; ``staleMs``: a LIVE book without an update for this long is
    not eligible; ``topDepthBps``, ``failureCostBps``, ``shortfallPenaltyBps``, ``microWindowS``:
    the cost parameters; ``ts_ns``: wall time of the publication."""

    venues: list[VenueHealth]
    symbols: list[str]
    staleMs: float
    topDepthBps: float
    failureCostBps: float
    shortfallPenaltyBps: float
    microWindowS: float
    tickS: float
    ts_ns: int
