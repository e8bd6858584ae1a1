"""execution core (pure): books, features, positions, sizing, paper fills, audits, rewards.

The shell does the request/reply calls (vol forecast, router choose/update, risk check) and
hands their answers to these functions; everything here is deterministic given its inputs.
The policies read the book's features and, for the bar policies (``p_sma``, ``p_breakout``,
``p_mean_reversion``), the symbol's 1-minute closes (``BarCloses``, from the vol service):
only bars closed at or before the decision's event time.
Sizing: s = s_max·sigmoid(−w/w*) (``stevie.quant.sizing``), capped by vol targeting
capital·σ_target/σ_forecast(horizon). Fills walk the LIVE top-k book (``stevie.quant.impact``)
and pay ``fee_bps``. Reward of a decision = signal·(mid(t+H) − mid(t))/mid(t) in bps.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import msgspec
import numpy as np
import numpy.typing as npt

from stevie.contracts import BookState, BookTopK, MicroFeatures
from stevie.contracts.rpc import (
    Audit,
    Choice,
    ExecutionRecord,
    FillView,
    GuardDecision,
    OrderCheck,
    PositionView,
    ProvenanceInput,
    RouterContext,
    SimulateResult,
    SizingSnapshot,
)
from stevie.quant import impact, sizing
from stevie.quant.policies import POLICIES, PolicyInputs, micro_price
from stevie.services.execution.settings import ExecutionSettings

Key = tuple[str, str]
_canonical = msgspec.json.Encoder(order="sorted")


def provenance(feature_window: list[list[float]], context: RouterContext, decision: Choice) -> str:
    """SHA-256 (hex) of the canonical, sorted-key JSON of (feature window, context, decision)."""
    return hashlib.sha256(_canonical.encode(ProvenanceInput(feature_window, context, decision))).hexdigest()


MINUTE_MS = 60_000
#: a longer step between two bars' open times breaks the series (minutes without trades have
#: no bar; the replay's kline history, from another period, ends a day or more before its capture)
MAX_BAR_GAP_MS = 5 * MINUTE_MS


@dataclass(frozen=True)
class BarCloses:
    """One symbol's 1-minute bars, oldest first: open times (event time, ms, increasing) and
    closes (quote units) — ``vol.closes``'s answer —, and where the series breaks (``breaks``:
    the indices whose bar opens more than ``MAX_BAR_GAP_MS`` after the one before)."""

    open_ms: list[int]
    close: npt.NDArray[np.float64]
    breaks: list[int]

    @classmethod
    def of(cls, open_ms: list[int], close: list[float]) -> BarCloses:
        """Raises ValueError unless the lists are as long as each other, the times increase and
        every close is finite and > 0 (what the vol service's screening guarantees)."""
        c = np.asarray(close, dtype=float)
        if len(open_ms) != c.size or any(b <= a for a, b in itertools.pairwise(open_ms)):
            raise ValueError("bar open times must increase, one per close")
        if not (np.isfinite(c).all() and (c > 0).all()):
            raise ValueError("closes must be finite and > 0")
        breaks = [i + 1 for i, (a, b) in enumerate(itertools.pairwise(open_ms)) if b - a > MAX_BAR_GAP_MS]
        return cls(list(open_ms), c, breaks)

    def closed_by(self, now_ns: int) -> tuple[npt.NDArray[np.float64], int | None]:
        """(the closes of the bars closed at or before event time ``now_ns`` — open + 1 min ≤
        now, so a decision never sees a later bar — since the last break before them (a policy
        never reads across a gap as if it were one minute); none when the newest of them
        closed more than ``MAX_BAR_GAP_MS`` before ``now_ns`` (stale), the last such bar's
        open time in ms or None when there is none)."""
        now_ms = now_ns // 1_000_000
        i = bisect.bisect_right(self.open_ms, now_ms - MINUTE_MS)
        if not i:
            return self.close[:0], None
        last = self.open_ms[i - 1]
        if now_ms - (last + MINUTE_MS) > MAX_BAR_GAP_MS:
            return self.close[:0], last
        k = bisect.bisect_right(self.breaks, i - 1)
        return self.close[(self.breaks[k - 1] if k else 0) : i], last


def policy_inputs(ctx: RouterContext, closes: Sequence[float] | npt.NDArray[np.float64] = ()) -> PolicyInputs:
    """What the policies see at a decision: the context's book numbers and funding, and the
    1-minute ``closes`` (oldest first) closed by then."""
    return PolicyInputs(
        ctx.value("obi"),
        ctx.value("ti"),
        ctx.value("micro_dev_bps"),
        ctx.value("micro_vol"),
        closes,
        ctx.value("funding"),
    )


def shadow_signals(inputs: PolicyInputs) -> dict[str, int]:
    """What every policy would do with ``inputs`` (shadow actions for off-policy evaluation)."""
    return {pid: int(fn(inputs)) for pid, fn in POLICIES.items()}


def size_decision(
    s: ExecutionSettings, symbol: str, width: float, sigma: float, source: str, signal: int, price: float, now_ns: int
) -> SizingSnapshot:
    """The sizing of one decision (shared by the live decision clock and ``stevie backtest``):
    notional = min(s_max·sigmoid(−w/w*), capital·σ_target/σ) in quote units (no vol cap when
    σ ≤ 0), target size = signal·notional/price in base units. ``sigma``: σ of the return over
    the horizon (return units); ``price``: the mid (or last price) in quote units."""
    u = sizing.uncertainty_size(s.s_max_quote, max(width, 0.0), s.w_star)
    cap = sizing.vol_target_notional(s.capital_quote, s.sigma_target_bps / 1e4, sigma, 10.0) if sigma > 0 else u
    notional = min(u, cap)
    return SizingSnapshot(
        symbol,
        s.s_max_quote,
        width,
        s.w_star,
        u,
        sigma,
        source,
        cap,
        notional,
        signal,
        signal * notional / price,
        now_ns // 1_000_000,
    )


class NotTradable(RuntimeError):
    """No LIVE book (or no features yet) for the requested venue/symbol."""


@dataclass
class Position:
    size: float = 0.0
    avg_price: float = 0.0
    realized: float = 0.0

    def apply(self, side: int, qty: float, price: float) -> None:
        """Average-cost accounting; realised PnL when a fill reduces or flips the position."""
        signed = side * qty
        if self.size == 0 or (self.size > 0) == (signed > 0):
            total = self.size + signed
            self.avg_price = (self.avg_price * abs(self.size) + price * qty) / abs(total)
            self.size = total
            return
        closing = min(qty, abs(self.size))
        self.realized += closing * (price - self.avg_price) * (1 if self.size > 0 else -1)
        self.size += signed
        if abs(self.size) < 1e-15:
            self.size, self.avg_price = 0.0, 0.0
        elif (self.size > 0) == (signed > 0):  # flipped: the remainder opens at the fill price
            self.avg_price = price


@dataclass
class Pending:
    due_ns: int
    policy: str
    context: RouterContext
    signal: int
    mid: float


@dataclass
class BookSlot:
    top: BookTopK | None = None
    features: deque[MicroFeatures] = field(default_factory=lambda: deque(maxlen=64))
    last_decision_ns: int = 0
    pending: list[Pending] = field(default_factory=list)


class ExecutionCore:
    def __init__(self, s: ExecutionSettings) -> None:
        self.s = s
        self.slots: dict[Key, BookSlot] = {k: BookSlot() for k in s.pairs()}
        self.positions: dict[Key, Position] = {k: Position() for k in s.pairs()}
        self.cash = s.capital_quote
        self.last_sizing: SizingSnapshot | None = None
        self.fill_obs: deque[tuple[float, float]] = deque(maxlen=500)  # (size, slippage bps) of our fills
        self.seq = 0
        self.bars: dict[str, BarCloses] = {}  # symbol → its 1-minute closes (the shell refreshes them)

    def scale_sizing_cap(self, delta: float) -> float:
        """A calibration nudge: s_max ← s_max·(1 + delta) (delta > −1); returns the new s_max."""
        if not -1 < delta < 1:
            raise ValueError(f"sizing cap delta must lie in (−1, 1), got {delta}")
        self.s = msgspec.structs.replace(self.s, s_max_quote=self.s.s_max_quote * (1 + delta))
        return self.s.s_max_quote

    # -- market state -----------------------------------------------------------------
    def on_book(self, top: BookTopK) -> None:
        slot = self.slots.get((top.venue, top.symbol))
        if slot is not None:
            slot.top = top if top.state is BookState.LIVE else None

    def on_features(self, f: MicroFeatures) -> bool:
        """Record features; True when a decision is due for this book (event time)."""
        slot = self.slots.get((f.venue, f.symbol))
        if slot is None:
            return False
        if slot.features and f.ts_event_ns < slot.features[-1].ts_event_ns:  # venue session restart
            slot.features.clear()
            slot.pending.clear()
            slot.last_decision_ns = 0
        slot.features.append(f)
        return f.ts_event_ns >= self.decision_due_ns(slot)

    def decision_due_ns(self, slot: BookSlot) -> int:
        """Event time (ns) from which a vector of ``slot`` makes a decision due: the last
        decision's + ``decision_interval_s`` rounded up to the next ns (for integer times
        t − last ≥ interval ⇔ t ≥ last + ⌈interval⌉)."""
        return slot.last_decision_ns + math.ceil(self.s.decision_interval_s * 1e9)

    def quiet_count(self, key: Key, ts_ns: npt.NDArray[np.int64]) -> int:
        """How many leading vectors of a run of ``key``'s feature vectors (event times
        ``ts_ns``, ns, in stream order, each with its LIVE book) ``on_features`` would only
        record — no session restart (time going back), no decision due — with
        ``due_rewards`` giving nothing after any of them. The whole run for an untracked key."""
        slot = self.slots.get(key)
        if slot is None or len(ts_ns) == 0:
            return len(ts_ns)
        if slot.features and ts_ns[0] < slot.features[-1].ts_event_ns:
            return 0
        until = min([self.decision_due_ns(slot), *(p.due_ns for p in slot.pending)])
        stop = ts_ns >= until
        stop[1:] |= ts_ns[1:] < ts_ns[:-1]
        k = int(np.argmax(stop))
        return k if stop[k] else len(ts_ns)

    def on_features_batch(
        self,
        key: Key,
        ts_ns: npt.NDArray[np.int64],
        book: Callable[[int], BookTopK],
        vector: Callable[[int], MicroFeatures],
    ) -> int:
        """The batch entry of the per-vector path: for the leading ``n = quiet_count(key,
        ts_ns)`` vectors of a run of ``key``'s vectors (``vector(i)`` the i-th, ``book(i)``
        its LIVE book, event time ``ts_ns[i]``), the same state as ``on_book(book(i));
        on_features(vector(i)); due_rewards(key)`` for each i < n (which would all return
        False / nothing), building only what stays: the n-th book and the last vectors the
        slot keeps. Returns n; the caller hands vector n (if any) to the per-vector path."""
        n = self.quiet_count(key, ts_ns)
        slot = self.slots.get(key)
        if slot is None or n == 0:
            return n
        self.on_book(book(n - 1))
        keep = n if slot.features.maxlen is None else min(n, slot.features.maxlen)
        slot.features.extend(vector(i) for i in range(n - keep, n))
        return n

    def slot(self, key: Key) -> BookSlot:
        """The book's slot. Raises NotTradable when unknown, not LIVE or without features."""
        slot = self.slots.get(key)
        if slot is None or slot.top is None or not slot.features:
            raise NotTradable(f"{key[0]}/{key[1]} has no LIVE book with features")
        return slot

    def mid(self, key: Key) -> float:
        top = self.slot(key).top
        assert top is not None
        return 0.5 * (top.bids[0][0] + top.asks[0][0])

    # -- decision steps -----------------------------------------------------------------
    def context(
        self, key: Key, sigma_garch: float, sigma_har: float, rr25: float = 0.0, regime: str = "unknown"
    ) -> RouterContext:
        """The router context of ``key`` now, in the mission's names and units (σ in return
        units over the horizon, spread and micro-vol in bps)."""
        slot = self.slot(key)
        f, top = slot.features[-1], slot.top
        assert top is not None
        (bp, bq), (ap, aq) = top.bids[0], top.asks[0]
        dev = (micro_price(bp, bq, ap, aq) - f.mid) / f.mid * 1e4
        closes, last_bar_ms = self.closes(key[1], f.ts_event_ns)
        return RouterContext(
            symbol=key[1],
            regime=regime,
            sigmaHAR=sigma_har,
            sigmaGARCH=sigma_garch,
            obi=f.obi,
            ti=f.ti,
            spread_bps=f.spread_bps,
            micro_vol=f.micro_vol_bps,
            cancel_rate=f.cancel_rate,
            micro_dev_bps=dev,
            rr25=rr25,
            venue=key[0],
            bars=len(closes),
            lastBarTs=last_bar_ms,
        )

    def closes(self, symbol: str, now_ns: int) -> tuple[npt.NDArray[np.float64], int | None]:
        """``symbol``'s 1-minute closes closed by event time ``now_ns`` (``BarCloses.closed_by``);
        none before the shell's first ``vol.closes`` answer."""
        bars = self.bars.get(symbol)
        return bars.closed_by(now_ns) if bars is not None else (np.empty(0), None)

    def feature_window(self, key: Key) -> list[list[float]]:
        fs = list(self.slot(key).features)[-self.s.feature_window :]
        return [[f.ts_event_ns / 1e9, f.obi, f.ti, f.spread_bps, f.micro_vol_bps, f.cancel_rate, f.mid] for f in fs]

    def size(
        self, key: Key, choice: Choice, ctx: RouterContext, sigma: float, source: str, now_ns: int
    ) -> SizingSnapshot:
        """Signal from the chosen policy (on ``policy_inputs``), size from uncertainty and vol targeting."""
        signal = POLICIES[choice.policyId](policy_inputs(ctx, self.closes(key[1], now_ns)[0]))
        snap = size_decision(self.s, key[1], choice.width, sigma, source, signal, self.mid(key), now_ns)
        self.last_sizing = snap
        return snap

    def order_check(self, key: Key, side: int, size: float, now_ns: int) -> OrderCheck:
        slot = self.slot(key)
        top = slot.top
        assert top is not None
        mid = self.mid(key)
        levels = top.asks if side > 0 else top.bids
        fill = impact.walk_the_book(levels, size)
        pos_after = (self.positions[key].size + side * size) * mid
        gross_after = sum(abs(p.size) * self._mark(k) for k, p in self.positions.items() if k != key) + abs(pos_after)
        return OrderCheck(
            venue=key[0],
            symbol=key[1],
            side=side,
            size=size,
            price=fill.avg_price,
            mid=mid,
            book_state=top.state.value,
            book_age_ms=max(0.0, (now_ns - top.ts_event_ns) / 1e6),
            position_after_quote=pos_after,
            gross_after_quote=gross_after,
            equity_quote=self.equity(),
            ts_ns=now_ns,
        )

    def fill(self, key: Key, side: int, size: float) -> FillView:
        """Paper fill: walk the LIVE book, pay the taker fee, update position and cash."""
        top = self.slot(key).top
        assert top is not None
        f = impact.walk_the_book(top.asks if side > 0 else top.bids, size)
        if f.filled > 0:
            self.fill_obs.append((f.filled, f.slippage_bps))
        fee = f.filled * f.avg_price * self.s.fee_bps / 1e4
        self.positions[key].apply(side, f.filled, f.avg_price)
        self.cash -= side * f.filled * f.avg_price + fee
        return FillView(side, size, f.filled, f.avg_price, fee, f.slippage_bps)

    def next_id(self, key: Key, now_ns: int) -> str:
        self.seq += 1
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"stevie:{key[0]}:{key[1]}:{now_ns}:{self.seq}"))

    def record(
        self,
        key: Key,
        event_id: str,
        choice: Choice,
        sizing_: SizingSnapshot,
        guard: GuardDecision,
        fill: FillView | None,
        ctx: RouterContext,
        window: list[list[float]],
        now_ns: int,
        init_ns: int,
        requested: float,
    ) -> tuple[Audit, ExecutionRecord]:
        """The audit (with provenance) and the execution record of one decision; schedules
        its reward when it was not blocked."""
        pos = self.positions[key].size
        audit = Audit(
            event_id=event_id,
            ts_event_ns=now_ns,
            ts_init_ns=init_ns,
            venue=key[0],
            symbol=key[1],
            policy_id=choice.policyId,
            feature_window=window,
            context=ctx,
            choice=choice,
            sizing=sizing_,
            guard=guard,
            fill=fill,
            position_after=pos,
            provenance=provenance(window, ctx, choice),
            shadow=shadow_signals(policy_inputs(ctx, self.closes(key[1], now_ns)[0])),
        )
        rec = ExecutionRecord(
            eventId=event_id,
            symbol=key[1],
            venue=key[0],
            policyId=choice.policyId,
            requestedSize=requested,
            finalSize=fill.filled if fill else 0.0,
            fillPrice=fill.avg_price if fill and fill.filled > 0 else None,
            ts=now_ns // 1_000_000,
            blocked=guard.blocked,
            reason=guard.reason,
            position=pos,
        )
        slot = self.slots[key]
        slot.last_decision_ns = now_ns
        if not guard.blocked:
            slot.pending.append(
                Pending(now_ns + int(self.s.horizon_s * 1e9), choice.policyId, ctx, sizing_.signal, self.mid(key))
            )
        return audit, rec

    def due_rewards(self, key: Key, now_ns: int | None = None) -> list[tuple[str, float, RouterContext]]:
        """Rewards whose horizon has passed at event time ``now_ns`` (default: the latest
        features'), each signal·(mid − mid at the decision)/mid at the decision in bps at the
        mid of the latest LIVE book; removed from the pending ones (each is due once)."""
        slot = self.slots[key]
        if slot.top is None or (now_ns is None and not slot.features):
            return []
        now = slot.features[-1].ts_event_ns if now_ns is None else now_ns
        mid = self.mid(key)
        due = [p for p in slot.pending if p.due_ns <= now]
        slot.pending = [p for p in slot.pending if p.due_ns > now]
        return [(p.policy, p.signal * (mid - p.mid) / p.mid * 1e4, p.context) for p in due]

    # -- views --------------------------------------------------------------------------
    def _mark(self, key: Key) -> float:
        top = self.slots[key].top
        return 0.5 * (top.bids[0][0] + top.asks[0][0]) if top is not None else self.positions[key].avg_price

    def equity(self) -> float:
        return self.cash + sum(p.size * self._mark(k) for k, p in self.positions.items())

    def positions_view(self) -> list[PositionView]:
        out = []
        for (venue, sym), p in self.positions.items():
            mark = self._mark((venue, sym))
            out.append(PositionView(venue, sym, p.size, p.avg_price, mark, p.size * (mark - p.avg_price), p.realized))
        return out

    def simulate(self, key: Key, size: float, urgency: float, sigma_horizon: float = 0.0) -> SimulateResult:
        """Plan and cost preview for a buy of ``size`` base units. The impact model k·size^α
        is fitted on walk-the-book probes of the current book plus our own paper fills."""
        slot = self.slot(key)
        top = slot.top
        assert top is not None
        f = slot.features[-1]
        asks = top.asks
        depth = sum(q for _, q in asks)
        probe = [depth * x for x in (0.05, 0.1, 0.2, 0.4, 0.6, 0.8)]
        slips = [impact.walk_the_book(asks, q).slippage_bps for q in probe]
        probe += [q for q, _ in self.fill_obs]
        slips += [b for _, b in self.fill_obs]
        try:
            model = impact.fit_impact(probe, slips, 0.0)
        except ValueError:
            model = impact.ImpactModel(0.0, 1.0)
        plan = impact.plan_execution(
            size, f.spread_bps, asks[0][1], f.micro_vol_bps, urgency, model, vol_forecast_bps=sigma_horizon * 1e4
        )
        now = impact.walk_the_book(asks, size)
        return SimulateResult(
            key[1],
            key[0],
            size,
            plan.style,
            plan.slices,
            plan.interval_s,
            plan.cost_bps,
            now.slippage_bps + f.spread_bps / 2,
            f.spread_bps,
            plan.reason,
        )
