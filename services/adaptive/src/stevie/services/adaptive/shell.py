"""adaptive shell: seeds the regime detectors with kline history (REST, through the budgeter),
follows the 1-minute bars, the microstructure features and the decision audits on the bus,
publishes ``RegimeState`` per bar and ``GatingState`` per scheduled evaluation, follows the
``BOCPD`` flag, and answers ``adaptive.regime_state``, ``features_ranking``,
``alpha_registry``, ``alpha_attribution``, ``report_alpha_pnl`` and ``report_risk``."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import asyncpg
import msgspec
import stamina
from prometheus_client import Counter, Gauge

from stevie.contracts import Bar, MicroFeatures, encode, subjects
from stevie.contracts.adaptive import (
    AlphaAttribution,
    AlphaAttributionRequest,
    AlphaPnlReport,
    AlphaRegistryList,
    AlphaRegistryRequest,
    FeatureRanking,
    FeatureRankingRequest,
    RegimeStateRequest,
    RegimeStates,
    ReportRequest,
    RiskReport,
)
from stevie.contracts.rpc import Audit
from stevie.runtime.budget import BudgetDenied, acquire
from stevie.runtime.flags import FlagsClient
from stevie.runtime.service import ServiceContext, ServiceSpec
from stevie.services.adaptive import reports
from stevie.services.adaptive.core import AdaptiveCore
from stevie.services.adaptive.settings import AdaptiveSettings
from stevie.store import connect_pool
from stevie.store.evidence import run_horizon_s

KlineRow = tuple[int, str, str, str, str, str, int, str, int, str, str, str]
_klines = msgspec.json.Decoder(list[KlineRow])
_audit = msgspec.json.Decoder(Audit)
_context = msgspec.json.Decoder(dict[str, float | str | bool | None])


class _RunSettings(msgspec.Struct, frozen=True):
    """What the reports need of a backtest run's settings (``backtest_runs.settings``) besides
    its horizon (``stevie.store.evidence.run_horizon_s``)."""

    s_max_quote: float = 20_000.0


_run_settings = msgspec.json.Decoder(_RunSettings)


class VenueUnavailable(Exception):
    """Retryable venue answer (5xx, 418/429)."""


class Adaptive:
    def __init__(self, ctx: ServiceContext, s: AdaptiveSettings) -> None:
        self.ctx, self.s = ctx, s
        self.core = AdaptiveCore(s)
        self.seeded: set[str] = set()
        self.held: dict[str, list[Bar]] = {}  # live bars that arrived while the symbol was seeding
        self._flag_push: asyncio.Future[None] | None = None
        self.pool: asyncpg.Pool | None = None
        self.dlq = Counter("adaptive_dlq_total", "Undecodable bus messages", ["type"], registry=ctx.registry)
        self.changes = Counter(
            "regime_changepoints_total", "BOCPD change points (MAP run length drop)", ["symbol"], registry=ctx.registry
        )
        self.attributed = Counter("alpha_attributions_total", "Trades attributed to alphas", registry=ctx.registry)
        self.gate_evals = Counter("gating_evaluations_total", "Scheduled gating evaluations", registry=ctx.registry)
        self.change_prob = Gauge(
            "regime_change_probability", "P(change point within the window)", ["symbol"], registry=ctx.registry
        )

    # -- history ------------------------------------------------------------------------
    @stamina.retry(on=(aiohttp.ClientError, asyncio.TimeoutError, VenueUnavailable), attempts=10, timeout=60.0)
    async def _get(self, http: aiohttp.ClientSession, symbol: str, end_ms: int | None) -> list[KlineRow]:
        path = "/fapi/v1/klines" if self.s.bar_venue == "binance-usdm" else "/api/v3/klines"
        params = {"symbol": symbol, "interval": "1m", "limit": "1500"}
        if end_ms is not None:
            params["endTime"] = str(end_ms)
        async with http.get(self.s.rest_url + path, params=params) as r:
            if r.status >= 500 or r.status in (418, 429):
                raise VenueUnavailable(str(r.status))
            r.raise_for_status()
            return _klines.decode(await r.read())

    async def seed(self, http: aiohttp.ClientSession, symbol: str) -> None:
        """Load the last ``seed_bars`` 1-minute klines (pages of 1500 going back from the newest,
        each granted by the budgeter at low priority) and feed them to the symbol's detector."""
        rows_by_time: dict[int, float] = {}
        end: int | None = None
        while len(rows_by_time) < self.s.seed_bars:
            await acquire(
                self.ctx.bus,
                self.s.subject_root,
                self.s.bar_venue,
                10 if self.s.bar_venue == "binance-usdm" else 2,
                self.ctx.name,
                deadline_s=300.0,
                priority="low",
            )
            rows = [r for r in await self._get(http, symbol, end) if r[0] not in rows_by_time]
            if not rows:
                break
            rows_by_time.update((r[0], float(r[4])) for r in rows)
            end = min(r[0] for r in rows) - 1
        times = sorted(rows_by_time)[-self.s.seed_bars :]
        closes = [rows_by_time[t] for t in times]
        n = await asyncio.to_thread(self.core.seed, symbol, times, closes)
        st = self.core.state(symbol, self.ctx.clock.now_ns())
        if st is not None:  # a useful regime right away, before the first live bar
            await self.ctx.bus.publish(subjects.regime(self.s.subject_root, st.venue, st.symbol), encode(st))
        await self._release(symbol)
        self.ctx.log.info("regime_seeded", symbol=symbol, bars=n, label=st.label if st else "unknown")

    async def seed_all(self) -> None:
        if self.s.seed_bars == 0:
            return
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            for sym in self.s.symbols:
                while True:
                    try:
                        await self.seed(http, sym)
                        break
                    except BudgetDenied as exc:
                        self.ctx.log.warning("seed_deferred", symbol=sym, error=str(exc))
                        await asyncio.sleep(5)
                    except Exception as exc:  # the venue is down: the live bars still drive the regime
                        self.ctx.log.warning("seed_failed", symbol=sym, error=str(exc)[:200])
                        await self._release(sym)
                        break

    async def _release(self, symbol: str) -> None:
        self.seeded.add(symbol)
        for bar in self.held.pop(symbol, []):
            await self.on_bar(bar)

    # -- bus ----------------------------------------------------------------------------
    async def on_bar(self, bar: Bar) -> None:
        if bar.symbol not in self.seeded and self.s.seed_bars > 0:
            held = self.held.setdefault(bar.symbol, [])
            if len(held) < 1440:
                held.append(bar)
            return
        st = self.core.on_bar(bar, self.ctx.clock.now_ns())
        if st is None:
            return
        step = self.core.regimes[bar.symbol].returns.last
        if step is not None and step.changepoint:
            self.changes.labels(bar.symbol).inc()
        self.change_prob.labels(bar.symbol).set(st.change_prob)
        await self.ctx.bus.publish(subjects.regime(self.s.subject_root, st.venue, st.symbol), encode(st))

    async def on_features(self, f: MicroFeatures) -> None:
        gating, done = self.core.on_features(f, self.ctx.clock.now_ns())
        if done:
            self.attributed.inc(len(done))
        if gating is not None:
            self.gate_evals.inc()
            self.ctx.log.info("gating_evaluated", disabled=gating.disabled)
            await self.ctx.bus.publish(subjects.gating(self.s.subject_root), encode(gating))

    def on_audit(self, a: Audit) -> None:
        self.core.on_audit(a)

    def on_flag(self, name: str, old: object, new: object) -> None:
        if name == "BOCPD":
            self.core.enabled = bool(new)
            self.ctx.log.info("bocpd_flag", enabled=self.core.enabled)
            self._flag_push = asyncio.ensure_future(self.publish_all())  # execution sees it at once

    async def publish_all(self) -> None:
        """Every symbol's current state (e.g. after the BOCPD flag changed the labels)."""
        for sym in self.s.symbols:
            st = self.core.state(sym, self.ctx.clock.now_ns())
            if st is not None:
                await self.ctx.bus.publish(subjects.regime(self.s.subject_root, st.venue, st.symbol), encode(st))

    # -- request handlers ---------------------------------------------------------------
    def regime_state(self, _: RegimeStateRequest) -> RegimeStates:
        return self.core.regime_states()

    def ranking(self, _: FeatureRankingRequest) -> FeatureRanking:
        return self.core.ranking()

    def registry(self, _: AlphaRegistryRequest) -> AlphaRegistryList:
        return self.core.registry_view()

    def attribution(self, req: AlphaAttributionRequest) -> AlphaAttribution:
        return self.core.attribution(str(req.tradeId))

    async def _rows(self, req: ReportRequest) -> tuple[list[reports.TradeRow], list[reports.MidRow], int]:
        """The window's decisions of ``req.source``, the mids that close their horizons, and
        the horizon (ns). KeyError for an unknown backtest run; RuntimeError without a database."""
        window_ns = reports.parse_window(req.window)
        kind, run = reports.parse_source(req.source)
        if self.pool is None:
            raise RuntimeError("no database configured (STEVIE_DATABASE_URL)")
        if kind == "backtest":
            return await self._backtest_rows(run, window_ns)
        horizon_ns = int(self.s.horizon_s * 1e9)
        records = await self.pool.fetch(
            """SELECT body::text AS body FROM audits
               WHERE ts >= (SELECT max(ts) FROM audits) - make_interval(secs => $1)
               ORDER BY ts LIMIT $2""",
            (window_ns + horizon_ns) / 1e9,
            self.s.report_max_rows,
        )
        audits = []
        for r in records:
            try:
                audits.append(_audit.decode(r["body"]))
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue  # an audit of an older schema
        trades, mids = await asyncio.to_thread(reports.rows_from_audits, audits, window_ns, self.core.registry)
        return trades, mids, horizon_ns

    async def _backtest_rows(
        self, run: str, window_ns: int
    ) -> tuple[list[reports.TradeRow], list[reports.MidRow], int]:
        assert self.pool is not None
        exists = await self.pool.fetchval("SELECT to_regclass('backtest_decisions') IS NOT NULL")
        settings = (
            await self.pool.fetchval("SELECT settings::text FROM backtest_runs WHERE run_id = $1", run)
            if exists
            else None
        )
        if settings is None:
            raise KeyError(f"unknown backtest run: {run}")
        cfg = _run_settings.decode(settings)
        horizon_ns = int(run_horizon_s(msgspec.json.decode(settings)) * 1e9)
        records = await self.pool.fetch(
            """SELECT seq, ts_event_ns, symbol, price, order_size, fill_price, fee_quote, context::text AS context,
                      venue
               FROM backtest_decisions
               WHERE run_id = $1 AND ts >= (SELECT max(ts) FROM backtest_decisions WHERE run_id = $1)
                     - make_interval(secs => $2)
               ORDER BY seq LIMIT $3""",
            run,
            (window_ns + horizon_ns) / 1e9,
            self.s.report_max_rows,
        )
        decisions = [
            reports.BacktestDecision(
                int(r["seq"]),
                int(r["ts_event_ns"]),
                str(r["symbol"]),
                float(r["price"]),
                float(r["order_size"]),
                None if r["fill_price"] is None else float(r["fill_price"]),
                float(r["fee_quote"]),
                {
                    k.removeprefix("ctx_"): float(v)
                    for k, v in _context.decode(r["context"]).items()
                    if isinstance(v, int | float) and not isinstance(v, bool)
                },
                str(r["venue"]),
            )
            for r in records
        ]
        trades, mids = await asyncio.to_thread(
            reports.rows_from_backtest, decisions, window_ns, self.core.registry, cfg.s_max_quote, run
        )
        return trades, mids, horizon_ns

    async def report_alpha_pnl(self, req: ReportRequest) -> AlphaPnlReport:
        trades, mids, h = await self._rows(req)
        return await asyncio.to_thread(reports.alpha_pnl_report, trades, mids, h, req.window, req.source)

    async def report_risk(self, req: ReportRequest) -> RiskReport:
        trades, mids, h = await self._rows(req)
        return await asyncio.to_thread(reports.risk_report, trades, mids, h, req.window, req.source)


async def main(ctx: ServiceContext) -> None:
    s = ctx.settings
    assert isinstance(s, AdaptiveSettings)
    ad = Adaptive(ctx, s)
    if s.database_url:
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            ad.pool = await stamina.retry(on=(OSError, asyncpg.PostgresError), attempts=20, timeout=30.0)(connect_pool)(
                s.database_url
            )
    flags = FlagsClient(ctx)
    flags.on_change(ad.on_flag)
    await flags.start()
    ad.core.enabled = flags.enabled("BOCPD")
    await ctx.serve_rpc("regime_state", RegimeStateRequest, ad.regime_state)
    await ctx.serve_rpc("features_ranking", FeatureRankingRequest, ad.ranking)
    await ctx.serve_rpc("alpha_registry", AlphaRegistryRequest, ad.registry)
    await ctx.serve_rpc("alpha_attribution", AlphaAttributionRequest, ad.attribution)
    await ctx.serve_rpc("report_alpha_pnl", ReportRequest, ad.report_alpha_pnl)
    await ctx.serve_rpc("report_risk", ReportRequest, ad.report_risk)
    root = s.subject_root
    await ctx.subscribe_typed(subjects.feat_micro(root, "*", "*"), MicroFeatures, ad.on_features, ad.dlq.labels("f"))
    await ctx.subscribe_typed(subjects.audit(root, "*", "*"), Audit, ad.on_audit, ad.dlq.labels("audit"))
    # live bars of a symbol still seeding are held and applied after its history
    await ctx.subscribe_typed(subjects.md_bar(root, s.bar_venue, "*"), Bar, ad.on_bar, ad.dlq.labels("bar"))
    await ad.seed_all()
    try:
        await asyncio.Event().wait()
    finally:
        if ad.pool is not None:
            await ad.pool.close()


SPEC = ServiceSpec("adaptive", AdaptiveSettings, main, nice=10)  # background: yields the cores to the decision path
