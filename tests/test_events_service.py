"""The events service over a bus (InMemoryBus) with real PostgreSQL + pgvector and the real
model: ingest, bad input, the replay clock, embeddings with nearest neighbours, and the
EventContext it publishes for the router."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import msgspec
import numpy as np
import pytest

from stevie.bus import InMemoryBus, Msg
from stevie.contracts import subjects
from stevie.contracts.events import EventContext
from stevie.runtime.clock import LiveClock
from stevie.runtime.logs import get_logger
from stevie.runtime.metrics import new_registry
from stevie.runtime.service import ServiceContext
from stevie.services.events.settings import EventsSettings
from stevie.services.events.shell import main

pytestmark = pytest.mark.integration


async def _ask(bus: InMemoryBus, root: str, method: str, body: object) -> dict:
    msg = await bus.request(subjects.rpc(root, "events", method), msgspec.json.encode(body), timeout_s=30)
    return msgspec.json.decode(msg.data)


async def test_ingest_embeddings_context(pg_server, subject_root):
    bus = InMemoryBus()
    s = EventsSettings(subject_root=subject_root, database_url=pg_server.url, republish_s=0.2, max_batch=50)
    ctx = ServiceContext("events", s, bus, new_registry(), LiveClock(), get_logger(service="events"), 0)
    contexts: list[EventContext] = []
    sym = f"T{uuid.uuid4().hex[:6].upper()}USDT"

    async def on_ctx(m: Msg) -> None:
        contexts.append(msgspec.json.decode(m.data, type=EventContext))

    await bus.subscribe(subjects.events_context(subject_root, sym), on_ctx)
    task = asyncio.create_task(main(ctx))
    try:
        for _ in range(200):  # model + migrations
            with contextlib.suppress(TimeoutError):
                await bus.request(
                    subjects.rpc(subject_root, "events", "embeddings"), b'{"type":"EmbeddingsRequest"}', 0.2
                )
                break
            await asyncio.sleep(0.1)
        # the replay clock: a book at 2025-06-20 makes that "now"
        now_ns = 1_750_377_600_000_000_000
        await bus.publish(subjects.md_book(subject_root, "binance", sym), encode_stamp(now_ns))
        evs = [
            {"ts": "2025-06-18T18:00:00Z", "title": "Fed holds rates steady", "source": "test", "symbols": [sym]},
            {
                "ts": "2025-06-19T09:00:00Z",
                "title": "Crypto exchange hacked, hot wallet drained",
                "source": "test",
                "symbols": [sym],
                "body": "Funds were moved. Withdrawals are paused.",
            },
            {
                "ts": "2025-06-19T12:00:00Z",
                "title": "Federal Reserve keeps interest rates unchanged",
                "source": "test",
                "symbols": [sym],
            },
        ]
        r = await _ask(bus, subject_root, "ingest", {"type": "EventIngestRequest", "events": evs})
        assert r["ingested"] == 3 and r["duplicates"] == 0 and r["dim"] == 384 and len(r["ids"]) == 3
        again = await _ask(bus, subject_root, "ingest", {"type": "EventIngestRequest", "events": evs[:1]})
        assert again["ingested"] == 0 and again["duplicates"] == 1 and again["ids"] == r["ids"][:1]

        future = {"ts": "2025-06-21T00:00:00Z", "title": "later", "source": "test"}
        bad = await _ask(bus, subject_root, "ingest", {"type": "EventIngestRequest", "events": [future]})
        assert bad["status"] == 400 and "future" in bad["detail"]
        empty = await _ask(
            bus, subject_root, "ingest", {"type": "EventIngestRequest", "events": [{**future, "title": ""}]}
        )
        assert empty["status"] == 400 and "title is empty" in empty["detail"]
        many = await _ask(bus, subject_root, "ingest", {"type": "EventIngestRequest", "events": [evs[0]] * 10_000})
        assert many["status"] == 413 and "at most 50" in many["detail"]

        out = await _ask(bus, subject_root, "embeddings", {"type": "EmbeddingsRequest", "symbol": sym, "full": 1})
        got = out["embeddings"]
        assert [e["id"] for e in got] == list(reversed(r["ids"]))
        assert all(e["dim"] == 384 and len(e["vector"]) == 384 for e in got)
        assert abs(float(np.linalg.norm(got[0]["vector"])) - 1) < 1e-5
        # the second Fed headline's nearest earlier event is the first Fed headline, not the hack
        assert got[0]["nearest"][0] == r["ids"][0]
        assert got[1]["summary"] == "Crypto exchange hacked, hot wallet drained. Funds were moved."
        short = await _ask(bus, subject_root, "embeddings", {"type": "EmbeddingsRequest", "symbol": sym})
        assert len(short["embeddings"][0]["vector"]) == s.preview_dims
        lim = await _ask(bus, subject_root, "embeddings", {"type": "EmbeddingsRequest", "limit": 0})
        assert lim["status"] == 400

        for _ in range(50):
            if contexts and len(contexts[-1].points) == 3:
                break
            await asyncio.sleep(0.05)
        c = contexts[-1]
        assert [p.event_id for p in c.points] == r["ids"] and all(len(p.dims) == 4 for p in c.points)
        assert c.projection.startswith("pca4-")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def encode_stamp(ts_event_ns: int) -> bytes:
    return msgspec.json.encode({"type": "BookTopK", "ts_event_ns": ts_event_ns})
