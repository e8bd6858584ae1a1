"""Migrations and repositories against a real PostgreSQL."""

from __future__ import annotations

import pytest

from stevie.contracts import Bar, BookState, BookStatus
from stevie.store import connect_pool, insert_bar, insert_resync, migrate
from stevie.store.db import migration_files

pytestmark = pytest.mark.integration


async def test_migrations_are_idempotent_and_indexed(pg_server):
    await migrate(pg_server.url)  # the session server may have been migrated by another test already
    assert await migrate(pg_server.url) == []
    pool = await connect_pool(pg_server.url)
    applied = [r["name"] for r in await pool.fetch("SELECT name FROM schema_migrations ORDER BY name")]
    assert applied == [name for name, _ in migration_files()]
    idx = {r["indexname"] for r in await pool.fetch("SELECT indexname FROM pg_indexes WHERE schemaname='public'")}
    assert {"bars_symbol_timeframe_ts", "l2_resync_log_venue_symbol_seq", "audits_policy_id_ts"} <= idx
    await pool.close()


async def test_bar_upsert_and_resync_log(pg_server):
    await migrate(pg_server.url)
    pool = await connect_pool(pg_server.url)
    bar = Bar(
        venue="binance",
        symbol="TSTUSDT",
        interval_ns=60_000_000_000,
        open_time_ns=1_723_161_240_000_000_000,
        open=1,
        high=2,
        low=0.5,
        close=1.5,
        volume=3,
        trades=4,
        ts_event_ns=0,
        ts_init_ns=0,
    )
    await insert_bar(pool, bar)
    await insert_bar(pool, bar)  # re-sent: still one row
    rows = await pool.fetch("SELECT timeframe, close FROM bars WHERE symbol='TSTUSDT'")
    assert [(r["timeframe"], r["close"]) for r in rows] == [("1m", 1.5)]
    await insert_resync(
        pool,
        BookStatus(
            venue="binance",
            symbol="TSTUSDT",
            state=BookState.SYNCING,
            reason="gap",
            seq=42,
            resyncs=1,
            ts_event_ns=1,
            ts_init_ns=1,
        ),
    )
    assert await pool.fetchval("SELECT reason FROM l2_resync_log WHERE symbol='TSTUSDT' AND seq=42") == "gap"
    await pool.close()
