"""gateway shell: aiohttp routes over the bus view; JSON errors, never a 5xx for bad input."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import msgspec
from aiohttp import web
from nats.errors import MaxPayloadError
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from stevie.bus import NatsBus
from stevie.bus.nats_bus import BusDisconnected
from stevie.contracts import BookStatus, BookTopK, Heartbeat, MicroFeatures, encode, subjects
from stevie.contracts import adaptive as adc
from stevie.contracts import events as evt
from stevie.contracts import evidence as ev
from stevie.contracts.featstore import OhlcvBars, OhlcvRequest, ParityReport, ParityRequest
from stevie.contracts.ops import (
    CanaryAction,
    CanaryState,
    CanaryStateRequest,
    ChaosRequest,
    ChaosResult,
    DeployAction,
    DeployStatus,
    DeployStatusRequest,
    DqStats,
    DqStatsRequest,
    FlagsGetRequest,
    FlagsSetRequest,
    FlagsState,
)
from stevie.contracts.rpc import (
    AuditLatestRequest,
    AuditList,
    BudgetStatus,
    BudgetStatusRequest,
    Choice,
    ChooseRequest,
    ExecutionRecord,
    GuardsState,
    GuardsStateRequest,
    OptionsChainRequest,
    PaperOrder,
    PlanRequest,
    PortfolioRequest,
    Positions,
    PositionsRequest,
    PosteriorSummary,
    RouterSnapshot,
    RpcError,
    SimulateRequest,
    SimulateResult,
    SizingLastRequest,
    SizingSnapshot,
    SmileRequest,
    SnapshotRequest,
    UpdateRequest,
    VolForecastRequest,
)
from stevie.contracts.venues import (
    VenueRegistry,
    VenueRegistryRequest,
    VenueReport,
    VenueReportRequest,
    VenueScore,
    VenueScoreRequest,
)
from stevie.runtime.flags import FlagsClient
from stevie.runtime.metrics import MergedTextCollector, new_registry
from stevie.runtime.service import ServiceContext, ServiceSpec
from stevie.services.gateway import api, dashboard, operations, resilience, security
from stevie.services.gateway.core import NotFound, View, health
from stevie.services.gateway.settings import GatewaySettings
from stevie.store import connect_pool

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_enc = msgspec.json.Encoder()


@dataclass(frozen=True)
class Forward:
    """A route answered by a service over request/reply.

    The JSON body (POST) or the query parameters named in ``query`` (GET) plus the path
    parameters become the ``request`` Struct; the reply is ``response`` (or an ``RpcError``).
    ``unwrap`` names the reply's list field to answer as a top-level JSON array (the mission's
    ``jq '.[0]'``). ``operator``: an operator route (needs the operator token; the paper
    trading routes stay open on loopback, as the mission's own acceptance calls them without
    one); ``dev``: only registered when ``STEVIE_ENV=dev``."""

    method: str
    path: str
    service: str
    rpc: str
    request: type
    response: type
    summary: str
    query: tuple[str, ...] = ()
    unwrap: str | None = None
    operator: bool = False
    dev: bool = False


# One entry per forwarded route; each area keeps its block (append to yours).
FORWARDS: list[Forward] = [
    # -- router
    Forward("POST", "/api/router/choose", "router", "choose", ChooseRequest, Choice, "Thompson-sampling choice"),
    Forward(
        "POST",
        "/api/router/update",
        "router",
        "update",
        UpdateRequest,
        PosteriorSummary,
        "Posterior update",
    ),
    Forward("GET", "/api/router/snapshot", "router", "snapshot", SnapshotRequest, RouterSnapshot, "Router state"),
    # -- execution
    Forward(
        "POST",
        "/api/exec/plan-and-execute",
        "execution",
        "plan_and_execute",
        PlanRequest,
        ExecutionRecord,
        "One decision now",
    ),
    Forward("POST", "/api/exec/simulate", "execution", "simulate", SimulateRequest, SimulateResult, "Plan preview"),
    Forward(
        "GET", "/api/exec/sizing/last", "execution", "sizing_last", SizingLastRequest, SizingSnapshot, "Last sizing"
    ),
    Forward(
        "POST",
        "/api/trading/paper/order",
        "execution",
        "paper_order",
        PaperOrder,
        ExecutionRecord,
        "Paper order",
    ),
    Forward(
        "GET",
        "/api/trading/positions",
        "execution",
        "positions",
        PositionsRequest,
        Positions,
        "Positions",
        unwrap="positions",
    ),
    # -- risk guards, budgeter
    Forward("GET", "/api/guards/state", "risk-guards", "state", GuardsStateRequest, GuardsState, "Guards state"),
    Forward("GET", "/api/budget/status", "budgeter", "status", BudgetStatusRequest, BudgetStatus, "Budgets"),
    # -- reporter
    Forward(
        "GET",
        "/api/audit/latest",
        "reporter",
        "audit_latest",
        AuditLatestRequest,
        AuditList,
        "Latest audits",
        query=("limit",),
        unwrap="audits",
    ),
    # -- backtest, feature store, market data (issue 10)
    Forward(
        "GET",
        "/api/features/parity",
        "features",
        "parity",
        ParityRequest,
        ParityReport,
        "Online (stored) vs offline (recomputed from the capture) feature parity",
        query=("venue", "symbol"),
    ),
    Forward(
        "GET",
        "/api/market/ohlcv",
        "reporter",
        "ohlcv",
        OhlcvRequest,
        OhlcvBars,
        "OHLCV bars from PostgreSQL",
        query=("symbol", "interval", "limit", "venue"),
        unwrap="bars",
    ),
    # -- evidence (issue 11)
    Forward(
        "GET",
        "/api/cf/summary",
        "evidence",
        "cf_summary",
        ev.CfSummaryRequest,
        ev.CfSummary,
        "Off-policy estimates (IPS, SNIPS, DM, DR, SNDR with CIs) per policy and regime",
        query=("source",),
    ),
    Forward(
        "GET",
        "/api/promotion/status",
        "evidence",
        "promotion_status",
        ev.PromotionStatusRequest,
        ev.PromotionStatus,
        "Champion/challengers: SPA p-values, PSR/DSR, decision",
        query=("source",),
    ),
    Forward(
        "GET", "/api/models", "evidence", "models", ev.ModelsRequest, ev.ModelList, "Model registry", unwrap="models"
    ),
    Forward(
        "POST",
        "/api/models/promote",
        "evidence",
        "models_promote",
        ev.ModelIdRequest,
        ev.ModelChange,
        "Make a model current (the router reloads it live)",
        operator=True,
        dev=True,
    ),
    Forward(
        "POST",
        "/api/models/rollback",
        "evidence",
        "models_rollback",
        ev.ModelIdRequest,
        ev.ModelChange,
        "Return to a model that was current before",
        operator=True,
        dev=True,
    ),
    Forward(
        "GET",
        "/api/meta/quality",
        "evidence",
        "meta_quality",
        ev.MetaQualityRequest,
        ev.MetaQuality,
        "Calibration (query: source = live | backtest | backtest:<run-id>)",
        query=("source",),
    ),
    Forward(
        "POST",
        "/api/meta/apply-nudges",
        "evidence",
        "meta_apply_nudges",
        ev.ApplyNudgesRequest,
        ev.NudgesApplied,
        "Apply bounded calibration nudges (router prior scale, sizing cap)",
        operator=True,
        dev=True,
    ),
    Forward(
        "GET",
        "/api/pbt/lineage",
        "evidence",
        "pbt_lineage",
        ev.PbtLineageRequest,
        ev.PbtLineage,
        "PBT lineage",
        query=("limit",),
        unwrap="lineage",
    ),
    # -- adaptive context (issue 12)
    Forward(
        "GET",
        "/api/regime/state",
        "adaptive",
        "regime_state",
        adc.RegimeStateRequest,
        adc.RegimeStates,
        "Regime per symbol by BOCPD: label, runLength (bars), changeProb, since (ms)",
    ),
    Forward(
        "GET",
        "/api/features/ranking",
        "adaptive",
        "features_ranking",
        adc.FeatureRankingRequest,
        adc.FeatureRanking,
        "Feature gating: EW IC, HSIC, drift, score, disabled, since (top-level array, best first)",
        unwrap="features",
    ),
    Forward(
        "GET",
        "/api/alpha/registry",
        "adaptive",
        "alpha_registry",
        adc.AlphaRegistryRequest,
        adc.AlphaRegistryList,
        "Registered alphas with weights, last signal and cumulative Shapley PnL (top-level array)",
        unwrap="alphas",
    ),
    Forward(
        "GET",
        "/api/alpha/attribution",
        "adaptive",
        "alpha_attribution",
        adc.AlphaAttributionRequest,
        adc.AlphaAttribution,
        "Per-trade attribution of the blend PnL: signal, weight, Shapley, leave-one-out per alpha",
        query=("tradeId",),
    ),
    Forward(
        "GET",
        "/api/report/alpha-pnl",
        "adaptive",
        "report_alpha_pnl",
        adc.ReportRequest,
        adc.AlphaPnlReport,
        "Per-alpha PnL contribution over a window (event time) from PostgreSQL",
        query=("window", "source"),
    ),
    Forward(
        "GET",
        "/api/report/risk",
        "adaptive",
        "report_risk",
        adc.ReportRequest,
        adc.RiskReport,
        "Realised vol, historical CVaR, turnover, slippage vs arrival mid, fees over a window",
        query=("window", "source"),
    ),
    # -- operations (issue 13)
    Forward("GET", "/api/flags", "control", "flags_get", FlagsGetRequest, FlagsState, "Feature flags"),
    Forward(
        "POST",
        "/api/flags",
        "control",
        "flags_set",
        FlagsSetRequest,
        FlagsState,
        "Set feature flags (body: flag → value; null removes the override)",
        operator=True,
        dev=True,
    ),
    Forward(
        "POST",
        "/api/chaos/inject",
        "venue-replay",
        "chaos_inject",
        ChaosRequest,
        ChaosResult,
        "Inject a fault at the venue edge (ws_flap, api_timeout, l2_gap, depth_spike)",
        operator=True,
        dev=True,
    ),
    Forward(
        "GET",
        "/api/data-quality/stats",
        "control",
        "dq_stats",
        DqStatsRequest,
        DqStats,
        "Data-quality checks and quarantine",
        query=("limit",),
    ),
    Forward("GET", "/api/deploy/status", "control", "deploy_status", DeployStatusRequest, DeployStatus, "Blue/green"),
    Forward(
        "POST",
        "/api/deploy/action",
        "control",
        "deploy_action",
        DeployAction,
        DeployStatus,
        "Start the candidate's canary or roll the cutover back (body: action start|rollback, reason)",
        operator=True,
    ),
    Forward("GET", "/api/canary/state", "control", "canary_state", CanaryStateRequest, CanaryState, "Canary ladder"),
    Forward(
        "POST",
        "/api/canary/state",
        "control",
        "canary_action",
        CanaryAction,
        CanaryState,
        "Hold, resume or demote the canary ladder",
        operator=True,
    ),
    # -- venues, dashboard feeds (issue 15)
    Forward(
        "GET",
        "/api/venues/registry",
        "venues",
        "registry",
        VenueRegistryRequest,
        VenueRegistry,
        "Venue registry: latency, spread, depth, fees, reliability, rate remaining (query: symbol)",
        query=("symbol",),
        unwrap="venues",
    ),
    Forward(
        "POST",
        "/api/venues/score",
        "venues",
        "score",
        VenueScoreRequest,
        VenueScore,
        "Cheapest LIVE venue for a taker order: expected all-in cost (bps) with reasons",
    ),
    Forward(
        "GET",
        "/api/report/venue",
        "venues",
        "report_venue",
        VenueReportRequest,
        VenueReport,
        "Per venue: fills, win rate, slippage vs arrival mid, downtime (query: window, e.g. 7d)",
        query=("window",),
    ),
    # -- events (issue 16)
    Forward(
        "POST",
        "/api/events/ingest",
        "events",
        "ingest",
        evt.EventIngestRequest,
        evt.EventIngestReply,
        "Ingest events {events: [{ts, title, source, body?, symbols?, kind?}]}: embed (MiniLM, 384 dims) and store",
        operator=True,
    ),
    Forward(
        "GET",
        "/api/events/embeddings",
        "events",
        "embeddings",
        evt.EmbeddingsRequest,
        evt.EventEmbeddings,
        "Stored events, newest first, with their embedding (first dims, or all with full=1) and nearest earlier events",
        query=("limit", "symbol", "full"),
        unwrap="embeddings",
    ),
]


def json_response(body: object, status: int = 200) -> web.Response:
    return web.Response(body=_enc.encode(body), status=status, content_type="application/json")


def error(status: int, err: str, detail: str) -> web.Response:
    """A JSON error; ``detail`` capped at 500 characters (never echoes a huge input back)."""
    return json_response(api.ErrorBody(err, detail[:500]), status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unknown routes, wrong methods and handler errors answer JSON ``{error, detail}``."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error(exc.status, exc.reason.lower().replace(" ", "_"), f"{request.method} {request.path}")


def _stamped(on: Callable[[Any, int], None]) -> Callable[[Any], None]:
    """Stamp arrivals with the wall clock (liveness and staleness are wall-time notions)."""
    return lambda item: on(item, time.time_ns())


class Gateway:
    def __init__(self, ctx: ServiceContext, s: GatewaySettings) -> None:
        self.ctx, self.s = ctx, s
        known = {(v, sym) for v in s.venues for sym in s.symbols}
        self.view = View(known, int(s.book_stale_s * 1e9), int(s.liveness_s * 1e9))
        self.pool: asyncpg.Pool | None = None
        self.probe: resilience.HealthProbe | None = None
        self.flags: FlagsClient | None = None  # set in main: ExecutionRouter in /api/health
        self.requests = Counter("gateway_requests_total", "HTTP requests", ["route", "status"], registry=ctx.registry)
        self.dlq = Counter("gateway_dlq_total", "Undecodable bus messages", ["type"], registry=ctx.registry)
        self._rpc_reply = msgspec.json.Decoder(RpcError)
        self.metrics_registry = new_registry()
        others = MergedTextCollector(lambda: self.view.metrics_texts(time.time_ns(), exclude=ctx.name))
        self.metrics_registry.register(others)

    # -- bus ----------------------------------------------------------------------------
    async def subscribe(self) -> None:
        root = self.s.subject_root
        for subject, tp, on in (
            (subjects.md_book(root, "*", "*"), BookTopK, self.view.on_book),
            (subjects.md_status(root, "*", "*"), BookStatus, self.view.on_status),
            (subjects.heartbeat(root, "*"), Heartbeat, self.view.on_heartbeat),
            (subjects.feat_micro(root, "*", "*"), MicroFeatures, self.view.on_micro),
        ):
            await self.ctx.subscribe_typed(subject, tp, _stamped(on), self.dlq.labels(tp.__name__))

    # -- routes -------------------------------------------------------------------------
    def app(self) -> web.Application:
        forwards = [f for f in FORWARDS if not f.dev or self.s.env == "dev"]
        policy = security.policy_for(self.s, [(f.method, f.path, f.operator) for f in forwards])
        app = web.Application(
            middlewares=[
                json_errors,
                resilience.observe(self.ctx.registry, self.ctx.log),
                security.middleware(policy),
                resilience.input_checks(),
            ],
            client_max_size=self.s.max_body_bytes,
        )
        app.router.add_get("/api/health", self.health)
        app.router.add_get("/api/l2/{venue}/{symbol}", self.l2)
        app.router.add_get("/api/ws/status", self.ws_status)
        app.router.add_get("/api/openapi.json", self.openapi)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/api/microstructure/{symbol}", self.microstructure)
        app.router.add_get("/api/vol/forecast/{symbol}", self.vol_forecast)
        app.router.add_post("/api/options/chain/{symbol}", self.options_chain)
        app.router.add_get("/api/options/smile/{symbol}", self.options_smile)
        app.router.add_post("/api/portfolio/optimize", self.portfolio)
        for f in forwards:
            app.router.add_route(f.method, f.path, operations.custom(self, f) or self._forwarder(f))
        here = f"http://{'127.0.0.1' if self.s.host in ('0.0.0.0', '::', '') else self.s.host}:{self.s.port}"
        dashboard.Dashboard(here, self.s.venues, self.s.symbols, self.s.database_url).register(app)
        return app

    def _forwarder(self, f: Forward) -> Handler:
        """A route whose body (POST) or query parameters (GET) become the request Struct."""
        service, rpc, tp = f.service, f.rpc, f.request

        async def handle(request: web.Request) -> web.StreamResponse:
            extra: dict[str, object] = dict(request.match_info)
            if "actor" in getattr(tp, "__struct_fields__", ()):  # who, for audits: the token id
                extra["actor"] = request.get(security.OPERATOR_ID, "")
            for q in f.query:
                if q in request.query:
                    raw = request.query[q]
                    extra[q] = int(raw) if raw.lstrip("-").isdigit() else raw
            if request.method == "POST":
                req = await self._body(request, tp, **extra)
            else:
                try:
                    req = msgspec.convert(extra, tp)
                except msgspec.ValidationError as exc:
                    return error(400, "bad_parameter", str(exc))
            return req if isinstance(req, web.Response) else await self.forward(service, rpc, req, f.unwrap)

        return handle

    # -- routes answered by services over request/reply ---------------------------------
    async def forward(self, service: str, method: str, req: msgspec.Struct, unwrap: str | None = None) -> web.Response:
        """Send ``req`` to ``{service}.{method}``; the reply (or its RpcError) becomes JSON
        without msgspec's internal ``type`` tags (``unwrap``: answer that list field as a
        top-level array). A service that does not answer in time → 503 ``service_unavailable``."""
        subject = subjects.rpc(self.s.subject_root, service, method)
        try:
            msg = await self.ctx.bus.request(subject, encode(req), timeout_s=self.s.rpc_timeout_s)
        except BusDisconnected:  # fail fast: nothing can answer while NATS is away
            return error(503, "bus_unavailable", f"NATS is disconnected; {service}.{method} cannot be reached")
        except MaxPayloadError:  # a body just under the HTTP cap can still exceed NATS' payload limit
            return error(413, "payload_too_large", f"the request is larger than the bus allows for {service}.{method}")
        except TimeoutError:
            return error(503, "service_unavailable", f"{service} did not answer {method} in {self.s.rpc_timeout_s} s")
        try:
            reply = self._rpc_reply.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            try:
                body = api.untagged(msgspec.json.decode(msg.data))
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # empty or odd reply
                return error(503, "bad_reply", f"{service}.{method} answered something that is not JSON")
            if unwrap is not None and isinstance(body, dict):
                body = body.get(unwrap, [])
            return json_response(body)
        return error(reply.status, reply.error, reply.detail)

    async def _body(self, request: web.Request, tp: type[T], **extra: object) -> T | web.Response:
        try:
            raw = await request.read()
            obj = msgspec.json.decode(raw or b"{}")
            if not isinstance(obj, dict):
                return error(400, "bad_request", "the body must be a JSON object")
            where = resilience.bad_number(obj)
            if where is not None:
                return error(
                    400, "bad_number", f"{where}: numbers must be finite and within ±{resilience.MAX_ABS_NUMBER:g}"
                )
            obj.update(extra)
            return msgspec.convert(obj, tp)
        except msgspec.ValidationError as exc:
            return error(400, "bad_request", api.explain(str(exc), tp))
        except msgspec.DecodeError as exc:
            return error(400, "bad_request", str(exc))
        except UnicodeDecodeError as exc:  # msgspec raises it (not DecodeError) for invalid UTF-8
            return error(400, "bad_encoding", f"the body is not UTF-8 JSON: byte {exc.start} ({exc.reason})")

    async def vol_forecast(self, request: web.Request) -> web.Response:
        raw = request.query.get("h", "60")
        if not raw.isdigit():
            return error(400, "bad_parameter", f"h must be a positive integer number of minutes, got {raw!r}")
        return await self.forward("vol", "forecast", VolForecastRequest(request.match_info["symbol"].upper(), int(raw)))

    async def options_chain(self, request: web.Request) -> web.Response:
        req = await self._body(request, OptionsChainRequest, symbol=request.match_info["symbol"].upper())
        return req if isinstance(req, web.Response) else await self.forward("vol", "options_chain", req)

    async def options_smile(self, request: web.Request) -> web.Response:
        return await self.forward("vol", "options_smile", SmileRequest(request.match_info["symbol"].upper()))

    async def portfolio(self, request: web.Request) -> web.Response:
        req = await self._body(request, PortfolioRequest)
        return req if isinstance(req, web.Response) else await self.forward("vol", "portfolio", req)

    async def l2(self, request: web.Request) -> web.Response:
        venue, symbol = request.match_info["venue"].lower(), request.match_info["symbol"].upper()
        raw = request.query.get("depth", str(self.s.max_depth))
        if not raw.isdigit() or not 1 <= int(raw) <= self.s.max_depth:
            return error(400, "bad_parameter", f"depth must be an integer in [1, {self.s.max_depth}], got {raw!r}")
        try:
            body = self.view.l2(venue, symbol, int(raw), time.time_ns())
        except NotFound:
            return error(
                404,
                "unknown_book",
                f"no book for venue {venue!r} symbol {symbol!r}; known: "
                + ", ".join(f"{v}/{s}" for v, s in sorted(self.view.known)),
            )
        return json_response(body)

    async def microstructure(self, request: web.Request) -> web.Response:
        venue, symbol = request.query.get("venue", "binance").lower(), request.match_info["symbol"].upper()
        try:
            return json_response(self.view.microstructure(venue, symbol))
        except NotFound:
            return error(404, "unknown_book", f"no features for venue {venue!r} symbol {symbol!r}")

    async def _db_latency(self) -> tuple[float | None, str]:
        if not self.s.database_url:
            return None, "no database configured"
        try:
            if self.pool is None:
                self.pool = await connect_pool(self.s.database_url, max_size=2)
            t0 = time.perf_counter()
            await asyncio.wait_for(self.pool.fetchval("SELECT 1"), 2.0)
            return round((time.perf_counter() - t0) * 1e3, 3), ""
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:200]

    async def _ask(self, service: str, method: str, req: msgspec.Struct, tp: type[T]) -> T | None:
        try:
            msg = await self.ctx.bus.request(subjects.rpc(self.s.subject_root, service, method), encode(req), 0.5)
            return msgspec.json.decode(msg.data, type=tp)
        except (TimeoutError, msgspec.DecodeError, msgspec.ValidationError):
            return None

    async def _probe(self) -> resilience.ProbeResult:
        """The I/O behind ``/api/health``, run by the background ``HealthProbe``."""
        (latency, err), snap, pos = await asyncio.gather(  # concurrently: one probe ≤ 0.5 s
            self._db_latency(),
            self._ask("router", "snapshot", SnapshotRequest(), RouterSnapshot),
            self._ask("execution", "positions", PositionsRequest(), Positions),
        )
        return resilience.ProbeResult(
            latency, err, snap.decisionsLastMin if snap else None, pos.blockedLastMin if pos else None, time.monotonic()
        )

    async def health(self, request: web.Request) -> web.Response:
        """200 when everything is up, else 503 with the same JSON (status ``degraded``)."""
        now = time.time_ns()
        if self.probe is None:
            self.probe = resilience.HealthProbe(self._probe)
        p = await self.probe.current()
        latency, err = p.db_latency_ms, p.db_error
        ohlcv = self.view.gauge("vol", "ohlcv_last_sync_ts_seconds")
        nc = self.ctx.bus.nc if isinstance(self.ctx.bus, NatsBus) else None
        ws = self.view.streams(now)
        body = health(
            self.view.service_health(self.s.services, now),
            latency,
            err,
            bool(nc is None or nc.is_connected),
            sum(s.connected for s in ws.streams),
            bool(self.s.database_url),
            p.decisions_last_min,
            p.blocked_last_min,
            int(ohlcv * 1000) if ohlcv else None,
            None if self.flags is None else self.flags.enabled("ExecutionRouter"),
        )
        return json_response(body, 200 if body.status == "ok" else 503)

    async def openapi(self, request: web.Request) -> web.Response:
        routes = [
            api.Route(f.method.lower(), f.path, f.summary, f.response, f.unwrap, f.request, f.query, f.operator)
            for f in FORWARDS
            if not f.dev or self.s.env == "dev"
        ]
        return json_response(api.openapi(dashboard.routes() + routes))

    async def ws_status(self, request: web.Request) -> web.Response:
        return json_response(self.view.streams(time.time_ns()))

    async def metrics(self, request: web.Request) -> web.Response:
        text = generate_latest(self.ctx.registry) + generate_latest(self.metrics_registry)
        return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def main(ctx: ServiceContext) -> None:
    s = ctx.settings
    assert isinstance(s, GatewaySettings)
    gw = Gateway(ctx, s)
    gw.flags = FlagsClient(ctx)
    await gw.flags.start()
    await gw.subscribe()
    runner = web.AppRunner(gw.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, s.host, s.port).start()
    ctx.log.info("gateway_listening", host=s.host, port=s.port)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        if gw.pool is not None:
            with contextlib.suppress(Exception):
                await gw.pool.close()


SPEC = ServiceSpec("gateway", GatewaySettings, main)
