"""Per-service NATS users (``deploy/nats-cluster/accounts.conf`` + ``permissions.conf``) against
a real nats-server: only the gateway and control may call execution's RPCs and only execution
may serve them; a local process without credentials (or with another service's user) cannot
fill a paper order over the bus; a wrong password is refused; the service runtime logs in as
its own user when ``STEVIE_NATS_PASSWORD`` is set (and a server without auth still accepts it)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import nats
import pytest
from nats.errors import NoRespondersError, NoServersError

from stevie.runtime import service
from stevie.runtime.infra import free_port, nats_server_binary

pytestmark = pytest.mark.integration
CLUSTER = Path(__file__).resolve().parents[1] / "deploy" / "nats-cluster"
PW = "test-pw"
SUBJECT = "stevie.rpc.execution.paper_order"


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
            import socket

            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


async def _execution(url: str):
    nc = await nats.connect(url, user="execution", password=PW)

    async def handler(msg):
        await msg.respond(b"filled")

    await nc.subscribe(SUBJECT, cb=handler, queue="execution")
    await nc.flush()
    return nc


async def _ask(url: str, **creds) -> bytes | None:
    errors: list[Exception] = []

    async def on_error(e: Exception) -> None:
        errors.append(e)

    nc = await nats.connect(url, error_cb=on_error, max_reconnect_attempts=0, **creds)
    try:
        return (await nc.request(SUBJECT, b"{}", timeout=1.0)).data
    except (TimeoutError, NoRespondersError):
        return None
    finally:
        await nc.close()


async def test_only_gateway_and_control_call_execution(auth_server):
    ex = await _execution(auth_server)
    try:
        assert await _ask(auth_server, user="gateway", password=PW) == b"filled"
        assert await _ask(auth_server, user="control", password=PW) == b"filled"
        assert await _ask(auth_server) is None  # anonymous: no credentials
        for other in ("vol", "router", "features", "venue-replay"):
            assert await _ask(auth_server, user=other, password=PW) is None, other
        with pytest.raises((NoServersError, nats.errors.Error, OSError)):
            await nats.connect(
                auth_server, user="gateway", password="wrong", max_reconnect_attempts=0, allow_reconnect=False
            )
    finally:
        await ex.close()


async def test_nobody_else_can_serve_or_overhear_execution(auth_server):
    ex = await _execution(auth_server)
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
            assert await _ask(auth_server, user="gateway", password=PW) == b"filled"
        assert spy_seen == []
        # every other subject stays open to the services (a vol → router request goes through)
        got = []

        async def on_bar(m):
            got.append(m.data)

        sub = await spy.subscribe("stevie.md.bar.binance.BTCUSDT", cb=on_bar)
        pub = await nats.connect(auth_server, user="book-maintainer", password=PW)
        await spy.flush()
        await pub.publish("stevie.md.bar.binance.BTCUSDT", b"bar")
        await pub.flush()
        await pub.close()
        deadline = time.monotonic() + 2
        while not got and time.monotonic() < deadline:
            await spy.flush()
        assert got == [b"bar"]
        await sub.unsubscribe()
    finally:
        await spy.close()
        await ex.close()


async def test_the_runtime_logs_in_as_its_service(auth_server, nats_server, monkeypatch):
    ex = await _execution(auth_server)
    monkeypatch.setenv("STEVIE_NATS_PASSWORD", PW)
    try:
        gw = await service._connect(auth_server, "gateway")
        vol = await service._connect(auth_server, "vol")
        try:
            assert (await gw.nc.request(SUBJECT, b"{}", timeout=1.0)).data == b"filled"
            with pytest.raises((TimeoutError, NoRespondersError)):
                await vol.nc.request(SUBJECT, b"{}", timeout=1.0)
        finally:
            await gw.nc.close()
            await vol.nc.close()
        plain = await service._connect(nats_server.url, "vol")  # a server without auth ignores them
        assert plain.connected
        await plain.nc.close()
    finally:
        await ex.close()


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


@pytest.mark.e2e
async def test_stevie_up_with_nats_auth(tmp_path):
    """``STEVIE_NATS_AUTH=1 stevie up``: the stack is healthy and trades on paper through the
    gateway, while a local process without the password cannot call execution over the bus."""
    import asyncio
    import re

    from tests.helpers import stack as st

    s = st.start(tmp_path, env_extra={"STEVIE_NATS_AUTH": "1"})
    try:
        await asyncio.to_thread(st.wait_healthy, s, 240)
        status, pos = await asyncio.to_thread(s.get, "/api/trading/positions")
        assert status == 200, pos  # gateway → execution over the bus, as the gateway user
        url = s.nats_url()
        assert await _ask_subject(url, "stevie.rpc.execution.positions") is None  # anonymous
        pw = re.search(r'user: gateway,\s+password: "(\w+)"', (tmp_path / "nats" / "auth-accounts.conf").read_text())
        assert pw is not None
        reply = await _ask_subject(url, "stevie.rpc.execution.positions", user="gateway", password=pw.group(1))
        assert reply is not None and b"positions" in reply
    finally:
        await asyncio.to_thread(st.stop, s)


async def _ask_subject(url: str, subject: str, **creds) -> bytes | None:
    nc = await nats.connect(url, max_reconnect_attempts=0, **creds)
    try:
        return (await nc.request(subject, b'{"type": "PositionsRequest"}', timeout=3.0)).data
    except (TimeoutError, NoRespondersError):
        return None
    finally:
        await nc.close()
