"""Feature store (PostgreSQL): batched idempotent writes and event-time window reads.

Tables (migration ``003_feature_store.sql``): ``feature_values`` — one row per (venue, symbol,
feature, ts_event_ns), the primary key doubling as the (venue, symbol, feature, ts) index a
window read scans; ``feature_samples`` — the lineage of each stored vector (what the kernel
had been fed), used to recompute it offline from the recorded capture.

Writes are idempotent: ``ON CONFLICT DO NOTHING`` on the key, so a re-sent batch is a no-op
and the first write of a key wins (on the looping replay every pass repeats the event times
of the first; the store keeps the first pass). One batch is one statement per table inside
one transaction (arrays through ``unnest``), so a reader sees whole batches or nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from stevie.contracts.featstore import FeatureSample, FeatureValue

_PUT_VALUES = """
INSERT INTO feature_values (venue, symbol, feature, ts_event_ns, value)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::float8[])
ON CONFLICT (venue, symbol, feature, ts_event_ns) DO NOTHING"""

_PUT_SAMPLES = """
INSERT INTO feature_samples (venue, symbol, ts_event_ns, run_id, epoch, n, seq, levels, trade_first, trade_last)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::int[], $6::int[], $7::bigint[],
                     $8::int[], $9::bigint[], $10::bigint[])
ON CONFLICT (venue, symbol, ts_event_ns) DO NOTHING"""


def _count(status: str) -> int:
    """Rows written, from asyncpg's command tag (``INSERT 0 <n>``)."""
    return int(status.rsplit(" ", 1)[-1])


async def put_features(
    pool: asyncpg.Pool, values: Sequence[FeatureValue], samples: Sequence[FeatureSample] = ()
) -> tuple[int, int]:
    """Write a batch of values (and the lineage of their vectors) in one transaction.

    Idempotent on (feature, venue, symbol, ts_event_ns) for values and on (venue, symbol,
    ts_event_ns) for samples: rows whose key is stored already are skipped. Returns the numbers
    of (values, samples) actually written. Raises ``asyncpg.PostgresError``/``OSError`` when
    the database fails (nothing of the batch is written then)."""
    if not values and not samples:
        return 0, 0
    async with pool.acquire() as conn, conn.transaction():
        nv = ns = 0
        if values:
            nv = _count(
                await conn.execute(
                    _PUT_VALUES,
                    [v.venue for v in values],
                    [v.symbol for v in values],
                    [v.feature for v in values],
                    [v.ts_event_ns for v in values],
                    [v.value for v in values],
                )
            )
        if samples:
            ns = _count(
                await conn.execute(
                    _PUT_SAMPLES,
                    [s.venue for s in samples],
                    [s.symbol for s in samples],
                    [s.ts_event_ns for s in samples],
                    [s.run_id for s in samples],
                    [s.epoch for s in samples],
                    [s.n for s in samples],
                    [s.seq for s in samples],
                    [s.levels for s in samples],
                    [s.trade_first for s in samples],
                    [s.trade_last for s in samples],
                )
            )
    return nv, ns


async def get_window(
    pool: asyncpg.Pool, feature: str, venue: str, symbol: str, start_ns: int, end_ns: int
) -> list[FeatureValue]:
    """Stored values of ``feature`` for ``venue``/``symbol`` with ``start_ns <= ts_event_ns <
    end_ns`` (event time, ns), oldest first. Raises ``ValueError`` when ``start_ns >= end_ns``
    or a name is empty."""
    if not feature or not venue or not symbol:
        raise ValueError("feature, venue and symbol must be non-empty")
    if start_ns >= end_ns:
        raise ValueError(f"empty window: start_ns={start_ns} >= end_ns={end_ns}")
    rows = await pool.fetch(
        """SELECT ts_event_ns, value FROM feature_values
           WHERE venue = $1 AND symbol = $2 AND feature = $3 AND ts_event_ns >= $4 AND ts_event_ns < $5
           ORDER BY ts_event_ns""",
        venue,
        symbol,
        feature,
        start_ns,
        end_ns,
    )
    return [
        FeatureValue(feature=feature, venue=venue, symbol=symbol, ts_event_ns=r["ts_event_ns"], value=r["value"])
        for r in rows
    ]


async def stored_keys(pool: asyncpg.Pool) -> list[tuple[str, str]]:
    """Every (venue, symbol) with stored lineage, sorted."""
    rows = await pool.fetch("SELECT DISTINCT venue, symbol FROM feature_samples ORDER BY venue, symbol")
    return [(r["venue"], r["symbol"]) for r in rows]


async def get_samples(
    pool: asyncpg.Pool, venue: str, symbol: str, after: tuple[str, int, int] | None = None
) -> list[FeatureSample]:
    """The stored lineage of ``venue``/``symbol``, by (run, epoch, index within the epoch);
    ``after``: only the rows past that (run_id, epoch, n) — what was stored since a previous
    read (run ids grow with time, and a run writes its rows in order)."""
    cols = "ts_event_ns, run_id, epoch, n, seq, levels, trade_first, trade_last"
    if after is None:
        rows = await pool.fetch(
            f"SELECT {cols} FROM feature_samples WHERE venue = $1 AND symbol = $2 ORDER BY run_id, epoch, n",
            venue,
            symbol,
        )
    else:
        rows = await pool.fetch(
            f"""SELECT {cols} FROM feature_samples WHERE venue = $1 AND symbol = $2
                AND (run_id, epoch, n) > ($3, $4, $5) ORDER BY run_id, epoch, n""",
            venue,
            symbol,
            *after,
        )
    return [FeatureSample(venue=venue, symbol=symbol, **dict(r)) for r in rows]


async def get_vectors(pool: asyncpg.Pool, venue: str, symbol: str) -> dict[int, dict[str, float]]:
    """Every stored value of ``venue``/``symbol`` as ts_event_ns → {feature: value} (one array
    per feature over the wire, not one record per value)."""
    rows = await pool.fetch(
        """SELECT feature, array_agg(ts_event_ns) AS ts, array_agg(value) AS v FROM feature_values
           WHERE venue = $1 AND symbol = $2 GROUP BY feature""",
        venue,
        symbol,
    )
    out: dict[int, dict[str, float]] = {}
    for r in rows:
        name = r["feature"]
        for ts, v in zip(r["ts"], r["v"], strict=True):
            out.setdefault(ts, {})[name] = v
    return out
