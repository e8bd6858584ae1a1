"""Gateway response types (msgspec): the JSON contract of the routes and the OpenAPI source.

Field names are the HTTP contract of MISSION.md; they are camelCase where it says so.
"""

from __future__ import annotations

import msgspec


class ErrorBody(msgspec.Struct, frozen=True):
    """Every 4xx: what went wrong (``error``) and details (``detail``)."""

    error: str
    detail: str


class L2Response(msgspec.Struct, frozen=True):
    """Top-k book, best first. ``seq`` = last applied update id; ``ts`` = event time of the
    book in ms since the Unix epoch; ``state`` LIVE/SYNCING/STALE — levels are withheld
    (empty) unless LIVE. Prices in quote units, sizes in base units."""

    venue: str
    symbol: str
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]
    seq: int
    ts: int
    state: str


class MicrostructureResponse(msgspec.Struct, frozen=True):
    """Latest rolling features of a LIVE book (nulls while there is none): obi, ti ∈ [−1, 1];
    spread_bps, micro_vol (realised over the window) in bps; cancel_rate in base units/s;
    ``ts`` event time in ms."""

    symbol: str
    venue: str
    obi: float | None
    ti: float | None
    spread_bps: float | None
    micro_vol: float | None
    cancel_rate: float | None
    ts: int | None


class ServiceHealth(msgspec.Struct, frozen=True):
    up: bool
    lastBeatAgoMs: float | None
    pid: int | None
    backend: str


class DbHealth(msgspec.Struct, frozen=True):
    latencyMs: float | None
    error: str = ""


class NatsHealth(msgspec.Struct, frozen=True):
    connected: bool


class WsHealth(msgspec.Struct, frozen=True):
    clients: int


class RouterHealth(msgspec.Struct, frozen=True):
    decisionsLastMin: int | None


class ExecHealth(msgspec.Struct, frozen=True):
    blockedLastMin: int | None


class HealthResponse(msgspec.Struct, frozen=True):
    """``status`` ok when every expected service is up and the database answers.
    ``lastOHLCVSync``: wall time (ms since epoch) of the vol service's last history load or bar."""

    status: str
    services: dict[str, ServiceHealth]
    db: DbHealth
    nats: NatsHealth
    ws: WsHealth
    router: RouterHealth
    exec: ExecHealth
    lastOHLCVSync: int | None


class StreamStatusView(msgspec.Struct, frozen=True):
    venue: str
    connected: bool
    backlogSize: int
    lastBeatAt: str | None


class WsStatusResponse(msgspec.Struct, frozen=True):
    streams: list[StreamStatusView]


ROUTES: list[tuple[str, str, str, type]] = [
    ("get", "/api/health", "Liveness of every service, database latency, NATS connection", HealthResponse),
    ("get", "/api/l2/{venue}/{symbol}", "Top-k L2 book (query: depth, 1..20)", L2Response),
    ("get", "/api/ws/status", "Venue WebSocket streams", WsStatusResponse),
    ("get", "/api/microstructure/{symbol}", "Microstructure features (query: venue)", MicrostructureResponse),
]


def openapi() -> dict[str, object]:
    """OpenAPI 3.1 document generated from the msgspec response types."""
    types = [t for *_, t in ROUTES] + [ErrorBody]
    _, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    paths: dict[str, object] = {}
    for method, path, summary, tp in ROUTES:
        params = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in ("venue", "symbol")
            if "{" + p + "}" in path
        ]
        paths[path] = {
            method: {
                "summary": summary,
                "parameters": params,
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{tp.__name__}"}}},
                    },
                    "4XX": {
                        "description": "Bad request",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
                    },
                },
            }
        }
    paths["/metrics"] = {"get": {"summary": "Prometheus text", "responses": {"200": {"description": "OK"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Stevie gateway", "version": "0.1.0"},
        "paths": paths,
        "components": {"schemas": components},
    }
