"""execution's decision path over the in-memory bus, with the services it calls faked at
their RPC subjects: one book's decision never waits on another's, a book's due rewards
reach the router before its decision, the route is scored in-process from the venues
service's published inputs (the RPC only without a fresh publication), and a book going
LIVE fetches the first vol forecast, smile and 1-minute closes before any decision needs
them, and the bar policies decide on those closes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import msgspec
import pytest

from stevie.bus import InMemoryBus
from stevie.contracts import BookState, BookStatus, BookTopK, MicroFeatures, Trade, encode, subjects
from stevie.contracts.rpc import (
    Audit,
    Choice,
    Closes,
    ClosesRequest,
    DecideRequest,
    GuardDecision,
    PosteriorSummary,
    RpcError,
)
from stevie.contracts.venues import VenueScoreRequest
from stevie.quant.kernels import load as load_kernels
from stevie.runtime.clock import LiveClock
from stevie.runtime.logs import get_logger
from stevie.runtime.metrics import new_registry
from stevie.runtime.service import ServiceContext
from stevie.services.execution.settings import ExecutionSettings
from stevie.services.execution.shell import Execution
from stevie.services.features.core import Features
from stevie.services.features.settings import FeaturesSettings
from stevie.services.venues.core import Registry
from stevie.services.venues.settings import VenuesSettings

ROOT = "t_exec_path"
S = 1_000_000_000
T0 = 1_700_000_000 * S
BTC, ETH, BTC_PERP = ("binance", "BTCUSDT"), ("binance", "ETHUSDT"), ("binance-usdm", "BTCUSDT")
MIDS = {"BTCUSDT": 60_000.0, "ETHUSDT": 3_000.0}


def book(key: tuple[str, str], ts_ns: int, half_spread: float = 1.0) -> BookTopK:
    mid = MIDS[key[1]]
    return BookTopK(
        venue=key[0],
        symbol=key[1],
        seq=1,
        state=BookState.LIVE,
        bids=[(mid - half_spread - i, 5.0) for i in range(20)],
        asks=[(mid + half_spread + i, 5.0) for i in range(20)],
        ts_event_ns=ts_ns,
        ts_init_ns=time.time_ns(),
    )


def features(key: tuple[str, str], ts_ns: int, obi: float = 0.5) -> MicroFeatures:
    """obi 0.5, ti 0: p_obi_momentum buys (obi −0.5: sells)."""
    return MicroFeatures(
        venue=key[0],
        symbol=key[1],
        obi=obi,
        ti=0.0,
        spread_bps=0.3,
        micro_vol_bps=1.0,
        cancel_rate=0.0,
        mid=MIDS[key[1]],
        ts_event_ns=ts_ns,
        ts_init_ns=time.time_ns(),
    )


class Fakes:
    """The router, risk guards, vol and venues at their RPC subjects; ``calls`` in order."""

    def __init__(self, bus: InMemoryBus) -> None:
        self.bus = bus
        self.calls: list[tuple[str, str]] = []  # (service.method, symbol)
        self.gates: dict[str, asyncio.Event] = {}  # symbol → router.decide waits on it
        self.venues: Registry | None = None
        self.carried: list[list[str]] = []  # per router.decide, the policies of the rewards it carried

    async def start(self) -> None:
        choice = Choice("p_obi_momentum", 1.0, 0.0, 0.5, 0.1, {}, [])
        Answer = Callable[[bytes], Awaitable[msgspec.Struct]]

        def handler(name: str, answer: Answer) -> Callable[[bytes], Awaitable[bytes]]:
            async def h(data: bytes) -> bytes:
                body = msgspec.json.decode(data)  # every request names its symbol, some in its context
                self.calls.append((name, str(body.get("symbol") or body.get("context", {}).get("symbol", ""))))
                return encode(await answer(data))

            return h

        async def decide(data: bytes) -> msgspec.Struct:
            req = msgspec.json.decode(data, type=DecideRequest)
            self.carried.append([r.policyId for r in req.rewards])
            gate = self.gates.get(req.context.symbol)
            if gate is not None:
                await gate.wait()
            return choice

        async def update(_: bytes) -> msgspec.Struct:
            return PosteriorSummary("p_obi_momentum", 1, [], {})

        async def check(_: bytes) -> msgspec.Struct:
            return GuardDecision(False, "")

        async def unavailable(_: bytes) -> msgspec.Struct:
            return RpcError(503, "unavailable", "not fitted yet")

        async def closes(data: bytes) -> msgspec.Struct:  # an uptrend whose newest bar closes at T0
            req = msgspec.json.decode(data, type=ClosesRequest)
            end_ms = T0 // 1_000_000
            opens = [end_ms - (req.n - i) * 60_000 for i in range(req.n)]
            return Closes(req.symbol, opens, [MIDS[req.symbol] * (1 + 1e-4 * i) for i in range(req.n)])

        async def score(data: bytes) -> msgspec.Struct:
            req = msgspec.json.decode(data, type=VenueScoreRequest)
            assert self.venues is not None
            return self.venues.score(req.symbol, req.size, req.side, time.time_ns())

        for service, method, fn in (
            ("router", "decide", decide),
            ("router", "update", update),
            ("risk-guards", "check", check),
            ("vol", "forecast", unavailable),
            ("vol", "options_smile", unavailable),
            ("vol", "closes", closes),
            ("venues", "score", score),
        ):
            await self.bus.add_endpoint(
                service, method, subjects.rpc(ROOT, service, method), handler(f"{service}.{method}", fn)
            )

    def count(self, name: str) -> int:
        return sum(1 for n, _ in self.calls if n == name)


async def started(features: Features | None = None, **settings: object) -> tuple[Execution, Fakes, InMemoryBus]:
    bus = InMemoryBus()
    s = ExecutionSettings(subject_root=ROOT, books=["binance:BTCUSDT", "binance:ETHUSDT"], **settings)  # type: ignore[arg-type]
    ctx = ServiceContext("execution", s, bus, new_registry(), LiveClock(), get_logger(service="execution"), 0)
    fakes = Fakes(bus)
    await fakes.start()
    return Execution(ctx, s, features), fakes, bus


def local_features() -> Features:
    fs = FeaturesSettings()  # the features service's defaults
    return Features(fs.obi_levels, int(fs.window_s * 1e9), time.time_ns, load_kernels("reference"))


def audits(bus: InMemoryBus) -> list[Audit]:
    return [msgspec.json.decode(m.data, type=Audit) for m in bus.durable_log if ".audit." in m.subject]


async def until(cond: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.001)


@pytest.mark.asyncio
async def test_one_books_decision_does_not_wait_on_anothers():
    ex, fakes, bus = await started(venue_routing=False)
    fakes.gates["BTCUSDT"] = asyncio.Event()  # the router takes its time with BTC
    for key in (BTC, ETH):
        ex.on_book(book(key, T0))
    ex.on_features(features(BTC, T0))  # handled by BTC's worker: it waits on the router
    ex.on_features(features(ETH, T0))
    await until(lambda: any(a.symbol == "ETHUSDT" for a in audits(bus)))
    assert [a.symbol for a in audits(bus)] == ["ETHUSDT"]  # BTC is still waiting
    # BTC's later features queue behind its own decision, in order
    ex.on_features(features(BTC, T0 + 1 * S))
    fakes.gates["BTCUSDT"].set()
    await until(lambda: len(audits(bus)) == 2)
    btc = next(a for a in audits(bus) if a.symbol == "BTCUSDT")
    assert btc.ts_event_ns == T0  # decided on the features that triggered it
    await until(lambda: not ex._inbox[BTC])
    assert [f.ts_event_ns for f in ex.core.slots[BTC].features] == [T0, T0 + S]


@pytest.mark.asyncio
async def test_due_rewards_ride_with_the_decision_of_the_same_step():
    ex, fakes, bus = await started(venue_routing=False, decision_interval_s=10.0, horizon_s=30.0)
    for t in (0, 10, 20, 30):
        ex.on_book(book(BTC, T0 + t * S))
        ex.on_features(features(BTC, T0 + t * S))
        await until(lambda: not ex._inbox[BTC] and ex._workers[BTC].done())
    btc = [n for n, sym in fakes.calls if sym == "BTCUSDT" and n.startswith("router.")]
    # four decisions; at t = 30 s the reward of the t = 0 decision is due: in that decision's
    # request (the router applies it before it chooses), not an update of its own
    assert btc == ["router.decide"] * 4
    assert fakes.carried == [[], [], [], ["p_obi_momentum"]]
    assert len(audits(bus)) == 4
    assert ex.m_rewards.labels("p_obi_momentum", "decision")._value.get() == 1


@pytest.mark.asyncio
async def test_a_reward_is_sent_when_the_book_at_its_horizon_arrives_never_before_an_earlier_decision():
    ex, fakes, bus = await started(venue_routing=False, decision_interval_s=10.0, horizon_s=25.0)

    async def tick(t: int) -> None:
        ex.on_book(book(BTC, T0 + t * S))
        ex.on_features(features(BTC, T0 + t * S))
        await until(lambda: not ex._inbox[BTC] and ex._workers[BTC].done())

    for t in (0, 10, 20):
        await tick(t)
    # the book at the horizon of the t = 0 decision (no decision due at 25): its update goes
    # out before its features
    ex.on_book(book(BTC, T0 + 25 * S))
    await until(lambda: fakes.count("router.update") == 1)
    assert fakes.count("router.decide") == 3 and len(audits(bus)) == 3
    ex.on_features(features(BTC, T0 + 25 * S))
    # the book of a decision (t = 30) leaves what is due to that decision's request
    ex.on_book(book(BTC, T0 + 30 * S))
    await asyncio.sleep(0.01)
    assert fakes.count("router.update") == 1
    ex.on_features(features(BTC, T0 + 30 * S))
    await until(lambda: len(audits(bus)) == 4)
    # the book at t = 35 (the t = 10 decision's horizon) is sent by the book path; the books at
    # 40 and 45 arrive before the features of 35 and 40: the t = 20 decision's reward, due at
    # 45, must not reach the router before the decision at t = 40
    ex.on_book(book(BTC, T0 + 35 * S))
    await until(lambda: fakes.count("router.update") == 2)
    for t in (40, 45):
        ex.on_book(book(BTC, T0 + t * S))
    await asyncio.sleep(0.01)
    assert fakes.count("router.update") == 2
    for t in (35, 40):
        ex.on_features(features(BTC, T0 + t * S))
    await until(lambda: len(audits(bus)) == 5)
    assert fakes.count("router.update") == 2 and fakes.carried[-1] == []  # decided at 40 without 45's information
    ex.on_features(features(BTC, T0 + 45 * S))  # no decision due at 45: its step sends it
    await until(lambda: fakes.count("router.update") == 3)
    assert fakes.count("router.decide") == 5


@pytest.mark.asyncio
async def test_route_scored_in_process_from_the_published_inputs_and_the_rpc_without_them():
    ex, fakes, bus = await started()
    vs = VenuesSettings()
    pub = Registry(vs.specs(), ["BTCUSDT", "ETHUSDT"], int(vs.stale_s * S), vs.top_depth_bps)
    fakes.venues = pub
    now = time.time_ns()
    for key, half in ((BTC, 1.0), (BTC_PERP, 0.5)):  # the perp's book is tighter
        b = book(key, T0, half)
        ex.on_book(b)
        pub.on_book(b, now)
        pub.on_micro(features(key, T0))
    ex.on_venue_scoring(pub.scoring(time.time_ns(), 1.0))
    ex.on_features(features(BTC_PERP, T0))
    ex.on_features(features(BTC, T0))
    await until(lambda: len(audits(bus)) == 1)
    a = audits(bus)[0]
    assert fakes.count("venues.score") == 0  # no round trip
    assert a.fill is not None and a.fill.filled > 0
    want = pub.score("BTCUSDT", a.fill.requested, "buy", time.time_ns())
    assert a.route is not None and a.route.chosen == want.venue == "binance-usdm" == a.venue
    assert a.route.scoreBps == pytest.approx(want.score) and a.route.reasons[0] == want.reasons[0]
    # the venues service stopped publishing (last inputs 4 ticks old): the RPC answers
    assert ex.venue_scoring is not None
    ex.venue_scoring = msgspec.structs.replace(ex.venue_scoring, ts_ns=time.time_ns() - 4 * S)
    ex.on_book(book(BTC, T0 + 10 * S))
    ex.on_features(features(BTC, T0 + 10 * S, obi=-0.5))  # sells: routed again
    await until(lambda: len(audits(bus)) == 2)
    assert audits(bus)[1].route is not None
    assert fakes.count("venues.score") == 1


@pytest.mark.asyncio
async def test_a_book_going_live_fetches_the_first_vol_forecast_smile_and_closes():
    ex, fakes, bus = await started(venue_routing=False)
    status = BookStatus(
        venue="binance", symbol="BTCUSDT", state=BookState.LIVE, reason="", seq=1, resyncs=0, ts_event_ns=T0,
        ts_init_ns=T0,
    )  # fmt: skip
    ex.on_status(status)
    await until(lambda: "BTCUSDT" in ex.vol_cache and "BTCUSDT" in ex.smile_cache and "BTCUSDT" in ex.core.bars)
    assert fakes.count("vol.forecast") == 1 and fakes.count("vol.options_smile") >= 1
    assert fakes.count("vol.closes") == 1 and ex.core.bars["BTCUSDT"].close.size == ex.s.bar_history
    assert not any(n.startswith("router.") for n, _ in fakes.calls)  # before any decision
    ex.on_status(status)  # LIVE again: cached, not fetched twice
    await asyncio.sleep(0.01)
    assert fakes.count("vol.forecast") == 1 and fakes.count("vol.closes") == 1
    # the first decision reads them: the bar policies see the uptrend, the context names the bars
    ex.on_book(book(BTC, T0))
    ex.on_features(features(BTC, T0))
    await until(lambda: len(audits(bus)) == 1)
    (a,) = audits(bus)
    assert a.context.bars == ex.s.bar_history and a.context.lastBarTs == T0 // 1_000_000 - 60_000
    assert a.shadow["p_sma"] == 1 and a.shadow["p_mean_reversion"] == 0
    assert fakes.count("vol.closes") == 1  # fresh: no second call on the decision path


@pytest.mark.asyncio
async def test_features_computed_here_are_the_features_services_and_drive_the_clock():
    """``local_features``: the clock books' books and trades go through the features core in
    execution — the vectors the features service computes from the same stream — and decide
    with no features message; the service's vectors for those books are not used twice, while
    a book execution only routes to keeps taking them."""
    ex, _, bus = await started(local_features(), venue_routing=False, decision_interval_s=1.0)
    twin = local_features()  # what the features service computes from the same stream
    live = BookStatus(
        venue="binance", symbol="BTCUSDT", state=BookState.LIVE, reason="", seq=1, resyncs=0, ts_event_ns=T0,
        ts_init_ns=T0,
    )  # fmt: skip
    ex.on_status(live)
    twin.on_status(live)
    want = []
    for i in range(12):
        ts = T0 + i * S // 4
        trade = Trade(
            venue="binance", symbol="BTCUSDT", trade_id=i, price=MIDS["BTCUSDT"] + (i % 3), size=0.1 * (i + 1),
            aggressor="buy" if i % 2 else "sell", ts_event_ns=ts, ts_init_ns=ts,
        )  # fmt: skip
        b = book(BTC, ts + 1, half_spread=1.0 + 0.5 * (i % 2))
        for sink in (ex, twin):
            sink.on_trade(trade)
        ex.on_book(b)
        f = twin.on_book(b)
        if f is not None:
            want.append(f)
        await until(lambda: not ex._inbox.get(BTC) and (BTC not in ex._workers or ex._workers[BTC].done()))
    got = list(ex.core.slots[BTC].features)
    assert len(want) >= 10 and got == want  # equal structs: every number the same
    decided = [a for a in audits(bus) if a.symbol == "BTCUSDT"]
    assert len(decided) >= 2  # one a second of event time, from these books alone
    at = next(f for f in got if f.ts_event_ns == decided[-1].ts_event_ns)  # the vector that decided
    assert decided[-1].feature_window[-1][1:] == [
        at.obi,
        at.ti,
        at.spread_bps,
        at.micro_vol_bps,
        at.cancel_rate,
        at.mid,
    ]
    ex.on_bus_features(features(BTC, T0 + 10 * S, obi=-0.9))  # the service's vector of a book computed here
    ex.on_bus_features(features(BTC_PERP, T0 + 10 * S))  # a book execution only routes to
    await until(lambda: not ex._inbox.get(BTC_PERP) and ex._workers[BTC_PERP].done())
    assert list(ex.core.slots[BTC].features) == got and len(ex.core.slots[BTC_PERP].features) == 1


def test_gc_pauses_are_timed_and_the_start_up_state_is_frozen():
    import gc

    from stevie.services.execution import gcwatch

    reg = new_registry()
    gcwatch.watch(reg, "t_exec")
    try:
        gc.collect()
        assert reg.get_sample_value("t_exec_gc_pause_seconds_count", {"generation": "2"}) == 1
        kept = [[i] for i in range(1000)]  # tracked containers alive "at start-up"
        frozen = gcwatch.freeze_startup()
        assert frozen >= len(kept) and gc.get_freeze_count() == frozen
        collected = {id(o) for g in range(3) for o in gc.get_objects(g)}  # what collections walk
        assert not any(id(k) in collected for k in kept)
    finally:
        gc.callbacks.pop()
        gc.unfreeze()
