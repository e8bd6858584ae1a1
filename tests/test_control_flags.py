"""Feature flags: env defaults, validation (unknown flag / wrong type → 400), overrides stored
in PostgreSQL with an audit row per change (who, when, old, new), pushed to a running
service's FlagsClient without restart; data-quality stats from metrics expositions."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest

from stevie.bus import InMemoryBus
from stevie.contracts import encode, subjects
from stevie.contracts.ops import FlagsSetRequest, FlagsState
from stevie.contracts.rpc import RpcError
from stevie.runtime import flags as fl
from stevie.runtime.clock import LiveClock
from stevie.runtime.logs import get_logger
from stevie.runtime.metrics import new_registry
from stevie.runtime.service import ServiceContext
from stevie.services.control.core import dq_sources
from stevie.services.control.settings import ControlSettings
from stevie.services.control.shell import Control


def _ctx(bus, name="control", root="t"):
    s = ControlSettings(subject_root=root)
    return ServiceContext(name, s, bus, new_registry(), LiveClock(), get_logger(service=name), 0)


def test_env_defaults_and_validation():
    d = fl.defaults({"STEVIE_FLAG_EXECUTION_ROUTER": "false", "STEVIE_FLAG_DATA_QUALITY": "relaxed"})
    assert d["ExecutionRouter"] == (False, "env") and d["DataQuality"] == ("relaxed", "env")
    assert d["BOCPD"] == (True, "default")
    with pytest.raises(ValueError):
        fl.defaults({"STEVIE_FLAG_BOCPD": "maybe"})
    book = fl.FlagBook(d)
    for bad in ({"Nope": True}, {"ExecutionRouter": "false"}, {"ExecutionRouter": 1}, {"DataQuality": True}, {}):
        with pytest.raises(ValueError):
            book.apply(bad, "op", 0)
    with pytest.raises(ValueError):  # all or nothing: the good half is not applied either
        book.apply({"BOCPD": False, "Nope": 1}, "op", 0)
    assert book.value("BOCPD") is True
    ch = book.apply({"ExecutionRouter": True}, "abc123", 42)
    assert [(c.name, c.old, c.new, c.actor, c.at_ms) for c in ch] == [("ExecutionRouter", False, True, "abc123", 42)]
    v = book.state().flags["ExecutionRouter"]
    assert (v.source, v.changedBy, v.changedAtMs, v.previous, v.default) == ("override", "abc123", 42, False, False)
    book.apply({"ExecutionRouter": None}, "abc123", 43)  # remove the override
    assert book.state().flags["ExecutionRouter"].source == "env"


async def test_flags_push_reaches_a_running_client_within_a_second():
    bus = InMemoryBus()
    control = Control(_ctx(bus), ControlSettings(subject_root="t"), None)
    cctx = _ctx(bus)
    await cctx.serve_rpc("flags_set", FlagsSetRequest, control.flags_set)
    await cctx.serve_rpc("flags_get", fl.FlagsGetRequest, control.flags_get)
    client = fl.FlagsClient(_ctx(bus, "execution"), environ={})
    seen = []
    client.on_change(lambda n, old, new: seen.append((n, old, new)))
    await client.start()
    assert client.enabled("ExecutionRouter")
    t0 = time.monotonic()
    reply = await bus.request(
        subjects.rpc("t", "control", "flags_set"), encode(FlagsSetRequest({"ExecutionRouter": False}, "tok1"))
    )
    state = msgspec.json.decode(reply.data, type=FlagsState)
    assert state.values["ExecutionRouter"] is False and state.flags["ExecutionRouter"].changedBy == "tok1"
    while client.enabled("ExecutionRouter") and time.monotonic() - t0 < 1.0:
        await asyncio.sleep(0.01)
    assert not client.enabled("ExecutionRouter") and seen == [("ExecutionRouter", True, False)]
    bad = await bus.request(subjects.rpc("t", "control", "flags_set"), encode(FlagsSetRequest({"Bogus": True})))
    assert msgspec.json.decode(bad.data, type=RpcError).status == 400
    # a client started later gets the current values from flags_get
    late = fl.FlagsClient(_ctx(bus, "router"), environ={})
    await late.start()
    assert late.get("ExecutionRouter") is False


@pytest.mark.integration
async def test_overrides_are_stored_audited_and_reloaded(pg_server):
    from stevie.store import connect_pool, migrate

    await migrate(pg_server.url)
    pool = await connect_pool(pg_server.url)
    try:
        await pool.execute("DELETE FROM flag_overrides; DELETE FROM ops_audit WHERE kind = 'flag'")
        bus = InMemoryBus()
        c = Control(_ctx(bus), ControlSettings(subject_root="t"), pool)
        await c.flags_set(FlagsSetRequest({"ExecutionRouter": False, "DataQuality": "relaxed"}, "tokA"))
        await c.flags_set(FlagsSetRequest({"ExecutionRouter": True}, "tokB"))
        rows = await pool.fetch("SELECT subject, old_value, new_value, actor, ts FROM ops_audit ORDER BY id")
        got = [(r["subject"], r["old_value"], r["new_value"], r["actor"]) for r in rows]
        assert got == [
            ("ExecutionRouter", "true", "false", "tokA"),
            ("DataQuality", '"strict"', '"relaxed"', "tokA"),
            ("ExecutionRouter", "false", "true", "tokB"),
        ]
        assert all(r["ts"] is not None for r in rows)
        again = Control(_ctx(bus), ControlSettings(subject_root="t"), pool)  # a restarted control
        await again.load()
        st = again.book.state()
        assert st.values["DataQuality"] == "relaxed" and st.flags["ExecutionRouter"].changedBy == "tokB"
        assert st.flags["ExecutionRouter"].source == "override"
    finally:
        await pool.close()


def test_dq_stats_sum_over_services():
    a = (
        'data_quality_checked_total{source="vol_history"} 1000.0\n'
        'data_quality_flagged_total{source="vol_history",reason="spike",action="quarantined"} 2.0\n'
        'data_quality_replaced_total{source="vol_history",reason="spike"} 1.0\n'
    )
    b = (
        'data_quality_checked_total{source="l2"} 50.0\n'
        'data_quality_flagged_total{source="l2",reason="size_spike",action="counted"} 3.0\n'
        'l2_resyncs_total{venue="binance",symbol="BTCUSDT",reason="gap"} 2.0\n'
        'l2_resyncs_total{venue="binance-usdm",symbol="BTCUSDT",reason="gap"} 1.0\n'
    )
    sources, resyncs = dq_sources([a, b, "garbage {"])
    assert sources["vol_history"].checked == 1000 and sources["vol_history"].reasons["spike"].quarantined == 2
    assert sources["vol_history"].reasons["spike"].replaced == 1
    assert sources["l2"].reasons["size_spike"].counted == 3 and resyncs == {"gap": 3.0}
