"""The OpenAPI document of the gateway: every registered route is documented (and nothing
else), request bodies, query and path parameters and top-level arrays come from the msgspec
types, and no body schema asks for msgspec's internal ``type`` tag."""

from __future__ import annotations

import msgspec
import schemathesis
from aiohttp.test_utils import TestClient, TestServer

from stevie.bus import InMemoryBus
from stevie.runtime.clock import LiveClock
from stevie.runtime.logs import get_logger
from stevie.runtime.metrics import new_registry
from stevie.runtime.service import ServiceContext
from stevie.services.gateway.settings import GatewaySettings
from stevie.services.gateway.shell import FORWARDS, Gateway


async def _doc_and_routes(env: str = "dev") -> tuple[dict, set[tuple[str, str]]]:
    s = GatewaySettings(subject_root="t", env=env, operator_token="x" * 32)
    ctx = ServiceContext("gateway", s, InMemoryBus(), new_registry(), LiveClock(), get_logger(service="gateway"), 0)
    app = Gateway(ctx, s).app()
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        doc = await (await client.get("/api/openapi.json")).json()
    finally:
        await client.close()
    routes = {
        (r.method.lower(), r.resource.canonical)
        for r in app.router.routes()
        if r.method not in ("HEAD", "*") and r.resource is not None
    }
    return doc, routes


async def test_every_registered_route_is_documented_and_nothing_else():
    for env in ("dev", "prod"):
        doc, routes = await _doc_and_routes(env)
        documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
        assert routes == documented, (routes - documented, documented - routes)
    assert ("post", "/api/chaos/inject") not in documented  # prod: dev routes absent


async def test_bodies_parameters_arrays_and_security_come_from_the_types():
    doc, _ = await _doc_and_routes()
    paths, schemas = doc["paths"], doc["components"]["schemas"]
    # request body of a forwarded POST: the request Struct, no tag
    body = paths["/api/venues/score"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"symbol", "size", "side"} and body["required"] == ["symbol", "size"]
    # path parameters are not body fields
    chain = paths["/api/options/chain/{symbol}"]["post"]
    assert "symbol" not in chain["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert [p["name"] for p in chain["parameters"]] == ["symbol"]
    # GET query parameters from the request Struct, with their types
    q = {p["name"]: p for p in paths["/api/audit/latest"]["get"]["parameters"]}
    assert q["limit"]["in"] == "query" and q["limit"]["schema"]["type"] == "integer"
    # top-level arrays with their item schema
    arr = paths["/api/venues/registry"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert arr["type"] == "array" and arr["items"] == {"$ref": "#/components/schemas/VenueInfo"}
    pos = paths["/api/trading/positions"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert pos["items"] == {"$ref": "#/components/schemas/PositionView"}
    # no schema demands msgspec's tag, every $ref resolves
    for name, comp in schemas.items():
        assert comp.get("properties", {}).get("type") != {"enum": [name]}, name
    raw = msgspec.json.encode(doc).decode()
    for ref in {r.split('"')[0] for r in raw.split('"$ref":"#/components/schemas/')[1:]}:
        assert ref in schemas, ref
    assert "ChainPoint" in schemas and "type" in schemas["ChainPoint"]["properties"]  # a real "type" field stays
    # operator routes carry the bearer scheme
    operator = [f for f in FORWARDS if f.operator]
    assert operator and all(paths[f.path][f.method.lower()].get("security") == [{"bearerAuth": []}] for f in operator)
    assert paths["/metrics"]["get"]["responses"]["200"]["content"] == {"text/plain": {"schema": {"type": "string"}}}
    # schemathesis accepts the document and sees every operation
    schema = schemathesis.openapi.from_dict(doc)
    ops = [r.ok() for r in schema.get_all_operations()]
    assert len(ops) == sum(len(v) for v in paths.values())
