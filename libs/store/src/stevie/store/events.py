"""Events repository (migration 007_events): idempotent inserts, newest-first reads with the
nearest earlier events by cosine distance (pgvector ``<=>``, HNSW index)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg


@dataclass(frozen=True)
class EventRow:
    """One stored event. ``ts_ns`` event time (ns); ``embedding`` unit vector (384 floats)."""

    id: str
    ts_ns: int
    kind: str
    title: str
    summary: str
    source: str
    symbols: list[str]
    model: str
    embedding: list[float]


@dataclass(frozen=True)
class StoredEvent:
    row: EventRow
    nearest: list[str]


def _ts(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // 1000 / 1e6, tz=UTC)


def _ns(dt: datetime) -> int:
    return int(dt.timestamp() * 1e6) * 1000


def _vec(v: Sequence[float]) -> str:
    return "[" + ",".join(repr(float(x)) for x in v) + "]"


async def insert_events(pool: asyncpg.Pool, rows: Sequence[EventRow]) -> int:
    """Insert ``rows`` in one transaction; an id already stored is skipped. Returns how many
    were new."""
    new = 0
    async with pool.acquire() as conn, conn.transaction():
        for r in rows:
            status = await conn.execute(
                """INSERT INTO events (id, ts, kind, title, summary, source, symbols, model, embedding)
                   VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9::vector) ON CONFLICT (id) DO NOTHING""",
                r.id,
                _ts(r.ts_ns),
                r.kind,
                r.title,
                r.summary,
                r.source,
                r.symbols,
                r.model,
                _vec(r.embedding),
            )
            new += status.endswith(" 1")
    return new


_COLS = "e.id, e.ts, e.kind, e.title, e.summary, e.source, e.symbols, e.model, e.embedding::real[] AS embedding"


def _row(r: asyncpg.Record) -> EventRow:
    return EventRow(
        r["id"],
        _ns(r["ts"]),
        r["kind"],
        r["title"],
        r["summary"],
        r["source"],
        list(r["symbols"]),
        r["model"],
        [float(x) for x in r["embedding"]],
    )


async def latest_events(pool: asyncpg.Pool, limit: int, symbol: str = "", k_nearest: int = 3) -> list[StoredEvent]:
    """The ``limit`` newest events (naming ``symbol`` when given), newest first, each with the
    ids of its ``k_nearest`` most similar *earlier* events (cosine distance, ties by id)."""
    async with pool.acquire() as conn, conn.transaction():
        # A filtered HNSW scan could return fewer than k neighbours; strict iterative scans
        # (pgvector ≥ 0.8) keep searching until k rows pass the filter, in distance order.
        await conn.execute("SET LOCAL hnsw.iterative_scan = strict_order")
        rows = await conn.fetch(
            f"""SELECT {_COLS},
                   ARRAY(SELECT p.id FROM events p WHERE p.ts < e.ts
                         ORDER BY p.embedding <=> e.embedding, p.id LIMIT $3) AS nearest
            FROM events e
            WHERE ($2 = '' OR $2 = ANY(e.symbols))
            ORDER BY e.ts DESC, e.id LIMIT $1""",
            limit,
            symbol,
            k_nearest,
        )
    return [StoredEvent(_row(r), list(r["nearest"])) for r in rows]


async def recent_by_symbol(pool: asyncpg.Pool, per_symbol: int) -> list[EventRow]:
    """The ``per_symbol`` newest events of every symbol (to rebuild the context at start)."""
    rows = await pool.fetch(
        f"""SELECT DISTINCT ON (e.id) {_COLS} FROM (
                SELECT s.sym, x.id FROM (SELECT DISTINCT unnest(symbols) AS sym FROM events) s
                CROSS JOIN LATERAL (SELECT id FROM events WHERE s.sym = ANY(symbols)
                                    ORDER BY ts DESC LIMIT $1) x) t
            JOIN events e ON e.id = t.id""",
        per_symbol,
    )
    return sorted((_row(r) for r in rows), key=lambda r: r.ts_ns)
