"""risk-guards shell: ``risk-guards.check``, ``.state`` and ``.kill`` (dev) over request/reply."""

from __future__ import annotations

import asyncio

import asyncpg
import stamina
from prometheus_client import Counter

from stevie.contracts.rpc import GuardDecision, GuardsState, GuardsStateRequest, KillRequest, OrderCheck
from stevie.runtime.service import ServiceContext, ServiceSpec
from stevie.services.risk_guards.core import RiskGuards
from stevie.services.risk_guards.settings import RiskGuardsSettings
from stevie.store import connect_pool
from stevie.store.state import exposure, filled_trades


async def main(ctx: ServiceContext) -> None:
    s = ctx.settings
    assert isinstance(s, RiskGuardsSettings)
    guards = RiskGuards(s)
    if s.database_url:  # exposure from the recorded fills, as the last accepted checks left it
        pool = await stamina.retry(on=(OSError, asyncpg.PostgresError), attempts=30, timeout=30.0)(connect_pool)(
            s.database_url, 1, 1
        )
        try:
            guards.exposure, guards.gross = exposure(await filled_trades(pool))
        finally:
            await pool.close()
        ctx.log.info("exposure_restored", exposure=guards.exposure, gross_quote=guards.gross)
    blocked = Counter("risk_blocked_total", "Orders blocked by a risk guard", ["reason"], registry=ctx.registry)
    checked = Counter("risk_checks_total", "Orders checked", registry=ctx.registry)

    def check(o: OrderCheck) -> GuardDecision:
        d = guards.check(o)
        checked.inc()
        if d.blocked:
            blocked.labels(d.reason.split(":")[0]).inc()
        return d

    def state(_: GuardsStateRequest) -> GuardsState:
        return guards.state()

    def kill(req: KillRequest) -> GuardsState:
        guards.kill_switch = req.on
        ctx.log.warning("kill_switch", on=req.on)
        return guards.state()

    await ctx.serve_rpc("check", OrderCheck, check)
    await ctx.serve_rpc("state", GuardsStateRequest, state)
    await ctx.serve_rpc("kill", KillRequest, kill)
    await asyncio.Event().wait()


SPEC = ServiceSpec("risk-guards", RiskGuardsSettings, main)
