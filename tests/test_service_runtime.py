"""Service runtime over the in-memory bus: typed subscriptions dead-letter bad input; RPC
endpoints answer typed errors (400/404/503) instead of crashing."""

from __future__ import annotations

import msgspec
import pytest
from prometheus_client import Counter

from stevie.bus import InMemoryBus, Msg
from stevie.contracts import BookState, BookStatus, encode, subjects
from stevie.contracts.rpc import RpcError, SmileRequest
from stevie.runtime.clock import LiveClock
from stevie.runtime.logs import get_logger
from stevie.runtime.metrics import new_registry
from stevie.runtime.service import ServiceContext
from stevie.runtime.settings import CommonSettings


def ctx(bus):
    return ServiceContext(
        "svc", CommonSettings(subject_root="t"), bus, new_registry(), LiveClock(), get_logger(service="svc"), 0
    )


async def test_bad_message_is_counted_and_dead_lettered():
    bus = InMemoryBus()
    c = ctx(bus)
    got, dead = [], []
    counter = Counter("t_dlq_total", "x", registry=c.registry)

    async def on_dead(m: Msg) -> None:
        dead.append(m)

    await bus.subscribe(subjects.dlq("t", "svc"), on_dead)
    await c.subscribe_typed("t.md.status.v.S", BookStatus, got.append, counter)
    ok = BookStatus(
        venue="v", symbol="S", state=BookState.LIVE, reason="live", seq=1, resyncs=0, ts_event_ns=1, ts_init_ns=1
    )
    await bus.publish("t.md.status.v.S", encode(ok))
    await bus.publish("t.md.status.v.S", b'{"type":"BookStatus","venue":1}')
    assert got == [ok]
    assert counter._value.get() == 1
    assert dead[0].data == b'{"type":"BookStatus","venue":1}' and dead[0].headers["Stevie-Subject"] == "t.md.status.v.S"


@pytest.mark.parametrize(
    ("exc", "status"), [(KeyError("BTC"), 404), (ValueError("bad"), 400), (RuntimeError("not fitted"), 503)]
)
async def test_rpc_errors_map_to_statuses(exc, status):
    bus = InMemoryBus()
    c = ctx(bus)

    def handler(req: SmileRequest) -> SmileRequest:
        raise exc

    await c.serve_rpc("smile", SmileRequest, handler)
    reply = await bus.request(subjects.rpc("t", "svc", "smile"), encode(SmileRequest("BTC")))
    err = msgspec.json.decode(reply.data, type=RpcError)
    assert err.status == status
    bad = await bus.request(subjects.rpc("t", "svc", "smile"), b"{not json")
    assert msgspec.json.decode(bad.data, type=RpcError).status == 400


#: the services a clock decision waits on, and the API: they keep the default niceness
PATH_SERVICES = ("book-maintainer", "features", "execution", "router", "green-router", "risk-guards")


def test_background_services_run_niced_and_the_decision_path_does_not():
    import subprocess
    import sys

    from stevie.runtime.registry import SERVICES, load_spec
    from stevie.runtime.service import apply_nice
    from stevie.runtime.settings import SettingsError

    nice = {name: load_spec(name).nice for name in SERVICES}
    assert all(nice[n] == 0 for n in (*PATH_SERVICES, "venues", "gateway")), nice
    assert all(nice[n] >= 5 for n in ("evidence", "adaptive", "events", "venue-replay")), nice
    # applied to the process itself (a child: the test process keeps its niceness)
    code = "import os; from stevie.runtime.service import apply_nice; print(apply_nice(7), os.getpriority(0, 0))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["7", "7"]
    with pytest.raises(ValueError, match=r"0\.\.19"):
        apply_nice(20)
    with pytest.raises(SettingsError, match="NICE"):
        CommonSettings(nice=-1)
    with pytest.raises(SettingsError, match="EVENT_LOOP"):
        CommonSettings(event_loop="trio")
