"""Persist a backtest run to PostgreSQL (tables of migration ``008_backtests.sql``): the run and
all its decisions in **one transaction** (COPY for the decisions), with the candles its
data-quality guards quarantined (``quarantine`` table of ``006_operations.sql``, source
``backtest``, detail prefixed ``run <id>:``); a run id already stored is replaced in the same
transaction. Nothing is written when anything fails."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime

import asyncpg

from stevie.store import migrate
from stevie.store.ops import QuarantineRow

_FIXED = [
    "ts_event_ns",
    "symbol",
    "policy_id",
    "propensity",
    "signal",
    "target_size",
    "order_size",
    "fill_price",
    "cost_bps",
    "fee_quote",
    "funding_quote",
    "reward",
    "blocked",
    "reason",
    "position_after",
    "price",
    "equity_quote",
]


def _num(x: object) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)  # type: ignore[arg-type]


def records(run_id: str, cols: dict[str, list[object]]) -> list[tuple[object, ...]]:
    """Rows in ``COLUMNS`` order: ``venue`` '' for a bar run (it has no venue column);
    ``mean_bps`` = ``score`` − ``exploration_bonus`` (the posterior mean), ``width_bps`` =
    ``width`` (None for a run without them)."""
    venues, score, bonus, width = cols.get("venue"), cols.get("score"), cols.get("exploration_bonus"), cols.get("width")
    ctx = [c for c in cols if c.startswith("ctx_")]
    shadow = [c for c in cols if c.startswith("shadow_")]
    out: list[tuple[object, ...]] = []
    for i in range(len(cols["symbol"])):
        ns = int(cols["ts_event_ns"][i])  # type: ignore[call-overload]
        out.append(
            (
                run_id,
                i,
                datetime.fromtimestamp(ns / 1e9, tz=UTC),
                ns,
                cols["symbol"][i],
                cols["policy_id"][i],
                float(cols["propensity"][i]),  # type: ignore[arg-type]
                int(cols["signal"][i]),  # type: ignore[call-overload]
                float(cols["target_size"][i]),  # type: ignore[arg-type]
                float(cols["order_size"][i]),  # type: ignore[arg-type]
                _num(cols["fill_price"][i]),
                _num(cols["cost_bps"][i]),
                float(cols["fee_quote"][i]),  # type: ignore[arg-type]
                float(cols["funding_quote"][i]),  # type: ignore[arg-type]
                _num(cols["reward"][i]),
                bool(cols["blocked"][i]),
                str(cols["reason"][i]),
                float(cols["position_after"][i]),  # type: ignore[arg-type]
                float(cols["price"][i]),  # type: ignore[arg-type]
                float(cols["equity_quote"][i]),  # type: ignore[arg-type]
                json.dumps({c[4:]: cols[c][i] for c in ctx}),
                json.dumps({c[7:]: cols[c][i] for c in shadow}),
                str(venues[i]) if venues is not None else "",
                None if score is None else _num(float(score[i]) - (0.0 if bonus is None else float(bonus[i]))),  # type: ignore[arg-type]
                None if width is None else _num(width[i]),
            )
        )
    return out


COLUMNS = ["run_id", "seq", "ts", *_FIXED, "context", "shadow", "venue", "mean_bps", "width_bps"]


_QUARANTINE = ["source", "venue", "symbol", "item_ts", "reason", "detail", "item", "replaced", "replacement"]


def quarantine_records(run_id: str, rows: list[QuarantineRow]) -> list[tuple[object, ...]]:
    """Rows in the column order of ``_QUARANTINE`` (JSON columns as text)."""
    return [
        (
            q.source,
            q.venue,
            q.symbol,
            datetime.fromtimestamp(q.item_ts_ms / 1e3, tz=UTC),
            q.reason,
            f"run {run_id}: {q.detail}",
            json.dumps(q.item),
            q.replaced,
            None if q.replacement is None else json.dumps(q.replacement),
        )
        for q in rows
    ]


async def _save(
    url: str, run_id: str, summary: dict[str, object], cols: dict[str, list[object]], quarantine: list[QuarantineRow]
) -> None:
    await migrate(url)
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute("DELETE FROM backtest_runs WHERE run_id = $1", run_id)
            await conn.execute(
                "INSERT INTO backtest_runs (run_id, mode, git_revision, seed, settings, data, metrics)"
                " VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7::jsonb)",
                run_id,
                summary["mode"],
                summary["gitRevision"],
                summary["seed"],
                json.dumps(summary["settings"]),
                json.dumps(summary["data"]),
                json.dumps(summary["metrics"]),
            )
            await conn.copy_records_to_table("backtest_decisions", records=records(run_id, cols), columns=COLUMNS)
            await conn.execute(
                "DELETE FROM quarantine WHERE source = 'backtest' AND detail LIKE $1", f"run {run_id}: %"
            )
            if quarantine:
                await conn.copy_records_to_table(
                    "quarantine", records=quarantine_records(run_id, quarantine), columns=_QUARANTINE
                )
    finally:
        await conn.close()


class BacktestStoreError(RuntimeError):
    """The database could not take the run (nothing of it was written)."""


def save_run(
    url: str,
    run_id: str,
    summary: dict[str, object],
    cols: dict[str, list[object]],
    quarantine: list[QuarantineRow] | None = None,
) -> None:
    """Write the run and its quarantined candles (one transaction). Raises BacktestStoreError
    when the database fails."""
    try:
        asyncio.run(_save(url, run_id, summary, cols, quarantine or []))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise BacktestStoreError(f"database: {type(exc).__name__}: {exc}") from exc
