"""Repositories: typed writes, idempotent where an event can be re-delivered."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import msgspec

from stevie.contracts import Bar, BookStatus
from stevie.contracts.rpc import Audit, ExecutionRecord


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


async def insert_audit(pool: asyncpg.Pool, a: Audit) -> bool:
    """Write one audit; False when the event id is already stored (redelivery)."""
    status = await pool.execute(
        """INSERT INTO audits (event_id, policy_id, ts, venue, symbol, provenance, body)
           VALUES ($1,$2,$3,$4,$5,$6,$7::jsonb) ON CONFLICT (event_id) DO NOTHING""",
        a.event_id,
        a.policy_id,
        _ts(a.ts_event_ns),
        a.venue,
        a.symbol,
        a.provenance,
        msgspec.json.encode(a).decode(),
    )
    return bool(status.endswith(" 1"))


async def insert_execution(pool: asyncpg.Pool, r: ExecutionRecord) -> bool:
    """Write one execution record; False when already stored."""
    status = await pool.execute(
        """INSERT INTO executions (event_id, symbol, venue, policy_id, requested_size, final_size, fill_price,
                                   blocked, reason, ts)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) ON CONFLICT (event_id) DO NOTHING""",
        r.eventId,
        r.symbol,
        r.venue,
        r.policyId,
        r.requestedSize,
        r.finalSize,
        r.fillPrice,
        r.blocked,
        r.reason,
        _ts(r.ts * 1_000_000),
    )
    return bool(status.endswith(" 1"))


async def latest_audits(pool: asyncpg.Pool, limit: int) -> list[Audit]:
    """The ``limit`` most recent audits (by decision time, newest first)."""
    rows = await pool.fetch("SELECT body::text AS body FROM audits ORDER BY ts DESC, event_id LIMIT $1", limit)
    dec = msgspec.json.Decoder(Audit)
    return [dec.decode(r["body"]) for r in rows]
