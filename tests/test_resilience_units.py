"""Resilience pieces on their own: input limits, exposure from fills, the router's decision
count, the stale postmaster.pid rule, the bus while its NATS server is away (real
nats-server: publishes buffered then drop-counted, requests failing fast, durable publishes
retried by message id), the supervisor's server keeper (reaps and restarts on the same port
and store), and a service stopping within 1 s of SIGTERM with NATS gone."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from stevie.bus.nats_bus import BusDisconnected, NatsBus
from stevie.contracts.rpc import RouterContext
from stevie.runtime import infra
from stevie.runtime.infra import NatsServer, clear_stale_pidfile
from stevie.runtime.supervisor import ServerKeeper
from stevie.services.execution.core import Position
from stevie.services.gateway.resilience import MAX_JSON_DEPTH, bad_number, check_body, json_depth
from stevie.services.router.core import Router
from stevie.store.state import FilledTrade, exposure


def test_json_depth_ignores_brackets_in_strings():
    assert json_depth(b'{"a": [1, [2, {"b": 3}]]}') == 4
    deep = b"[" * 40 + b"]" * 40
    assert json_depth(deep) == 40
    assert json_depth(b'{"s": "' + b"[" * 100 + b'"}') == 1
    assert json_depth(b'{"s": "\\"' + b"[" * 100 + b'"}') == 1  # escaped quote stays in the string
    assert check_body(deep)[0] == "too_deep"
    assert check_body(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) is None
    assert check_body(b'{"x": "\xff"}')[0] == "bad_encoding"
    assert check_body(b'{"symbol": "BTC\\u0000"}')[0] == "bad_character"


def test_bad_number_finds_the_place():
    assert bad_number({"a": [1, 2.5, {"b": -3}], "s": "1e999", "t": True}) is None
    assert bad_number({"a": [1, {"b": float("inf")}]}) == "$.a[1].b"
    assert bad_number({"size": 10**30}) == "$.size"
    assert bad_number({"ts_ns": 1_800_000_000_000_000_000}) is None  # ns timestamps are fine


def test_exposure_and_replayed_accounting_from_fills():
    trades = [
        FilledTrade("1", "binance", "BTCUSDT", 1, 0.3, 100.0, 0.03, 0.3, 1),
        FilledTrade("2", "binance-usdm", "BTCUSDT", -1, 0.1, 101.0, 0.01, -0.1, 2),
        FilledTrade("3", "binance", "BTCUSDT", -1, 0.1, 110.0, 0.011, 0.2, 3),
        FilledTrade("4", "binance", "ETHUSDT", 1, 2.0, 10.0, 0.02, 2.0, 4),
    ]
    per_symbol, gross = exposure(trades)
    assert per_symbol == {"BTCUSDT": pytest.approx(0.2 * 110.0), "ETHUSDT": pytest.approx(20.0)}
    assert gross == pytest.approx(0.2 * 110 + 0.1 * 101 + 20.0)
    pos = Position()
    for t in trades[::2]:
        pos.apply(t.side, t.filled, t.avg_price)
    assert pos.size == pytest.approx(0.2) and pos.avg_price == 100.0 and pos.realized == pytest.approx(1.0)


def test_router_what_if_choices_are_not_decisions():
    r = Router(seed=1, lam=1.0, v=0.5, mc=200)
    r.choose(RouterContext(obi=0.1), 1, decision=False)
    assert r.snapshot(2).decisions == 0 and r.snapshot(2).decisionsLastMin == 0
    c = r.choose(RouterContext(obi=0.1), 3)
    snap = r.snapshot(4)
    assert snap.decisions == 1 and snap.decisionsLastMin == 1 and snap.lastChoice == c


def test_cluster_start_survives_a_port_taken_after_the_pick(tmp_path, monkeypatch):
    """A node whose port a stranger took exits before listening: a new attempt on new
    ports still forms a healthy cluster, and the first attempt's nodes are stopped."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))  # bound, not listening: the node's bind fails, a probe is refused
    real, calls = infra.free_ports, []

    def first_with_a_taken_port(n):
        calls.append(n)
        ports = real(n)
        if len(calls) == 1:
            ports[3] = taken.getsockname()[1]  # node 1's client port
        return ports

    monkeypatch.setattr(infra, "free_ports", first_with_a_taken_port)
    try:
        nodes = infra.start_nats_cluster(tmp_path, n=3, timeout_s=20)
        try:
            assert len(calls) == 2 and all(node.alive() for node in nodes)
        finally:
            for node in nodes:
                node.stop()
    finally:
        taken.close()


def test_stale_pidfile_rule(tmp_path):
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    (pgdata / "postmaster.pid").write_text(f"{os.getpid()}\n{pgdata}\n")  # alive, but not postgres
    assert clear_stale_pidfile(pgdata) and not (pgdata / "postmaster.pid").exists()
    zombie = subprocess.Popen(["true"])
    time.sleep(0.2)  # exited, not reaped: a zombie, as a killed postmaster we have not waited for
    (pgdata / "postmaster.pid").write_text(f"{zombie.pid}\n")
    assert clear_stale_pidfile(pgdata)
    zombie.wait()
    assert not clear_stale_pidfile(pgdata)  # no file: nothing to do


@pytest.mark.integration
async def test_bus_while_nats_is_away(tmp_path):
    server = NatsServer.start(tmp_path / "nats")
    bus = await NatsBus.connect(server.url, name="t", pending_bytes=64 * 1024)
    drops: list[str] = []
    bus.on_drop = drops.append
    try:
        await bus.ensure_stream("T", ["t.durable.>"])
        assert await bus.publish_durable("t.durable.a", b"1", "id-1")
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
        for _ in range(50):
            if not bus.connected:
                break
            await asyncio.sleep(0.05)
        assert not bus.connected
        for _ in range(200):  # 200 kB > the 64 kB buffer: never raises, drops are counted
            await bus.publish("t.core", b"x" * 1000)
        assert bus.dropped > 0 and len(drops) == bus.dropped
        t0 = time.perf_counter()
        with pytest.raises(BusDisconnected):
            await bus.request("t.rpc", b"{}", timeout_s=5.0)
        assert time.perf_counter() - t0 < 0.2
        bus.durable_retry_s = 20
        pending = asyncio.ensure_future(bus.publish_durable("t.durable.b", b"2", "id-2"))
        await asyncio.sleep(0.5)
        server.restart()  # same port, same store
        assert await asyncio.wait_for(pending, 20)  # stored once NATS is back
        assert not await bus.publish_durable("t.durable.b", b"2", "id-2")  # a re-send is a duplicate
        info = await bus.js.stream_info("T")
        assert info.state.messages == 2  # the one from before the kill survived on disk
    finally:
        await bus.close()
        server.stop()


@pytest.mark.integration
async def test_server_keeper_reaps_and_restarts_on_the_same_port(tmp_path):
    server = NatsServer.start(tmp_path / "nats")
    port, changes = server.port, []
    keeper = ServerKeeper("nats", server, lambda: changes.append(1))
    stopping = asyncio.Event()
    task = asyncio.ensure_future(keeper.run(stopping))
    try:
        old = server.proc.pid
        os.kill(old, signal.SIGKILL)
        for _ in range(100):
            if keeper.restarts:
                break
            await asyncio.sleep(0.05)
        assert keeper.restarts == 1 and changes == [1]
        assert server.proc.pid != old and server.port == port and server.alive()
        assert not os.path.exists(f"/proc/{old}")  # reaped, no <defunct> left
    finally:
        stopping.set()
        await task
        server.stop()


@pytest.mark.integration
def test_service_stops_within_one_second_of_sigterm_with_nats_gone(tmp_path):
    server = NatsServer.start(tmp_path / "nats")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEVIE_")}
    env.update({"STEVIE_NATS_URL": server.url, "STEVIE_LOG_LEVEL": "warning", "STEVIE_DATABASE_URL": ""})
    proc = subprocess.Popen([sys.executable, "-m", "stevie.runtime.cli", "run", "budgeter"], env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:  # wait until it is connected
            with urllib.request.urlopen(f"http://127.0.0.1:{server.monitor_port}/connz", timeout=2) as r:
                if json.loads(r.read())["num_connections"] >= 1:
                    break
            time.sleep(0.2)
        time.sleep(0.5)
        assert proc.poll() is None
        server.stop()  # NATS gone: the drain cannot finish
        time.sleep(0.5)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(5)
        assert time.monotonic() - t0 < 1.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_partition_symbols_skip_other_symbols():
    from stevie.bus import InMemoryBus
    from stevie.contracts import BookState, BookStatus, encode
    from stevie.runtime.clock import LiveClock
    from stevie.runtime.logs import get_logger
    from stevie.runtime.metrics import new_registry
    from stevie.runtime.service import ServiceContext
    from stevie.runtime.settings import CommonSettings

    bus = InMemoryBus()
    settings = CommonSettings(subject_root="t", partition_symbols=["btcusdt"])
    ctx = ServiceContext("svc", settings, bus, new_registry(), LiveClock(), get_logger(service="svc"), 0)
    got: list[BookStatus] = []
    await ctx.subscribe_typed("t.md.status.*.*", BookStatus, got.append, object())
    for sym in ("BTCUSDT", "ETHUSDT"):
        st = BookStatus(
            venue="v", symbol=sym, state=BookState.LIVE, reason="live", seq=1, resyncs=0, ts_event_ns=1, ts_init_ns=1
        )
        await bus.publish(f"t.md.status.v.{sym}", encode(st))
    assert [g.symbol for g in got] == ["BTCUSDT"]


def test_histogram_quantiles_from_two_scrapes():
    from stevie.runtime.stackbench import histogram, quantile

    def text(c1: float, c2: float, c3: float) -> str:
        rows = [("0.001", c1), ("0.01", c2), ("+Inf", c3)]
        return "\n".join(f'exec_tick_to_decision_seconds_bucket{{le="{le}",venue="v"}} {c}' for le, c in rows)

    before = histogram(text(10, 10, 10))
    after = histogram(text(10, 100, 110) + "\n" + text(0, 0, 0).replace("exec_tick", "other"))
    q, n = quantile(before, after, 0.5)  # 100 new samples: 90 in (1 ms, 10 ms], 10 above
    assert n == 100 and q == pytest.approx(0.001 + 0.009 * 50 / 90)
    assert quantile(after, after, 0.99) == (pytest.approx(float("nan"), nan_ok=True), 0)


@pytest.mark.integration
def test_postgres_leftovers_are_found_and_only_them(pg_server):
    from stevie.runtime.infra import leftovers

    procs = leftovers(pg_server.pgdata)
    assert pg_server.proc.pid in procs and len(procs) >= 3  # postmaster + its background processes
    assert leftovers(pg_server.pgdata, b"nats-server") == []
    assert leftovers(pg_server.data_dir) == []  # another directory: none


@pytest.mark.integration
async def test_postgres_killed_with_a_client_restarts_on_the_same_port_and_data(tmp_path):
    import asyncpg

    from stevie.runtime.infra import PostgresServer, leftovers

    pg = PostgresServer.start(tmp_path / "pg")
    try:
        conn = await asyncpg.connect(pg.url)
        await conn.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (42)")
        port, old = pg.port, pg.proc.pid
        os.kill(old, signal.SIGKILL)
        pg.proc.wait()
        await asyncio.to_thread(pg.restart)  # orphaned backends killed, stale postmaster.pid removed
        assert pg.port == port and pg.proc.pid != old and old not in leftovers(pg.pgdata)
        conn2 = await asyncpg.connect(pg.url)
        assert await conn2.fetchval("SELECT x FROM t") == 42
        await conn2.close()
        conn.terminate()
    finally:
        pg.stop()
