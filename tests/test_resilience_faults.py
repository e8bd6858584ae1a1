"""Faults injected into a running ``stevie up`` (its own stack: it kills processes).

One stack, bounded in time, in order:
1. SIGKILL nats-server mid-replay: forwarded routes fail fast with 503 JSON and /api/health is
   503 with the same JSON; the supervisor reaps and restarts it (same port, same store);
   decisions resume.
2. SIGKILL the PostgreSQL postmaster: /api/audit/latest is 503 JSON meanwhile; restarted on
   the same port and data directory (stale postmaster.pid, orphaned backends); the reporter
   writes what JetStream held.
3. Then: every audit JetStream stored is in PostgreSQL (0 lost) and no decision is recorded
   twice (0 duplicated).
4. SIGKILL execution after paper fills: the restarted process shows the same positions,
   average prices, realised PnL and cash (rebuilt from PostgreSQL).
5. SIGKILL the supervisor: 2 s later no process of the stack is left (services, NATS,
   PostgreSQL and its backends).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import asyncpg
import msgspec
import nats
import pytest

from stevie.contracts.rpc import Audit
from stevie.runtime.infra import _alive
from tests.helpers import stack as st

pytestmark = pytest.mark.e2e
#: the decision path (plus control, for the flags): a lighter stack boots faster on a busy machine
PATH = ("budgeter", "venue-replay", "book-maintainer", "features", "router", "risk-guards", "execution")
ONLY = tuple(a for name in (*PATH, "reporter", "control", "gateway") for a in ("--only", name))


def stack_json(s: st.Stack) -> dict:
    return json.loads((s.state / "stack.json").read_text())


def pg_rows(url: str, sql: str) -> list[asyncpg.Record]:
    async def q() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            return await conn.fetch(sql)
        finally:
            await conn.close()

    return asyncio.run(q())


def audit_count(url: str) -> int:
    try:
        return int(pg_rows(url, "SELECT count(*) AS n FROM audits")[0]["n"])
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return -1


def stream_audit_ids(nats_url: str) -> set[str]:
    """Event ids of every audit the JetStream stream stored (an ordered consumer from the start)."""

    async def read() -> set[str]:
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            info = await js.stream_info("STEVIE_EVENTS")
            sub = await js.subscribe("stevie.audit.>", ordered_consumer=True)
            ids: set[str] = set()
            deadline = time.monotonic() + 20
            pending = info.state.messages
            seen = 0
            while seen < pending and time.monotonic() < deadline:
                try:
                    m = await sub.next_msg(timeout=1.0)
                except nats.errors.TimeoutError:
                    break
                seen += 1
                ids.add(msgspec.json.decode(m.data, type=Audit).event_id)
                if m.metadata.num_pending == 0:
                    break
            return ids
        finally:
            await nc.close()

    return asyncio.run(read())


def pids_of(s: st.Stack) -> list[int]:
    _, h = s.get("/api/health")
    pids = [v["pid"] for v in h["services"].values() if v["pid"]]
    servers = list(stack_json(s)["servers"].values())
    backends = []
    for pg in servers:
        kids = Path(f"/proc/{pg}/task/{pg}/children")
        if kids.exists():
            backends += [int(x) for x in kids.read_text().split()]
    return pids + servers + backends


def test_servers_die_and_state_survives(tmp_path):
    s = st.start(tmp_path, args=("--speed", "4", "--no-loop", *ONLY))
    try:
        st.wait_healthy(s, 150)
        db = s.database_url()
        st.wait_for(lambda: audit_count(db) >= 3, 60, "first decisions in PostgreSQL")

        # 1. NATS
        before = stack_json(s)["servers"]["nats"]
        os.kill(before, signal.SIGKILL)
        time.sleep(0.05)
        t0 = time.perf_counter()
        status, body = s.get("/api/router/snapshot")
        fast_ms = (time.perf_counter() - t0) * 1e3
        if stack_json(s)["restarts"]["nats"] == 0:  # still away: fails fast with JSON
            assert status == 503 and body["error"] in ("bus_unavailable", "service_unavailable"), body
            assert fast_ms < 1000, fast_ms
            hs, hb = s.get("/api/health")
            assert hs == 503 and hb["status"] == "degraded" and hb["nats"]["connected"] is False
            print(f"NATS away: forwarded route 503 in {fast_ms:.1f} ms, health {hs}")
        st.wait_for(lambda: stack_json(s)["restarts"]["nats"] >= 1, 20, "nats restarted")
        assert stack_json(s)["servers"]["nats"] != before
        st.wait_healthy(s, 60)
        n1 = audit_count(db)
        st.wait_for(lambda: audit_count(db) >= n1 + 2, 60, "decisions after the NATS restart")

        # 2. PostgreSQL
        pg = stack_json(s)["servers"]["postgres"]
        os.kill(pg, signal.SIGKILL)
        time.sleep(0.2)
        status, body = s.get("/api/audit/latest?limit=1")
        if stack_json(s)["restarts"]["postgres"] == 0:
            assert status == 503 and "error" in body, (status, body)
        st.wait_for(lambda: stack_json(s)["restarts"]["postgres"] >= 1, 30, "postgres restarted")
        n2 = st.wait_for(lambda: audit_count(db) if audit_count(db) >= 0 else None, 30, "database back")
        st.wait_for(lambda: audit_count(db) >= n2 + 2, 60, "decisions after the PostgreSQL restart")
        assert s.get("/api/audit/latest?limit=1")[0] == 200

        # 3. stop deciding, let the reporter catch up, compare JetStream with PostgreSQL
        token = s.token
        assert s.post("/api/flags", {"ExecutionRouter": False}, token=token)[0] == 200
        time.sleep(3)

        def settled() -> int | None:
            a = audit_count(db)
            time.sleep(1.5)
            return a if a == audit_count(db) and a > 0 else None

        st.wait_for(settled, 30, "no more audits arriving")
        rows = pg_rows(db, "SELECT event_id, venue, symbol, (body->>'ts_event_ns')::bigint AS t FROM audits")
        in_pg = {r["event_id"] for r in rows}
        in_stream = stream_audit_ids(s.nats_url())
        assert in_stream and in_stream <= in_pg, f"lost: {sorted(in_stream - in_pg)[:5]}"
        decisions = [(r["venue"], r["symbol"], r["t"]) for r in rows]
        assert len(decisions) == len(set(decisions)), "a decision was recorded twice"

        # 4. execution: paper fills, SIGKILL, same numbers after the restart
        for side, size in (("buy", 0.03), ("sell", 0.01), ("buy", 0.02)):
            code, rec = s.post("/api/trading/paper/order", {"symbol": "BTCUSDT", "side": side, "size": size})
            assert code == 200 and rec["blocked"] is False, rec
        time.sleep(1)
        _, pos_a = s.request("GET", "/api/trading/positions")
        _, h = s.get("/api/health")
        ex_pid = h["services"]["execution"]["pid"]
        os.kill(ex_pid, signal.SIGKILL)

        def restarted() -> list | None:
            code, hh = s.get("/api/health")
            if hh["services"]["execution"]["pid"] in (None, ex_pid) or not hh["services"]["execution"]["up"]:
                return None
            code, p = s.request("GET", "/api/trading/positions")
            return p if code == 200 else None

        pos_b = st.wait_for(restarted, 60, "execution back")
        key = lambda p: (p["venue"], p["symbol"])  # noqa: E731
        a = {key(p): p for p in pos_a if p["size"]}
        b = {key(p): p for p in pos_b if p["size"]}
        assert a and a.keys() == b.keys(), (pos_a, pos_b)
        for k in a:
            for f in ("size", "avgPrice", "realizedQuote"):
                assert b[k][f] == pytest.approx(a[k][f], rel=1e-9, abs=1e-9), (k, f, a[k], b[k])
        assert any(abs(p["realizedQuote"]) > 0 for p in a.values())
        print(f"audits: {len(in_pg)} in PG, {len(in_stream)} in JetStream; positions {a}")

        # 5. SIGKILL the supervisor: nothing of the stack is left 2 s later
        pids = pids_of(s)
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait(5)
        time.sleep(2.0)
        left = [p for p in pids if _alive(p)]
        assert not left, f"still running 2 s after the supervisor died: {left}"
    finally:
        if s.proc.poll() is None:
            st.stop(s)
