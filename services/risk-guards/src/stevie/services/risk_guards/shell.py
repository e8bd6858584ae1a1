"""risk-guards shell: ``risk-guards.check``, ``.state`` and ``.kill`` (dev) over request/reply."""

from __future__ import annotations

import asyncio

from prometheus_client import Counter

from stevie.contracts.rpc import GuardDecision, GuardsState, GuardsStateRequest, KillRequest, OrderCheck
from stevie.runtime.service import ServiceContext, ServiceSpec
from stevie.services.risk_guards.core import RiskGuards
from stevie.services.risk_guards.settings import RiskGuardsSettings


async def main(ctx: ServiceContext) -> None:
    s = ctx.settings
    assert isinstance(s, RiskGuardsSettings)
    guards = RiskGuards(s)
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
