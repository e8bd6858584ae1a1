"""The features service's feature-store writer: off the bus hot path, bounded, counted.

``offer`` (called by the bus handler) never waits: it puts the vector on a bounded queue, or
drops it and counts ``features_store_dropped_total`` when the queue is full. ``run`` takes up
to ``batch_size`` vectors (waiting at most ``flush_s`` for a partial batch) and writes them
with ``stevie.store.features.put_features`` — one transaction per batch, idempotent. A failed
write is retried once after a second, then dropped and counted (features are re-derivable;
PostgreSQL outages must not grow memory). A dropped vector leaves a gap in its epoch's
lineage, so the parity check compares that epoch only up to the gap.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge
from structlog.typing import FilteringBoundLogger

from stevie.contracts import MicroFeatures
from stevie.contracts.featstore import FEATURES, FeatureSample, FeatureValue
from stevie.store.features import put_features

Item = tuple[MicroFeatures, FeatureSample]


def rows_of(f: MicroFeatures) -> list[FeatureValue]:
    """The stored rows of one published vector: one per name in ``FEATURES``."""
    return [
        FeatureValue(feature=name, venue=f.venue, symbol=f.symbol, ts_event_ns=f.ts_event_ns, value=getattr(f, name))
        for name in FEATURES
    ]


class FeatureWriter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        queue_size: int,
        batch_size: int,
        flush_s: float,
        registry: CollectorRegistry,
        log: FilteringBoundLogger,
    ) -> None:
        self.pool, self.batch_size, self.flush_s, self.log = pool, batch_size, flush_s, log
        self.queue: asyncio.Queue[Item] = asyncio.Queue(queue_size)
        self.written = Counter("features_store_written_total", "Feature values written to the store", registry=registry)
        self.dropped = Counter(
            "features_store_dropped_total", "Feature vectors not stored", ["reason"], registry=registry
        )
        self.backlog = Gauge("features_store_backlog", "Feature vectors queued for the store", registry=registry)
        for reason in ("queue_full", "db_error"):
            self.dropped.labels(reason)

    def offer(self, f: MicroFeatures, sample: FeatureSample) -> None:
        """Queue one vector for the store; never blocks (a full queue drops and counts it)."""
        try:
            self.queue.put_nowait((f, sample))
        except asyncio.QueueFull:
            self.dropped.labels("queue_full").inc()

    async def _batch(self) -> list[Item]:
        items = [await self.queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.flush_s
        while len(items) < self.batch_size:
            if self.queue.empty():
                left = deadline - loop.time()
                if left <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    items.append(await asyncio.wait_for(self.queue.get(), left))
                continue
            items.append(self.queue.get_nowait())
        return items

    async def write(self, items: list[Item]) -> None:
        """Write one batch (retried once); drops and counts it if the database keeps failing."""
        values = [v for f, _ in items for v in rows_of(f)]
        samples = [s for _, s in items]
        for attempt in (1, 2):
            try:
                n, _ = await put_features(self.pool, values, samples)
                self.written.inc(n)
                return
            except (OSError, asyncpg.PostgresError) as exc:
                self.log.warning("feature_store_write_failed", attempt=attempt, rows=len(values), error=str(exc)[:200])
                if attempt == 1:
                    await asyncio.sleep(1.0)
        self.dropped.labels("db_error").inc(len(items))

    async def run(self) -> None:
        while True:
            items = await self._batch()
            self.backlog.set(self.queue.qsize())
            await self.write(items)
