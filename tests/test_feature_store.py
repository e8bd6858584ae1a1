"""Feature store and OHLCV reads against a real PostgreSQL: idempotent batched writes,
event-time windows, interval aggregation checked against polars' own group-by."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import polars as pl
import pytest

from stevie.contracts import Bar, MicroFeatures
from stevie.contracts.featstore import FEATURES, FeatureSample, FeatureValue
from stevie.services.features.writer import FeatureWriter, rows_of
from stevie.store import connect_pool, insert_bar, migrate
from stevie.store.features import get_samples, get_vectors, get_window, put_features, stored_keys
from stevie.store.ohlcv import INTERVALS, check_request, get_ohlcv

pytestmark = pytest.mark.integration


def values(venue: str, symbol: str, feature: str, ts: list[int]) -> list[FeatureValue]:
    return [FeatureValue(feature=feature, venue=venue, symbol=symbol, ts_event_ns=t, value=t * 0.5) for t in ts]


async def test_put_features_is_idempotent_and_windows_are_half_open(pg_server):
    await migrate(pg_server.url)
    pool = await connect_pool(pg_server.url)
    rows = values("v1", "AAAUSDT", "obi", [10, 20, 30, 40]) + values("v1", "AAAUSDT", "ti", [20])
    assert await put_features(pool, rows) == (5, 0)
    # the same batch again (a retry) writes nothing; a changed value at a stored key is ignored too
    assert await put_features(pool, rows) == (0, 0)
    changed = [FeatureValue(feature="obi", venue="v1", symbol="AAAUSDT", ts_event_ns=20, value=99.0)]
    assert await put_features(pool, changed + values("v1", "AAAUSDT", "obi", [50])) == (1, 0)
    got = await get_window(pool, "obi", "v1", "AAAUSDT", 20, 50)
    assert [(g.ts_event_ns, g.value) for g in got] == [(20, 10.0), (30, 15.0), (40, 20.0)]
    assert await get_window(pool, "obi", "v1", "BBBUSDT", 0, 100) == []
    with pytest.raises(ValueError, match="empty window"):
        await get_window(pool, "obi", "v1", "AAAUSDT", 50, 50)
    with pytest.raises(ValueError):
        await get_window(pool, "", "v1", "AAAUSDT", 0, 1)
    await pool.close()


async def test_samples_and_vectors_round_trip(pg_server):
    await migrate(pg_server.url)
    pool = await connect_pool(pg_server.url)
    s = [
        FeatureSample(venue="v2", symbol="CCCUSDT", ts_event_ns=t, run_id="r", epoch=0, n=i, seq=100 + i, levels=20)
        for i, t in enumerate((5, 6, 7))
    ]
    s.append(
        FeatureSample(
            venue="v2",
            symbol="CCCUSDT",
            ts_event_ns=9,
            run_id="r",
            epoch=1,
            n=0,
            seq=7,
            levels=3,
            trade_first=11,
            trade_last=12,
        )
    )
    vals = values("v2", "CCCUSDT", "obi", [5, 6, 7, 9]) + values("v2", "CCCUSDT", "mid", [9])
    assert await put_features(pool, vals, s) == (5, 4)
    assert await put_features(pool, vals, s) == (0, 0)
    assert await get_samples(pool, "v2", "CCCUSDT") == s
    # only what was stored after a row: the rest of its epoch, later epochs, later runs
    assert await get_samples(pool, "v2", "CCCUSDT", after=("r", 0, 1)) == s[2:]
    assert await get_samples(pool, "v2", "CCCUSDT", after=("r", 1, 0)) == []
    later = FeatureSample(venue="v2", symbol="CCCUSDT", ts_event_ns=3, run_id="r2", epoch=0, n=0, seq=1, levels=20)
    assert await put_features(pool, [], [later]) == (0, 1)
    assert await get_samples(pool, "v2", "CCCUSDT", after=("r", 1, 0)) == [later]  # a later run, an earlier time
    vec = await get_vectors(pool, "v2", "CCCUSDT")
    assert vec[9] == {"obi": 4.5, "mid": 4.5} and set(vec) == {5, 6, 7, 9}
    assert ("v2", "CCCUSDT") in await stored_keys(pool)
    await pool.close()


async def test_writer_never_blocks_counts_drops_and_writes_batches(pg_server):
    await migrate(pg_server.url)
    pool = await connect_pool(pg_server.url)
    from prometheus_client import CollectorRegistry

    from stevie.runtime.logs import get_logger

    reg = CollectorRegistry()
    w = FeatureWriter(pool, queue_size=3, batch_size=2, flush_s=0.05, registry=reg, log=get_logger())

    def vec(ts: int) -> tuple[MicroFeatures, FeatureSample]:
        f = MicroFeatures(
            venue="v3",
            symbol="DDDUSDT",
            obi=0.1,
            ti=-0.2,
            spread_bps=1.5,
            micro_vol_bps=2.0,
            cancel_rate=3.0,
            mid=100.0 + ts,
            ts_event_ns=ts,
            ts_init_ns=0,
        )
        s = FeatureSample(venue="v3", symbol="DDDUSDT", ts_event_ns=ts, run_id="w", epoch=0, n=ts, seq=ts, levels=1)
        return f, s

    for ts in range(5):  # queue holds 3: two are dropped, offer returns at once
        w.offer(*vec(ts))
    assert reg.get_sample_value("features_store_dropped_total", {"reason": "queue_full"}) == 2
    task = asyncio.ensure_future(w.run())
    for _ in range(100):
        if reg.get_sample_value("features_store_written_total") == 3 * len(FEATURES):
            break
        await asyncio.sleep(0.05)
    task.cancel()
    vecs = await get_vectors(pool, "v3", "DDDUSDT")
    assert sorted(vecs) == [0, 1, 2] and vecs[2]["mid"] == 102.0 and set(vecs[0]) == set(FEATURES)
    assert [v.feature for v in rows_of(vec(0)[0])] == list(FEATURES)
    await pool.close()


async def test_put_features_throughput(pg_server):
    """Batched writes sustain far more than the live stack produces (~240 values/s at 1x)."""
    await migrate(pg_server.url)
    pool = await connect_pool(pg_server.url)
    n = 6 * 5000
    rows = [
        FeatureValue(feature=FEATURES[i % 6], venue="v4", symbol="EEEUSDT", ts_event_ns=i // 6, value=float(i))
        for i in range(n)
    ]
    t0 = time.perf_counter()
    for i in range(0, n, 3000):
        await put_features(pool, rows[i : i + 3000])
    rate = n / (time.perf_counter() - t0)
    assert rate > 5_000, f"{rate:.0f} values/s"
    await pool.close()


def bar(symbol: str, minute: int, o: float, h: float, lo: float, c: float, v: float) -> Bar:
    t0 = 1_723_161_600_000_000_000  # 2024-08-09T00:00Z
    return Bar(
        venue="binance",
        symbol=symbol,
        interval_ns=60_000_000_000,
        open_time_ns=t0 + minute * 60_000_000_000,
        open=o,
        high=h,
        low=lo,
        close=c,
        volume=v,
        trades=1,
        ts_event_ns=0,
        ts_init_ns=0,
    )


async def test_ohlcv_reads_and_aggregates_like_polars(pg_server):
    await migrate(pg_server.url)
    pool = await connect_pool(pg_server.url)
    bars = [
        bar("OHLCUSDT", m, 100 + m, 101 + m + (m % 3), 99 + m - (m % 2), 100.5 + m, 1 + m % 4) for m in range(0, 47)
    ]
    for b in bars:
        await insert_bar(pool, b)
    last3 = await get_ohlcv(pool, "binance", "OHLCUSDT", "1m", 3)
    assert [b.ts for b in last3] == [(bars[-3 + i].open_time_ns // 1_000_000) for i in range(3)]
    assert last3[-1].close == bars[-1].close and last3[0].ts < last3[1].ts

    df = pl.DataFrame(
        {
            "ts": [datetime.fromtimestamp(b.open_time_ns / 1e9, tz=UTC) for b in bars],
            "open": [b.open for b in bars],
            "high": [b.high for b in bars],
            "low": [b.low for b in bars],
            "close": [b.close for b in bars],
            "volume": [b.volume for b in bars],
        }
    )
    for interval in ("5m", "15m"):
        ref = (
            df.group_by_dynamic("ts", every=interval)
            .agg(
                pl.col("open").first(),
                pl.col("high").max(),
                pl.col("low").min(),
                pl.col("close").last(),
                pl.col("volume").sum(),
            )
            .tail(4)
        )
        got = await get_ohlcv(pool, "binance", "OHLCUSDT", interval, 4)
        assert [b.ts for b in got] == [int(t.timestamp() * 1000) for t in ref["ts"]]
        for name in ("open", "high", "low", "close", "volume"):
            assert [getattr(b, name) for b in got] == pytest.approx(ref[name].to_list(), abs=1e-12)
    assert await get_ohlcv(pool, "binance", "NOPEUSDT", "1m", 5) == []
    for interval, limit in (("7m", 5), ("1m", 0), ("1m", 1001)):
        with pytest.raises(ValueError):
            check_request(interval, limit)
    assert "1h" in INTERVALS and check_request("1h", 1000) == 60
    await pool.close()
