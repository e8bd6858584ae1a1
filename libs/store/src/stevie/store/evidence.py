"""Evidence repositories: the model registry (register, checkpoint, promote, rollback,
current, history), DSR trials, PBT lineage, nudges, and the audits read back for
off-policy evaluation. Tables: ``migrations/005_evidence.sql``.

A model's posterior is stored as ``RouterPosterior`` JSON. The current model of a slot
(``router``) changes only together with a ``model_history`` row (one transaction).
"""

from __future__ import annotations

import json
from datetime import datetime

import asyncpg
import msgspec

from stevie.contracts.evidence import LineageRow, ModelChange, ModelView, RouterPosterior
from stevie.contracts.rpc import Audit

SLOT = "router"
_posterior = msgspec.json.Decoder(RouterPosterior)
_audit = msgspec.json.Decoder(Audit)


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def _view(r: asyncpg.Record, current_id: str | None) -> ModelView:
    return ModelView(
        id=r["id"],
        kind=r["kind"],
        createdAt=_ms(r["created_at"]),
        source=r["source"],
        seed=r["seed"],
        data=r["data"],
        parent=r["parent"],
        current=r["id"] == current_id,
        updates={k: int(v) for k, v in json.loads(r["updates"]).items()},
        params={k: float(v) for k, v in json.loads(r["params"]).items()},
        metrics={k: float(v) for k, v in json.loads(r["metrics"]).items()},
    )


_COLS = "id, kind, created_at, source, seed, data, parent, updates::text, params::text, metrics::text"


async def _current_id(conn: asyncpg.Pool | asyncpg.Connection, slot: str = SLOT) -> str | None:
    v = await conn.fetchval("SELECT model_id FROM model_current WHERE slot = $1", slot)
    return str(v) if v is not None else None


async def register_model(
    pool: asyncpg.Pool,
    model_id: str,
    kind: str,
    source: str,
    posterior: RouterPosterior | None,
    *,
    seed: int | None = None,
    data: str = "",
    parent: str | None = None,
    params: dict[str, float] | None = None,
    metrics: dict[str, float] | None = None,
    actor: str = "",
) -> ModelView:
    """Insert a model (not made current). Raises ValueError if the id exists."""
    updates = {a: s.n for a, s in posterior.arms.items()} if posterior else {}
    async with pool.acquire() as conn, conn.transaction():
        try:
            await conn.execute(
                """INSERT INTO models (id, kind, source, seed, data, parent, posterior, updates, params, metrics)
                   VALUES ($1,$2,$3,$4,$5,$6,$7::jsonb,$8::jsonb,$9::jsonb,$10::jsonb)""",
                model_id,
                kind,
                source,
                seed,
                data,
                parent,
                msgspec.json.encode(posterior).decode() if posterior else None,
                json.dumps(updates),
                json.dumps(params or {}),
                json.dumps(metrics or {}),
            )
        except asyncpg.UniqueViolationError as exc:
            raise ValueError(f"model {model_id!r} already exists") from exc
        await conn.execute(
            "INSERT INTO model_history (action, model_id, actor, detail) VALUES ('register', $1, $2, $3)",
            model_id,
            actor,
            kind,
        )
    return await get_model(pool, model_id)


async def checkpoint(
    pool: asyncpg.Pool, model_id: str, source: str, posterior: RouterPosterior, parent: str | None, data: str = ""
) -> bool:
    """Write the router's posterior as model ``model_id`` (insert, or update the same row on
    later checkpoints of the same session). It becomes current only if the current model is
    itself, or its ``parent`` made current before this session began (compare-and-set: a
    promote or rollback that happened since wins — also a rollback to this session's own
    parent, which a late checkpoint of the session must not undo). Returns whether it is
    current."""
    updates = json.dumps({a: s.n for a, s in posterior.arms.items()})
    body = msgspec.json.encode(posterior).decode()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('stevie.model_current'))")
        await conn.execute(
            """INSERT INTO models (id, kind, source, data, parent, posterior, updates)
               VALUES ($1, 'checkpoint', $2, $3, $4, $5::jsonb, $6::jsonb)
               ON CONFLICT (id) DO UPDATE SET posterior = EXCLUDED.posterior, updates = EXCLUDED.updates,
                                              updated_at = now()""",
            model_id,
            source,
            data,
            parent,
            body,
            updates,
        )
        cur = await _current_id(conn)
        if cur == model_id:
            return True
        if cur is not None:
            set_later = await conn.fetchval(
                """SELECT c.since > m.created_at FROM model_current c, models m
                   WHERE c.slot = $1 AND m.id = $2""",
                SLOT,
                model_id,
            )
            if cur != parent or set_later:
                return False
        await conn.execute(
            """INSERT INTO model_current (slot, model_id) VALUES ($1, $2)
               ON CONFLICT (slot) DO UPDATE SET model_id = EXCLUDED.model_id, since = now()""",
            SLOT,
            model_id,
        )
        await conn.execute(
            "INSERT INTO model_history (action, model_id, previous_id, actor) VALUES ('checkpoint', $1, $2, $3)",
            model_id,
            cur,
            source,
        )
        return True


async def get_model(pool: asyncpg.Pool, model_id: str) -> ModelView:
    """Raises KeyError for an unknown id."""
    r = await pool.fetchrow(f"SELECT {_COLS} FROM models WHERE id = $1", model_id)
    if r is None:
        raise KeyError(f"unknown model {model_id!r}")
    return _view(r, await _current_id(pool))


async def model_posterior(pool: asyncpg.Pool, model_id: str) -> RouterPosterior | None:
    """The stored posterior (None when the model has parameters only). KeyError if unknown."""
    r = await pool.fetchrow("SELECT posterior::text AS p FROM models WHERE id = $1", model_id)
    if r is None:
        raise KeyError(f"unknown model {model_id!r}")
    return _posterior.decode(r["p"]) if r["p"] else None


async def current_model(pool: asyncpg.Pool) -> tuple[ModelView, RouterPosterior | None] | None:
    """The current router model and its posterior, or None when none was ever made current."""
    cur = await _current_id(pool)
    if cur is None:
        return None
    return await get_model(pool, cur), await model_posterior(pool, cur)


async def list_models(pool: asyncpg.Pool, limit: int = 200) -> list[ModelView]:
    """Newest first."""
    cur = await _current_id(pool)
    rows = await pool.fetch(f"SELECT {_COLS} FROM models ORDER BY created_at DESC, id LIMIT $1", limit)
    return [_view(r, cur) for r in rows]


async def set_current(pool: asyncpg.Pool, model_id: str, action: str, actor: str = "") -> ModelChange:
    """Make ``model_id`` current (``promote``: any registered model with a posterior;
    ``rollback``: a model that was current before). KeyError for an unknown id, ValueError
    when the model cannot take that action."""
    if action not in ("promote", "rollback"):
        raise ValueError(f"action must be promote or rollback, got {action!r}")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('stevie.model_current'))")
        row = await conn.fetchrow("SELECT posterior IS NOT NULL AS has_posterior FROM models WHERE id = $1", model_id)
        if row is None:
            raise KeyError(f"unknown model {model_id!r}")
        if not row["has_posterior"]:
            raise ValueError(f"model {model_id!r} has no router posterior to load")
        prev = await _current_id(conn)
        if action == "rollback":
            was = await conn.fetchval(
                """SELECT count(*) FROM model_history
                   WHERE (model_id = $1 AND action IN ('checkpoint', 'promote', 'rollback'))
                      OR previous_id = $1""",
                model_id,
            )
            if not was:
                raise ValueError(f"model {model_id!r} was never current: promote it instead")
        await conn.execute(
            """INSERT INTO model_current (slot, model_id) VALUES ($1, $2)
               ON CONFLICT (slot) DO UPDATE SET model_id = EXCLUDED.model_id, since = now()""",
            SLOT,
            model_id,
        )
        ts = await conn.fetchval(
            """INSERT INTO model_history (action, model_id, previous_id, actor) VALUES ($1, $2, $3, $4)
               RETURNING ts""",
            action,
            model_id,
            prev,
            actor,
        )
    return ModelChange(action, await get_model(pool, model_id), prev, _ms(ts))


async def model_history(pool: asyncpg.Pool, limit: int = 100) -> list[tuple[int, str, str, str | None]]:
    """(ts ms, action, model id, previous id), newest first."""
    rows = await pool.fetch(
        "SELECT ts, action, model_id, previous_id FROM model_history ORDER BY id DESC LIMIT $1", limit
    )
    return [(_ms(r["ts"]), r["action"], r["model_id"], r["previous_id"]) for r in rows]


# -- trials, lineage, nudges --------------------------------------------------------------


async def add_trial(
    pool: asyncpg.Pool, ref: str, kind: str, sharpe: float, n_periods: int, params: dict[str, float] | None = None
) -> bool:
    """Register one evaluated configuration (idempotent on ``ref``); True when new."""
    status = await pool.execute(
        """INSERT INTO trials (ref, kind, sharpe, n_periods, params) VALUES ($1,$2,$3,$4,$5::jsonb)
           ON CONFLICT (ref) DO NOTHING""",
        ref,
        kind,
        sharpe,
        n_periods,
        json.dumps(params or {}),
    )
    return bool(status.endswith(" 1"))


async def trial_sharpes(pool: asyncpg.Pool) -> list[float]:
    """Per-period Sharpe ratio of every registered trial."""
    return [float(r["sharpe"]) for r in await pool.fetch("SELECT sharpe FROM trials ORDER BY ts")]


async def add_lineage(pool: asyncpg.Pool, row: LineageRow) -> None:
    await pool.execute(
        """INSERT INTO pbt_lineage (run_id, version_id, member, parent, generation, params, score,
                                    window_start, window_stop, exploited)
           VALUES ($1,$2,$3,$4,$5,$6::jsonb,$7,$8,$9,$10) ON CONFLICT (run_id, version_id) DO NOTHING""",
        row.runId,
        row.id,
        row.member,
        row.parent,
        row.generation,
        json.dumps(row.params),
        row.score,
        row.windowStart,
        row.windowStop,
        row.exploited,
    )


async def list_lineage(pool: asyncpg.Pool, limit: int = 500) -> list[LineageRow]:
    """Newest run first, then generation and member order."""
    rows = await pool.fetch(
        """SELECT run_id, version_id, member, parent, generation, params::text AS params, score,
                  window_start, window_stop, exploited, ts
           FROM pbt_lineage
           ORDER BY max(ts) OVER (PARTITION BY run_id) DESC, run_id, generation, member LIMIT $1""",
        limit,
    )
    return [
        LineageRow(
            r["run_id"],
            r["version_id"],
            r["member"],
            r["parent"],
            r["generation"],
            {k: float(v) for k, v in json.loads(r["params"]).items()},
            r["score"],
            r["window_start"],
            r["window_stop"],
            r["exploited"],
            _ms(r["ts"]),
        )
        for r in rows
    ]


async def add_nudge(
    pool: asyncpg.Pool, prior: float, sizing: float, ece: float | None, n: int, explicit: bool, actor: str = ""
) -> int:
    """Audit one applied nudge; returns its ts (ms)."""
    ts = await pool.fetchval(
        """INSERT INTO nudges_audit (router_prior_delta, sizing_cap_delta, ece, n, explicit, actor)
           VALUES ($1,$2,$3,$4,$5,$6) RETURNING ts""",
        prior,
        sizing,
        ece,
        n,
        explicit,
        actor,
    )
    return _ms(ts)


# -- audits and backtest decisions read back -----------------------------------------------


async def recent_audits(pool: asyncpg.Pool, limit: int) -> list[Audit]:
    """The ``limit`` most recently *made* audits (by ``ts_init_ns``, wall time: the replay
    restarts event time on every loop), returned oldest first."""
    rows = await pool.fetch(
        """SELECT body::text AS body FROM audits
           ORDER BY (body->>'ts_init_ns')::bigint DESC LIMIT $1""",
        limit,
    )
    out = []
    for r in reversed(rows):
        try:
            out.append(_audit.decode(r["body"]))
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue  # an audit of an older, incompatible schema: not evidence any more
    return out


async def table_exists(pool: asyncpg.Pool, name: str) -> bool:
    return bool(await pool.fetchval("SELECT to_regclass($1) IS NOT NULL", name))


class BacktestDecision(msgspec.Struct, frozen=True):
    """One row of ``backtest_decisions`` (008_backtests) as evidence reads it: event time (ns),
    symbol, the router's choice and propensity, the chosen signal, price (last close or mid at
    t), context numbers and regime, every policy's shadow signal, the venue (009; '' for a bar
    run) and the router's posterior mean and width of the chosen policy's score (bps; 009,
    None for older rows)."""

    ts_ns: int
    symbol: str
    policy_id: str
    propensity: float
    signal: int
    price: float
    context: dict[str, float | str | None]
    shadow: dict[str, int]
    venue: str = ""
    mean_bps: float | None = None
    width_bps: float | None = None


_ctx = msgspec.json.Decoder(dict[str, float | str | None])
_shadow = msgspec.json.Decoder(dict[str, int])


def run_horizon_s(settings: dict[str, object]) -> float:
    """The reward horizon (s) of a stored backtest run from its settings (``backtest_runs.settings``):
    an L2 run's ``horizon_s``, a bar run's ``decision_interval_min`` (default 5) in seconds."""
    h = settings.get("horizon_s")
    if isinstance(h, int | float) and h > 0:
        return float(h)
    m = settings.get("decision_interval_min", 5)
    return 60.0 * float(m) if isinstance(m, int | float) else 300.0


async def backtest_decisions(
    pool: asyncpg.Pool, run_id: str | None, limit: int
) -> tuple[str, float, list[BacktestDecision]] | None:
    """(run id, reward horizon in seconds, its decisions in event-time order) of a ``stevie
    backtest`` run — the newest when ``run_id`` is None; None when no run is stored; KeyError
    for an unknown run. At most the ``limit`` latest decisions. The horizon is the run's own:
    ``horizon_s`` of an L2 run, the decision interval of a bar run."""
    if not await table_exists(pool, "backtest_runs"):
        return None
    if run_id is None:
        row = await pool.fetchrow(
            "SELECT run_id, settings::text AS s FROM backtest_runs ORDER BY created_at DESC LIMIT 1"
        )
    else:
        row = await pool.fetchrow("SELECT run_id, settings::text AS s FROM backtest_runs WHERE run_id = $1", run_id)
        if row is None:
            raise KeyError(f"unknown backtest run {run_id!r}")
    if row is None:
        return None
    horizon_s = run_horizon_s(json.loads(row["s"]))
    rows = await pool.fetch(
        """SELECT ts_event_ns, symbol, policy_id, propensity, signal, price, context::text AS c,
                  shadow::text AS sh, venue, mean_bps, width_bps
           FROM backtest_decisions WHERE run_id = $1 ORDER BY seq DESC LIMIT $2""",
        row["run_id"],
        limit,
    )
    out = [
        BacktestDecision(
            r["ts_event_ns"],
            r["symbol"],
            r["policy_id"],
            r["propensity"],
            r["signal"],
            r["price"],
            _ctx.decode(r["c"]),
            _shadow.decode(r["sh"]),
            r["venue"],
            r["mean_bps"],
            r["width_bps"],
        )
        for r in reversed(rows)
    ]
    return str(row["run_id"]), horizon_s, out


async def backtest_run_sharpes(pool: asyncpg.Pool) -> list[float]:
    """Per-decision Sharpe ratio of the router's reward in every stored backtest run (each run is
    a trial for the deflated Sharpe ratio); runs with < 2 rewards or no variance are left out."""
    if not await table_exists(pool, "backtest_decisions"):
        return []
    rows = await pool.fetch(
        """SELECT avg(reward) / nullif(stddev_samp(reward), 0) AS sr FROM backtest_decisions
           WHERE reward IS NOT NULL GROUP BY run_id HAVING count(reward) >= 2"""
    )
    return [float(r["sr"]) for r in rows if r["sr"] is not None]


async def set_metrics(pool: asyncpg.Pool, model_id: str, metrics: dict[str, float]) -> None:
    """Merge ``metrics`` into a model's (measured out of sample on the decisions it made)."""
    await pool.execute("UPDATE models SET metrics = metrics || $2::jsonb WHERE id = $1", model_id, json.dumps(metrics))
