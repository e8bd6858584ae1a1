"""venues core (pure): the venue registry and the smart-order-routing score.

Expected all-in cost of a taker order of ``size`` base units on venue v (bps of notional):

    score_v = fee_v + impact_v + spread_v/2 + σ_v·√latency_v + (1 − reliability_v)·C_fail

- fee_v: the venue's taker fee (Binance's published tiers, settings).
- impact_v: walk-the-book slippage of the average fill against the touch on v's LIVE top-k
  book (``stevie.quant.impact.walk_the_book``); the part the displayed depth cannot fill is
  charged at the last level plus a shortfall penalty.
- spread_v/2: half the quoted spread, (ask − bid)/mid·1e4/2 — the touch against the mid.
- σ_v·√latency_v: one σ of the mid over the order's round trip, σ per √s from the venue's
  realised micro-volatility (``micro_vol_bps/√window_s``), latency = the EWMA of measured REST
  and WebSocket round trips (a latency-risk charge, as in Almgren–Chriss timing risk).
- (1 − reliability_v)·C_fail: the probability the order fails (resync, disconnect, error)
  times the expected cost of redoing it.

A venue whose book is not LIVE, not fresh (no update for ``stale_s``) or that has no REST
budget left is never chosen. Reliability is a wall-time EWMA in [0, 1] of a health
observation taken every tick: 0 if a resync, disconnect or probe error happened since the
last tick, else the fraction of the venue's books that are LIVE and fresh with the stream
connected. Weight of a new observation after Δt: 1 − 2^(−Δt/half_life). It starts at 1 and
only starts moving once the venue has been seen LIVE (the start-up snapshot is not a fault).

Times are passed in (``now_ns``): wall clock for liveness, staleness and reliability.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from stevie.contracts import BookState, BookStatus, BookTopK, Level, MicroFeatures, StreamStatus
from stevie.contracts.rpc import ProviderBudget
from stevie.contracts.venues import (
    CostBreakdown,
    VenueAlternative,
    VenueHealth,
    VenueInfo,
    VenueScore,
    VenueScoring,
)
from stevie.quant import impact
from stevie.quant.errors import QuantInputError
from stevie.services.venues.settings import VenueSpec

MS = 1_000_000
NS = 1_000_000_000


class NoLiveVenue(LookupError):
    """No venue has a LIVE, fresh book (with budget) for the symbol right now."""


@dataclass
class Ewma:
    """Per-sample EWMA: v ← (1 − α)·v + α·x, the first sample initialises (pandas/polars
    ``ewm(alpha=α, adjust=False)``)."""

    alpha: float
    value: float | None = None
    samples: int = 0

    def update(self, x: float) -> float:
        if not math.isfinite(x):
            raise QuantInputError(f"EWMA sample must be finite, got {x}")
        self.value = x if self.value is None else (1 - self.alpha) * self.value + self.alpha * x
        self.samples += 1
        return self.value


@dataclass
class TimeEwma:
    """Irregularly spaced EWMA with a half-life (s): v ← v + w·(x − v), w = 1 − 2^(−Δt/h)."""

    half_life_s: float
    value: float = 1.0
    last_ns: int | None = None

    def update(self, x: float, ts_ns: int) -> float:
        if self.last_ns is not None:
            dt = max(ts_ns - self.last_ns, 0) / NS
            w = 1.0 - 2.0 ** (-dt / self.half_life_s)
            self.value += w * (x - self.value)
        self.last_ns = ts_ns
        return self.value


@dataclass(frozen=True)
class CostParams:
    """Score parameters (see the module docstring): failure cost and shortfall penalty in bps,
    the micro-vol window in s (σ per √s = micro_vol/√window)."""

    failure_cost_bps: float = 20.0
    shortfall_penalty_bps: float = 50.0
    micro_window_s: float = 5.0


def mid_spread(bids: Sequence[Level], asks: Sequence[Level]) -> tuple[float, float]:
    """(mid in quote units, spread in bps of the mid). Raises QuantInputError on an empty or
    crossed book."""
    if not bids or not asks:
        raise QuantInputError("empty book side")
    bid, ask = bids[0][0], asks[0][0]
    if not (bid > 0 and ask > bid):
        raise QuantInputError(f"crossed or non-positive touch: bid {bid}, ask {ask}")
    mid = 0.5 * (bid + ask)
    return mid, (ask - bid) / mid * 1e4


def depth_within(bids: Sequence[Level], asks: Sequence[Level], band_bps: float) -> float:
    """Quote units (Σ price·size) resting within ``band_bps`` of the mid, both sides."""
    mid, _ = mid_spread(bids, asks)
    lo, hi = mid * (1 - band_bps / 1e4), mid * (1 + band_bps / 1e4)
    return sum(p * q for p, q in bids if p >= lo) + sum(p * q for p, q in asks if p <= hi)


def order_cost(
    bids: Sequence[Level],
    asks: Sequence[Level],
    size: float,
    side: int,
    fee_bps: float,
    micro_vol_bps: float,
    latency_ms: float,
    reliability: float,
    params: CostParams,
) -> CostBreakdown:
    """Expected all-in cost (bps) of a taker order of ``size`` base units, ``side`` +1 buy /
    −1 sell, on one book (best first). Raises QuantInputError on size ≤ 0, a bad side, an
    empty or crossed book, a negative latency or reliability outside [0, 1]."""
    if side not in (1, -1):
        raise QuantInputError(f"side must be +1 or -1, got {side}")
    if not math.isfinite(latency_ms) or latency_ms < 0 or not 0.0 <= reliability <= 1.0:
        raise QuantInputError("latency_ms must be >= 0 and reliability in [0, 1]")
    _, spread = mid_spread(bids, asks)
    levels = asks if side > 0 else bids
    fill = impact.walk_the_book(levels, size)
    frac = fill.filled / size
    impact_bps = fill.slippage_bps
    if not fill.complete:
        touch, last = levels[0][0], levels[-1][0]
        beyond = abs(last - touch) / touch * 1e4 + params.shortfall_penalty_bps
        impact_bps = frac * fill.slippage_bps + (1 - frac) * beyond
    sigma_per_sqrt_s = max(micro_vol_bps, 0.0) / math.sqrt(params.micro_window_s)
    return CostBreakdown(
        feeBps=fee_bps,
        impactBps=impact_bps,
        halfSpreadBps=spread / 2,
        latencyBps=sigma_per_sqrt_s * math.sqrt(latency_ms / 1e3),
        failureBps=(1.0 - reliability) * params.failure_cost_bps,
        filledFraction=frac,
    )


def _shape(sc: VenueScoring) -> tuple[object, ...]:
    """The static part of a ``VenueScoring`` (everything but the venue health and the time)."""
    venues = tuple((h.venue, h.kind, h.feeBps, h.makerFeeBps) for h in sc.venues)
    return (
        tuple(sc.symbols),
        sc.staleMs,
        sc.topDepthBps,
        sc.failureCostBps,
        sc.shortfallPenaltyBps,
        sc.microWindowS,
        venues,
    )


def total(c: CostBreakdown) -> float:
    return c.feeBps + c.impactBps + c.halfSpreadBps + c.latencyBps + c.failureBps


@dataclass
class _Book:
    top: BookTopK | None = None
    state: BookState = BookState.SYNCING
    received_ns: int = 0
    resyncs: int = 0
    micro_vol_bps: float | None = None


@dataclass
class _Venue:
    spec: VenueSpec
    reliability: TimeEwma
    latency: Ewma
    rest: Ewma
    ws: Ewma
    seen_live: bool = False
    faults: int = 0  # faults since the last tick
    connected: bool | None = None  # from the book maintainer's heartbeat (None: unknown)
    rate_remaining: int | None = None
    last_error: str = ""


@dataclass
class Registry:
    """What the router knows about every venue × symbol (pure; feed it, then ask it)."""

    specs: list[VenueSpec]
    symbols: list[str]
    stale_ns: int
    depth_bps: float
    params: CostParams = field(default_factory=CostParams)
    latency_alpha: float = 0.2
    half_life_s: float = 60.0
    books: dict[tuple[str, str], _Book] = field(default_factory=dict)
    venues: dict[str, _Venue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for s in self.specs:
            a = self.latency_alpha
            self.venues[s.name] = _Venue(s, TimeEwma(self.half_life_s), Ewma(a), Ewma(a), Ewma(a))
            for sym in self.symbols:
                self.books[(s.name, sym)] = _Book()

    # -- inputs -------------------------------------------------------------------------
    def on_book(self, top: BookTopK, now_ns: int) -> None:
        b = self.books.get((top.venue, top.symbol))
        if b is None:
            return
        b.top = top if top.state is BookState.LIVE else None
        b.state, b.received_ns = top.state, now_ns
        if top.state is BookState.LIVE:
            self.venues[top.venue].seen_live = True

    def on_status(self, st: BookStatus, now_ns: int) -> None:
        """A state change; leaving LIVE (a resync or a disconnect) is a fault."""
        b = self.books.get((st.venue, st.symbol))
        if b is None:
            return
        if b.state is BookState.LIVE and st.state is not BookState.LIVE:
            self.venues[st.venue].faults += 1
            b.resyncs += 1
        b.state, b.received_ns = st.state, now_ns
        if st.state is not BookState.LIVE:
            b.top = None
        else:
            self.venues[st.venue].seen_live = True

    def on_micro(self, f: MicroFeatures) -> None:
        b = self.books.get((f.venue, f.symbol))
        if b is not None:
            b.micro_vol_bps = f.micro_vol_bps

    def on_streams(self, streams: Iterable[StreamStatus]) -> None:
        """The book maintainer's stream states (heartbeat); a connected → disconnected edge is
        a fault."""
        for s in streams:
            v = self.venues.get(s.venue)
            if v is None:
                continue
            if v.connected and not s.connected:
                v.faults += 1
            v.connected = s.connected

    def on_latency(self, venue: str, kind: str, rtt_ms: float) -> None:
        """A measured round trip (``kind`` rest or ws, ms). Unknown venue → ignored."""
        v = self.venues.get(venue)
        if v is None or not math.isfinite(rtt_ms) or rtt_ms < 0:
            return
        (v.rest if kind == "rest" else v.ws).update(rtt_ms)
        v.latency.update(rtt_ms)

    def on_error(self, venue: str, what: str) -> None:
        """A failed probe (REST error or timeout, WebSocket failure): a fault."""
        v = self.venues.get(venue)
        if v is not None:
            v.faults += 1
            v.last_error = what[:200]

    def on_budget(self, providers: Iterable[ProviderBudget]) -> None:
        for p in providers:
            v = self.venues.get(p.provider)
            if v is not None:
                v.rate_remaining = p.rateRemaining

    # -- state --------------------------------------------------------------------------
    def live(self, venue: str, symbol: str, now_ns: int) -> bool:
        b = self.books.get((venue, symbol))
        return bool(
            b is not None
            and b.state is BookState.LIVE
            and b.top is not None
            and now_ns - b.received_ns <= self.stale_ns
        )

    def state(self, venue: str, symbol: str, now_ns: int) -> BookState:
        b = self.books[(venue, symbol)]
        if b.state is BookState.LIVE and now_ns - b.received_ns > self.stale_ns:
            return BookState.STALE
        return b.state

    def tick(self, now_ns: int) -> None:
        """One reliability observation per venue (see the module docstring)."""
        for name, v in self.venues.items():
            if not v.seen_live:
                v.faults = 0
                continue
            if v.faults:
                x = 0.0
            else:
                ok = [self.live(name, sym, now_ns) for sym in self.symbols]
                x = (sum(ok) / len(ok)) if ok else 1.0
                if v.connected is False:
                    x = 0.0
            v.reliability.update(x, now_ns)
            v.faults = 0

    def reliability(self, venue: str) -> float:
        return self.venues[venue].reliability.value

    # -- mirror: the score in another process -----------------------------------------------
    def scoring(self, now_ns: int, tick_s: float) -> VenueScoring:
        """Everything ``score`` reads besides the books and features (venue health, fees,
        parameters), for a subscriber's mirror (``from_scoring``/``apply_scoring``);
        ``tick_s``: how often it is published."""
        health = [
            VenueHealth(
                name,
                v.spec.kind,
                v.spec.taker_bps,
                v.spec.maker_bps,
                v.latency.value,
                v.reliability.value,
                v.rate_remaining,
            )
            for name, v in self.venues.items()
        ]
        p = self.params
        return VenueScoring(
            health,
            list(self.symbols),
            self.stale_ns / MS,
            self.depth_bps,
            p.failure_cost_bps,
            p.shortfall_penalty_bps,
            p.micro_window_s,
            tick_s,
            now_ns,
        )

    @classmethod
    def from_scoring(cls, sc: VenueScoring) -> Registry:
        """A mirror of the publishing registry's scoring (no probes of its own: it takes the
        venue health from ``apply_scoring``; feed it the books and features from the bus)."""
        specs = [VenueSpec(h.venue, h.kind, "", "", h.feeBps, h.makerFeeBps) for h in sc.venues]
        params = CostParams(sc.failureCostBps, sc.shortfallPenaltyBps, sc.microWindowS)
        reg = cls(specs, list(sc.symbols), int(sc.staleMs * MS), sc.topDepthBps, params)
        reg.apply_scoring(sc)
        return reg

    def matches(self, sc: VenueScoring) -> bool:
        """True when ``sc`` describes this registry's venues, fees, symbols and parameters
        (then ``apply_scoring`` keeps the mirror exact; else build a new one)."""
        return _shape(sc) == _shape(self.scoring(sc.ts_ns, sc.tickS))

    def apply_scoring(self, sc: VenueScoring) -> None:
        """Take the publisher's venue health (latency, reliability, rate remaining) as is."""
        for h in sc.venues:
            v = self.venues.get(h.venue)
            if v is not None:
                v.latency.value, v.reliability.value, v.rate_remaining = (
                    h.latencyMs,
                    h.reliabilityScore,
                    h.rateRemaining,
                )

    # -- outputs ------------------------------------------------------------------------
    def registry(self, now_ns: int, symbol: str = "") -> list[VenueInfo]:
        """Every venue × symbol (or one symbol's). Raises KeyError for an unknown symbol."""
        if symbol and symbol not in self.symbols:
            raise KeyError(f"unknown symbol {symbol!r}; known: {', '.join(self.symbols)}")
        out = []
        for name, v in self.venues.items():
            for sym in [symbol] if symbol else self.symbols:
                b = self.books[(name, sym)]
                spread = depth = None
                if self.live(name, sym, now_ns) and b.top is not None:
                    try:
                        _, spread = mid_spread(b.top.bids, b.top.asks)
                        depth = depth_within(b.top.bids, b.top.asks, self.depth_bps)
                    except QuantInputError:
                        spread = depth = None
                out.append(
                    VenueInfo(
                        venue=name,
                        symbol=sym,
                        kind=v.spec.kind,
                        state=self.state(name, sym, now_ns).value,
                        latencyMs=v.latency.value,
                        restLatencyMs=v.rest.value,
                        wsLatencyMs=v.ws.value,
                        spread_bps=spread,
                        topDepth=depth,
                        topDepthBps=self.depth_bps,
                        feeBps=v.spec.taker_bps,
                        makerFeeBps=v.spec.maker_bps,
                        reliabilityScore=v.reliability.value,
                        rateRemaining=v.rate_remaining,
                        microVolBps=b.micro_vol_bps,
                        resyncs=b.resyncs,
                        ts=b.top.ts_event_ns // MS if b.top is not None else None,
                    )
                )
        return out

    def _mid(self, venue: str, symbol: str, now_ns: int) -> float | None:
        b = self.books[(venue, symbol)]
        if not self.live(venue, symbol, now_ns) or b.top is None:
            return None
        try:
            return mid_spread(b.top.bids, b.top.asks)[0]
        except QuantInputError:
            return None

    def score(self, symbol: str, size: float, side: str, now_ns: int) -> VenueScore:
        """The cheapest eligible venue for a taker order. Raises KeyError (unknown symbol),
        QuantInputError (size ≤ 0 or not finite, side not buy/sell) and NoLiveVenue."""
        if symbol not in self.symbols:
            raise KeyError(f"unknown symbol {symbol!r}; known: {', '.join(self.symbols)}")
        if side not in ("buy", "sell"):
            raise QuantInputError(f"side must be 'buy' or 'sell', got {side!r}")
        if not (math.isfinite(size) and size > 0):
            raise QuantInputError(f"size must be a finite number > 0 (base units), got {size}")
        sgn = 1 if side == "buy" else -1
        alts: list[VenueAlternative] = []
        for name, v in self.venues.items():
            b = self.books[(name, symbol)]
            mid = self._mid(name, symbol, now_ns)
            if mid is None or b.top is None:
                reason = f"book {self.state(name, symbol, now_ns).value}: not LIVE and fresh, never chosen"
                alts.append(VenueAlternative(name, False, None, None, reason, None))
                continue
            if v.rate_remaining is not None and v.rate_remaining <= 0:
                alts.append(VenueAlternative(name, False, None, None, "no REST request weight left", mid))
                continue
            cost = order_cost(
                b.top.bids,
                b.top.asks,
                size,
                sgn,
                v.spec.taker_bps,
                b.micro_vol_bps or 0.0,
                v.latency.value or 0.0,
                v.reliability.value,
                self.params,
            )
            note = "" if cost.filledFraction >= 1 else f"displayed depth fills {cost.filledFraction:.0%}"
            alts.append(VenueAlternative(name, True, total(cost), cost, note or "eligible", mid))
        ok = sorted((a for a in alts if a.eligible), key=lambda a: (a.score, a.venue))
        if not ok:
            raise NoLiveVenue(
                f"no venue has a LIVE, fresh book for {symbol}: " + "; ".join(f"{a.venue}: {a.reason}" for a in alts)
            )
        best = ok[0]
        assert best.cost is not None and best.score is not None and best.midQuote is not None
        basis = self._basis(symbol, now_ns)
        c = best.cost
        reasons = [
            f"{best.venue}: {best.score:.3f} bps = fee {c.feeBps:.3f} + impact {c.impactBps:.3f}"
            f" + half-spread {c.halfSpreadBps:.3f} + latency {c.latencyBps:.4f} + failure {c.failureBps:.3f}"
        ]
        if len(ok) > 1 and ok[1].score is not None:
            reasons.append(f"runner-up {ok[1].venue} at {ok[1].score:.3f} bps (+{ok[1].score - best.score:.3f})")
        reasons += [f"skipped {a.venue}: {a.reason}" for a in alts if not a.eligible]
        reasons += [f"basis {v}: {bps:+.2f} bps vs spot" for v, bps in basis.items()]
        if c.filledFraction < 1:
            reasons.append(f"displayed depth of {best.venue} fills only {c.filledFraction:.0%}; shortfall charged")
        ranked = ok + [a for a in alts if not a.eligible]
        return VenueScore(best.venue, symbol, side, size, best.score, reasons, ranked, basis, c, best.midQuote)

    def _basis(self, symbol: str, now_ns: int) -> dict[str, float]:
        """(mid_v − mid_spot)/mid_spot·1e4 for every non-spot venue with a LIVE book, against
        the first spot venue with one (empty without a LIVE spot book)."""
        mids = {name: self._mid(name, symbol, now_ns) for name in self.venues}
        spot = next((m for n, m in mids.items() if m is not None and self.venues[n].spec.kind == "spot"), None)
        if spot is None:
            return {}
        return {
            n: (m - spot) / spot * 1e4 for n, m in mids.items() if m is not None and self.venues[n].spec.kind != "spot"
        }

    def reference_scores(self, notional_quote: float, now_ns: int) -> dict[tuple[str, str], float]:
        """Score of every venue × symbol for a buy of ``notional_quote`` (NaN when the venue is
        not eligible) — the ``venue_score`` gauge."""
        out: dict[tuple[str, str], float] = {}
        for sym in self.symbols:
            mids = [m for m in (self._mid(n, sym, now_ns) for n in self.venues) if m is not None]
            for name in self.venues:
                out[(name, sym)] = math.nan
            if not mids:
                continue
            try:
                sc = self.score(sym, notional_quote / mids[0], "buy", now_ns)
            except (NoLiveVenue, QuantInputError):
                continue
            for a in sc.alternatives:
                if a.score is not None:
                    out[(a.venue, sym)] = a.score
        return out
