"""Per-service NATS users (``deploy/nats-cluster/accounts.conf`` + ``permissions.conf``, generated
from ``stevie.runtime.nats_perms``) against a real nats-server:

- the checked-in ``permissions.conf`` is the generator's output (one table, not hand-written);
- every service's RPCs answer exactly their callers in the table (and the gateway); anonymous
  and every other service user get no answer; nobody else can serve or overhear them;
- only book-maintainer can put market data on the bus;
- no service reads or forges another's replies (each reads only its own inbox prefix and
  answers only requests it was delivered);
- a wrong password is refused; the runtime logs in as its service;
- ``STEVIE_NATS_AUTH=1 stevie up`` (e2e): decisions flow with no permission violation by the
  stack's own users, while anonymous and wrong-user clients can call no service's RPC nor
  publish market data (and the server logs those refusals).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from pathlib import Path

import nats
import pytest
from nats.errors import NoRespondersError, NoServersError

from stevie.contracts import subjects
from stevie.runtime import nats_perms, service
from stevie.runtime.infra import free_port, nats_server_binary
from stevie.runtime.registry import SERVICES

pytestmark = pytest.mark.integration
CLUSTER = Path(__file__).resolve().parents[1] / "deploy" / "nats-cluster"
PW = "test-pw"
SUBJECT = "stevie.rpc.execution.paper_order"
#: one method per service that serves RPCs (the table is per subject; these are real names)
METHOD = {
    "budgeter": "grant",
    "venue-replay": "chaos_inject",
    "book-maintainer": "status",
    "features": "parity",
    "vol": "forecast",
    "router": "decide",
    "green-router": "decide",
    "risk-guards": "check",
    "execution": "paper_order",
    "reporter": "audit_latest",
    "evidence": "models_promote",
    "adaptive": "regime_state",
    "events": "ingest",
    "venues": "score",
    "control": "flags_get",
    "gateway": "none",
}


def allowed(caller: str, callee: str, method: str) -> bool:
    calls = nats_perms.CALLS.get(caller, ())
    return "*" in calls or f"{callee}.{method}" in calls


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("nats-auth")
    port = free_port()
    for f in ("accounts.conf", "permissions.conf"):
        (d / f).write_text((CLUSTER / f).read_text())
    (d / "nats.conf").write_text(
        f'listen: 127.0.0.1:{port}\njetstream {{ store_dir: "{d / "js"}" }}\ninclude ./accounts.conf\n'
    )
    proc = subprocess.Popen(
        [nats_server_binary(), "-c", str(d / "nats.conf")],
        cwd=d,
        env={"STEVIE_NATS_PASSWORD": PW, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"nats://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


def test_the_checked_in_permissions_are_the_generated_ones():
    assert (CLUSTER / "permissions.conf").read_text() == nats_perms.render(), (
        "regenerate: python -m stevie.runtime.nats_perms > deploy/nats-cluster/permissions.conf"
    )
    for name in SERVICES:  # a service subscribes to its own RPCs only; md.> is book-maintainer's
        pub, sub = nats_perms.rules(name)
        assert [x for x in sub if x.startswith("stevie.rpc.")] == [f"stevie.rpc.{name}.>"]
        assert ("stevie.md.>" in pub) == (name == "book-maintainer")
    with pytest.raises(KeyError):
        nats_perms.rules("nobody")


def test_every_data_subject_has_a_publisher_and_a_subscriber_in_the_table():
    """Each subject builder of ``stevie.contracts.subjects`` (wildcards for its arguments) is
    published by some service and read by some service or the gateway — a new subject that is
    not in the table would be refused at run time under ``STEVIE_NATS_AUTH=1``."""
    import inspect

    def overlap(a: str, b: str) -> bool:  # some concrete subject matches both patterns
        x, y = a.split("."), b.split(".")
        for i, (p, q) in enumerate(zip(x, y, strict=False)):
            if ">" in (p, q):
                return True
            if p != q and "*" not in (p, q):
                return False
            if i == min(len(x), len(y)) - 1:
                return len(x) == len(y)
        return False

    structural = {"token", "rpc", "heartbeat", "dlq", "inbox_prefix", "durable_patterns", "all_subjects"}
    builders = [
        (name, fn)
        for name, fn in inspect.getmembers(subjects, inspect.isfunction)
        if fn.__module__ == subjects.__name__ and not name.startswith("_") and name not in structural
    ]
    assert len(builders) >= 17
    rules = {svc: nats_perms.rules(svc) for svc in SERVICES}
    for name, fn in builders:
        subject = fn("stevie", *["*"] * (len(inspect.signature(fn).parameters) - 1))
        pubs = [svc for svc, (pub, _) in rules.items() if any(overlap(p, subject) for p in pub)]
        subs = [svc for svc, (_, sub) in rules.items() if any(overlap(p, subject) for p in sub)]
        assert pubs and subs, (name, subject, pubs, subs)


async def _responders(url: str) -> list[nats.NATS]:
    """Every service answers ``stevie.rpc.<itself>.>`` with its name, as its own user."""
    out = []
    for name in SERVICES:
        nc = await nats.connect(url, user=name, password=PW)

        async def handler(msg, name=name):
            await msg.respond(name.encode())

        await nc.subscribe(f"stevie.rpc.{name}.>", cb=handler, queue=name)
        await nc.flush()
        out.append(nc)
    return out


async def _ask(
    url: str, subject: str = SUBJECT, timeout_s: float = 1.0, payload: bytes = b"{}", **creds
) -> bytes | None:
    errors: list[Exception] = []

    async def on_error(e: Exception) -> None:
        errors.append(e)

    if "user" in creds:  # the runtime's own inbox prefix: the only one the user may read
        creds["inbox_prefix"] = subjects.inbox_prefix(str(creds["user"]))
    nc = await nats.connect(url, error_cb=on_error, max_reconnect_attempts=0, **creds)
    try:
        return (await nc.request(subject, payload, timeout=timeout_s)).data
    except (TimeoutError, NoRespondersError):
        return None
    finally:
        await nc.close()


async def test_each_rpc_answers_exactly_its_callers(auth_server):
    """For every service's RPC: every service user and anonymous try it; the answer comes
    back exactly when the table allows the call (gateway: always)."""
    responders = await _responders(auth_server)
    try:
        cases = [
            (caller, callee, METHOD[callee]) for callee in SERVICES for caller in (*SERVICES, None) if caller != callee
        ]

        async def one(caller: str | None, callee: str, method: str) -> tuple[bool, bool]:
            creds = {} if caller is None else {"user": caller, "password": PW}
            got = await _ask(auth_server, f"stevie.rpc.{callee}.{method}", 0.5, **creds)
            want = caller is not None and allowed(caller, callee, method)
            return want, got == callee.encode()

        results = []
        for i in range(0, len(cases), 40):  # bounded concurrency
            results += await asyncio.gather(*(one(*c) for c in cases[i : i + 40]))
        wrong = [c for c, (want, got) in zip(cases, results, strict=True) if want != got]
        assert wrong == []
        assert sum(want for want, _ in results) >= len(SERVICES) + 10  # the gateway + the real callers
        assert ("control", "execution", "paper_order") in cases and not allowed("control", "execution", "paper_order")
    finally:
        for nc in responders:
            await nc.close()


async def test_nobody_else_can_serve_or_overhear_execution(auth_server):
    responders = await _responders(auth_server)
    spy_seen: list[bytes] = []
    spy = await nats.connect(auth_server, user="vol", password=PW)
    try:

        async def impostor(msg):
            spy_seen.append(msg.data)
            await msg.respond(b"fake")

        await spy.subscribe(SUBJECT, cb=impostor)
        await spy.subscribe("stevie.rpc.>", cb=impostor)
        await spy.flush()
        for _ in range(5):
            assert await _ask(auth_server, user="gateway", password=PW) == b"execution"
        assert spy_seen == []
    finally:
        await spy.close()
        for nc in responders:
            await nc.close()


async def test_nobody_reads_or_forges_another_services_replies(auth_server):
    """vol subscribes to every inbox it can name and tries to answer on the gateway's inbox:
    the server refuses all four, and the gateway gets execution's answer, only it."""
    responders = await _responders(auth_server)
    refused: list[Exception] = []

    async def on_error(e: Exception) -> None:
        refused.append(e)

    spy = await nats.connect(auth_server, user="vol", password=PW, error_cb=on_error)
    gw = await nats.connect(auth_server, user="gateway", password=PW, inbox_prefix=subjects.inbox_prefix("gateway"))
    seen: list[bytes] = []
    try:

        async def overhear(msg):
            seen.append(msg.data)

        for pattern in ("_INBOX_gateway.>", "_INBOX.>", ">"):
            await spy.subscribe(pattern, cb=overhear)
        await spy.flush()
        inbox = gw.new_inbox()
        got: list[bytes] = []

        async def on_reply(msg):
            got.append(msg.data)

        await gw.subscribe(inbox, cb=on_reply)
        await gw.flush()
        await spy.publish(inbox, b"forged")
        await spy.flush()
        await gw.publish(SUBJECT, b"{}", reply=inbox)
        deadline = time.monotonic() + 2
        while not got and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        assert got == [b"execution"]
        assert seen == []
        assert sum("permissions violation" in str(e).lower() for e in refused) == 4
    finally:
        await spy.close()
        await gw.close()
        for nc in responders:
            await nc.close()


async def test_only_book_maintainer_publishes_market_data(auth_server):
    got: list[bytes] = []
    sub = await nats.connect(auth_server, user="features", password=PW)  # a real md.book consumer
    try:

        async def on_book(m):
            got.append(m.data)

        await sub.subscribe("stevie.md.book.binance.BTCUSDT", cb=on_book)
        await sub.flush()
        for who in (None, "vol", "execution", "gateway", "venue-replay", "book-maintainer"):
            creds = {} if who is None else {"user": who, "password": PW}
            pub = await nats.connect(auth_server, max_reconnect_attempts=0, **creds)
            await pub.publish("stevie.md.book.binance.BTCUSDT", (who or "anonymous").encode())
            await pub.flush()
            await pub.close()
        deadline = time.monotonic() + 2
        while not got and time.monotonic() < deadline:
            await sub.flush()
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        assert got == [b"book-maintainer"]
    finally:
        await sub.close()


async def test_wrong_password_is_refused(auth_server):
    with pytest.raises((NoServersError, nats.errors.Error, OSError)):
        await nats.connect(
            auth_server, user="gateway", password="wrong", max_reconnect_attempts=0, allow_reconnect=False
        )


async def test_the_runtime_logs_in_as_its_service(auth_server, nats_server, monkeypatch):
    responders = await _responders(auth_server)
    monkeypatch.setenv("STEVIE_NATS_PASSWORD", PW)
    try:
        gw = await service._connect(auth_server, "gateway")
        vol = await service._connect(auth_server, "vol")
        try:
            assert (await gw.nc.request(SUBJECT, b"{}", timeout=1.0)).data == b"execution"
            with pytest.raises((TimeoutError, NoRespondersError)):
                await vol.nc.request(SUBJECT, b"{}", timeout=1.0)
        finally:
            await gw.nc.close()
            await vol.nc.close()
        plain = await service._connect(nats_server.url, "vol")  # a server without auth ignores them
        assert plain.connected
        await plain.nc.close()
    finally:
        for nc in responders:
            await nc.close()


def test_write_config_fills_the_password_and_is_private(tmp_path):
    from stevie.runtime import nats_auth

    conf, pw = nats_auth.write_config(tmp_path)
    accounts = (tmp_path / "auth-accounts.conf").read_text()
    assert len(pw) == 32 and f'password: "{pw}"' in accounts and "$STEVIE_NATS_PASSWORD" not in accounts
    assert "include ./auth-permissions.conf" in accounts
    for f in ("auth.conf", "auth-accounts.conf", "auth-permissions.conf"):
        assert (tmp_path / f).stat().st_mode & 0o777 == 0o600
    res = subprocess.run([nats_server_binary(), "-t", "-c", str(conf)], capture_output=True, cwd=tmp_path, check=False)
    assert res.returncode == 0, res.stderr.decode()
    assert nats_auth.enabled({"STEVIE_NATS_AUTH": "1"}) and not nats_auth.enabled({})


def _violations(state: Path) -> list[str]:
    log = state / "nats" / "nats.log"
    return [ln for ln in log.read_text(errors="replace").splitlines() if "Violation" in ln] if log.exists() else []


@pytest.mark.e2e
async def test_stevie_up_with_nats_auth(tmp_path):
    """``STEVIE_NATS_AUTH=1 stevie up``: the stack is healthy, decisions flow (audits stored),
    a blue/green canary measures green, and the server logs no permission violation by any
    service; then a client without the
    password, or with the wrong service's user, gets no answer from any service's RPC and
    cannot publish market data — and the server logs exactly those refusals."""
    import re

    from tests.helpers import stack as st

    s = st.start(tmp_path, env_extra={"STEVIE_NATS_AUTH": "1", "STEVIE_EXECUTION_DECISION_INTERVAL_S": "2"})
    try:
        await asyncio.to_thread(st.wait_healthy, s, 240)
        status, pos = await asyncio.to_thread(s.get, "/api/trading/positions")
        assert status == 200, pos  # gateway → execution over the bus, as the gateway user

        def audits() -> list | None:
            code, body = s.get("/api/audit/latest?limit=5")
            return body if code == 200 and isinstance(body, list) and len(body) >= 3 else None

        await asyncio.to_thread(st.wait_for, audits, 90, "decisions stored under NATS auth")
        # a blue/green cutover runs too (green's candidate, share, SLO samples, the mirror)
        await asyncio.to_thread(_register_candidate, s.database_url())

        def green_measured() -> dict | None:
            code, d = s.get("/api/deploy/status")
            return d if code == 200 and d["state"] == "canary" and d["slo"]["green"]["samples"] >= 3 else None

        d = await asyncio.to_thread(st.wait_for, green_measured, 90, "green measured during the canary")
        assert d["slo"]["green"]["errorRate"] == 0.0, d["slo"]
        await asyncio.sleep(3)  # every service has run its loops (flags, budget, heartbeats, SLOs)
        assert _violations(tmp_path) == [], _violations(tmp_path)[:5]

        url = s.nats_url()
        text = (tmp_path / "nats" / "auth-accounts.conf").read_text()
        pw = re.search(r'user: gateway,\s+password: "(\w+)"', text)
        assert pw is not None
        positions = b'{"type": "PositionsRequest"}'
        reply = await _ask(url, "stevie.rpc.execution.positions", 1.5, positions, user="gateway", password=pw.group(1))
        assert reply is not None and b"positions" in reply
        for callee, method in METHOD.items():
            if callee == "gateway":
                continue
            subject = f"stevie.rpc.{callee}.{method}"
            assert await _ask(url, subject, 1.5, positions) is None, subject  # anonymous
            wrong = "features" if callee != "features" else "vol"
            assert await _ask(url, subject, 1.5, positions, user=wrong, password=pw.group(1)) is None, subject
        seen: list[bytes] = []
        reader = await nats.connect(url, user="features", password=pw.group(1))
        try:

            async def on_book(m):
                seen.append(m.data)

            await reader.subscribe("stevie.md.book.binance.NOTASYMBOL", cb=on_book)
            await reader.flush()
            for creds in ({}, {"user": "vol", "password": pw.group(1)}):
                w = await nats.connect(url, max_reconnect_attempts=0, **creds)
                await w.publish("stevie.md.book.binance.NOTASYMBOL", b"spoof")
                await w.flush()
                await w.close()
            await asyncio.sleep(0.5)
            assert seen == []
        finally:
            await reader.close()
        await asyncio.sleep(0.5)
        refused = _violations(tmp_path)
        assert len(refused) >= 2 * (len(METHOD) - 1) + 2  # every attempt above was refused by the server
        assert refused and all(re.search(r'user:(anonymous|features|vol)"', ln) for ln in refused), refused[:5]
    finally:
        await asyncio.to_thread(st.stop, s)


def _register_candidate(db_url: str) -> None:
    import asyncpg

    from stevie.services.router import checkpoint
    from stevie.services.router.core import Router
    from stevie.store import evidence as repo

    async def go() -> None:
        pool = await asyncpg.create_pool(db_url, min_size=1, max_size=1)
        try:
            await repo.register_model(pool, "cand-auth", "manual", "test", checkpoint.export(Router(3, 1.0, 0.5, 100)))
        finally:
            await pool.close()

    asyncio.run(go())
