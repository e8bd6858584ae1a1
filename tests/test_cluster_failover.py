"""Scale-out on NATS itself: the stack runs against a 3-node JetStream cluster of local
nats-server processes (loopback); the durable stream gets 3 replicas. The node execution is
connected to is SIGKILLed mid-replay: clients move to the other nodes, the stream keeps its
leader (or elects one), decisions continue, and every audit JetStream stored is in
PostgreSQL exactly once (0 lost, 0 duplicated)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request

import nats
import pytest

from stevie.runtime.infra import start_nats_cluster
from tests.helpers import stack as st
from tests.test_resilience_faults import ONLY, audit_count, pg_rows, stream_audit_ids

pytestmark = pytest.mark.e2e


def replicas(url: str) -> int:
    async def q() -> int:
        nc = await nats.connect(url.split(","))
        try:
            return int((await nc.jetstream().stream_info("STEVIE_EVENTS")).config.num_replicas or 1)
        finally:
            await nc.close()

    return asyncio.run(q())


def node_of(nodes, client: str):
    """The node whose monitoring /connz lists a connection named ``client``."""
    for node in nodes:
        if not node.alive():
            continue
        with urllib.request.urlopen(f"http://127.0.0.1:{node.monitor_port}/connz?limit=1024", timeout=2) as r:
            if any(c.get("name") == client for c in json.loads(r.read())["connections"]):
                return node
    return None


def test_stack_survives_losing_the_node_execution_uses(tmp_path):
    nodes = start_nats_cluster(tmp_path / "nats")
    url = ",".join(n.url for n in nodes)
    (tmp_path / "stack").mkdir()
    s = st.start(tmp_path / "stack", env_extra={"STEVIE_NATS_URL": url}, args=("--speed", "4", "--no-loop", *ONLY))
    try:
        st.wait_healthy(s, 150)
        db = s.database_url()
        st.wait_for(lambda: audit_count(db) >= 3, 60, "first decisions")
        assert replicas(url) == 3
        victim = st.wait_for(lambda: node_of(nodes, "execution"), 10, "execution's node")
        survivors = [n for n in nodes if n is not victim]
        os.kill(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait()
        n0 = audit_count(db)
        st.wait_for(lambda: audit_count(db) >= n0 + 3, 60, "decisions after the node was lost")
        assert node_of(survivors, "execution") is not None

        assert s.post("/api/flags", {"ExecutionRouter": False}, token=s.token)[0] == 200
        time.sleep(3)

        def settled() -> int | None:
            a = audit_count(db)
            time.sleep(1.5)
            return a if a == audit_count(db) and a > 0 else None

        st.wait_for(settled, 30, "no more audits arriving")
        rows = pg_rows(db, "SELECT event_id, venue, symbol, (body->>'ts_event_ns')::bigint AS t FROM audits")
        in_pg = {r["event_id"] for r in rows}
        in_stream = stream_audit_ids(survivors[0].url)
        assert in_stream and in_stream <= in_pg, f"lost: {sorted(in_stream - in_pg)[:5]}"
        decisions = [(r["venue"], r["symbol"], r["t"]) for r in rows]
        assert len(decisions) == len(set(decisions)), "a decision was recorded twice"
        print(f"cluster: {len(in_stream)} audits on the R3 stream, {len(in_pg)} in PostgreSQL")
    finally:
        st.stop(s)
        for n in nodes:
            n.stop()
