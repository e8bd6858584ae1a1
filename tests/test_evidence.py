"""Evidence: rewards recomputed from the audits, off-policy rows against the counterfactual
truth, promotion and calibration reports, the router checkpoint round trip, and the model
registry against a real PostgreSQL (checkpoint compare-and-set, promote, rollback, restart
from the last checkpoint)."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest

from stevie.contracts.evidence import LineageRow, ModelChange
from stevie.contracts.rpc import (
    Audit,
    Choice,
    GuardDecision,
    RouterContext,
    SizingSnapshot,
)
from stevie.quant.calibration import NudgeBounds
from stevie.quant.errors import QuantInputError
from stevie.quant.policies import POLICIES
from stevie.services.evidence import core
from stevie.services.router import checkpoint
from stevie.services.router.core import Router

ARMS = list(POLICIES)
S = 1_000_000_000


def _audit(
    t_s: float,
    mid: float,
    policy: str = "p_obi_momentum",
    signal: int = 1,
    init: float | None = None,
    shadow: dict[str, int] | None = None,
    venue: str = "binance",
    symbol: str = "BTCUSDT",
) -> Audit:
    ts = int(t_s * S)
    window = [[t_s - 0.5, 0.0, 0.0, 1.0, 1.0, 0.0, mid - 0.5], [t_s, 0.0, 0.0, 1.0, 1.0, 0.0, mid]]
    choice = Choice(policy, 0.2, 0.05, 0.4, 0.5, dict.fromkeys(ARMS, 0.0), [1.0, 0.3])
    sizing = SizingSnapshot(symbol, 1.0, 0.5, 1.0, 1.0, 0.0, "none", 1.0, 1.0, signal, 0.1, ts // 1_000_000)
    return Audit(
        event_id=uuid.uuid4().hex,
        ts_event_ns=ts,
        ts_init_ns=int((init if init is not None else t_s) * S),
        venue=venue,
        symbol=symbol,
        policy_id=policy,
        feature_window=window,
        context=RouterContext(symbol=symbol, obi=0.5),
        choice=choice,
        sizing=sizing,
        guard=GuardDecision(False),
        fill=None,
        position_after=0.0,
        provenance="0" * 64,
        shadow=shadow if shadow is not None else {a: (1 if a == "p_obi_momentum" else 0) for a in ARMS},
    )


def test_rewards_come_from_the_first_mid_past_the_horizon_in_the_same_session():
    audits = [_audit(100, 1000.0), _audit(110, 1001.0), _audit(120, 1002.0), _audit(131, 1010.0), _audit(141, 1005.0)]
    # a new replay session (event time restarts) must not pair with the old one
    audits += [_audit(50, 2000.0, init=200), _audit(60, 2000.0, init=210)]
    out = core.outcomes(list(reversed(audits)), horizon_s=30)
    assert [d.ts_ns // S for d in out] == [100, 110]
    # decision at 100 s: mid 1000 → first row at ≥ 130 s lies in the audit at 131 s: its row at 130.5 (1009.5)
    assert out[0].ret_bps == pytest.approx((1009.5 - 1000.0) / 1000.0 * 1e4)
    assert out[0].reward == pytest.approx(out[0].ret_bps)  # signal +1
    assert out[0].rewards["p_flat"] == 0.0 and out[0].rewards["p_obi_momentum"] == pytest.approx(out[0].ret_bps)
    # at 110 s: first row ≥ 140 s is the audit at 141 s's row at 140.5 (1004.5)
    assert out[1].ret_bps == pytest.approx((1004.5 - 1001.0) / 1001.0 * 1e4)
    # the forecast inputs: mean = score − bonus, width
    assert out[0].mean == pytest.approx(0.15) and out[0].width == 0.5


def _logged(n: int, rng: np.random.Generator, edge: dict[str, float]) -> list[core.Logged]:
    """A logging policy choosing uniformly among the first three arms; each policy's reward is
    its own mean edge + noise; regime alternates."""
    out = []
    for i in range(n):
        k = int(rng.integers(0, 3))
        r = {a: edge.get(a, 0.0) + rng.standard_normal() for a in ARMS}
        pol = ARMS[k]
        out.append(
            core.Logged(
                i * S,
                i * S,
                "binance",
                "BTCUSDT",
                "bull" if i % 2 else "bear",
                pol,
                1 / 3,
                (1.0, float(rng.standard_normal())),
                1,
                r[pol],
                r,
                0.1,
                0.5,
            )
        )
    return out


def test_cf_rows_recover_the_counterfactual_truth():
    rng = np.random.default_rng(0)
    logged = _logged(900, rng, {"p_obi_momentum": 1.0, "p_micro_reversion": -0.5})
    rows, warnings = core.cf_rows(logged, core.OpeSettings(n_boot=100), None)
    assert not warnings
    by = {(r.policyId, r.regime): r for r in rows}
    assert {r.regime for r in rows} == {"all", "bull", "bear"}
    for pol, truth in (("p_obi_momentum", 1.0), ("p_micro_reversion", -0.5), ("p_flat", 0.0)):
        row = by[(pol, "all")]
        assert row.n == 900 and row.ess == pytest.approx(300, rel=0.15)
        for est in (row.ips, row.snips, row.dm, row.dr, row.sndr):
            assert est is not None and est.low <= est.value <= est.high
            assert est.low - 0.1 < truth < est.high + 0.1
        assert row.replay == pytest.approx(truth, abs=0.15)
        assert row.warning == ""
    # a policy the logging policy never ran has ESS 0 and says so
    never = by[("p_sma", "all")]
    assert never.ess == 0.0 and "ESS" in never.warning and never.snips is None


def test_cf_rows_with_few_samples_warn_instead_of_failing():
    rng = np.random.default_rng(1)
    rows, _ = core.cf_rows(_logged(3, rng, {}), core.OpeSettings(n_boot=50), None)
    assert rows and all("too few" in r.warning for r in rows)
    assert core.cf_rows([], core.OpeSettings(), None) == ([], ["no logged decisions with a reward yet"])


def test_router_target_uses_the_posterior_action_distribution():
    rng = np.random.default_rng(2)
    logged = _logged(300, rng, {"p_obi_momentum": 1.0})
    post = checkpoint.export(Router(0, 1.0, 0.5, 100, ARMS))
    post = type(post)(
        ["bias", "x"],
        post.lam,
        post.v,
        {a: type(st)([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0], 0) for a, st in post.arms.items()},
    )
    rows, _ = core.cf_rows(logged, core.OpeSettings(n_boot=50), post)
    r = next(x for x in rows if x.policyId == core.ROUTER and x.regime == "all")
    # the prior is symmetric: every arm equally likely, so the router's value is the mean edge
    assert r.replay == pytest.approx(1.0 / len(ARMS), abs=0.15)


def test_promotion_finds_a_better_challenger_and_keeps_otherwise():
    rng = np.random.default_rng(3)
    logged = _logged(400, rng, {"p_obi_momentum": 0.6})
    r = core.promotion_status(logged, [0.01, -0.02, 0.0], core.PromotionSettings(reps=200))
    assert r.n == 400 and r.trials >= 3 + 1
    c = {x.id: x for x in r.challengers}
    assert c["p_obi_momentum"].spa is not None and c["p_obi_momentum"].spa.consistent < 0.05
    assert c["p_obi_momentum"].dsr is not None and c["p_obi_momentum"].dsr > 0.95
    assert r.decision == "promote p_obi_momentum"
    flat = core.promotion_status(_logged(400, rng, {}), [], core.PromotionSettings(reps=200))
    assert flat.decision == "keep champion" and "best challenger" in flat.reason
    few = core.promotion_status(_logged(5, rng, {}), [], core.PromotionSettings(reps=200))
    assert few.warnings and few.decision == "keep champion"


def test_calibration_report_and_bounded_nudges():
    rng = np.random.default_rng(4)
    logged = []
    for i in range(2000):
        z = 2 * rng.standard_normal()
        win = rng.uniform() < __import__("scipy").stats.norm.cdf(z / 2.5)  # over-confident forecasts
        ret = 1.0 if win else -1.0
        logged.append(
            core.Logged(
                i * S,
                i * S,
                "binance",
                "BTCUSDT",
                "unknown",
                "p_obi_momentum",
                0.5,
                (1.0,),
                1,
                ret,
                {"p_obi_momentum": ret},
                z * 0.5,
                0.5,
            )
        )
    b = NudgeBounds(0.3, 0.2)
    rep = core.calibration_report(logged, 1e9, b, 10, 30)
    assert rep.n == 2000 and rep.ece is not None and rep.ece > 0.05
    assert rep.nudges is not None and rep.nudges.routerPriorDelta == pytest.approx(0.3, abs=1e-5)  # capped at the bound
    assert -0.2 <= rep.nudges.sizingCapDelta < 0
    assert sum(b.count for b in rep.bins) == 2000 and len(rep.by_policy) == 1
    with pytest.raises(QuantInputError):
        core.check_explicit_nudges(0.9, None, b)
    core.check_explicit_nudges(0.1, -0.2, b)


def test_router_posterior_round_trip():
    r = Router(0, 1.0, 0.5, 100)
    ctx = RouterContext(obi=0.4, ti=0.1, spread_bps=2.0)
    for i in range(7):
        r.update(r.ts.arms[i % 2], 0.1 * i, ctx)
    post = checkpoint.export(r)
    fresh = Router(0, 1.0, 0.5, 100)
    checkpoint.load(fresh, post)
    assert fresh.updates() == r.updates()
    for a in r.ts.arms:
        np.testing.assert_allclose(fresh.ts.posteriors[a].mean, r.ts.posteriors[a].mean)
    bad = type(post)(["x"], post.lam, post.v, post.arms)
    with pytest.raises(QuantInputError):
        checkpoint.load(fresh, bad)
    sched = checkpoint.Schedule(3)
    assert [sched.on_update() for _ in range(6)] == [False, False, True, False, False, True]


# -- against PostgreSQL -----------------------------------------------------------------------


@pytest.fixture
async def evdb(pg_server):
    """(url, pool) of a fresh database of its own (the current model is global to a database)."""
    from stevie.store import connect_pool, migrate

    name = f"ev_{uuid.uuid4().hex[:10]}"
    admin = await connect_pool(pg_server.url)
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    url = pg_server.url.rsplit("/", 1)[0] + "/" + name
    await migrate(url)
    p = await connect_pool(url)
    yield url, p
    await p.close()


@pytest.mark.integration
async def test_registry_checkpoint_promote_rollback(evdb):
    from stevie.store import evidence as repo

    _, pool = evdb
    r = Router(0, 1.0, 0.5, 100)
    ctx = RouterContext(obi=0.2)
    for _ in range(3):
        r.update(r.ts.arms[1], 1.0, ctx)
    assert await repo.current_model(pool) is None
    assert await repo.checkpoint(pool, "ckpt-a", "test", checkpoint.export(r), None)
    cur = await repo.current_model(pool)
    assert cur is not None and cur[0].id == "ckpt-a" and cur[0].updates[r.ts.arms[1]] == 3
    # a later checkpoint of the same session updates the row
    r.update(r.ts.arms[1], 1.0, ctx)
    assert await repo.checkpoint(pool, "ckpt-a", "test", checkpoint.export(r), None)
    assert (await repo.get_model(pool, "ckpt-a")).updates[r.ts.arms[1]] == 4
    # a registered model promoted; the old session's checkpoint no longer takes over
    await repo.register_model(
        pool,
        "pbt-best",
        "pbt",
        "pbt:run1",
        checkpoint.export(Router(0, 1.0, 0.5, 100)),
        params={"threshold": 0.3},
        metrics={"sharpe": 0.1},
    )
    with pytest.raises(ValueError):
        await repo.register_model(pool, "pbt-best", "pbt", "x", None)
    with pytest.raises(ValueError):
        await repo.set_current(pool, "pbt-best", "rollback")  # never current: promote it instead
    change = await repo.set_current(pool, "pbt-best", "promote", "op1")
    assert isinstance(change, ModelChange) and change.previous == "ckpt-a" and change.model.current
    assert not await repo.checkpoint(pool, "ckpt-a", "test", checkpoint.export(r), None)
    assert (await repo.current_model(pool))[0].id == "pbt-best"  # type: ignore[index]
    # the next session continues from the promoted model and becomes current
    assert await repo.checkpoint(pool, "ckpt-b", "test", checkpoint.export(r), "pbt-best")
    back = await repo.set_current(pool, "ckpt-a", "rollback", "op1")
    assert back.previous == "ckpt-b" and (await repo.current_model(pool))[0].id == "ckpt-a"  # type: ignore[index]
    # a rollback to a session's own parent: that session's late checkpoint does not undo it
    await repo.set_current(pool, "pbt-best", "rollback", "op1")
    assert not await repo.checkpoint(pool, "ckpt-b", "test", checkpoint.export(r), "pbt-best")
    assert (await repo.current_model(pool))[0].id == "pbt-best"  # type: ignore[index]
    assert await repo.checkpoint(pool, "ckpt-c", "test", checkpoint.export(r), "pbt-best")  # the next session does
    await repo.set_current(pool, "ckpt-a", "rollback", "op1")
    with pytest.raises(KeyError):
        await repo.set_current(pool, "nope", "promote")
    actions = [h[1] for h in await repo.model_history(pool)]
    assert actions[:5] == ["rollback", "checkpoint", "rollback", "rollback", "checkpoint"]
    views = await repo.list_models(pool)
    assert {v.id for v in views} == {"ckpt-a", "ckpt-b", "ckpt-c", "pbt-best"}
    assert [v.current for v in views].count(True) == 1


@pytest.mark.integration
async def test_trials_lineage_nudges(evdb):
    from stevie.store import evidence as repo

    _, pool = evdb
    assert await repo.add_trial(pool, "bt:1", "backtest", 0.05, 100)
    assert not await repo.add_trial(pool, "bt:1", "backtest", 0.05, 100)
    await repo.add_trial(pool, "pbt:r:m00g0", "pbt", -0.01, 50, {"a": 1.0})
    assert sorted(await repo.trial_sharpes(pool)) == [-0.01, 0.05]
    row = LineageRow("r1", "m00g1", 0, "m01g0", 1, {"a": 2.0}, 0.3, 1, 2, True, 0)
    await repo.add_lineage(pool, row)
    await repo.add_lineage(pool, row)
    got = await repo.list_lineage(pool)
    assert len(got) == 1 and got[0].parent == "m01g0" and got[0].params == {"a": 2.0} and got[0].exploited
    assert await repo.add_nudge(pool, 0.1, -0.05, 0.2, 100, False) > 0


@pytest.mark.integration
async def test_router_restarts_from_its_last_checkpoint_after_a_kill(evdb, nats_server):
    """ModelSync with a real bus and PostgreSQL: 25 updates with a checkpoint every 10; the
    process then dies without its SIGTERM checkpoint (as under SIGKILL): a new router starts
    from the 20-update checkpoint, not from the prior. A promote then reloads live."""
    from stevie.bus import NatsBus
    from stevie.contracts import encode, subjects
    from stevie.runtime.clock import LiveClock
    from stevie.runtime.logs import get_logger
    from stevie.runtime.metrics import new_registry
    from stevie.runtime.service import ServiceContext
    from stevie.services.router.models import ModelSync
    from stevie.services.router.settings import RouterSettings
    from stevie.store import evidence as repo

    url, pool = evdb
    root = f"t{uuid.uuid4().hex[:8]}"
    s = RouterSettings(nats_url=nats_server.url, database_url=url, subject_root=root, checkpoint_every=10)

    async def boot() -> tuple[Router, ModelSync, NatsBus]:
        bus = await NatsBus.connect(nats_server.url)
        ctx = ServiceContext("router", s, bus, new_registry(), LiveClock(), get_logger(service="router"), 0)
        router = Router(0, 1.0, 0.5, 100)
        sync = ModelSync(ctx, router, s.checkpoint_every)
        await sync.start()
        return router, sync, bus

    router, sync, bus = await boot()
    ctx_ = RouterContext(obi=0.3)
    arm = router.ts.arms[1]
    for _ in range(25):
        router.update(arm, 0.5, ctx_)
        sync.on_update()
        for t in list(sync._tasks):  # let a due background checkpoint land before the next update
            await t
    assert sync.pool is not None
    await sync.pool.close()  # "killed": no final checkpoint
    await bus.close()

    router2, sync2, bus2 = await boot()
    assert router2.updates()[arm] == 20
    assert router2.model_id.startswith("ckpt-")
    # promote another model: the running router reloads it live
    await repo.register_model(pool, "manual-1", "manual", "test", checkpoint.export(Router(0, 1.0, 0.5, 100)))
    change = await repo.set_current(pool, "manual-1", "promote")
    await bus2.publish(subjects.model_current(root), encode(change))
    for _ in range(50):
        if router2.model_id == "manual-1":
            break
        await asyncio.sleep(0.05)
    assert router2.model_id == "manual-1" and router2.updates()[arm] == 0
    await sync2.stop()
    await bus2.close()


def test_sizing_cap_nudge_scales_s_max_only():
    from stevie.services.execution.core import ExecutionCore
    from stevie.services.execution.settings import ExecutionSettings

    core_ = ExecutionCore(ExecutionSettings())
    before = core_.s
    assert core_.scale_sizing_cap(-0.2) == pytest.approx(before.s_max_quote * 0.8)
    assert core_.s.capital_quote == before.capital_quote and core_.s.w_star == before.w_star
    with pytest.raises(ValueError):
        core_.scale_sizing_cap(-1.0)


def test_baseline_guard_blocks_only_policies_proven_worse_than_flat():
    rng = np.random.default_rng(6)
    logged = _logged(900, rng, {"p_obi_momentum": 1.0, "p_micro_reversion": -1.0})
    rows, _ = core.cf_rows(logged, core.OpeSettings(n_boot=100), None)
    regions, reasons = core.baseline_guard(rows, 30, 20.0)
    assert "p_micro_reversion" in regions["all"] and "p_obi_momentum" not in regions["all"]
    assert "DR lower bound" in reasons["all:p_micro_reversion"]
    assert all("p_sma" not in v for v in regions.values())  # never logged: ESS 0, no evidence, no block
    thin, _ = core.cf_rows(logged[:20], core.OpeSettings(n_boot=50), None)
    assert core.baseline_guard(thin, 30, 20.0) == ({}, {})


def test_router_replaces_a_blocked_choice_by_the_baseline_with_an_honest_propensity():
    r = Router(0, 1.0, 0.5, 2000, ["p_flat", "p_obi_momentum", "p_micro_reversion"])
    ctx = RouterContext(obi=0.5)
    for _ in range(200):  # p_obi_momentum looks great: TS picks it almost always
        r.update("p_obi_momentum", 5.0, ctx)
    assert r.choose(ctx, 0).policyId == "p_obi_momentum"
    r.fallback = {"all": frozenset({"p_obi_momentum"})}
    r.fallback_reasons = {"all:p_obi_momentum": "DR lower bound −1 < 0"}
    c = r.choose(ctx, 1)
    assert c.policyId == "p_flat" and c.fallback.startswith("p_obi_momentum → p_flat: DR lower bound")
    assert c.propensity > 0.95  # P(TS picks p_flat or p_obi_momentum)
    # another region's block does not apply
    r.fallback = {"bull": frozenset({"p_obi_momentum"})}
    assert r.choose(ctx, 2).policyId == "p_obi_momentum"
    assert r.choose(RouterContext(obi=0.5, regime="bull"), 3).policyId == "p_flat"


def test_router_metrics():
    rng = np.random.default_rng(7)
    logged = _logged(200, rng, {})
    m = core.router_metrics(logged, 30)
    pnl = np.array([d.reward for d in logged])
    assert m["n"] == 200 and m["meanPnlBps"] == pytest.approx(pnl.mean())
    assert m["sharpe"] == pytest.approx(pnl.mean() / pnl.std(ddof=1))
    worst = np.sort(-pnl)[::-1][:10]  # the worst 5 % of 200 losses
    assert m["cvar95Bps"] == pytest.approx(worst.mean(), rel=1e-9)
    assert core.router_metrics(logged[:5], 30) == {}


def test_backtest_outcomes_use_the_same_symbols_price_one_interval_later():
    from stevie.store.evidence import BacktestDecision

    m = 60 * S
    shadow = {"p_flat": 0, "p_sma": 1, "p_breakout": -1}
    rows = [
        BacktestDecision(0, "A", "p_sma", 0.5, 1, 100.0, {"regime": "bull", "sigmaHAR": 0.01}, shadow),
        BacktestDecision(0, "B", "p_flat", 0.4, 0, 50.0, {}, shadow),
        BacktestDecision(5 * m, "A", "p_breakout", 0.3, -1, 101.0, {}, shadow),
        BacktestDecision(5 * m, "B", "p_sma", 0.5, 1, 49.0, {}, shadow),
        BacktestDecision(10 * m, "A", "p_sma", 0.5, 1, 99.0, {}, shadow),
    ]
    out = core.backtest_outcomes(rows, 5 * 60.0)
    assert [(d.symbol, d.ts_ns) for d in out] == [("A", 0), ("B", 0), ("A", 5 * m)]  # the last ones lack t+H
    a0 = out[0]
    assert a0.ret_bps == pytest.approx(100.0) and a0.reward == pytest.approx(100.0)
    assert a0.rewards == {"p_flat": 0.0, "p_sma": pytest.approx(100.0), "p_breakout": pytest.approx(-100.0)}
    assert a0.regime == "bull" and a0.x[1] == pytest.approx(1.0)  # σ in %
    assert out[1].ret_bps == pytest.approx(-200.0) and out[1].reward == 0.0


def test_backtest_outcomes_read_the_later_price_on_the_same_venue_at_the_runs_horizon():
    """An L2 run decides on spot and USD-M books of one symbol (prices differ by the basis):
    a decision's return is read on its own venue, ``horizon_s`` later (30 s, not a bar run's
    5 minutes)."""
    from stevie.store.evidence import BacktestDecision

    shadow = {"p_flat": 0, "p_obi_momentum": 1}
    rows = [
        BacktestDecision(0, "BTC", "p_obi_momentum", 0.5, 1, 100.0, {}, shadow, "binance"),
        BacktestDecision(0, "BTC", "p_obi_momentum", 0.5, 1, 110.0, {}, shadow, "binance-usdm"),
        BacktestDecision(10 * S, "BTC", "p_flat", 0.5, 0, 100.5, {}, shadow, "binance"),
        BacktestDecision(30 * S, "BTC", "p_flat", 0.5, 0, 111.1, {}, shadow, "binance-usdm"),
        BacktestDecision(30 * S, "BTC", "p_flat", 0.5, 0, 101.0, {}, shadow, "binance"),
    ]
    out = core.backtest_outcomes(rows, 30.0)
    got = {(d.venue, d.ts_ns): d.ret_bps for d in out}
    assert got == {("binance", 0): pytest.approx(100.0), ("binance-usdm", 0): pytest.approx(100.0)}
    assert core.backtest_outcomes(rows, 10.0)[0].ret_bps == pytest.approx(50.0)  # binance at 10 s
    with pytest.raises(QuantInputError):
        core.backtest_outcomes(rows, 0.0)
