"""Repositories: typed writes, idempotent where an event can be re-delivered."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from stevie.contracts import Bar, BookStatus


def _ts(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def timeframe_of(interval_ns: int) -> str:
    """60e9 → '1m', 3600e9 → '1h' (Binance interval names)."""
    secs = interval_ns // 1_000_000_000
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs % size == 0:
            return f"{secs // size}{unit}"
    return f"{secs}s"


async def insert_bar(pool: asyncpg.Pool, bar: Bar) -> None:
    """Upsert one bar (a re-sent bar replaces the stored one)."""
    await pool.execute(
        """INSERT INTO bars (venue, symbol, timeframe, ts, open, high, low, close, volume, trades)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)
           ON CONFLICT (venue, symbol, timeframe, ts) DO UPDATE SET
             open=EXCLUDED.open, high=EXCLUDED.high, low=EXCLUDED.low, close=EXCLUDED.close,
             volume=EXCLUDED.volume, trades=EXCLUDED.trades""",
        bar.venue,
        bar.symbol,
        timeframe_of(bar.interval_ns),
        _ts(bar.open_time_ns),
        bar.open,
        bar.high,
        bar.low,
        bar.close,
        bar.volume,
        bar.trades,
    )


async def insert_resync(pool: asyncpg.Pool, status: BookStatus) -> None:
    """Log one resync (a BookStatus going to SYNCING)."""
    await pool.execute(
        "INSERT INTO l2_resync_log (venue, symbol, seq, reason, ts) VALUES ($1,$2,$3,$4,$5)",
        status.venue,
        status.symbol,
        status.seq,
        status.reason,
        _ts(status.ts_event_ns),
    )
