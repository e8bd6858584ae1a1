"""evidence shell: reads the audits (and the model registry) from PostgreSQL, hands them to
the pure core, answers ``evidence.*`` over request/reply, and publishes model changes and
nudges for the router and execution to apply live. Heavy answers (bootstrap, SPA) are
computed in a worker thread and reused for ``cache_s`` seconds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeVar

import asyncpg
import stamina
from prometheus_client import Counter

from stevie.contracts import encode, subjects
from stevie.contracts.evidence import (
    ApplyNudgesRequest,
    BaselineGuard,
    CfSummary,
    CfSummaryRequest,
    MetaQuality,
    MetaQualityRequest,
    ModelChange,
    ModelIdRequest,
    ModelList,
    ModelsRequest,
    NudgesApplied,
    PbtLineage,
    PbtLineageRequest,
    PromotionStatus,
    PromotionStatusRequest,
)
from stevie.quant.calibration import NudgeBounds
from stevie.quant.errors import QuantInputError
from stevie.runtime.service import ServiceContext, ServiceSpec
from stevie.services.evidence import core
from stevie.services.evidence.settings import EvidenceSettings
from stevie.store import connect_pool, migrate
from stevie.store import evidence as repo

T = TypeVar("T")
R = TypeVar("R")


def db_errors(fn: Callable[[R], Awaitable[T]]) -> Callable[[R], Awaitable[T]]:
    """A database that is down or failing answers 503 (RuntimeError), not a crash."""

    async def wrapped(req: R) -> T:
        try:
            return await fn(req)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise RuntimeError(f"database unavailable: {exc}") from exc

    return wrapped


class Evidence:
    def __init__(self, ctx: ServiceContext, s: EvidenceSettings, pool: asyncpg.Pool) -> None:
        self.ctx, self.s, self.pool = ctx, s, pool
        self._cache: dict[str, tuple[float, object]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._refreshing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.bounds = NudgeBounds(s.nudge_prior_bound, s.nudge_sizing_bound, s.ece_target, s.sizing_gain)
        self.ope = core.OpeSettings(s.n_boot, s.alpha, 0, s.min_n, s.min_ess, s.ridge_alpha)
        self.promo = core.PromotionSettings(s.p_max, s.dsr_min, s.spa_reps, s.spa_block_size, 0, s.min_n)
        r = ctx.registry
        self.m_changes = Counter("evidence_model_changes_total", "Promotes and rollbacks", ["action"], registry=r)
        self.m_nudges = Counter("evidence_nudges_applied_total", "Calibration nudges applied", registry=r)

    async def cached(self, key: str, make: Callable[[], Awaitable[T]]) -> T:
        """``make()``'s value, reused for ``cache_s``; once stale it is still answered while a
        background task recomputes it (a route never waits for a recomputation it does not
        need). The first call of a key waits; concurrent callers share one computation."""
        hit = self._cache.get(key)
        if hit is not None:
            if time.monotonic() - hit[0] >= self.s.cache_s and key not in self._refreshing:
                self._refreshing.add(key)
                task = asyncio.ensure_future(self._refresh(key, make))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return hit[1]  # type: ignore[return-value]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            hit = self._cache.get(key)
            if hit is not None:
                return hit[1]  # type: ignore[return-value]
            value = await make()
            self._cache[key] = (time.monotonic(), value)
            return value

    async def _refresh(self, key: str, make: Callable[[], Awaitable[T]]) -> None:
        try:
            self._cache[key] = (time.monotonic(), await make())
        except Exception as exc:  # keep the stale answer, log why
            self.ctx.log.warning("refresh_failed", key=key, error=str(exc)[:200])
        finally:
            self._refreshing.discard(key)

    def invalidate(self, key: str) -> None:
        self._cache.pop(key, None)

    async def logged(self) -> list[core.Logged]:
        async def load() -> list[core.Logged]:
            audits = await repo.recent_audits(self.pool, self.s.max_audits)
            return await asyncio.to_thread(core.outcomes, audits, self.s.horizon_s)

        return await self.cached("logged", load)

    async def guard_loop(self) -> None:
        """Every ``guard_interval_s``: the baseline-challenger guard from the live OPE rows,
        published for the router (an empty guard lifts every block)."""
        while True:
            try:
                cf = await self.cf_summary(CfSummaryRequest())
                regions, reasons = core.baseline_guard(cf.rows, self.s.min_n, self.s.min_ess)
                if not self.s.baseline_guard:
                    regions, reasons = {}, {}
                guard = BaselineGuard(regions, reasons, int(time.time() * 1000))
                await self.ctx.bus.publish(subjects.baseline_guard(self.s.subject_root), encode(guard))
            except (OSError, asyncpg.PostgresError, QuantInputError, RuntimeError) as exc:
                self.ctx.log.warning("guard_failed", error=str(exc)[:200])
            await asyncio.sleep(self.s.guard_interval_s)

    async def prime(self) -> None:
        """At start: compile arch's kernels (~8 s on a busy machine) and compute the answers
        once, so the first requests are served from the cache."""
        await asyncio.to_thread(core.warm_up)
        for fn in (
            lambda: self.cf_summary(CfSummaryRequest()),
            lambda: self.promotion_status(PromotionStatusRequest()),
            lambda: self.meta_quality(MetaQualityRequest()),
        ):
            try:
                await fn()
            except (OSError, asyncpg.PostgresError, QuantInputError) as exc:
                self.ctx.log.warning("prime_failed", error=str(exc)[:200])

    # -- off-policy evaluation ------------------------------------------------------------
    async def cf_summary(self, req: CfSummaryRequest) -> CfSummary:
        """``source``: ``live`` (the audits), ``backtest`` (the newest stored backtest run) or
        ``backtest:<run-id>`` (``backtest_decisions``, 008_backtests)."""
        self._check_source(req.source)

        async def make() -> CfSummary:
            src = await self._logged_of(req.source)
            if src is None:
                return CfSummary(
                    "backtest",
                    0,
                    self.s.horizon_s,
                    "bps",
                    self.s.alpha,
                    [],
                    ["no backtest run stored yet (run `stevie backtest` with the stack's database)"],
                )
            label, horizon, logged = src
            cur = await repo.current_model(self.pool) if req.source == "live" else None  # live features only
            rows, warnings = await asyncio.to_thread(core.cf_rows, logged, self.ope, cur[1] if cur else None)
            return CfSummary(label, len(logged), horizon, "bps", self.s.alpha, rows, warnings)

        return await self.cached(f"cf:{req.source}", make)

    # -- promotion ------------------------------------------------------------------------
    def _check_source(self, source: str) -> None:
        if not (source in ("live", "backtest") or source.startswith("backtest:")):
            raise QuantInputError(f"source must be 'live', 'backtest' or 'backtest:<run-id>', got {source!r}")

    async def _logged_of(self, source: str) -> tuple[str, float, list[core.Logged]] | None:
        """(label, horizon s, decisions) of a source; None when no backtest run is stored."""
        if source == "live":
            return "live", self.s.horizon_s, await self.logged()
        got = await repo.backtest_decisions(self.pool, source.partition(":")[2] or None, self.s.max_backtest_decisions)
        if got is None:
            return None
        logged = await asyncio.to_thread(core.backtest_outcomes, got[2], got[1])
        return f"backtest:{got[0]}", got[1], logged

    async def promotion_status(self, req: PromotionStatusRequest) -> PromotionStatus:
        self._check_source(req.source)

        async def make() -> PromotionStatus:
            src = await self._logged_of(req.source)
            if src is None:
                return PromotionStatus(
                    core.ROUTER,
                    None,
                    0,
                    [],
                    None,
                    0,
                    "keep champion",
                    "no backtest run stored yet",
                    self.s.p_max,
                    self.s.dsr_min,
                    ["no backtest run stored yet"],
                    "backtest",
                )
            label, _, logged = src
            trials = await repo.trial_sharpes(self.pool) + await repo.backtest_run_sharpes(self.pool)
            r = await asyncio.to_thread(core.promotion_status, logged, trials, self.promo)
            if req.source == "live":
                await self._record_metrics(logged)
            return PromotionStatus(
                core.ROUTER,
                r.champion_mean,
                r.n,
                r.challengers,
                r.spa,
                r.trials,
                r.decision,
                r.reason,
                self.s.p_max,
                self.s.dsr_min,
                r.warnings,
                label,
            )

        return await self.cached(f"promotion:{req.source}", make)

    async def _record_metrics(self, logged: list[core.Logged]) -> None:
        """Measured metrics (Sharpe, CVaR, calibration) onto the current model's registry row."""
        cur = await repo.current_model(self.pool)
        if cur is None:
            return
        since_ns = cur[0].createdAt * 1_000_000  # decisions made while this model was learning
        m = core.router_metrics([d for d in logged if d.init_ns >= since_ns], self.s.min_n)
        if not m:
            return
        hit = self._cache.get("calibration")  # the live calibration, when computed: (label, window, result)
        cal = hit[1][2] if hit is not None and isinstance(hit[1], tuple) else None
        if isinstance(cal, core.CalibrationResult) and cal.ece is not None:
            m["ece"] = cal.ece
            m["brier"] = cal.brier or 0.0
        await repo.set_metrics(self.pool, cur[0].id, m)

    # -- model registry -------------------------------------------------------------------
    async def models(self, _: ModelsRequest) -> ModelList:
        return ModelList(await repo.list_models(self.pool))

    async def _change(self, req: ModelIdRequest, action: str) -> ModelChange:
        if not req.id or len(req.id) > 200 or not req.id.isprintable():
            raise QuantInputError("id must be a registered model id (1–200 printable characters)")
        change = await repo.set_current(self.pool, req.id, action, req.actor)
        await self.ctx.bus.publish(subjects.model_current(self.s.subject_root), encode(change))
        self.m_changes.labels(action).inc()
        self.ctx.log.info("model_changed", action=action, model=req.id, previous=change.previous, actor=req.actor)
        return change

    async def models_promote(self, req: ModelIdRequest) -> ModelChange:
        return await self._change(req, "promote")

    async def models_rollback(self, req: ModelIdRequest) -> ModelChange:
        return await self._change(req, "rollback")

    # -- calibration ----------------------------------------------------------------------
    async def _calibration(self, source: str = "live") -> tuple[str, float, core.CalibrationResult]:
        """(label, window s, calibration) of a source: the live audits over ``window_s``, a
        backtest run over its whole span of event time; the label is ``backtest`` with a
        warning when no backtest run is stored."""
        self._check_source(source)

        async def make() -> tuple[str, float, core.CalibrationResult]:
            src = await self._logged_of(source)
            label, logged = ("backtest", []) if src is None else (src[0], src[2])
            window_s = self.s.window_s
            if source != "live" and logged:
                window_s = max(1.0, (max(d.init_ns for d in logged) - min(d.init_ns for d in logged)) / 1e9 + 1.0)
            c = await asyncio.to_thread(
                core.calibration_report, logged, window_s, self.bounds, self.s.n_bins, self.s.min_forecasts
            )
            if src is None:
                c = replace(c, warnings=["no backtest run stored yet", *c.warnings])
            return label, window_s, c

        return await self.cached("calibration" if source == "live" else f"calibration:{source}", make)

    async def meta_quality(self, req: MetaQualityRequest) -> MetaQuality:
        label, window_s, c = await self._calibration(req.source)
        nd = c.nudges
        return MetaQuality(
            n=c.n,
            windowS=window_s,
            brier=c.brier,
            ece=c.ece,
            reliability=c.bins,
            byPolicy=c.by_policy,
            temperature=nd.temperature if nd else None,
            routerPriorDelta=nd.routerPriorDelta if nd else 0.0,
            sizingCapDelta=nd.sizingCapDelta if nd else 0.0,
            bounds={"routerPriorDelta": self.bounds.prior, "sizingCapDelta": self.bounds.sizing},
            warnings=c.warnings,
            source=label,
        )

    async def meta_apply_nudges(self, req: ApplyNudgesRequest) -> NudgesApplied:
        core.check_explicit_nudges(req.routerPriorDelta, req.sizingCapDelta, self.bounds)
        _, _, c = await self._calibration()  # the live router is nudged from live forecasts only
        explicit = req.routerPriorDelta is not None or req.sizingCapDelta is not None
        prior = (
            req.routerPriorDelta
            if req.routerPriorDelta is not None
            else (c.nudges.routerPriorDelta if c.nudges else 0.0)
        )
        sizing = (
            req.sizingCapDelta if req.sizingCapDelta is not None else (c.nudges.sizingCapDelta if c.nudges else 0.0)
        )
        if not explicit and c.nudges is None:
            reason = "; ".join(c.warnings) or "no forecasts"
            return NudgesApplied(0.0, 0.0, False, c.ece, c.n, reason, int(time.time() * 1000))
        ts = await repo.add_nudge(self.pool, prior, sizing, c.ece, c.n, explicit, req.actor)
        out = NudgesApplied(prior, sizing, True, c.ece, c.n, "explicit" if explicit else "from calibration", ts)
        await self.ctx.bus.publish(subjects.nudges(self.s.subject_root), encode(out))
        self.m_nudges.inc()
        self.ctx.log.info("nudges_applied", prior=prior, sizing=sizing, ece=c.ece, n=c.n, actor=req.actor)
        self.invalidate("calibration")
        return out

    # -- PBT --------------------------------------------------------------------------------
    async def pbt_lineage(self, req: PbtLineageRequest) -> PbtLineage:
        if not 1 <= req.limit <= 10_000:
            raise QuantInputError("limit must be in [1, 10000]")
        return PbtLineage(await repo.list_lineage(self.pool, req.limit))


async def main(ctx: ServiceContext) -> None:
    s = ctx.settings
    assert isinstance(s, EvidenceSettings)
    if not s.database_url:
        raise RuntimeError("evidence needs STEVIE_DATABASE_URL (PostgreSQL is the record of truth)")
    retry = stamina.retry(on=(OSError, asyncpg.PostgresError), attempts=20, timeout=30.0)
    await retry(migrate)(s.database_url)
    pool = await retry(connect_pool)(s.database_url)
    ev = Evidence(ctx, s, pool)
    # compile arch's bootstrap kernels now, not in the first request (~8 s on a busy machine)
    warm = asyncio.ensure_future(ev.prime())
    guard = asyncio.ensure_future(ev.guard_loop())
    try:
        await ctx.serve_rpc("cf_summary", CfSummaryRequest, db_errors(ev.cf_summary))
        await ctx.serve_rpc("promotion_status", PromotionStatusRequest, db_errors(ev.promotion_status))
        await ctx.serve_rpc("models", ModelsRequest, db_errors(ev.models))
        await ctx.serve_rpc("models_promote", ModelIdRequest, db_errors(ev.models_promote))
        await ctx.serve_rpc("models_rollback", ModelIdRequest, db_errors(ev.models_rollback))
        await ctx.serve_rpc("meta_quality", MetaQualityRequest, db_errors(ev.meta_quality))
        await ctx.serve_rpc("meta_apply_nudges", ApplyNudgesRequest, db_errors(ev.meta_apply_nudges))
        await ctx.serve_rpc("pbt_lineage", PbtLineageRequest, db_errors(ev.pbt_lineage))
        await asyncio.Event().wait()
    finally:
        warm.cancel()
        guard.cancel()
        await pool.close()


SPEC = ServiceSpec("evidence", EvidenceSettings, main, nice=10)  # background: yields the cores to the decision path
