"""Trading state rebuilt from PostgreSQL, the record of truth, so a restarted execution or
risk-guards process comes back with the numbers it had.

Every paper fill is in the ``audits`` table: the audit of its decision carries the fill
(side, filled quantity in base units, average price and taker fee in quote units) and the
position after it, under the venue and symbol it filled on. ``filled_trades`` returns them in
the order they happened (``ts_init_ns``, the wall-clock stamp of the decision; fills of one
book are serialised by execution, so their stamps are strictly increasing). Replaying them
through the same average-cost accounting (``execution.core.Position.apply``) gives the same
position, average price, realised PnL and cash as before the restart.
"""

from __future__ import annotations

import asyncpg
import msgspec


class FilledTrade(msgspec.Struct, frozen=True):
    """One paper fill. ``side`` +1 buy / −1 sell; ``filled`` base units; ``avg_price`` quote
    per base unit; ``fee_quote`` quote units; ``position_after`` base units on
    (``venue``, ``symbol``) after the fill; ``ts_init_ns`` wall-clock ns of the decision."""

    event_id: str
    venue: str
    symbol: str
    side: int
    filled: float
    avg_price: float
    fee_quote: float
    position_after: float
    ts_init_ns: int


_SQL = """
SELECT event_id, venue, symbol,
       (body->'fill'->>'side')::int               AS side,
       (body->'fill'->>'filled')::float8          AS filled,
       (body->'fill'->>'avg_price')::float8       AS avg_price,
       (body->'fill'->>'fee_quote')::float8       AS fee_quote,
       (body->>'position_after')::float8          AS position_after,
       (body->>'ts_init_ns')::bigint              AS ts_init_ns
  FROM audits
 WHERE jsonb_typeof(body->'fill') = 'object'
   AND (body->'fill'->>'filled')::float8 > 0
 ORDER BY (body->>'ts_init_ns')::bigint, event_id
"""


async def filled_trades(pool: asyncpg.Pool) -> list[FilledTrade]:
    """Every recorded fill, oldest first. Raises ``OSError``/``asyncpg.PostgresError``."""
    rows = await pool.fetch(_SQL)
    return [FilledTrade(**dict(r)) for r in rows]


async def audit_count(pool: asyncpg.Pool) -> int:
    """How many decisions are recorded (a restarted execution continues its event ids past it)."""
    return int(await pool.fetchval("SELECT count(*) FROM audits"))


def exposure(trades: list[FilledTrade]) -> tuple[dict[str, float], float]:
    """(per-symbol notional of the most recently filled book of that symbol, gross notional
    over every book), in quote units, valued at each book's last fill price — what
    risk-guards records from the order checks it accepts (``position_after_quote``,
    ``gross_after_quote``), rebuilt from the same fills."""
    last: dict[tuple[str, str], FilledTrade] = {}
    latest_sym: dict[str, FilledTrade] = {}
    for t in trades:
        last[(t.venue, t.symbol)] = t
        latest_sym[t.symbol] = t
    per_symbol = {s: t.position_after * t.avg_price for s, t in latest_sym.items()}
    gross = sum(abs(t.position_after * t.avg_price) for t in last.values())
    return per_symbol, gross
