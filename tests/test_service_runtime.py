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
