"""execution shell: the event-time decision clock and the request/reply calls around the core
(vol forecast and 1-minute closes, router choose/update, risk check); audits and execution records go to the
durable JetStream stream (``Nats-Msg-Id`` = event id) for the reporter."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Container, Sequence
from typing import TypeVar

import asyncpg
import msgspec
import stamina
from prometheus_client import Counter, Histogram

from stevie.bus import NatsBus
from stevie.contracts import BookState, BookStatus, BookTopK, MicroFeatures, Trade, encode, subjects
from stevie.contracts.adaptive import AlphaSignal, GatingState, RegimeState
from stevie.contracts.events import EventContext
from stevie.contracts.evidence import NudgesApplied
from stevie.contracts.ops import DeployShare
from stevie.contracts.rpc import (
    Choice,
    Closes,
    ClosesRequest,
    ExecutionRecord,
    FillView,
    GuardDecision,
    PaperOrder,
    PlanRequest,
    Positions,
    PositionsRequest,
    PosteriorSummary,
    RouterContext,
    RpcError,
    SimulateRequest,
    SimulateResult,
    SizingLastRequest,
    SizingSnapshot,
    Smile,
    SmileRequest,
    UpdateRequest,
    VolForecast,
    VolForecastRequest,
)
from stevie.contracts.venues import VenueRoute, VenueScore, VenueScoreRequest, VenueScoring
from stevie.quant.alpha import AlphaInputs, AlphaRegistry
from stevie.quant.errors import QuantInputError
from stevie.quant.events import latest_event_dims
from stevie.quant.kernels import load as load_kernels
from stevie.runtime.flags import FlagsClient
from stevie.runtime.service import LATENCY_BUCKETS_S, ServiceContext, ServiceSpec
from stevie.runtime.settings import load_settings
from stevie.services.execution import gcwatch
from stevie.services.execution.core import BarCloses, BookSlot, ExecutionCore, Key, NotTradable, Position
from stevie.services.execution.settings import ExecutionSettings
from stevie.services.execution.split import StackSplit, publish_slo
from stevie.services.features.core import Features
from stevie.services.features.settings import FeaturesSettings
from stevie.services.venues.core import NoLiveVenue, Registry
from stevie.store import connect_pool
from stevie.store.state import audit_count, filled_trades

R = TypeVar("R")
Reward = tuple[str, float, RouterContext]  # (policy, reward in bps, the decision's context)
STREAM = "STEVIE_EVENTS"
#: base units; far beyond any book's depth, small enough that no size reaches float overflow
MAX_ORDER_SIZE = 1e9
#: seconds a decision waits for the very first vol forecast / smile / closes of a symbol
FIRST_FETCH_S = 0.25
#: wall seconds between two refreshes of a symbol's 1-minute closes (5 s while the vol service has none)
BARS_REFRESH_S = 15.0
#: clock decisions whose audit and record may be on their way to JetStream at once; past it a
#: decision waits for its own store (back-pressure while NATS or the stream leader is away)
MAX_STORING = 256
#: seconds a stopping execution waits for the audits still on their way (within the stop bound)
STOP_STORING_S = 0.3


class Execution:
    def __init__(self, ctx: ServiceContext, s: ExecutionSettings, features: Features | None = None) -> None:
        """``features``: the features core run here on the clock books' books, trades and
        statuses (``local_features``: one hop less on the tick → decision path); None = their
        vectors come from the features service."""
        self.ctx, self.s, self.root = ctx, s, s.subject_root
        self.core = ExecutionCore(s)
        self.local = features
        self.flags = FlagsClient(ctx)  # ExecutionRouter off: no new decisions; StrategyRouter off: p_flat
        self.split = StackSplit(ctx.clock.now_ns, time.perf_counter)  # blue/green router stacks (issue 13)
        self.slo_task: asyncio.Future[None] | None = None  # publish_slo, started in main
        for k in s.route_pairs():  # books a routed order may fill on (no decision clock on them)
            self.core.slots.setdefault(k, BookSlot())
            self.core.positions.setdefault(k, Position())
        self.clock_keys = set(s.pairs())
        self.locks: dict[Key, asyncio.Lock] = {k: asyncio.Lock() for k in self.core.slots}
        self.vol_cache: dict[str, tuple[float, VolForecast | None]] = {}
        self.smile_cache: dict[str, tuple[float, float]] = {}
        self.bars_at: dict[str, float] = {}  # symbol → when its closes were last asked for (monotonic)
        self._refreshing: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._inbox: dict[Key, deque[MicroFeatures]] = {}  # features not yet handled, per book
        self._workers: dict[Key, asyncio.Future[None]] = {}
        self._prefetching: set[asyncio.Future[object]] = set()
        self._rewarding: dict[Key, asyncio.Future[None]] = {}  # rewards the book path is sending
        self.storing: set[asyncio.Future[None]] = set()  # clock decisions' audits on their way to JetStream
        self._book_ts: dict[Key, int] = {}  # event time of the latest LIVE book
        # the venue score in-process: a mirror of the venues service's registry (its published
        # venue health) fed with the books, statuses and features execution receives
        self.venue_mirror: Registry | None = None
        self.venue_scoring: VenueScoring | None = None
        self._venue_md: dict[Key, tuple[BookTopK | BookStatus, int]] = {}  # last book or status, received at
        self._venue_micro: dict[Key, MicroFeatures] = {}
        self.blocked_times: deque[float] = deque()
        # adaptive context (issue 12): regime label per symbol, gated-off features, alpha blend
        self.regimes: dict[str, str] = {}
        self.gated_off: frozenset[str] = frozenset()
        self.alphas = AlphaRegistry()
        self.event_ctx: dict[str, EventContext] = {}  # events (issue 16): newest events per symbol
        r = ctx.registry
        self.m_decisions = Counter("exec_decisions_total", "Decisions made", ["venue", "symbol"], registry=r)
        self.m_blocked = Counter("exec_blocked_total", "Orders blocked by risk guards", ["reason"], registry=r)
        self.m_fills = Counter("exec_fills_total", "Paper fills", ["venue", "symbol"], registry=r)
        self.m_rewards = Counter(
            "exec_rewards_total",
            "Rewards sent to the router, by policy and by what sent them (the book at the horizon, the features)",
            ["policy", "via"],
            registry=r,
        )
        self.m_tick = Histogram(
            "exec_tick_to_decision_seconds",
            "Wall time from the triggering book at the venue edge to the decision's audit published "
            "(handed to the NATS client for JetStream; its storage ack: exec_tick_to_stored_seconds)",
            ["venue", "symbol"],
            registry=r,
            buckets=LATENCY_BUCKETS_S,
        )
        self.m_stored = Histogram(
            "exec_tick_to_stored_seconds",
            "Wall time from the triggering book at the venue edge to JetStream's ack of the decision's "
            "audit and execution record (both stored)",
            ["venue", "symbol"],
            registry=r,
            buckets=LATENCY_BUCKETS_S,
        )
        self.m_store_failed = Counter(
            "exec_store_failed_total",
            "Clock decisions whose audit or record JetStream did not acknowledge within the retry bound",
            registry=r,
        )
        self.m_stage = Histogram(
            "exec_decision_stage_seconds",
            "Wall time of one step of the decision path: edge (book at the venue edge → features "
            "at execution), rewards (the rewards the book path is still sending, which a decision "
            "waits for), rpc:SERVICE.METHOD (a request/reply call, as execution waits for it), "
            "venues.score:local, store (audit and record on JetStream: off a clock decision's path)",
            ["stage"],
            registry=r,
            buckets=LATENCY_BUCKETS_S,
        )

    async def call(self, service: str, method: str, req: msgspec.Struct, tp: type[R]) -> R:
        """Request/reply; raises TimeoutError (no answer) or RuntimeError (an RpcError)."""
        t0 = time.perf_counter()
        msg = await self.ctx.bus.request(subjects.rpc(self.root, service, method), encode(req), self.s.rpc_timeout_s)
        out = msgspec.json.decode(msg.data, type=tp | RpcError)
        self.m_stage.labels(f"rpc:{service}.{method}").observe(time.perf_counter() - t0)
        if isinstance(out, RpcError):
            raise RuntimeError(f"{service}.{method}: {out.status} {out.error}: {out.detail}")
        return out

    async def _refreshed(self, key: tuple[str, str], fetch: Callable[[], Awaitable[None]], first: bool) -> None:
        """Run ``fetch`` (which refreshes a cache) in the background, once at a time per
        ``key``: a decision does not wait on the vol service (tick → decision latency), except
        ≤ ``FIRST_FETCH_S`` for the very first value of a symbol."""
        task = self._refreshing.get(key)
        if task is None or task.done():
            task = asyncio.ensure_future(fetch())
            self._refreshing[key] = task
        if first:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), FIRST_FETCH_S)

    def prefetch(self, symbol: str) -> None:
        """Start fetching ``symbol``'s first vol forecast, smile and closes now (one of its books
        just went LIVE), so its first decision finds them instead of waiting ≤ ``FIRST_FETCH_S``."""
        fetches: list[tuple[Callable[[str], Awaitable[object]], Container[str]]] = [
            (self.sigma, self.vol_cache),
            (self.rr25, self.smile_cache),
            (self.bars, self.bars_at),
        ]
        for fetch, seen in fetches:
            if symbol not in seen:
                task: asyncio.Future[object] = asyncio.ensure_future(fetch(symbol))
                self._prefetching.add(task)
                task.add_done_callback(self._prefetching.discard)

    async def sigma(self, symbol: str) -> tuple[float, float, str]:
        """(σ GARCH, σ HAR, source) of the return over the horizon from the vol service
        (refreshed in the background every 60 s, a missing forecast every 5 s); zeros when
        the vol service has no answer (yet)."""
        at, fc = self.vol_cache.get(symbol, (0.0, None))
        if time.monotonic() - at > (60 if fc else 5):

            async def fetch() -> None:
                h = max(1, math.ceil(self.s.horizon_s / 60))
                try:
                    got = await self.call("vol", "forecast", VolForecastRequest(symbol, h), VolForecast)
                except (TimeoutError, RuntimeError, msgspec.ValidationError):
                    got = None
                self.vol_cache[symbol] = (time.monotonic(), got)

            await self._refreshed(("sigma", symbol), fetch, first=symbol not in self.vol_cache)
            at, fc = self.vol_cache.get(symbol, (0.0, None))
        if fc is None:
            return 0.0, 0.0, "none"
        return fc.sigmaGARCH, fc.sigmaHAR, f"garch h={fc.h}m"

    async def bars(self, symbol: str) -> None:
        """Refresh ``symbol``'s 1-minute closes (``core.bars``, the bar policies' input) from
        ``vol.closes`` in the background every ``BARS_REFRESH_S`` (every 5 s while there are
        none); the very first waits ≤ ``FIRST_FETCH_S``. Without an answer the bar policies
        keep the closes they had (none: they stay flat). ``bar_history`` 0: never asked."""
        if self.s.bar_history == 0:
            return
        at = self.bars_at.get(symbol)
        if at is not None and time.monotonic() - at <= (BARS_REFRESH_S if symbol in self.core.bars else 5):
            return

        async def fetch() -> None:
            try:
                got = await self.call("vol", "closes", ClosesRequest(symbol, self.s.bar_history), Closes)
                self.core.bars[symbol] = BarCloses.of(got.openTimeMs, got.close)
            except (TimeoutError, RuntimeError, msgspec.ValidationError, ValueError) as exc:
                self.ctx.log.warning("closes_not_fetched", symbol=symbol, error=str(exc)[:200])
            self.bars_at[symbol] = time.monotonic()

        await self._refreshed(("bars", symbol), fetch, first=at is None)

    async def rr25(self, symbol: str) -> float:
        """Headline 25-delta risk reversal of the stored option chain (``SYMBOL`` or its base
        asset, e.g. ``BTC``); 0 (neutral) when no chain defines it. Refreshed in the
        background every 60 s."""
        at, value = self.smile_cache.get(symbol, (0.0, 0.0))
        if time.monotonic() - at > 60:

            async def fetch() -> None:
                got = 0.0
                for name in (symbol, symbol.removesuffix("USDT")):
                    try:
                        smile = await self.call("vol", "options_smile", SmileRequest(name), Smile)
                    except (TimeoutError, RuntimeError, msgspec.ValidationError):
                        continue
                    if smile.rr25 is not None:
                        got = smile.rr25
                        break
                self.smile_cache[symbol] = (time.monotonic(), got)

            await self._refreshed(("rr25", symbol), fetch, first=symbol not in self.smile_cache)
            value = self.smile_cache.get(symbol, (0.0, 0.0))[1]
        return value

    async def decide(self, key: Key, choice: Choice | None = None, tick_ns: int | None = None) -> ExecutionRecord:
        """One decision at the latest event time of ``key``; the rewards due then reach the
        router first (carried in its ``router.decide``). ``tick_ns``: a clock decision's
        trigger at the venue edge (wall ns): it returns once the audit is published, and its
        storage is timed from there; an API decision returns once it is stored. Raises
        NotTradable."""
        async with self.locks[key]:
            t0 = time.perf_counter()
            sending = self._rewarding.get(key)
            if sending is not None:  # the book path's rewards reach the router before this decision
                await sending
            self.m_stage.labels("rewards").observe(time.perf_counter() - t0)
            slot = self.core.slot(key)
            now = slot.features[-1].ts_event_ns
            sigma, sigma_har, source = await self.sigma(key[1])
            await self.bars(key[1])
            ctx = self.core.context(key, sigma, sigma_har, await self.rr25(key[1]), self.regimes.get(key[1], "unknown"))
            ctx = self.with_events(ctx, now)
            if self.gated_off:  # features disabled by the gating: zeroed (neutral) in context and sizing
                ctx = msgspec.structs.replace(ctx, **{f: 0.0 for f in self.gated_off})
            window = self.core.feature_window(key)
            if choice is None and not self.flags.enabled("StrategyRouter"):
                choice = Choice("p_flat", 0.0, 0.0, 1.0, 0.0, {}, [])
            routed = [(self.split.reward_to(c, r), UpdateRequest(p, r, c)) for p, r, c in self.core.due_rewards(key)]
            if choice is None:
                choice = await self.split.decide(
                    self.call, ctx, key[0], key[1], now, routed, self.send_reward, self._carried
                )
            else:  # no router call: the rewards go as updates
                await asyncio.gather(*(self.send_reward(svc, u) for svc, u in routed))
            sizing = self.core.size(key, choice, ctx, sigma, source, now)
            held = sum(p.size for k, p in self.core.positions.items() if k[1] == key[1])  # every venue
            order = sizing.target_size - held
            side, qty = (1 if order > 0 else -1), abs(order)
            return await self.execute(key, choice, sizing, ctx, window, side, qty, now, tick_ns)

    async def execute(
        self,
        key: Key,
        choice: Choice,
        sizing: SizingSnapshot,
        ctx: RouterContext,
        window: list[list[float]],
        side: int,
        qty: float,
        now: int,
        tick_ns: int | None = None,
    ) -> ExecutionRecord:
        fill: FillView | None = None
        fill_key, route = key, None
        if qty * self.core.mid(key) < self.s.min_order_quote:
            guard = GuardDecision(False, "no_order")
        else:
            fill_key, route = await self.route(key, side, qty)
            guard = await self.risk(fill_key, side, qty, now)
            if guard.blocked and route is not None and guard.reason.startswith("book_") and fill_key != key:
                # the routed venue's book is refused (stale or not LIVE at the decision time):
                # fall back to the decision's own book, which is fresh by construction
                why = f"{fill_key[0]} refused by risk ({guard.reason}); filled on {key[0]}"
                fill_key = key
                route = msgspec.structs.replace(
                    route,
                    filled=key[0],
                    scoreBps=route.alternatives.get(key[0]),
                    reasons=[*route.reasons, why],
                    arrivalMid=self.core.mid(key),
                )
                guard = await self.risk(fill_key, side, qty, now)
            if guard.blocked:
                self.m_blocked.labels(guard.reason.split(":")[0]).inc()
                self.blocked_times.append(time.monotonic())
            else:
                fill = self.core.fill(fill_key, side, qty)
                self.m_fills.labels(*fill_key).inc()
        event_id = self.core.next_id(key, now)
        audit, rec = self.core.record(
            key, event_id, choice, sizing, guard, fill, ctx, window, now, self.ctx.clock.now_ns(), side * qty
        )
        audit = msgspec.structs.replace(audit, alphas=self.alpha_signals(ctx, window))
        if route is not None:  # the fill's venue and position; the decision stays on ``key``'s clock
            pos = self.core.positions[fill_key].size
            audit = msgspec.structs.replace(audit, venue=fill_key[0], position_after=pos, route=route)
            rec = msgspec.structs.replace(rec, venue=fill_key[0], position=pos)
        stored = asyncio.ensure_future(self._store(key, fill_key, event_id, encode(audit), encode(rec), tick_ns))
        self.storing.add(stored)
        stored.add_done_callback(self.storing.discard)
        if tick_ns is None or len(self.storing) > MAX_STORING:
            await asyncio.shield(stored)
        self.m_decisions.labels(*key).inc()
        return rec

    async def _store(
        self, key: Key, fill_key: Key, event_id: str, audit: bytes, rec: bytes, tick_ns: int | None
    ) -> None:
        """Audit and record on JetStream (independent, idempotent by id: one round trip);
        raises TimeoutError (``publish_durable``'s bound) for an API decision, logs and counts
        it for a clock decision, whose caller does not wait."""
        t0 = time.perf_counter()
        try:
            await asyncio.gather(
                self.ctx.bus.publish_durable(subjects.audit(self.root, *fill_key), audit, event_id),
                self.ctx.bus.publish_durable(subjects.exec_record(self.root, *fill_key), rec, event_id + ":rec"),
            )
        except TimeoutError as exc:
            if tick_ns is None:
                raise
            self.m_store_failed.inc()
            self.ctx.log.error("decision_not_stored", event_id=event_id, error=str(exc)[:200])
            return
        self.m_stage.labels("store").observe(time.perf_counter() - t0)
        if tick_ns is not None:
            self.m_stored.labels(*key).observe(max(0, time.time_ns() - tick_ns) / 1e9)

    def alpha_signals(self, ctx: RouterContext, window: list[list[float]]) -> list[AlphaSignal]:
        """Every registered alpha's signal (from the decision context and the window's mids) and weight."""
        x = AlphaInputs(
            obi=ctx.value("obi"),
            ti=ctx.value("ti"),
            micro_dev_bps=ctx.value("micro_dev_bps"),
            spread_bps=ctx.value("spread_bps"),
            sigma_garch=ctx.value("sigmaGARCH"),
            sigma_har=ctx.value("sigmaHAR"),
            rr25=ctx.value("rr25"),
            funding=ctx.value("funding"),
            mids=tuple(row[6] for row in window if len(row) > 6),
        )
        sig = self.alphas.signals(x)
        return [AlphaSignal(a.id, v, self.alphas.weights[a.id]) for a, v in zip(self.alphas.alphas, sig, strict=True)]

    def on_event_context(self, ec: EventContext) -> None:
        self.event_ctx[ec.symbol] = ec

    def with_events(self, ctx: RouterContext, now_ns: int) -> RouterContext:
        """The symbol's event dims (flag ``EventContext``): the newest event at or before the
        decision time ``now_ns``, its projection times its decay weight."""
        ec = self.event_ctx.get(ctx.symbol)
        if ec is None or not self.flags.enabled("EventContext"):
            return ctx
        d = latest_event_dims([p.event_ts_ns for p in ec.points], [p.dims for p in ec.points], now_ns, 4)
        return msgspec.structs.replace(ctx, event_pc=d.dims, event_decay=d.decay, event_minutes_since=d.minutes_since)

    def on_regime(self, st: RegimeState) -> None:
        self.regimes[st.symbol] = st.label

    def on_gating(self, g: GatingState) -> None:
        self.gated_off = frozenset(f for f in g.disabled if f in RouterContext.__struct_fields__)

    async def risk(self, key: Key, side: int, qty: float, now: int) -> GuardDecision:
        """The risk guards' verdict on filling ``qty`` on ``key``'s book (blocked when they do
        not answer)."""
        check = self.core.order_check(key, side, qty, now)
        try:
            return await self.call("risk-guards", "check", check, GuardDecision)
        except (TimeoutError, RuntimeError) as exc:
            return GuardDecision(True, f"risk_unavailable: {exc}"[:120])

    def tradable(self, key: Key) -> bool:
        try:
            self.core.slot(key)
        except NotTradable:
            return False
        return True

    # -- venue score in-process ----------------------------------------------------------
    def on_book(self, top: BookTopK) -> None:
        """Record the book; rewards due at its event time are sent now, while its features
        are computed — only when every earlier book's features are handled, so no decision at
        an earlier event time can see them, and when its features make no decision due (that
        decision carries them in its ``router.decide``); else the features step sends them."""
        self.core.on_book(top)
        self._venue_md_in(top)
        key = (top.venue, top.symbol)
        if key not in self.clock_keys or top.state is not BookState.LIVE:
            return
        if self.local is not None:  # its features now, here: the features step sends what is due
            f = self.local.on_book(top)
            if f is not None:
                self.on_features(f)
            return
        prev_ns, self._book_ts[key] = self._book_ts.get(key), top.ts_event_ns
        feats, worker = self.core.slots[key].features, self._workers.get(key)
        caught_up = bool(feats) and prev_ns is not None and feats[-1].ts_event_ns >= prev_ns
        deciding = top.ts_event_ns >= self.core.decision_due_ns(self.core.slots[key])
        if caught_up and not deciding and not self._inbox.get(key) and (worker is None or worker.done()):
            due = self.core.due_rewards(key, top.ts_event_ns)
            if due:
                self._rewarding[key] = asyncio.ensure_future(self._rewards_after(self._rewarding.get(key), key, due))

    async def _rewards_after(self, before: asyncio.Future[None] | None, key: Key, due: list[Reward]) -> None:
        if before is not None:
            await before
        await self.rewards(key, due, "book")

    def on_trade(self, t: Trade) -> None:
        """A clock book's trade, for the features computed here (``local_features``)."""
        if self.local is not None and (t.venue, t.symbol) in self.clock_keys:
            self.local.on_trade(t)

    def on_bus_features(self, f: MicroFeatures) -> None:
        """The features service's vector: used unless this book's are computed here."""
        if self.local is None or (f.venue, f.symbol) not in self.clock_keys:
            self.on_features(f)

    def on_status(self, st: BookStatus) -> None:
        if self.local is not None and (st.venue, st.symbol) in self.clock_keys:
            self.local.on_status(st)
        if st.state.value != "LIVE":
            slot = self.core.slots.get((st.venue, st.symbol))
            if slot is not None:
                slot.top = None
        elif (st.venue, st.symbol) in self.clock_keys:
            self.prefetch(st.symbol)
        self._venue_md_in(st)

    def _venue_md_in(self, m: BookTopK | BookStatus) -> None:
        now = time.time_ns()
        self._venue_md[(m.venue, m.symbol)] = (m, now)
        if self.venue_mirror is not None:
            _feed(self.venue_mirror, m, now)

    def on_venue_scoring(self, sc: VenueScoring) -> None:
        """The venues service's score inputs: the mirror takes its venue health; a new or
        changed configuration builds a new mirror, fed the last book or status of every book
        at the time it was received and the last features (staleness stays exact)."""
        if self.venue_mirror is None or not self.venue_mirror.matches(sc):
            m = Registry.from_scoring(sc)
            for msg, at in self._venue_md.values():
                _feed(m, msg, at)
            for f in self._venue_micro.values():
                m.on_micro(f)
            self.venue_mirror = m
        else:
            self.venue_mirror.apply_scoring(sc)
        self.venue_scoring = sc

    def score_locally(self, req: VenueScoreRequest) -> VenueScore | None:
        """``venues.score`` computed here: the venues service's pure core on the books
        execution received and the venue health the service published ≤ 3 ticks ago. None
        without such a publication (or with ``local_venue_scoring`` off): ask the service.
        Raises RuntimeError worded as the service's error reply (409 no_live_venue, 404, 400)."""
        sc, m, now = self.venue_scoring, self.venue_mirror, time.time_ns()
        if not self.s.local_venue_scoring or sc is None or m is None or now - sc.ts_ns > 3 * sc.tickS * 1e9:
            return None
        t0 = time.perf_counter()
        try:
            out = m.score(req.symbol.upper(), req.size, req.side.lower(), now)
        except NoLiveVenue as exc:
            raise RuntimeError(f"venues.score: 409 no_live_venue: {exc}") from exc
        except KeyError as exc:
            raise RuntimeError(f"venues.score: 404 not_found: {str(exc).strip(chr(39) + chr(34))}") from exc
        except QuantInputError as exc:
            raise RuntimeError(f"venues.score: 400 bad_input: {exc}") from exc
        self.m_stage.labels("venues.score:local").observe(time.perf_counter() - t0)
        return out

    async def route(self, key: Key, side: int, qty: float) -> tuple[Key, VenueRoute | None]:
        """Where an order fills: the venues service's cheapest eligible venue (expected all-in
        cost) among the books execution tracks; ``key`` itself when routing is off (no route)
        or when the venues service gives no usable answer (the route says why)."""
        if not self.s.venue_routing:
            return key, None
        req = VenueScoreRequest(key[1], qty, "buy" if side > 0 else "sell")
        try:
            local = self.score_locally(req)
            sc = local if local is not None else await self.call("venues", "score", req, VenueScore)
        except (TimeoutError, RuntimeError) as exc:
            why = f"venues service: {exc}"[:200] + f"; filled on {key[0]}"
            return key, VenueRoute(key[0], key[0], None, [why], self.core.mid(key))
        scores = {a.venue: a.score for a in sc.alternatives}
        for a in sc.alternatives:
            k = (a.venue, key[1])
            if a.eligible and self.tradable(k):
                reasons = list(sc.reasons)
                if a.venue != sc.venue:
                    reasons.append(f"{sc.venue} is not tracked by execution; filled on {a.venue}")
                return k, VenueRoute(sc.venue, a.venue, a.score, reasons, self.core.mid(k), scores)
        reasons = [*sc.reasons, f"no eligible venue tracked by execution; filled on {key[0]}"]
        return key, VenueRoute(sc.venue, key[0], None, reasons, self.core.mid(key), scores)

    async def rewards(self, key: Key, due: list[Reward] | None = None, via: str = "features") -> None:
        """Send rewards to the stack that made each decision: ``due``, or (the features step)
        first those the book path is sending (``on_book``), then those due at the latest
        features. Failures are logged, not raised."""
        if due is None:
            sending = self._rewarding.get(key)
            if sending is not None:
                await sending
            due = self.core.due_rewards(key)
        for policy, reward, ctx in due:
            await self.send_reward(self.split.reward_to(ctx, reward), UpdateRequest(policy, reward, ctx), via)

    async def send_reward(self, service: str, u: UpdateRequest, via: str = "decision") -> None:
        """``service.update`` with one reward; a failure is logged, not raised."""
        try:
            await self.call(service, "update", u, PosteriorSummary)
            self.m_rewards.labels(u.policyId, via).inc()
        except (TimeoutError, RuntimeError, msgspec.ValidationError) as exc:
            self.ctx.log.warning("reward_not_sent", policy=u.policyId, error=str(exc)[:200])

    def _carried(self, rewards: Sequence[UpdateRequest]) -> None:
        for u in rewards:
            self.m_rewards.labels(u.policyId, "decision").inc()

    def on_features(self, f: MicroFeatures) -> None:
        """Queue ``f`` for its book's worker. Each book's features are handled in arrival
        order (recorded, due rewards sent, then the decision if one is due: ``step``), the
        books independently, so one book's decision never delays another book's."""
        key = (f.venue, f.symbol)
        self._venue_micro[key] = f
        if self.venue_mirror is not None:
            self.venue_mirror.on_micro(f)
        self._inbox.setdefault(key, deque()).append(f)
        worker = self._workers.get(key)
        if worker is None or worker.done():
            self._workers[key] = asyncio.ensure_future(self._drain(key))

    async def _drain(self, key: Key) -> None:
        inbox = self._inbox[key]
        while inbox:
            f = inbox.popleft()
            try:
                await self.step(f)
            except Exception:  # a bug must not stop the book's clock: logged with its traceback
                self.ctx.log.exception("features_step_failed", venue=key[0], symbol=key[1])

    async def step(self, f: MicroFeatures) -> None:
        """One features vector of a book: recorded; the book's due rewards sent (awaited: the
        router learns them before it decides, as in ``stevie backtest``); a decision when one
        is due on the decision clock."""
        key = (f.venue, f.symbol)
        due = self.core.on_features(f)
        if key not in self.locks:
            return
        deciding = due and key in self.clock_keys and self.flags.enabled("ExecutionRouter")
        if not deciding or self.locks[key].locked():
            await self.rewards(key)
            return
        self.m_stage.labels("edge").observe(max(0, time.time_ns() - f.ts_init_ns) / 1e9)
        try:
            await self.decide(key, tick_ns=f.ts_init_ns)  # the due rewards ride with the decision
            # tick → decision: the triggering book reached the edge (ts_init_ns, wall clock,
            # carried through features) → its audit is published
            self.m_tick.labels(*key).observe(max(0, time.time_ns() - f.ts_init_ns) / 1e9)
        except (NotTradable, TimeoutError, RuntimeError, QuantInputError) as exc:
            self.ctx.log.warning("decision_skipped", venue=key[0], symbol=key[1], error=str(exc)[:200])
            await self.rewards(key)  # those the decision did not take (NotTradable before the router call)

    # -- request handlers ---------------------------------------------------------------
    def _key(self, venue: str, symbol: str) -> Key:
        key = (venue.lower(), symbol.upper())
        if key not in self.core.slots:
            raise KeyError(f"{venue}/{symbol} is not traded; books: {', '.join(self.s.books)}")
        return key

    async def plan_and_execute(self, req: PlanRequest) -> ExecutionRecord:
        if not self.flags.enabled("ExecutionRouter"):
            raise RuntimeError("the ExecutionRouter flag is off: no new decisions (positions held)")
        return await self.decide(self._key(req.venue, req.symbol))

    async def paper_order(self, req: PaperOrder) -> ExecutionRecord:
        if req.side not in ("buy", "sell") or not (math.isfinite(req.size) and 0 < req.size <= MAX_ORDER_SIZE):
            raise QuantInputError(f"side must be 'buy' or 'sell' and size in (0, {MAX_ORDER_SIZE:g}] (base units)")
        key = self._key(req.venue, req.symbol)
        async with self.locks[key]:
            slot = self.core.slot(key)
            now = slot.features[-1].ts_event_ns
            ctx = self.core.context(key, 0.0, 0.0, regime=self.regimes.get(key[1], "unknown"))
            manual = Choice("manual", 0.0, 0.0, 1.0, 0.0, {}, [])
            side = 1 if req.side == "buy" else -1
            sizing = SizingSnapshot(
                key[1],
                0.0,
                0.0,
                self.s.w_star,
                0.0,
                0.0,
                "manual",
                0.0,
                req.size * self.core.mid(key),
                side,
                side * req.size,
                now // 1_000_000,
            )
            return await self.execute(key, manual, sizing, ctx, self.core.feature_window(key), side, req.size, now)

    async def simulate(self, req: SimulateRequest) -> SimulateResult:
        if not (math.isfinite(req.size) and 0 < req.size <= MAX_ORDER_SIZE) or not 0 <= req.urgency <= 1:
            raise QuantInputError(f"size must be in (0, {MAX_ORDER_SIZE:g}] (base units) and urgency in [0, 1]")
        key = self._key(req.venue, req.symbol)
        sigma, _, _ = await self.sigma(key[1])
        return self.core.simulate(key, req.size, req.urgency, sigma)

    def sizing_last(self, _: SizingLastRequest) -> SizingSnapshot:
        if self.core.last_sizing is None:
            raise KeyError("no sizing yet")
        return self.core.last_sizing

    def positions(self, _: PositionsRequest) -> Positions:
        while self.blocked_times and self.blocked_times[0] < time.monotonic() - 60:
            self.blocked_times.popleft()
        return Positions(self.core.positions_view(), self.core.cash, self.core.equity(), len(self.blocked_times))


def _feed(reg: Registry, m: BookTopK | BookStatus, received_ns: int) -> None:
    if isinstance(m, BookTopK):
        reg.on_book(m, received_ns)
    else:
        reg.on_status(m, received_ns)


async def restore_state(ctx: ServiceContext, ex: Execution) -> None:
    """Positions, average prices, realised PnL, cash and the event-id sequence rebuilt from
    the fills recorded in PostgreSQL (``stevie.store.state``), once the reporter has written
    what JetStream still holds (≤ 5 s). A database that does not answer within ~30 s raises
    (the supervisor restarts us): trading from zero positions would be wrong."""
    s = ex.s
    if not s.database_url:
        return
    if isinstance(ctx.bus, NatsBus):
        await ctx.bus.wait_consumers_drained(STREAM, "reporter", 5.0)
    retry = stamina.retry(on=(OSError, asyncpg.PostgresError), attempts=30, timeout=30.0)
    pool = await retry(connect_pool)(s.database_url, 1, 1)
    try:
        trades, decisions = await filled_trades(pool), await audit_count(pool)
    finally:
        await pool.close()
    skipped = 0
    for t in trades:
        pos = ex.core.positions.get((t.venue, t.symbol))
        if pos is None:  # a book this instance does not trade (settings changed)
            skipped += 1
            continue
        pos.apply(t.side, t.filled, t.avg_price)  # the same accounting as the live fill
        ex.core.cash -= t.side * t.filled * t.avg_price + t.fee_quote
    ex.core.seq = max(ex.core.seq, decisions)
    ctx.log.info(
        "state_restored",
        fills=len(trades),
        skipped=skipped,
        decisions=decisions,
        cash_quote=round(ex.core.cash, 6),
        positions={f"{v}/{sym}": p.size for (v, sym), p in ex.core.positions.items() if p.size},
    )


async def main(ctx: ServiceContext) -> None:
    s = ctx.settings
    assert isinstance(s, ExecutionSettings)
    local = None
    if s.local_features:  # the features service's own settings (STEVIE_FEATURES_*), so the vectors are its
        fs = load_settings(FeaturesSettings, "features")
        local = Features(fs.obi_levels, int(fs.window_s * 1e9), ctx.clock.now_ns, load_kernels(s.kernels))
    ex = Execution(ctx, s, local)
    await ctx.bus.ensure_stream(STREAM, subjects.durable_patterns(s.subject_root))
    await restore_state(ctx, ex)
    await ex.flags.start()
    dlq = Counter("exec_dlq_total", "Undecodable messages", ["type"], registry=ctx.registry)
    root = s.subject_root

    await ctx.subscribe_typed(subjects.md_book(root, "*", "*"), BookTopK, ex.on_book, dlq.labels("book"))
    await ctx.subscribe_typed(subjects.md_status(root, "*", "*"), BookStatus, ex.on_status, dlq.labels("status"))
    await ctx.subscribe_typed(subjects.venue_scoring(root), VenueScoring, ex.on_venue_scoring, dlq.labels("venues"))
    await ctx.subscribe_typed(
        subjects.feat_micro(root, "*", "*"), MicroFeatures, ex.on_bus_features, dlq.labels("features")
    )
    if local is not None:
        for venue, symbol in sorted(ex.clock_keys):
            await ctx.subscribe_typed(subjects.md_trade(root, venue, symbol), Trade, ex.on_trade, dlq.labels("trade"))
    await ctx.subscribe_typed(subjects.regime(root, "*", "*"), RegimeState, ex.on_regime, dlq.labels("regime"))
    await ctx.subscribe_typed(subjects.gating(root), GatingState, ex.on_gating, dlq.labels("gating"))
    await ctx.subscribe_typed(
        subjects.events_context(root, "*"), EventContext, ex.on_event_context, dlq.labels("events")
    )

    def on_nudges(n: NudgesApplied) -> None:  # calibration nudge of the sizing cap (evidence)
        if n.applied and -1 < n.sizingCapDelta < 1:
            s_max = ex.core.scale_sizing_cap(n.sizingCapDelta)
            ctx.log.info("sizing_cap_nudged", delta=n.sizingCapDelta, s_max_quote=s_max)

    await ctx.subscribe_typed(subjects.nudges(root), NudgesApplied, on_nudges, dlq.labels("nudges"))
    await ctx.subscribe_typed(subjects.deploy_share(root), DeployShare, ex.split.on_share, dlq.labels("deploy"))
    ex.slo_task = asyncio.ensure_future(publish_slo(ex.split, ctx.bus, root))  # per-stack SLO samples → control
    await ctx.serve_rpc("plan_and_execute", PlanRequest, ex.plan_and_execute)
    await ctx.serve_rpc("paper_order", PaperOrder, ex.paper_order)
    await ctx.serve_rpc("simulate", SimulateRequest, ex.simulate)
    await ctx.serve_rpc("sizing_last", SizingLastRequest, ex.sizing_last)
    await ctx.serve_rpc("positions", PositionsRequest, ex.positions)
    gcwatch.watch(ctx.registry, "exec")
    ctx.log.info("gc_frozen", objects=gcwatch.freeze_startup())  # full collections skip the start-up state
    try:
        await asyncio.Event().wait()
    finally:  # SIGTERM: the audits still on their way get a moment to be stored
        if ex.storing:
            await asyncio.wait(set(ex.storing), timeout=STOP_STORING_S)


SPEC = ServiceSpec("execution", ExecutionSettings, main)
