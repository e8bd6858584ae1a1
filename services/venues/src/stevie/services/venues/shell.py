"""venues shell: feeds the registry core from the bus (LIVE books, book states, features,
the book maintainer's stream states), measures REST and WebSocket round trips to every venue
(REST pings through the budgeter), polls the budgeter's rate remaining, logs book-state
changes to PostgreSQL, publishes the score's inputs besides the books every tick
(``VenueScoring``) and answers ``registry``, ``score`` and ``report_venue``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime

import aiohttp
import asyncpg
import msgspec
import stamina
from prometheus_client import Counter, Gauge

from stevie.contracts import BookStatus, BookTopK, Heartbeat, MicroFeatures, encode, subjects
from stevie.contracts.rpc import BudgetStatus, BudgetStatusRequest, RpcError
from stevie.contracts.venues import (
    VenueRegistry,
    VenueRegistryRequest,
    VenueReport,
    VenueReportRequest,
    VenueScore,
    VenueScoreRequest,
)
from stevie.runtime.budget import BudgetDenied, acquire
from stevie.runtime.service import ServiceContext, ServiceSpec
from stevie.services.venues.core import CostParams, NoLiveVenue, Registry
from stevie.services.venues.report import FillRow, StateRow, parse_window, rollup
from stevie.services.venues.settings import VenueSpec, VenuesSettings
from stevie.store import connect_pool

NS = 1_000_000_000

_FILLS_SQL = """
SELECT a.venue,
       (a.body->'fill'->>'side')::int          AS side,
       (a.body->'fill'->>'filled')::float8     AS filled,
       (a.body->'fill'->>'avg_price')::float8  AS price,
       (a.body->'fill'->>'fee_quote')::float8  AS fee,
       COALESCE((a.body->'route'->>'arrivalMid')::float8,
                (a.body->'feature_window'->-1->>6)::float8) AS arrival_mid,
       (SELECT b.close FROM bars b
         WHERE b.venue = a.venue AND b.symbol = a.symbol AND b.timeframe = '1m'
           AND b.ts + interval '1 minute' >= a.ts + make_interval(secs => $3)
         ORDER BY b.ts LIMIT 1)                AS mark
  FROM audits a
 WHERE jsonb_typeof(a.body->'fill') = 'object'
   AND (a.body->'fill'->>'filled')::float8 > 0
   AND (a.body->>'ts_init_ns')::bigint BETWEEN $1 AND $2
"""

_STATES_SQL = """
SELECT venue, symbol, state, ts FROM venue_state_log WHERE ts BETWEEN $1 AND $2
UNION ALL
SELECT DISTINCT ON (venue, symbol) venue, symbol, state, ts FROM venue_state_log
 WHERE ts < $1 ORDER BY venue, symbol, ts DESC
"""


def _wall(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / NS, tz=UTC)


class Venues:
    def __init__(self, ctx: ServiceContext, s: VenuesSettings) -> None:
        self.ctx, self.s, self.root = ctx, s, s.subject_root
        self.specs = s.specs()
        self.core = Registry(
            self.specs,
            [x.upper() for x in s.symbols],
            int(s.stale_s * NS),
            s.top_depth_bps,
            CostParams(s.failure_cost_bps, s.shortfall_penalty_bps, s.micro_window_s),
            s.latency_alpha,
            s.reliability_half_life_s,
        )
        self.pool: asyncpg.Pool | None = None
        self.logged: dict[tuple[str, str], str] = {}
        r = ctx.registry
        self.g_score = Gauge(
            "venue_score",
            "Expected all-in cost (bps) of a reference-notional taker buy on the venue (NaN: not eligible)",
            ["venue", "symbol"],
            registry=r,
        )
        self.g_latency = Gauge("venue_latency_seconds", "EWMA round trip to the venue", ["venue", "kind"], registry=r)
        self.g_reliability = Gauge("venue_reliability_ratio", "Reliability EWMA in [0, 1]", ["venue"], registry=r)
        self.g_rate = Gauge("venue_rate_remaining", "REST weight left in the window", ["venue"], registry=r)
        self.m_probe_errors = Counter(
            "venue_probe_errors_total", "Failed latency probes", ["venue", "kind"], registry=r
        )
        self.m_routes = Counter("venue_routes_total", "Score requests answered", ["venue", "symbol"], registry=r)

    # -- probes -------------------------------------------------------------------------
    async def rest_probe(self, http: aiohttp.ClientSession, v: VenueSpec) -> None:
        """GET ping every ``probe_interval_s``, each through the budgeter (low priority)."""
        while True:
            try:
                await acquire(self.ctx.bus, self.root, v.name, 1, "venues", deadline_s=2.0, priority="low")
            except BudgetDenied:
                await asyncio.sleep(self.s.probe_interval_s)
                continue
            t0 = time.perf_counter()
            try:
                async with http.get(v.rest_url + v.ping_path) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
                self.core.on_latency(v.name, "rest", (time.perf_counter() - t0) * 1e3)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                self.core.on_error(v.name, f"rest: {type(exc).__name__}: {exc}")
                self.m_probe_errors.labels(v.name, "rest").inc()
            await asyncio.sleep(self.s.probe_interval_s)

    async def ws_probe(self, http: aiohttp.ClientSession, v: VenueSpec) -> None:
        """One WebSocket (the lightest stream: a trade stream) pinged every
        ``probe_interval_s``; the round trip is ping → pong. Reconnects after a failure."""
        stream = f"{self.core.symbols[0].lower()}@trade"
        while True:
            try:
                async with http.ws_connect(f"{v.ws_url}/stream?streams={stream}", autoping=False) as ws:
                    pongs: dict[bytes, asyncio.Future[float]] = {}
                    task = asyncio.ensure_future(self._ws_reader(ws, pongs))
                    try:
                        n = 0
                        while not task.done():
                            n += 1
                            key = f"stevie-{n}".encode()
                            fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
                            pongs[key] = fut
                            t0 = time.perf_counter()
                            await ws.ping(key)
                            t1 = await asyncio.wait_for(fut, self.s.http_timeout_s)
                            self.core.on_latency(v.name, "ws", (t1 - t0) * 1e3)
                            await asyncio.sleep(self.s.probe_interval_s)
                    finally:
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await task
                raise ConnectionError("stream closed")
            except (aiohttp.ClientError, TimeoutError, OSError, ConnectionError) as exc:
                self.core.on_error(v.name, f"ws: {type(exc).__name__}: {exc}")
                self.m_probe_errors.labels(v.name, "ws").inc()
            await asyncio.sleep(self.s.probe_interval_s)

    @staticmethod
    async def _ws_reader(ws: aiohttp.ClientWebSocketResponse, pongs: dict[bytes, asyncio.Future[float]]) -> None:
        """Drain the stream; resolve the pending ping whose payload a PONG echoes."""
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.PONG:
                fut = pongs.pop(bytes(msg.data), None)
                if fut is not None and not fut.done():
                    fut.set_result(time.perf_counter())
            elif msg.type == aiohttp.WSMsgType.PING:
                await ws.pong(msg.data)

    async def budget_poll(self) -> None:
        dec = msgspec.json.Decoder(BudgetStatus | RpcError)
        subject = subjects.rpc(self.root, "budgeter", "status")
        while True:
            with contextlib.suppress(TimeoutError, msgspec.DecodeError, msgspec.ValidationError):
                msg = await self.ctx.bus.request(subject, encode(BudgetStatusRequest()), 1.0)
                out = dec.decode(msg.data)
                if isinstance(out, BudgetStatus):
                    self.core.on_budget(out.providers)
            await asyncio.sleep(2.0)

    # -- tick: reliability, gauges, state log ---------------------------------------------
    async def ticker(self) -> None:
        while True:
            now = time.time_ns()
            self.core.tick(now)
            # the score's inputs besides the books, so execution scores in-process (no RPC hop)
            scoring = self.core.scoring(now, self.s.tick_s)
            await self.ctx.bus.publish(subjects.venue_scoring(self.root), encode(scoring))
            for (venue, sym), value in self.core.reference_scores(self.s.reference_notional_quote, now).items():
                self.g_score.labels(venue, sym).set(value)
            for name, v in self.core.venues.items():
                self.g_reliability.labels(name).set(v.reliability.value)
                for kind, e in (("rest", v.rest), ("ws", v.ws)):
                    if e.value is not None:
                        self.g_latency.labels(name, kind).set(e.value / 1e3)
                if v.rate_remaining is not None:
                    self.g_rate.labels(name).set(v.rate_remaining)
            changes = []
            for venue, sym in self.core.books:
                st = self.core.state(venue, sym, now).value
                if self.logged.get((venue, sym)) != st:
                    changes.append((venue, sym, st, _wall(now)))
            if changes:
                await self.log_states(changes)
            await asyncio.sleep(self.s.tick_s)

    async def db(self) -> asyncpg.Pool:
        if not self.s.database_url:
            raise RuntimeError("no database configured (STEVIE_DATABASE_URL)")
        if self.pool is None:
            self.pool = await connect_pool(self.s.database_url, max_size=2)
        return self.pool

    async def log_states(self, rows: list[tuple[str, str, str, datetime]]) -> None:
        try:
            pool = await self.db()
            await pool.executemany(
                "INSERT INTO venue_state_log (venue, symbol, state, ts) VALUES ($1, $2, $3, $4)", rows
            )
        except (RuntimeError, OSError, asyncpg.PostgresError) as exc:
            self.ctx.log.warning("state_log_failed", error=str(exc)[:200])
            return
        for venue, sym, st, _ in rows:
            self.logged[(venue, sym)] = st

    # -- request handlers ---------------------------------------------------------------
    def registry(self, req: VenueRegistryRequest) -> VenueRegistry:
        return VenueRegistry(self.core.registry(time.time_ns(), req.symbol.upper()))

    def score(self, req: VenueScoreRequest) -> VenueScore | RpcError:
        try:
            out = self.core.score(req.symbol.upper(), req.size, req.side.lower(), time.time_ns())
        except NoLiveVenue as exc:
            return RpcError(409, "no_live_venue", str(exc))
        self.m_routes.labels(out.venue, out.symbol).inc()
        return out

    async def report(self, req: VenueReportRequest) -> VenueReport:
        window_s = parse_window(req.window)
        end = time.time_ns()
        start = end - int(window_s * NS)
        pool = await self.db()
        try:
            fills = await pool.fetch(_FILLS_SQL, start, end, self.s.markout_s)
            states = await pool.fetch(_STATES_SQL, _wall(start), _wall(end))
        except (OSError, asyncpg.PostgresError) as exc:
            raise RuntimeError(f"database: {exc}") from exc
        rows = rollup(
            [v.name for v in self.specs],
            [
                FillRow(r["venue"], r["side"], r["filled"], r["price"], r["fee"] or 0.0, r["arrival_mid"], r["mark"])
                for r in fills
                if r["price"] is not None and r["side"] in (1, -1)
            ],
            [StateRow(r["venue"], r["symbol"], r["state"], int(r["ts"].timestamp() * NS)) for r in states],
            start,
            end,
        )
        return VenueReport(str(req.window), window_s, start // 1_000_000, end // 1_000_000, self.s.markout_s, rows)


async def main(ctx: ServiceContext) -> None:
    s = ctx.settings
    assert isinstance(s, VenuesSettings)
    vs = Venues(ctx, s)
    root = s.subject_root
    dlq = Counter("venues_dlq_total", "Undecodable bus messages", ["type"], registry=ctx.registry)

    def on_beat(hb: Heartbeat) -> None:
        if hb.streams:
            vs.core.on_streams(hb.streams)

    await ctx.subscribe_typed(
        subjects.md_book(root, "*", "*"), BookTopK, lambda t: vs.core.on_book(t, time.time_ns()), dlq.labels("book")
    )
    await ctx.subscribe_typed(
        subjects.md_status(root, "*", "*"),
        BookStatus,
        lambda st: vs.core.on_status(st, time.time_ns()),
        dlq.labels("status"),
    )
    await ctx.subscribe_typed(subjects.feat_micro(root, "*", "*"), MicroFeatures, vs.core.on_micro, dlq.labels("micro"))
    await ctx.subscribe_typed(subjects.heartbeat(root, "*"), Heartbeat, on_beat, dlq.labels("heartbeat"))
    await ctx.serve_rpc("registry", VenueRegistryRequest, vs.registry)
    await ctx.serve_rpc("score", VenueScoreRequest, vs.score)
    await ctx.serve_rpc("report_venue", VenueReportRequest, vs.report)
    if s.database_url:
        with contextlib.suppress(Exception):
            await stamina.retry(on=(OSError, asyncpg.PostgresError), attempts=10, timeout=20.0)(vs.db)()
    timeout = aiohttp.ClientTimeout(total=s.http_timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        tasks = [asyncio.ensure_future(vs.ticker()), asyncio.ensure_future(vs.budget_poll())]
        for v in vs.specs:
            tasks += [asyncio.ensure_future(vs.rest_probe(http, v)), asyncio.ensure_future(vs.ws_probe(http, v))]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            if vs.pool is not None:
                with contextlib.suppress(Exception):
                    await vs.pool.close()


SPEC = ServiceSpec("venues", VenuesSettings, main)
