"""Benchmark rows of the feature store (``stevie bench``): batched write throughput into a
real PostgreSQL (the embedded server, started in a temporary folder and stopped after), and
the offline recomputation rate from a recorded capture (the parity check's own path)."""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from pathlib import Path

from stevie.contracts import MicroFeatures
from stevie.contracts.featstore import FeatureSample
from stevie.quant.kernels import load as load_kernels
from stevie.services.features import offline
from stevie.services.features.core import Features
from stevie.services.features.writer import rows_of
from stevie.store import connect_pool, migrate
from stevie.store.features import put_features


def _vectors(n: int) -> list[tuple[MicroFeatures, FeatureSample]]:
    rng = random.Random(0)
    out = []
    for i in range(n):
        ts = 1_723_161_256_000_000_000 + i * 100_000_000
        f = MicroFeatures(
            venue="binance",
            symbol="BENCHUSDT",
            obi=rng.uniform(-1, 1),
            ti=rng.uniform(-1, 1),
            spread_bps=rng.uniform(0, 5),
            micro_vol_bps=rng.uniform(0, 10),
            cancel_rate=rng.uniform(0, 50),
            mid=60_000 + rng.uniform(-100, 100),
            ts_event_ns=ts,
            ts_init_ns=ts,
        )
        s = FeatureSample(
            venue="binance", symbol="BENCHUSDT", ts_event_ns=ts, run_id="bench", epoch=0, n=i, seq=i, levels=20
        )
        out.append((f, s))
    return out


def store_write_rate(n_vectors: int = 20_000, batch: int = 500) -> float:
    """Feature values written per second by ``put_features`` in batches of ``batch`` vectors
    (6 values + 1 lineage row each, the features service's writer path) into an embedded
    PostgreSQL on loopback. Raises OSError / RuntimeError if PostgreSQL cannot start."""
    from stevie.runtime.infra import PostgresServer

    vecs = _vectors(n_vectors)
    with tempfile.TemporaryDirectory(prefix="stevie-bench-pg-") as tmp:
        server = PostgresServer.start(Path(tmp))
        try:

            async def go() -> float:
                await migrate(server.url)
                pool = await connect_pool(server.url)
                try:
                    t0 = time.perf_counter()
                    for i in range(0, len(vecs), batch):
                        chunk = vecs[i : i + batch]
                        await put_features(pool, [v for f, _ in chunk for v in rows_of(f)], [s for _, s in chunk])
                    return 6 * len(vecs) / (time.perf_counter() - t0)
                finally:
                    await pool.close()

            return asyncio.run(go())
        finally:
            server.stop()


def recompute_rate(folder: Path, n_books: int = 3000) -> float:
    """Stored vectors recomputed per second by the offline path (decoded capture, lineage of a
    simulated session sampling every 10th diff with all trades fed), capture decoding excluded."""
    kernels = load_kernels("auto")
    cap = offline.load("binance", "BTCUSDT", folder)
    walker = offline.BookWalker(cap, lambda: kernels.OrderBook(usdm=False))
    # lineage: a book every 10 diffs, the trades up to that book's time fed before it
    samples: list[FeatureSample] = []
    j = 0
    first = cap.trades[0].trade_id if cap.trades else None
    for i in range(1, len(cap.diffs), 10):
        seq = cap.diffs[i][1]
        try:
            walker.top(seq, 20)
        except KeyError:
            continue
        ts = cap.trades[min(j, len(cap.trades) - 1)].ts_event_ns + 1 if cap.trades else 0
        while j + 1 < len(cap.trades) and cap.trades[j + 1].ts_event_ns <= ts + 200_000_000:
            j += 1
        samples.append(
            FeatureSample(
                venue="binance",
                symbol="BTCUSDT",
                ts_event_ns=ts + len(samples),
                run_id="bench",
                epoch=0,
                n=len(samples),
                seq=seq,
                levels=20,
                trade_first=first,
                trade_last=cap.trades[j].trade_id if cap.trades else None,
            )
        )
        if len(samples) >= n_books:
            break
    replay = offline.EpochReplay(cap, Features(5, 5_000_000_000, lambda: 0, kernels), lambda: kernels.OrderBook())
    t0 = time.perf_counter()
    replay.extend(samples)
    return len(samples) / (time.perf_counter() - t0)
