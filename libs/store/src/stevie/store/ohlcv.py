"""OHLCV reads from the ``bars`` table (1-minute bars the book-maintainer builds from trades).

Coarser intervals are aggregated from the stored 1-minute bars in SQL, on UTC boundaries
(Binance's kline convention): open = first open, high = max, low = min, close = last close,
volume = sum. Only closed 1-minute bars are stored, so the newest coarse bar may be partial.
"""

from __future__ import annotations

import asyncpg

from stevie.contracts.featstore import OhlcvBar

# Binance interval names → minutes.
INTERVALS: dict[str, int] = {
    "1m": 1,
    "3m": 3,
    "5m": 5,
    "15m": 15,
    "30m": 30,
    "1h": 60,
    "2h": 120,
    "4h": 240,
    "1d": 1440,
}
MAX_LIMIT = 1000

_ONE_MINUTE = """
SELECT (extract(epoch FROM ts) * 1000)::bigint AS ts, open, high, low, close, volume
FROM bars WHERE venue = $1 AND symbol = $2 AND timeframe = '1m'
ORDER BY ts DESC LIMIT $3"""

_AGGREGATED = """
WITH last AS (
    SELECT max(ts) AS t FROM bars WHERE venue = $1 AND symbol = $2 AND timeframe = '1m'
), b AS (
    SELECT ts, open, high, low, close, volume,
           floor(extract(epoch FROM ts) / ($4 * 60)) AS bucket
    FROM bars, last
    WHERE venue = $1 AND symbol = $2 AND timeframe = '1m'
      AND ts > last.t - make_interval(mins => ($3 + 1) * $4)
)
SELECT (bucket * $4 * 60000)::bigint AS ts,
       (array_agg(open ORDER BY ts))[1] AS open, max(high) AS high, min(low) AS low,
       (array_agg(close ORDER BY ts DESC))[1] AS close, sum(volume) AS volume
FROM b GROUP BY bucket ORDER BY bucket DESC LIMIT $3"""


def check_request(interval: str, limit: int) -> int:
    """Minutes of ``interval``; ``ValueError`` naming the accepted values when ``interval`` is
    unknown or ``limit`` is outside [1, 1000]."""
    if interval not in INTERVALS:
        raise ValueError(f"unknown interval {interval!r}; accepted: {', '.join(INTERVALS)}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be in [1, {MAX_LIMIT}], got {limit}")
    return INTERVALS[interval]


async def get_ohlcv(pool: asyncpg.Pool, venue: str, symbol: str, interval: str, limit: int) -> list[OhlcvBar]:
    """The ``limit`` most recent bars of ``venue``/``symbol`` at ``interval``, oldest first.
    Raises ``ValueError`` on an unknown interval or a limit outside [1, 1000]."""
    minutes = check_request(interval, limit)
    if minutes == 1:
        rows = await pool.fetch(_ONE_MINUTE, venue, symbol, limit)
    else:
        rows = await pool.fetch(_AGGREGATED, venue, symbol, limit, minutes)
    return [OhlcvBar(r["ts"], r["open"], r["high"], r["low"], r["close"], r["volume"]) for r in reversed(rows)]


async def stored_symbols(pool: asyncpg.Pool, venue: str) -> set[str]:
    """Symbols of ``venue`` with at least one stored 1-minute bar."""
    rows = await pool.fetch("SELECT DISTINCT symbol FROM bars WHERE venue = $1 AND timeframe = '1m'", venue)
    return {r["symbol"] for r in rows}
