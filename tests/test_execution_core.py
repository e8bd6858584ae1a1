"""execution core: accounting, sizing, fills against the book, provenance, rewards."""

from __future__ import annotations

import hashlib

import msgspec
import pytest

from stevie.contracts import BookState, BookTopK, MicroFeatures
from stevie.contracts.rpc import Choice, GuardDecision, RouterContext
from stevie.services.execution.core import BarCloses, ExecutionCore, NotTradable, Position, provenance
from stevie.services.execution.settings import ExecutionSettings

S = 1_000_000_000
KEY = ("binance", "BTCUSDT")


def core(**kw):
    return ExecutionCore(ExecutionSettings(books=["binance:BTCUSDT"], **kw))


def feed(c, ts, mid=100.0, obi=0.5):
    c.on_book(
        BookTopK(
            venue="binance",
            symbol="BTCUSDT",
            seq=1,
            state=BookState.LIVE,
            bids=[(mid - 0.05, 1.0), (mid - 0.15, 2.0)],
            asks=[(mid + 0.05, 1.0), (mid + 0.15, 2.0)],
            ts_event_ns=ts,
            ts_init_ns=0,
        )
    )
    return c.on_features(
        MicroFeatures(
            venue="binance",
            symbol="BTCUSDT",
            obi=obi,
            ti=0.0,
            spread_bps=10.0,
            micro_vol_bps=1.0,
            cancel_rate=0.0,
            mid=mid,
            ts_event_ns=ts,
            ts_init_ns=0,
        )
    )


def test_position_average_cost_and_realised_pnl():
    p = Position()
    p.apply(1, 2.0, 100.0)
    p.apply(1, 2.0, 110.0)
    assert (p.size, p.avg_price) == (4.0, 105.0)
    p.apply(-1, 1.0, 120.0)
    assert p.realized == pytest.approx(15.0) and p.size == 3.0
    p.apply(-1, 5.0, 100.0)  # flips short 2 at 100
    assert p.realized == pytest.approx(15.0 - 15.0) and (p.size, p.avg_price) == (-2.0, 100.0)


def test_decision_clock_and_not_tradable():
    c = core(decision_interval_s=10)
    with pytest.raises(NotTradable):
        c.slot(KEY)
    assert feed(c, 100 * S) is True
    c.slots[KEY].last_decision_ns = 100 * S
    assert feed(c, 105 * S) is False and feed(c, 110 * S) is True


def test_sizing_shrinks_with_uncertainty_and_is_vol_capped():
    c = core(s_max_quote=1000, w_star=1.0, capital_quote=10_000, sigma_target_bps=10)
    feed(c, S)
    ctx = c.context(KEY, 0.001, 0.001)
    sure = Choice("p_obi_momentum", 1.0, 0.0, 0.9, 0.0, {}, [])
    unsure = Choice("p_obi_momentum", 1.0, 0.0, 0.9, 5.0, {}, [])
    a = c.size(KEY, sure, ctx, 0.001, "test", S)
    b = c.size(KEY, unsure, ctx, 0.001, "test", S)
    assert a.signal == 1 and a.target_notional_quote == pytest.approx(500.0)  # sigmoid(0) = 1/2
    assert b.target_notional_quote < a.target_notional_quote
    capped = c.size(KEY, sure, ctx, 1.0, "test", S)  # huge σ → vol cap 10 000·0.001/1 = 10
    assert capped.target_notional_quote == pytest.approx(10.0)


def test_fill_walks_the_book_and_pays_fees():
    c = core(fee_bps=10)
    feed(c, S)
    f = c.fill(KEY, 1, 2.0)
    assert f.avg_price == pytest.approx((100.05 * 1 + 100.15 * 1) / 2)
    assert f.fee_quote == pytest.approx(2 * f.avg_price * 1e-3)
    assert c.cash == pytest.approx(10_000 - 2 * f.avg_price - f.fee_quote)
    assert c.positions[KEY].size == 2.0


def test_provenance_is_sha256_of_sorted_canonical_json():
    ctx = RouterContext(obi=0.1)
    ch = Choice("p_flat", 0.0, 0.0, 0.5, 0.1, {"p_flat": 0.0}, [1.0])
    want = hashlib.sha256(
        msgspec.json.encode({"context": ctx, "decision": ch, "feature_window": [[1.0]]}, order="sorted")
    ).hexdigest()
    assert provenance([[1.0]], ctx, ch) == want
    assert provenance([[1.0]], RouterContext(obi=0.2), ch) != want


def test_reward_after_horizon_is_signed_mid_move_in_bps():
    c = core(horizon_s=30)
    feed(c, 0, mid=100.0)
    ctx = c.context(KEY, 0.0, 0.0)
    ch = Choice("p_obi_momentum", 1.0, 0.0, 0.9, 0.0, {}, [])
    sizing = c.size(KEY, ch, ctx, 0.0, "none", 0)
    c.record(KEY, "e1", ch, sizing, GuardDecision(False, ""), None, ctx, c.feature_window(KEY), 0, 0, 0.0)
    feed(c, 10 * S, mid=101.0)
    assert c.due_rewards(KEY) == []
    feed(c, 31 * S, mid=101.0)
    ((policy, reward, _),) = c.due_rewards(KEY)
    assert policy == "p_obi_momentum" and reward == pytest.approx(100.0)  # +1 signal, +1 % = 100 bps
    assert c.due_rewards(KEY) == []  # each reward is due once


def test_reward_due_at_a_given_event_time():
    """``due_rewards(key, now_ns)``: due by that event time (the book at the horizon, before
    its features), at the latest book's mid; the features' due check then finds nothing."""
    c = core(horizon_s=30)
    feed(c, 0, mid=100.0)
    ctx = c.context(KEY, 0.0, 0.0)
    ch = Choice("p_obi_momentum", 1.0, 0.0, 0.9, 0.0, {}, [])
    c.record(KEY, "e1", ch, c.size(KEY, ch, ctx, 0.0, "none", 0), GuardDecision(False, ""), None, ctx, [], 0, 0, 0.0)
    c.on_book(msgspec.structs.replace(c.slots[KEY].top, bids=[(101.95, 1.0)], asks=[(102.05, 1.0)], ts_event_ns=30 * S))
    assert c.due_rewards(KEY, 29 * S) == []
    ((_, reward, got),) = c.due_rewards(KEY, 30 * S)  # the book at the horizon, its features not yet in
    assert reward == pytest.approx(200.0) and got is ctx
    feed(c, 30 * S, mid=102.0)
    assert c.due_rewards(KEY) == []


MIN_MS = 60_000


def test_bar_closes_seen_by_a_decision_are_only_bars_closed_by_its_event_time():
    """A bar opening at t closes at t + 1 min: a decision at event time T sees the bars with
    t + 1 min ≤ T and nothing later; a step longer than MAX_BAR_GAP_MS starts a new series,
    and a series whose newest bar closed longer ago than that is not seen at all."""
    t0 = 1_000 * MIN_MS
    opens = [t0 + i * MIN_MS for i in range(10)] + [t0 + 100 * MIN_MS + i * MIN_MS for i in range(5)]
    bars = BarCloses.of(opens, [float(100 + i) for i in range(15)])
    assert bars.breaks == [10]
    closes, last = bars.closed_by((t0 + 5 * MIN_MS) * 1_000_000)  # bars 0..4 have closed
    assert closes.tolist() == [100.0, 101.0, 102.0, 103.0, 104.0] and last == t0 + 4 * MIN_MS
    closes, last = bars.closed_by((t0 + 5 * MIN_MS) * 1_000_000 - 1)  # bar 4 closes 1 ns later
    assert closes.tolist()[-1] == 103.0 and last == t0 + 3 * MIN_MS
    closes, last = bars.closed_by((t0 + 103 * MIN_MS) * 1_000_000)  # after the gap: its own run only
    assert closes.tolist() == [110.0, 111.0, 112.0] and last == t0 + 102 * MIN_MS
    closes, last = bars.closed_by((t0 + 16 * MIN_MS) * 1_000_000)  # the newest closed 6 min ago: stale
    assert closes.size == 0 and last == t0 + 9 * MIN_MS
    closes, last = bars.closed_by((t0 + 15 * MIN_MS) * 1_000_000)  # 5 min: still the series
    assert closes.size == 10
    closes, last = bars.closed_by(t0 * 1_000_000)
    assert closes.size == 0 and last is None
    for bad in (([t0, t0], [1.0, 2.0]), ([t0], [1.0, 2.0]), ([t0, t0 + MIN_MS], [1.0, float("nan")])):
        with pytest.raises(ValueError):
            BarCloses.of(*bad)


def test_bar_policies_trade_on_the_closes_and_the_audit_says_which_bars():
    """With 1-minute closes trending up, p_sma goes long (it is flat without them); the shadow
    actions the audit stores for off-policy evaluation use the same closes, and the context
    names how many bars and the last one (event time), so the decision is reproducible."""
    c = core()
    now = 10_000 * MIN_MS * 1_000_000
    feed(c, now)
    ch = Choice("p_sma", 1.0, 0.0, 0.9, 0.0, {}, [])
    flat = c.size(KEY, ch, c.context(KEY, 0.0, 0.0), 0.0, "none", now)
    assert flat.signal == 0  # no closes: too little history
    n = 200
    opens = [now // 1_000_000 - (n - i) * MIN_MS for i in range(n)]  # the newest closed exactly at now
    c.bars["BTCUSDT"] = BarCloses.of([*opens, now // 1_000_000], [*(100.0 + 0.1 * i for i in range(n)), 1.0])
    ctx = c.context(KEY, 0.0, 0.0)
    assert ctx.bars == n and ctx.lastBarTs == opens[-1]  # the open bar (a crash to 1.0) is not seen
    sizing = c.size(KEY, ch, ctx, 0.0, "none", now)
    assert sizing.signal == 1
    audit, _ = c.record(KEY, "e1", ch, sizing, GuardDecision(False, ""), None, ctx, c.feature_window(KEY), now, 0, 0.0)
    assert audit.shadow["p_sma"] == 1 and audit.shadow["p_breakout"] == 1 and audit.shadow["p_flat"] == 0
    assert audit.context.bars == n
