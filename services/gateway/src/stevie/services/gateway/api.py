"""Gateway response types (msgspec): the JSON contract of the routes and the OpenAPI source.

Field names are the HTTP contract of MISSION.md; they are camelCase where it says so.
"""

from __future__ import annotations

import re
import typing

import msgspec

from stevie.contracts.rpc import OptionsChainRequest, PortfolioRequest, PortfolioResult, Smile, VolForecast


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
    """``routerEnabled``: the ``ExecutionRouter`` flag as last pushed to the gateway (false =
    execution takes no new decisions, positions held; null before the gateway knows)."""

    blockedLastMin: int | None
    routerEnabled: bool | None = None


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


class Param(msgspec.Struct, frozen=True):
    """A query parameter of a gateway-own route: ``schema`` is a JSON Schema."""

    name: str
    schema: dict[str, object]
    description: str = ""
    required: bool = False


class Route(msgspec.Struct, frozen=True):
    """One documented route: ``response`` is the 200 body type (``unwrap``: its list field,
    answered as a top-level array). ``request``: the Struct the body (POST) or the ``query``
    parameters (GET) become, minus the path parameters; ``params``: query parameters of
    gateway-own routes; ``operator``: needs the bearer token; ``content_type``: a non-JSON
    200 (``text/plain``, ``text/html``), ``response`` then ignored; ``path_schemas``: schemas
    of path parameters that are not request fields (default: string); ``unavailable``: the
    503 body type when it is not ``ErrorBody`` (``/api/health`` answers its document)."""

    method: str
    path: str
    summary: str
    response: type
    unwrap: str | None = None
    request: type | None = None
    query: tuple[str, ...] = ()
    operator: bool = False
    params: tuple[Param, ...] = ()
    content_type: str = "application/json"
    path_schemas: tuple[tuple[str, dict[str, object]], ...] = ()
    unavailable: type | None = None


_STR: dict[str, object] = {"type": "string"}


class OpenApiDocument(msgspec.Struct, frozen=True):
    """The OpenAPI 3.1 document itself (``/api/openapi.json``)."""

    openapi: str
    info: dict[str, str]
    paths: dict[str, dict[str, typing.Any]]
    components: dict[str, typing.Any]


class _Text(msgspec.Struct, frozen=True):
    """Placeholder response type of non-JSON routes."""


ROUTES: list[Route] = [
    Route(
        "get",
        "/api/health",
        "Liveness of every service, database latency, NATS connection (503 with the same document when degraded)",
        HealthResponse,
        unavailable=HealthResponse,
    ),
    Route(
        "get",
        "/api/l2/{venue}/{symbol}",
        "Top-k L2 book, best first; levels only while LIVE",
        L2Response,
        params=(Param("depth", {"type": "integer", "minimum": 1, "maximum": 20}, "levels per side (default 20)"),),
    ),
    Route("get", "/api/ws/status", "Venue WebSocket streams", WsStatusResponse),
    Route(
        "get",
        "/api/microstructure/{symbol}",
        "Microstructure features of a LIVE book",
        MicrostructureResponse,
        params=(Param("venue", _STR, "binance (default) or binance-usdm"),),
    ),
    Route(
        "get",
        "/api/vol/forecast/{symbol}",
        "σ of the log return over h minutes from HAR-RV and GARCH(1,1)",
        VolForecast,
        params=(Param("h", {"type": "integer", "minimum": 1}, "horizon in minutes (default 60)"),),
    ),
    Route(
        "post",
        "/api/options/chain/{symbol}",
        "Store an option chain; answers its smile summary",
        Smile,
        request=OptionsChainRequest,
    ),
    Route("get", "/api/options/smile/{symbol}", "Smile metrics of the last stored chain", Smile),
    Route(
        "post",
        "/api/portfolio/optimize",
        "Max-return weights under a CVaR budget and a vol target",
        PortfolioResult,
        request=PortfolioRequest,
    ),
    Route("get", "/api/openapi.json", "This document", OpenApiDocument),
    Route("get", "/metrics", "Prometheus text exposition of the whole stack", _Text, content_type="text/plain"),
]


def _strip_tags(components: dict[str, typing.Any]) -> None:
    """Drop msgspec's internal ``type`` tag property (``{"enum": [<Struct name>]}``) from every
    component: HTTP bodies carry none (``untagged``) and requests need none."""
    for name, comp in components.items():
        props = comp.get("properties", {})
        tag = props.get("type")
        if isinstance(tag, dict) and tag.get("enum") == [name]:
            del props["type"]
            comp["required"] = [r for r in comp.get("required", []) if r != "type"]
            if not comp["required"]:
                del comp["required"]


def _fix_tuples(node: object) -> None:
    """A fixed-length tuple of one repeated type (a ``[price, size]`` level) as
    ``items: <type>`` with min/maxItems instead of ``prefixItems`` (same constraint; schema
    tools that down-convert 3.1 to draft 4 mangle ``prefixItems`` into an invalid
    ``items: [...]``). Other tuples keep ``prefixItems``."""
    if isinstance(node, dict):
        parts = node.get("prefixItems")
        if isinstance(parts, list) and parts and all(p == parts[0] for p in parts):
            del node["prefixItems"]
            node["items"] = parts[0]
        for v in node.values():
            _fix_tuples(v)
    elif isinstance(node, list):
        for v in node:
            _fix_tuples(v)


def _without(schema: dict[str, typing.Any], drop: set[str]) -> dict[str, typing.Any]:
    """A copy of an object schema without the properties in ``drop`` (set from the path or by
    the gateway itself)."""
    out = dict(schema)
    out["properties"] = {k: v for k, v in schema.get("properties", {}).items() if k not in drop}
    req = [r for r in schema.get("required", []) if r not in drop]
    out.pop("required", None)
    if req:
        out["required"] = req
    return out


_EXAMPLES: dict[str, object] = {"symbol": "BTCUSDT", "venue": "binance", "window": "7d", "limit": 5}
"""Parameter examples (the replay's books), so example-based clients and tests reach real data."""

_SET_BY_GATEWAY = {"actor"}  # who made an operator change: the token id, never the body
_ERR = {"$ref": "#/components/schemas/ErrorBody"}


def openapi(extra: list[Route] | None = None) -> dict[str, object]:
    """OpenAPI 3.1 document generated from the msgspec request and response types of the
    gateway's own routes and ``extra`` (the forwarded ones): path and query parameters,
    request bodies, top-level arrays with their item schemas, the 4xx/503 ``ErrorBody``, and
    the bearer token of operator routes."""
    routes = ROUTES + list(extra or [])
    types = [r.response for r in routes if r.content_type == "application/json"] + [ErrorBody]
    types += [r.request for r in routes if r.request is not None]
    types += [r.unavailable for r in routes if r.unavailable is not None]
    _, components = msgspec.json.schema_components(
        list(dict.fromkeys(types)), ref_template="#/components/schemas/{name}"
    )
    _strip_tags(components)
    _fix_tuples(components)
    components.pop("_Text", None)
    paths: dict[str, dict[str, object]] = {}
    for r in routes:
        path_names = re.findall(r"{(\w+)}", r.path)
        req = components.get(r.request.__name__, {}) if r.request is not None else {}
        props = req.get("properties", {})
        fixed = dict(r.path_schemas)
        params: list[dict[str, object]] = [
            {"name": p, "in": "path", "required": True, "schema": fixed.get(p, props.get(p, _STR))} for p in path_names
        ]
        for q in r.query:
            params.append(
                {"name": q, "in": "query", "required": q in req.get("required", []), "schema": props.get(q, _STR)}
            )
        for prm in r.params:
            entry: dict[str, object] = {"name": prm.name, "in": "query", "required": prm.required, "schema": prm.schema}
            if prm.description:
                entry["description"] = prm.description
            params.append(entry)
        for prm_ in params:
            if prm_["name"] in _EXAMPLES and prm_["name"] not in dict(r.path_schemas):
                prm_["example"] = _EXAMPLES[str(prm_["name"])]
        op: dict[str, object] = {"summary": r.summary, "parameters": params}
        if r.method == "post" and r.request is not None:
            body = _without(req, set(path_names) | _SET_BY_GATEWAY)
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        if r.content_type != "application/json":
            ok: dict[str, object] = {"description": "OK", "content": {r.content_type: {"schema": _STR}}}
        else:
            schema: dict[str, object] = {"$ref": f"#/components/schemas/{r.response.__name__}"}
            if r.unwrap is not None:
                field = components.get(r.response.__name__, {}).get("properties", {}).get(r.unwrap, {})
                schema = {
                    "type": "array",
                    "items": field.get("items", {}),
                    "description": f"the {r.unwrap!r} list of {r.response.__name__}",
                }
            ok = {"description": "OK", "content": {"application/json": {"schema": schema}}}
        unavail = _ERR if r.unavailable is None else {"$ref": f"#/components/schemas/{r.unavailable.__name__}"}
        responses: dict[str, object] = {
            "200": ok,
            "4XX": {
                "description": "Bad request, unknown resource, conflict",
                "content": {"application/json": {"schema": _ERR}},
            },
            "503": {
                "description": "A service did not answer in time" if r.unavailable is None else "Degraded",
                "content": {"application/json": {"schema": unavail}},
            },
        }
        if r.operator:
            op["security"] = [{"bearerAuth": []}]
        op["responses"] = responses
        paths.setdefault(r.path, {})[r.method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Stevie gateway", "version": "0.1.0"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }


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
