"""Reporter: the same durable event delivered twice is written once (real PostgreSQL)."""

from __future__ import annotations

import asyncio

import pytest

from stevie.bus import InMemoryBus, Msg
from stevie.contracts import encode
from stevie.contracts.rpc import ExecutionRecord
from stevie.services.reporter.core import decode_event
from stevie.store import connect_pool, insert_execution, migrate

pytestmark = pytest.mark.integration


async def test_redelivered_event_is_written_once(pg_server):
    await migrate(pg_server.url)
    pool = await connect_pool(pg_server.url)
    rec = ExecutionRecord(
        eventId="evt-dup-1",
        symbol="BTCUSDT",
        venue="binance",
        policyId="p_flat",
        requestedSize=1.0,
        finalSize=1.0,
        fillPrice=100.0,
        ts=1_723_161_300_000,
    )
    bus = InMemoryBus()
    writes: list[bool] = []

    async def handle(msg: Msg) -> bool:
        event = decode_event(msg.data)
        assert isinstance(event, ExecutionRecord)
        writes.append(await insert_execution(pool, event))
        return True

    task = asyncio.ensure_future(bus.consume_durable("S", "reporter", "stevie.exec.>", handle))
    await asyncio.sleep(0)
    data = encode(rec)
    # the same event twice on the wire (a producer retry with a new msg id, then a redelivery)
    await bus.publish_durable("stevie.exec.record.binance.BTCUSDT", data, "a")
    await bus.publish_durable("stevie.exec.record.binance.BTCUSDT", data, "b")
    await bus.publish_durable("stevie.exec.record.binance.BTCUSDT", data, "a")  # deduplicated by msg id
    task.cancel()
    assert writes == [True, False]
    assert await pool.fetchval("SELECT count(*) FROM executions WHERE event_id='evt-dup-1'") == 1
    await pool.close()
