"""features shell: subscribe to books, trades and statuses; publish MicroFeatures; store
every published vector (off the hot path, ``writer.FeatureWriter``); answer ``features.parity``."""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import asyncpg
import stamina
from prometheus_client import Counter

from stevie.contracts import BookStatus, BookTopK, Trade, encode, subjects
from stevie.contracts.featstore import FeatureSample, ParityReport, ParityRequest
from stevie.quant.kernels import load as load_kernels
from stevie.runtime.service import ServiceContext, ServiceSpec
from stevie.services.features import offline
from stevie.services.features.core import Features
from stevie.services.features.settings import FeaturesSettings
from stevie.services.features.writer import FeatureWriter
from stevie.store import connect_pool, migrate
from stevie.store.features import get_samples, get_vectors, stored_keys

T = TypeVar("T")
PARITY_WAIT_S = 6.0  # below the gateway's 10 s request timeout
GIL_SWITCH_S = 0.0005


async def main(ctx: ServiceContext) -> None:
    s = ctx.settings
    assert isinstance(s, FeaturesSettings)
    # the offline recomputation runs in threads; the event loop (books in, features out: the
    # tick → decision path) gets the GIL back within 0.5 ms instead of the default 5 ms
    sys.setswitchinterval(GIL_SWITCH_S)
    kernels = load_kernels(s.kernels)
    ctx.backend = kernels.BACKEND
    window_ns = int(s.window_s * 1e9)
    core = Features(s.obi_levels, window_ns, ctx.clock.now_ns, kernels, run_id=f"{time.time_ns()}-{os.getpid()}")
    pool: asyncpg.Pool | None = None
    writer: FeatureWriter | None = None
    if s.database_url:
        retry = stamina.retry(on=(OSError, asyncpg.PostgresError), attempts=20, timeout=30.0)
        await retry(migrate)(s.database_url)
        pool = await retry(connect_pool)(s.database_url)
    if pool is not None and s.store:
        writer = FeatureWriter(pool, s.store_queue_size, s.store_batch_size, s.store_flush_s, ctx.registry, ctx.log)
    dlq = Counter("features_dlq_total", "Undecodable messages", ["kind"], registry=ctx.registry)
    published = Counter("features_published_total", "Feature vectors published", ["venue"], registry=ctx.registry)
    root = s.subject_root

    async def on_book(b: BookTopK) -> None:
        traced = core.on_book_traced(b)
        if traced is not None:
            out, sample = traced
            await ctx.bus.publish(subjects.feat_micro(root, out.venue, out.symbol), encode(out))
            published.labels(out.venue).inc()
            if writer is not None:
                writer.offer(out, sample)

    recomputer = offline.Recomputer(
        Path(s.data_dir), lambda: Features(s.obi_levels, window_ns, ctx.clock.now_ns, kernels), kernels
    )
    lock = threading.Lock()  # one recomputation at a time (the Recomputer's state is not thread-safe)

    def locked(fn: Callable[[], T], wait_s: float = -1) -> T:
        if not lock.acquire(timeout=wait_s):
            raise RuntimeError("the offline recomputation is busy (decoding captures after a start); retry shortly")
        try:
            return fn()
        finally:
            lock.release()

    async def parity(req: ParityRequest) -> ParityReport:
        """Online (stored) vs offline (recomputed from the capture) — ``offline.parity``."""
        if pool is None:
            raise RuntimeError("the feature store needs STEVIE_DATABASE_URL")
        stored = await stored_keys(pool)
        keys = [(v, y) for v, y in stored if req.venue in (None, v) and req.symbol in (None, y)]
        if (req.venue or req.symbol) and not keys:
            raise KeyError(f"no stored features for venue={req.venue} symbol={req.symbol}; stored: {stored}")
        inputs = [offline.KeyInput(v, y, await get_samples(pool, v, y), await get_vectors(pool, v, y)) for v, y in keys]
        # wait at most PARITY_WAIT_S for a background recomputation, so the gateway gets an answer (503 if busy)
        return await asyncio.to_thread(locked, functools.partial(offline.parity, inputs, recomputer), PARITY_WAIT_S)

    async def keep_warm() -> None:
        """Replay new stored vectors offline every ``parity_warm_s`` (in a thread), so a parity
        request only pays for the vectors stored since. Each pass reads only the rows stored
        since the last one: the event loop (the tick → decision path) does work in
        proportion to the new vectors, not to everything stored since the start."""
        assert pool is not None
        lineage: dict[tuple[str, str], list[FeatureSample]] = {}  # the stored rows read so far, in order
        await asyncio.sleep(min(2.0, s.parity_warm_s))  # decode the captures as soon as vectors are stored
        while True:
            try:
                for v, y in await stored_keys(pool):
                    seen = lineage.setdefault((v, y), [])
                    last = (seen[-1].run_id, seen[-1].epoch, seen[-1].n) if seen else None
                    new = await get_samples(pool, v, y, after=last)
                    seen.extend(new)
                    for ts in sorted({smp.ts_event_ns for smp in new if smp.n == 0}):
                        # decode outside the lock (a dict insert; a parity request may run meanwhile)
                        await asyncio.to_thread(recomputer.capture, v, y, ts)
                    if new:
                        await asyncio.to_thread(locked, functools.partial(recomputer.replay, v, y, seen))
            except (OSError, asyncpg.PostgresError, ValueError) as exc:
                ctx.log.warning("parity_warm_failed", error=str(exc)[:200])
            await asyncio.sleep(s.parity_warm_s)

    await ctx.subscribe_typed(subjects.md_book(root, "*", "*"), BookTopK, on_book, dlq.labels("book"))
    await ctx.subscribe_typed(subjects.md_trade(root, "*", "*"), Trade, core.on_trade, dlq.labels("trade"))
    await ctx.subscribe_typed(subjects.md_status(root, "*", "*"), BookStatus, core.on_status, dlq.labels("status"))
    await ctx.serve_rpc("parity", ParityRequest, parity)
    try:
        jobs = [writer.run()] if writer is not None else []
        if pool is not None and s.parity_warm_s > 0:
            jobs.append(keep_warm())
        await asyncio.gather(asyncio.Event().wait(), *jobs)
    finally:
        if pool is not None:
            await pool.close()


SPEC = ServiceSpec("features", FeaturesSettings, main)
