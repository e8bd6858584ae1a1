"""Gateway response types (msgspec): the JSON contract of the routes and the OpenAPI source.

Field names are the HTTP contract of MISSION.md; they are camelCase where it says so.
"""

from __future__ import annotations

import re
import typing

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


class Route(msgspec.Struct, frozen=True):
    """One documented route: ``response`` is the 200 body type (``unwrap``: its list field,
    answered as a top-level array)."""

    method: str
    path: str
    summary: str
    response: type
    unwrap: str | None = None


ROUTES: list[Route] = [
    Route("get", "/api/health", "Liveness of every service, database latency, NATS connection", HealthResponse),
    Route("get", "/api/l2/{venue}/{symbol}", "Top-k L2 book (query: depth, 1..20)", L2Response),
    Route("get", "/api/ws/status", "Venue WebSocket streams", WsStatusResponse),
    Route("get", "/api/microstructure/{symbol}", "Microstructure features (query: venue)", MicrostructureResponse),
]


_AT = re.compile(r"- at `\$((?:\.\w+)*)`$")


def explain(detail: str, tp: type) -> str:
    """msgspec's validation message, plus the accepted field names when it is an unknown
    field (e.g. ``... - at `$.context`; accepted: symbol, regime, ...``)."""
    m = _AT.search(detail)
    if "unknown field" not in detail or m is None:
        return detail
    here: object = tp
    for part in filter(None, m.group(1).split(".")):
        hints = typing.get_type_hints(here) if isinstance(here, type) else {}
        here = hints.get(part)
    if not (isinstance(here, type) and issubclass(here, msgspec.Struct)):
        return detail
    return f"{detail}; accepted: {', '.join(here.__struct_fields__)}"


def _tag_names() -> frozenset[str]:
    out: set[str] = set()
    todo: list[type] = [msgspec.Struct]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        tag = getattr(getattr(cls, "__struct_config__", None), "tag", None)
        if isinstance(tag, str):
            out.add(tag)
    return frozenset(out)


def untagged(obj: object, tags: frozenset[str] | None = None) -> object:
    """``obj`` (decoded JSON) without msgspec's internal ``"type": "<StructName>"`` tags, at
    any depth (a ``type`` field with another value, e.g. an option's ``"call"``, is kept)."""
    tags = _tag_names() if tags is None else tags
    if isinstance(obj, dict):
        return {k: untagged(v, tags) for k, v in obj.items() if not (k == "type" and v in tags)}
    if isinstance(obj, list):
        return [untagged(v, tags) for v in obj]
    return obj


def openapi(extra: list[Route] | None = None) -> dict[str, object]:
    """OpenAPI 3.1 document generated from the msgspec response types (``extra``: the
    forwarded routes)."""
    routes = ROUTES + list(extra or [])
    types = [r.response for r in routes] + [ErrorBody]
    _, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    paths: dict[str, dict[str, object]] = {}
    for r in routes:
        params = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in ("venue", "symbol")
            if "{" + p + "}" in r.path
        ]
        schema: dict[str, object] = {"$ref": f"#/components/schemas/{r.response.__name__}"}
        if r.unwrap is not None:
            schema = {"type": "array", "description": f"the {r.unwrap!r} list of {r.response.__name__}"}
        paths.setdefault(r.path, {})[r.method] = {
            "summary": r.summary,
            "parameters": params,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": schema}}},
                "4XX": {
                    "description": "Bad request",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
                },
            },
        }
    paths["/metrics"] = {"get": {"summary": "Prometheus text", "responses": {"200": {"description": "OK"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Stevie gateway", "version": "0.1.0"},
        "paths": paths,
        "components": {"schemas": components},
    }
