"""Dashboard at ``/``: a server-rendered page of cards, each filled from the gateway's own
routes by a small vendored script (``static/dashboard.js``, plain DOM + inline SVG, no build
step, works offline).

The page never asks a route the gateway does not serve: each card is fed by
``GET /api/dashboard/card/{name}``, which calls the card's source routes on this gateway
(loopback HTTP, so the answers are exactly what a client sees) and reports, per source, the
HTTP status and body — or ``available: false`` when the route is not registered here (another
feature has not landed yet). The browser therefore sees only 200s, and a card says "not
available" or "no data yet" instead of breaking.

``GET /api/dashboard/equity``: the paper PnL curve from the audit log in PostgreSQL
(``pnl_curve``).
"""

from __future__ import annotations

import asyncio
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import msgspec
from aiohttp import web

from stevie.services.gateway import api
from stevie.store import connect_pool

STATIC = Path(__file__).parent / "static"
_enc = msgspec.json.Encoder()


@dataclass(frozen=True)
class Source:
    """A GET route feeding a card: ``template`` as registered (``/api/l2/{venue}/{symbol}``),
    ``query`` appended as is."""

    template: str
    query: str = ""


@dataclass(frozen=True)
class Card:
    name: str
    title: str
    sources: tuple[Source, ...]
    note: str = ""


CARDS: tuple[Card, ...] = (
    Card(
        "router",
        "Router",
        (Source("/api/router/snapshot"), Source("/api/audit/latest", "limit=100")),
        "current choice, sampled scores, posterior updates; choice shares over the last 100 audits",
    ),
    Card("regime", "Regime", (Source("/api/regime/state"),)),
    Card("pbt", "PBT lineage", (Source("/api/pbt/lineage"),)),
    Card("promotion", "Promotion", (Source("/api/promotion/status"),)),
    Card(
        "risk",
        "Risk & safety",
        (Source("/api/guards/state"), Source("/api/exec/sizing/last"), Source("/api/flags")),
        "guards, breaker, kill switch, last sizing",
    ),
    Card("book", "Book", (Source("/api/l2/{venue}/{symbol}", "depth=10"),), "top 10 levels, LIVE books only"),
    Card(
        "pnl",
        "PnL",
        (Source("/api/dashboard/equity"), Source("/api/trading/positions")),
        "paper PnL of the audited fills, marked at each decision's mid",
    ),
    Card("venues", "Venues", (Source("/api/venues/registry"),)),
    Card("health", "Health", (Source("/api/health"),)),
)


def routes() -> list[api.Route]:
    """The dashboard's routes, for the OpenAPI document."""
    card: dict[str, object] = {"type": "string", "enum": [c.name for c in CARDS]}
    return [
        api.Route("get", "/", "Dashboard page (HTML)", CardFeed, content_type="text/html"),
        api.Route(
            "get",
            "/static/{name}",
            "Dashboard script and style (vendored, no build step)",
            CardFeed,
            content_type="text/plain",
        ),
        api.Route(
            "get",
            "/api/dashboard/card/{card}",
            "One card's sources: each served route's status and body, or available=false",
            CardFeed,
            params=(
                api.Param("venue", {"type": "string"}, "book card: venue (default the first)"),
                api.Param("symbol", {"type": "string"}, "book card: symbol (default the first)"),
            ),
            path_schemas=(("card", card),),
        ),
        api.Route("get", "/api/dashboard/equity", "Paper PnL curve from the audit log", EquityCurve),
    ]


class SourceResult(msgspec.Struct, frozen=True):
    """One source of a card: ``available`` false when this gateway does not serve the route;
    else its HTTP ``status`` and JSON ``body`` (or the text, truncated)."""

    path: str
    available: bool
    status: int | None = None
    body: msgspec.Raw | None = None
    text: str = ""


class CardFeed(msgspec.Struct, frozen=True):
    card: str
    title: str
    sources: list[SourceResult]


class EquityPoint(msgspec.Struct, frozen=True):
    """``ts``: wall time of the audit (ms since epoch); ``pnlQuote``: cumulative paper PnL in
    quote units (fees included); ``feesQuote``: cumulative fees; ``fills``: fills so far."""

    ts: int
    pnlQuote: float
    feesQuote: float
    fills: int


class EquityCurve(msgspec.Struct, frozen=True):
    points: list[EquityPoint]
    audits: int


@dataclass(frozen=True)
class AuditRow:
    """What the PnL curve needs from one audit: symbol, wall time (ns), the mark (quote units,
    None if unknown) and the fill (side ±1, base units, average price, fee; filled 0 = none)."""

    symbol: str
    ts_ns: int
    mid: float | None
    side: int = 0
    filled: float = 0.0
    price: float = 0.0
    fee: float = 0.0


def pnl_curve(rows: Sequence[AuditRow], max_points: int = 500) -> list[EquityPoint]:
    """Cumulative PnL after each audit (time order): cash flows of the fills
    (−side·filled·price − fee) plus the net position of each symbol (all venues) marked at the
    symbol's latest mid. Down-sampled to at most ``max_points`` (evenly, last point kept)."""
    cash, fees, fills = 0.0, 0.0, 0
    pos: dict[str, float] = {}
    mark: dict[str, float] = {}
    out: list[EquityPoint] = []
    for r in sorted(rows, key=lambda r: r.ts_ns):
        if r.mid is not None and math.isfinite(r.mid) and r.mid > 0:
            mark[r.symbol] = r.mid
        if r.filled > 0 and r.side in (1, -1) and math.isfinite(r.price):
            cash -= r.side * r.filled * r.price + r.fee
            fees += r.fee
            fills += 1
            pos[r.symbol] = pos.get(r.symbol, 0.0) + r.side * r.filled
            mark.setdefault(r.symbol, r.price)
        value = cash + sum(q * mark.get(s, 0.0) for s, q in pos.items())
        out.append(EquityPoint(r.ts_ns // 1_000_000, value, fees, fills))
    if len(out) > max_points:
        step = len(out) / max_points
        out = [out[int(i * step)] for i in range(max_points - 1)] + [out[-1]]
    return out


_EQUITY_SQL = """
SELECT symbol,
       (body->>'ts_init_ns')::bigint AS ts_ns,
       COALESCE((body->'route'->>'arrivalMid')::float8, (body->'feature_window'->-1->>6)::float8) AS mid,
       CASE WHEN jsonb_typeof(body->'fill') = 'object' THEN (body->'fill'->>'side')::int ELSE 0 END AS side,
       CASE WHEN jsonb_typeof(body->'fill') = 'object' THEN (body->'fill'->>'filled')::float8 ELSE 0 END AS filled,
       CASE WHEN jsonb_typeof(body->'fill') = 'object' THEN (body->'fill'->>'avg_price')::float8 ELSE 0 END AS price,
       CASE WHEN jsonb_typeof(body->'fill') = 'object' THEN (body->'fill'->>'fee_quote')::float8 ELSE 0 END AS fee
  FROM audits ORDER BY (body->>'ts_init_ns')::bigint DESC LIMIT $1
"""


class Dashboard:
    """The page, its static files and its feeds. ``base_url``: this gateway over loopback;
    ``database_url``: PostgreSQL of the audit log ('' = none: the equity feed answers 503)."""

    def __init__(
        self, base_url: str, venues: list[str], symbols: list[str], database_url: str, max_audits: int = 20_000
    ) -> None:
        self.base_url, self.venues, self.symbols = base_url.rstrip("/"), venues, symbols
        self.database_url, self.max_audits = database_url, max_audits
        self.http: aiohttp.ClientSession | None = None
        self._pool: asyncpg.Pool | None = None

    async def pool(self) -> asyncpg.Pool | None:
        if self._pool is None and self.database_url:
            self._pool = await connect_pool(self.database_url, max_size=1)
        return self._pool

    def register(self, app: web.Application) -> None:
        app.router.add_get("/", self.page)
        app.router.add_get("/static/{name}", self.static)
        app.router.add_get("/api/dashboard/card/{card}", self.card)
        app.router.add_get("/api/dashboard/equity", self.equity)
        app.on_cleanup.append(self._close)

    async def _close(self, app: web.Application) -> None:
        if self.http is not None:
            await self.http.close()
        if self._pool is not None:
            await self._pool.close()

    # -- page ---------------------------------------------------------------------------
    async def page(self, request: web.Request) -> web.Response:
        return web.Response(text=render_page(self.venues, self.symbols), content_type="text/html")

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Cache-Control": "max-age=300"})

    # -- feeds --------------------------------------------------------------------------
    async def card(self, request: web.Request) -> web.Response:
        """A card's sources, each fetched from this gateway (only if it serves the route)."""
        name = request.match_info["card"]
        card = next((c for c in CARDS if c.name == name), None)
        if card is None:
            return _json({"error": "unknown_card", "detail": f"cards: {', '.join(c.name for c in CARDS)}"}, 404)
        served = {r.canonical for r in request.app.router.resources()}
        venue = request.query.get("venue", self.venues[0] if self.venues else "binance")
        symbol = request.query.get("symbol", self.symbols[0] if self.symbols else "BTCUSDT")
        if venue not in self.venues or symbol not in self.symbols:
            return _json({"error": "bad_parameter", "detail": f"venue in {self.venues}, symbol in {self.symbols}"}, 400)
        results = await asyncio.gather(*(self._fetch(s, s.template in served, venue, symbol) for s in card.sources))
        return web.Response(
            body=_enc.encode(CardFeed(card.name, card.title, list(results))), content_type="application/json"
        )

    async def _fetch(self, src: Source, served: bool, venue: str, symbol: str) -> SourceResult:
        path = src.template.replace("{venue}", venue).replace("{symbol}", symbol)
        path += f"?{src.query}" if src.query else ""
        if not served:
            return SourceResult(path, False)
        if self.http is None:
            self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=8.0))
        try:
            async with self.http.get(self.base_url + path) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return SourceResult(path, True, None, None, f"{type(exc).__name__}: {exc}"[:300])
        try:
            msgspec.json.decode(raw)
            return SourceResult(path, True, status, msgspec.Raw(raw))
        except msgspec.DecodeError:
            return SourceResult(path, True, status, None, raw[:300].decode("utf-8", "replace"))

    async def equity(self, request: web.Request) -> web.Response:
        try:
            pool = await self.pool()
        except (OSError, asyncpg.PostgresError) as exc:
            return _json({"error": "unavailable", "detail": f"database: {exc}"[:300]}, 503)
        if pool is None:
            return _json({"error": "unavailable", "detail": "no database configured"}, 503)
        try:
            rows = await pool.fetch(_EQUITY_SQL, self.max_audits)
        except (OSError, asyncpg.PostgresError) as exc:
            return _json({"error": "unavailable", "detail": f"database: {exc}"[:300]}, 503)
        audits = [
            AuditRow(
                r["symbol"],
                r["ts_ns"],
                r["mid"],
                r["side"] or 0,
                r["filled"] or 0.0,
                r["price"] or 0.0,
                r["fee"] or 0.0,
            )
            for r in rows
            if r["ts_ns"] is not None
        ]
        return web.Response(
            body=_enc.encode(EquityCurve(pnl_curve(audits), len(audits))), content_type="application/json"
        )


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(body=_enc.encode(body), status=status, content_type="application/json")


def render_page(venues: list[str], symbols: list[str]) -> str:
    """The dashboard HTML: one ``<section class=card>`` per card, filled by dashboard.js."""
    esc = html.escape
    cards = "\n".join(
        f'<section class="card" id="card-{c.name}" data-card="{c.name}" data-state="loading">'
        f'<header><h2>{esc(c.title)}</h2><span class="status">loading…</span></header>'
        + (f'<p class="note">{esc(c.note)}</p>' if c.note else "")
        + (
            '<div class="pick"><select name="venue">'
            + "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in venues)
            + '</select><select name="symbol">'
            + "".join(f'<option value="{esc(s)}">{esc(s)}</option>' for s in symbols)
            + "</select></div>"
            if c.name == "book"
            else ""
        )
        + '<div class="body"></div></section>'
        for c in CARDS
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Stevie — dashboard</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/dashboard.css">
</head><body>
<header class="top"><h1>Stevie</h1><span>paper trading only · refreshes every 5 s ·
<a href="/api/openapi.json">OpenAPI</a> · <a href="/metrics">metrics</a></span>
<span id="clock"></span></header>
<main class="grid">
{cards}
</main>
<script src="/static/dashboard.js" defer></script>
</body></html>
"""
