"""Gateway security on the real gateway app (in-memory bus, echoing fake services): operator
token (401 without, 403 wrong, constant-time compare), dev-only routes absent in prod, the
``operator`` and ``all`` auth modes, Host allow-list, same-origin POSTs, body cap."""

from __future__ import annotations

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from stevie.bus import InMemoryBus
from stevie.runtime.clock import LiveClock
from stevie.runtime.logs import get_logger
from stevie.runtime.metrics import new_registry
from stevie.runtime.service import ServiceContext
from stevie.services.gateway import security
from stevie.services.gateway.settings import GatewaySettings
from stevie.services.gateway.shell import FORWARDS, Gateway

TOKEN = "s3cret-operator-token"


async def _client(env: str = "dev", auth: str = "operator", token: str = TOKEN, **kw: object) -> TestClient:
    bus = InMemoryBus()
    s = GatewaySettings(subject_root="t", env=env, auth=auth, operator_token=token, **kw)  # type: ignore[arg-type]
    ctx = ServiceContext("gateway", s, bus, new_registry(), LiveClock(), get_logger(service="gateway"), 0)

    async def echo(data: bytes) -> bytes:  # every service answers with the request it got
        return data

    for f in FORWARDS:
        await bus.add_endpoint(f.service, f.rpc, f"t.rpc.{f.service}.{f.rpc}", echo)
    for svc, rpc in (("vol", "options_chain"), ("vol", "portfolio")):
        await bus.add_endpoint(svc, rpc, f"t.rpc.{svc}.{rpc}", echo)
    client = TestClient(TestServer(Gateway(ctx, s).app()))
    await client.start_server()
    return client


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_operator_route_needs_the_token_and_audits_its_id():
    c = await _client()
    try:
        r = await c.post("/api/flags", json={"ExecutionRouter": False})
        assert r.status == 401 and (await r.json())["error"] == "unauthorized"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        r = await c.post("/api/flags", json={"ExecutionRouter": False}, headers=_auth("wrong"))
        assert r.status == 403 and (await r.json())["error"] == "forbidden"
        r = await c.post("/api/flags", json={"ExecutionRouter": False}, headers={"Authorization": TOKEN})
        assert r.status == 401  # no "Bearer" scheme
        r = await c.post("/api/flags", json={"ExecutionRouter": False}, headers=_auth())
        body = await r.json()
        assert r.status == 200, body
        assert body["values"] == {"ExecutionRouter": False}
        assert body["actor"] == security.token_id(TOKEN) and TOKEN not in str(body)
        # the body cannot pretend to be someone else: the gateway sets the actor
        r = await c.post("/api/canary/state", json={"action": "hold", "actor": "mallory"}, headers=_auth())
        assert (await r.json())["actor"] == security.token_id(TOKEN)
        assert (await c.post("/api/canary/state", json={"action": "hold"})).status == 401
        assert (await c.post("/api/chaos/inject", json={"type": "l2_gap"})).status == 401
        assert (await c.get("/api/flags")).status == 200  # reads stay open
    finally:
        await c.close()


async def test_token_compare_is_constant_time(monkeypatch):
    calls = []
    real = security.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    p = security.SecurityPolicy(token=TOKEN)
    assert p.check_token(f"Bearer {TOKEN}") == security.token_id(TOKEN)
    assert p.check_token("Bearer x")[0] == 403  # type: ignore[index]
    assert calls == [(TOKEN.encode(), TOKEN.encode()), (b"x", TOKEN.encode())]
    assert security.SecurityPolicy(token="").check_token(f"Bearer {TOKEN}")[0] == 403  # type: ignore[index]


async def test_dev_routes_are_not_registered_in_prod():
    c = await _client(env="prod")
    try:
        for path, body in (("/api/flags", {"ExecutionRouter": False}), ("/api/chaos/inject", {"type": "l2_gap"})):
            r = await c.post(path, json=body, headers=_auth())
            assert r.status in (404, 405), (path, r.status)
        assert (await c.get("/api/flags")).status == 200
        spec = await (await c.get("/api/openapi.json")).json()
        assert "/api/chaos/inject" not in spec["paths"]
    finally:
        await c.close()


PAPER = [
    ("/api/router/update", {"policyId": "p_sma", "reward": 0.004, "context": {"regime": "bull"}}),
    ("/api/exec/plan-and-execute", {"symbol": "BTCUSDT"}),
    ("/api/trading/paper/order", {"symbol": "BTCUSDT", "side": "buy", "size": 0.01}),
    ("/api/options/chain/BTCUSDT", {"chain": [{"k": 0.9, "tenor": "7d", "type": "call", "iv": 0.6}]}),
]


async def test_operator_mode_keeps_the_paper_routes_open_on_loopback():
    c = await _client(auth="operator")
    try:
        for path, body in PAPER:
            r = await c.post(path, json=body)
            assert r.status == 200, (path, r.status, await r.text())
    finally:
        await c.close()


async def test_strict_mode_needs_the_token_on_every_mutating_route():
    c = await _client(auth="all")
    try:
        for path, body in PAPER:
            assert (await c.post(path, json=body)).status == 401, path
            assert (await c.post(path, json=body, headers=_auth())).status == 200, path
        ok = await c.post("/api/router/choose", json={"context": {"symbol": "BTCUSDT"}})
        assert ok.status == 200  # a read-only computation stays open
        assert (await c.get("/api/flags")).status == 200
    finally:
        await c.close()


@pytest.mark.parametrize("host", ["evil.example", "evil.example:5000", "10.0.0.7"])
async def test_foreign_host_is_rejected(host):
    c = await _client()
    try:
        r = await c.get("/api/flags", headers={"Host": host})
        assert r.status == 403 and (await r.json())["error"] == "forbidden_host"
        for ok in ("localhost:5000", "127.0.0.1", "[::1]:5000"):
            assert (await c.get("/api/flags", headers={"Host": ok})).status == 200, ok
    finally:
        await c.close()


async def test_cross_origin_posts_are_rejected():
    c = await _client()
    try:
        order = PAPER[2]
        own = f"http://127.0.0.1:{c.port}"
        for origin in ("http://evil.example", "null", f"http://127.0.0.1:{c.port + 1}"):
            r = await c.post(order[0], json=order[1], headers={"Origin": origin, **_auth()})
            assert r.status == 403 and (await r.json())["error"] == "cross_origin", origin
        # the classic CSRF form: text/plain, no preflight
        r = await c.post(
            order[0],
            data=msgspec.json.encode(order[1]),
            headers={"Content-Type": "text/plain", "Origin": "https://evil.example"},
        )
        assert r.status == 403
        r = await c.post(order[0], json=order[1], headers={"Sec-Fetch-Site": "cross-site"})
        assert r.status == 403
        assert (await c.post(order[0], json=order[1], headers={"Origin": own})).status == 200
        assert (await c.get("/api/flags", headers={"Origin": "http://evil.example"})).status == 200
    finally:
        await c.close()


async def test_bodies_are_capped():
    c = await _client(max_body_bytes=1024)
    try:
        big = {"symbol": "BTCUSDT", "pad": "x" * 5000}
        r = await c.post("/api/exec/plan-and-execute", json=big)
        assert r.status == 413 and (await r.json())["error"] == "payload_too_large"
    finally:
        await c.close()
