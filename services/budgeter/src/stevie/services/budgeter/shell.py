"""budgeter shell: ``budgeter.grant`` and ``budgeter.status`` over request/reply (wall clock:
rate limits are counted by the venue in real time)."""

from __future__ import annotations

import asyncio

from prometheus_client import Counter

from stevie.contracts.rpc import BudgetStatus, BudgetStatusRequest, Grant, GrantRequest
from stevie.runtime.service import ServiceContext, ServiceSpec
from stevie.services.budgeter.core import Budgeter
from stevie.services.budgeter.settings import BudgeterSettings


async def main(ctx: ServiceContext) -> None:
    s = ctx.settings
    assert isinstance(s, BudgeterSettings)
    core = Budgeter(s.parsed(), s.reserve_fraction)
    decisions = Counter("budget_decisions_total", "Grant decisions", ["provider", "decision"], registry=ctx.registry)

    def grant(req: GrantRequest) -> Grant:
        g = core.grant(req, ctx.clock.now_ns())
        decisions.labels(g.provider, g.decision).inc()
        return g

    def status(_: BudgetStatusRequest) -> BudgetStatus:
        return core.status(ctx.clock.now_ns())

    await ctx.serve_rpc("grant", GrantRequest, grant)
    await ctx.serve_rpc("status", BudgetStatusRequest, status)
    await asyncio.Event().wait()


SPEC = ServiceSpec("budgeter", BudgeterSettings, main, nice=5)  # background: yields the cores to the decision path
