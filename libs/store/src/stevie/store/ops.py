"""Operations repositories: flag overrides, the operations audit, the data-quality quarantine
(migration ``006_operations.sql``). Values are stored as JSONB (bool or string flags)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import msgspec

from stevie.contracts.ops import DqExample, FlagValue


def _ts_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1e3, tz=UTC)


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def _json(v: object) -> str | None:
    return None if v is None else msgspec.json.encode(v).decode()


@dataclass(frozen=True)
class StoredOverride:
    name: str
    value: FlagValue
    previous: FlagValue | None
    updated_at_ms: int
    updated_by: str


async def load_overrides(pool: asyncpg.Pool) -> list[StoredOverride]:
    rows = await pool.fetch("SELECT name, value, previous, updated_at, updated_by FROM flag_overrides")
    return [
        StoredOverride(
            r["name"],
            msgspec.json.decode(r["value"]),
            None if r["previous"] is None else msgspec.json.decode(r["previous"]),
            _ms(r["updated_at"]),
            r["updated_by"],
        )
        for r in rows
    ]


async def write_flag_change(
    pool: asyncpg.Pool,
    name: str,
    old: FlagValue,
    new: FlagValue,
    removed: bool,
    actor: str,
    at_ms: int,
) -> None:
    """Upsert (or delete, ``removed``) the override and append its audit row, in one
    transaction."""
    async with pool.acquire() as conn, conn.transaction():
        if removed:
            await conn.execute("DELETE FROM flag_overrides WHERE name = $1", name)
        else:
            await conn.execute(
                """INSERT INTO flag_overrides (name, value, previous, updated_at, updated_by)
                   VALUES ($1, $2::jsonb, $3::jsonb, $4, $5)
                   ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, previous = EXCLUDED.previous,
                     updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by""",
                name,
                _json(new),
                _json(old),
                _ts_ms(at_ms),
                actor,
            )
        await conn.execute(
            """INSERT INTO ops_audit (kind, subject, old_value, new_value, actor, reason, ts)
               VALUES ('flag', $1, $2::jsonb, $3::jsonb, $4, $5, $6)""",
            name,
            _json(old),
            _json(new),
            actor,
            "override removed" if removed else "override set",
            _ts_ms(at_ms),
        )


async def insert_ops_audit(
    pool: asyncpg.Pool, kind: str, subject: str, old: object, new: object, actor: str, reason: str, at_ms: int
) -> None:
    """One audited transition (deploy / canary)."""
    await pool.execute(
        """INSERT INTO ops_audit (kind, subject, old_value, new_value, actor, reason, ts)
           VALUES ($1, $2, $3::jsonb, $4::jsonb, $5, $6, $7)""",
        kind,
        subject,
        _json(old),
        _json(new),
        actor,
        reason,
        _ts_ms(at_ms),
    )


async def ops_audit_rows(pool: asyncpg.Pool, kind: str, limit: int = 50) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT subject, old_value, new_value, actor, reason, ts FROM ops_audit WHERE kind = $1"
            " ORDER BY id DESC LIMIT $2",
            kind,
            limit,
        )
    )


@dataclass(frozen=True)
class QuarantineRow:
    """A bad item kept with its reason (never silently dropped)."""

    source: str
    venue: str
    symbol: str
    item_ts_ms: int
    reason: str
    detail: str
    item: object
    replaced: bool
    replacement: object | None = None


async def insert_quarantine(pool: asyncpg.Pool, q: QuarantineRow) -> None:
    await pool.execute(
        """INSERT INTO quarantine (source, venue, symbol, item_ts, reason, detail, item, replaced, replacement)
           VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9::jsonb)""",
        q.source,
        q.venue,
        q.symbol,
        _ts_ms(q.item_ts_ms),
        q.reason,
        q.detail,
        _json(q.item),
        q.replaced,
        _json(q.replacement),
    )


async def quarantine_examples(pool: asyncpg.Pool, limit: int) -> tuple[int, list[DqExample]]:
    """(total rows, the ``limit`` newest examples)."""
    total = await pool.fetchval("SELECT count(*) FROM quarantine")
    rows = await pool.fetch(
        "SELECT source, venue, symbol, item_ts, reason, detail, replaced, created_at FROM quarantine"
        " ORDER BY id DESC LIMIT $1",
        limit,
    )
    return int(total), [
        DqExample(
            r["source"],
            r["venue"],
            r["symbol"],
            _ms(r["item_ts"]),
            r["reason"],
            r["detail"],
            r["replaced"],
            _ms(r["created_at"]),
        )
        for r in rows
    ]
