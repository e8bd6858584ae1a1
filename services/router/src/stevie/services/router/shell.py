"""router shell: ``router.choose``, ``router.update``, ``router.snapshot`` over request/reply."""

from __future__ import annotations

import asyncio

from prometheus_client import Counter

from stevie.contracts.rpc import (
    Choice,
    ChooseRequest,
    PosteriorSummary,
    RouterSnapshot,
    SnapshotRequest,
    UpdateRequest,
)
from stevie.runtime.service import ServiceContext, ServiceSpec
from stevie.services.router.core import Router
from stevie.services.router.models import ModelSync
from stevie.services.router.settings import RouterSettings


async def main(ctx: ServiceContext) -> None:
    s = ctx.settings
    assert isinstance(s, RouterSettings)
    router = Router(s.seed, s.prior_precision, s.exploration, s.mc_draws, max_abs_reward=s.max_abs_reward_bps)
    sync = ModelSync(ctx, router, s.checkpoint_every)
    await sync.start()
    decisions = Counter(
        "router_decisions_total",
        "Policy choices, by source: execution = a real decision (router.decide), api = a what-if query",
        ["policy", "source"],
        registry=ctx.registry,
    )
    updates = Counter("router_updates_total", "Posterior updates", ["policy"], registry=ctx.registry)

    def choose(req: ChooseRequest) -> Choice:  # POST /api/router/choose: not a decision
        c = router.choose(req.context, ctx.clock.now_ns(), decision=False)
        decisions.labels(c.policyId, "api").inc()
        return c

    def decide(req: ChooseRequest) -> Choice:  # execution's decision clock
        c = router.choose(req.context, ctx.clock.now_ns())
        decisions.labels(c.policyId, "execution").inc()
        return c

    def update(req: UpdateRequest) -> PosteriorSummary:
        out = router.update(req.policyId, req.reward, req.context)
        updates.labels(req.policyId).inc()
        sync.on_update()
        return out

    def snapshot(_: SnapshotRequest) -> RouterSnapshot:
        return router.snapshot(ctx.clock.now_ns())

    await ctx.serve_rpc("choose", ChooseRequest, choose)
    await ctx.serve_rpc("decide", ChooseRequest, decide)
    await ctx.serve_rpc("update", UpdateRequest, update)
    await ctx.serve_rpc("snapshot", SnapshotRequest, snapshot)
    try:
        await asyncio.Event().wait()
    finally:
        await sync.stop()  # SIGTERM: last checkpoint


SPEC = ServiceSpec("router", RouterSettings, main)
