"""events shell: ``events.ingest`` and ``events.embeddings`` over request/reply, PostgreSQL
storage, and the per-symbol ``EventContext`` for the router context.

The clock: an event whose ``ts`` is after "now" is refused (look-ahead). "Now" is the replay
clock — the newest event time seen on the book stream (``md.book.*.*``); before the first
book arrives (or with no market data at all) it is the wall clock.

The model is built at start (≈ 0.3 s) to fit the context projection, shared by every
request, and dropped after ``model_idle_s`` without an embedding (≈ 150 MB given back; the next
ingest builds it again); embedding runs in a worker thread (onnxruntime releases the GIL), so
heartbeats keep going.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg
import msgspec
import numpy as np
import stamina
from prometheus_client import Counter, Gauge

from stevie.bus import Msg
from stevie.contracts import encode, subjects
from stevie.contracts.events import (
    EmbeddingsRequest,
    EventContext,
    EventEmbedding,
    EventEmbeddings,
    EventIngestReply,
    EventIngestRequest,
)
from stevie.contracts.rpc import RpcError
from stevie.runtime.service import ServiceContext, ServiceSpec
from stevie.services.events.core import SymbolEvents, TooManyEvents, prepare
from stevie.services.events.embedder import MiniLMEmbedder, OnDemandEmbedder
from stevie.services.events.projection import fit_default
from stevie.services.events.settings import EventsSettings
from stevie.store import connect_pool, migrate
from stevie.store.events import EventRow, insert_events, latest_events, recent_by_symbol


class _Stamp(msgspec.Struct):
    ts_event_ns: int


class EventClock:
    """max(event time seen on the book stream); the wall clock until the first one."""

    def __init__(self) -> None:
        self.last_ns = 0

    def on(self, ts_event_ns: int) -> None:
        self.last_ns = max(self.last_ns, ts_event_ns)

    def now_ns(self) -> int:
        return self.last_ns or time.time_ns()


async def main(ctx: ServiceContext) -> None:
    s = ctx.settings
    assert isinstance(s, EventsSettings)
    embedder = OnDemandEmbedder(lambda: MiniLMEmbedder(threads=s.threads), s.model_idle_s)
    fitted = await asyncio.to_thread(fit_default, embedder)
    ctx.log.info(
        "projection",
        id=fitted.projection_id,
        explained_train=round(fitted.explained_train, 3),
        explained_test=round(fitted.explained_test, 3),
    )
    retry = stamina.retry(on=(OSError, asyncpg.PostgresError), attempts=20, timeout=30.0)
    await retry(migrate)(s.database_url)
    pool = await retry(connect_pool)(s.database_url)
    state = SymbolEvents(fitted.projection, s.context_keep)
    for r in await recent_by_symbol(pool, s.context_keep):
        state.add(r.id, r.ts_ns, tuple(r.symbols), _np(r.embedding))
    clock = EventClock()
    ingested = Counter("events_ingested_total", "Events stored", registry=ctx.registry)
    dupes = Counter("events_duplicates_total", "Posted events already stored", registry=ctx.registry)
    rejected = Counter("events_rejected_total", "Ingest requests refused", ["reason"], registry=ctx.registry)
    embed_s = Gauge("events_embed_seconds_per_event", "Last batch's embedding time per event", registry=ctx.registry)
    stamp = msgspec.json.Decoder(_Stamp)

    async def on_book(msg: Msg) -> None:
        # the book owners count malformed books; a clock tick is optional
        with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
            clock.on(stamp.decode(msg.data).ts_event_ns)

    async def publish(symbol: str) -> None:
        now = clock.now_ns()
        body = EventContext(symbol, state.points(symbol), fitted.projection_id, now, time.time_ns())
        await ctx.bus.publish(subjects.events_context(s.subject_root, symbol), encode(body))

    async def ingest(req: EventIngestRequest) -> EventIngestReply | RpcError:
        try:
            prepared = prepare(req.events, clock.now_ns(), s.max_batch)
        except TooManyEvents as exc:
            rejected.labels("too_many").inc()
            return RpcError(413, "too_many_events", str(exc))
        except ValueError:
            rejected.labels("invalid").inc()
            raise
        t0 = time.perf_counter()
        vecs = await asyncio.to_thread(embedder.embed, [p.summary for p in prepared])
        embed_s.set((time.perf_counter() - t0) / len(prepared))
        rows = [
            EventRow(
                p.id, p.ts_ns, p.kind, p.title, p.summary, p.source, list(p.symbols), embedder.model_id, v.tolist()
            )
            for p, v in zip(prepared, vecs, strict=True)
        ]
        try:
            new = await insert_events(pool, rows)
        except (OSError, asyncpg.PostgresError) as exc:
            raise RuntimeError(f"the event store is unavailable: {type(exc).__name__}") from exc
        changed: set[str] = set()
        for p, v in zip(prepared, vecs, strict=True):
            changed.update(state.add(p.id, p.ts_ns, p.symbols, v))
        for sym in sorted(changed):
            await publish(sym)
        ingested.inc(new)
        dupes.inc(len(rows) - new)
        return EventIngestReply(new, len(rows) - new, [p.id for p in prepared], embedder.model_id, embedder.dim)

    async def embeddings(req: EmbeddingsRequest) -> EventEmbeddings:
        if not 1 <= req.limit <= s.max_limit:
            raise ValueError(f"limit must be in [1, {s.max_limit}], got {req.limit}")
        if req.full not in (0, 1):
            raise ValueError(f"full must be 0 or 1, got {req.full}")
        try:
            stored = await latest_events(pool, req.limit, req.symbol.upper(), s.k_nearest)
        except (OSError, asyncpg.PostgresError) as exc:
            raise RuntimeError(f"the event store is unavailable: {type(exc).__name__}") from exc
        n = None if req.full else s.preview_dims
        return EventEmbeddings(
            [
                EventEmbedding(
                    id=e.row.id,
                    ts=e.row.ts_ns // 1_000_000,
                    title=e.row.title,
                    source=e.row.source,
                    symbols=e.row.symbols,
                    dim=len(e.row.embedding),
                    vector=[round(x, 7) for x in e.row.embedding[:n]],
                    nearest=e.nearest,
                    kind=e.row.kind,
                    summary=e.row.summary,
                )
                for e in stored
            ]
        )

    await ctx.bus.subscribe(subjects.md_book(s.subject_root, "*", "*"), on_book)
    await ctx.serve_rpc("ingest", EventIngestRequest, ingest)
    await ctx.serve_rpc("embeddings", EmbeddingsRequest, embeddings)
    release = asyncio.ensure_future(_release_when_idle(embedder, s.model_idle_s, ctx))
    try:
        while True:
            await asyncio.sleep(s.republish_s)
            for sym in sorted(state.by_symbol):
                await publish(sym)
    finally:
        release.cancel()
        await pool.close()


async def _release_when_idle(embedder: OnDemandEmbedder, idle_s: float, ctx: ServiceContext) -> None:
    """Check every ``idle_s / 4`` whether the model has been idle for ``idle_s``; the freed
    pages go back to the OS at the service's next ``malloc_trim``."""
    while True:
        await asyncio.sleep(idle_s / 4)
        if await asyncio.to_thread(embedder.release_if_idle):
            ctx.log.info("model_released", idle_s=idle_s, loads=embedder.loads)


def _np(v: list[float]) -> np.ndarray:
    return np.asarray(v, dtype=np.float32)


SPEC = ServiceSpec("events", EventsSettings, main, nice=10)  # background: yields the cores to the decision path
