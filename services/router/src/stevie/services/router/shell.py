"""router shell: ``router.choose``, ``router.update``, ``router.snapshot`` over request/reply.

The same code runs as the blue (``router``) and the green (``green-router``) stack; every
choice carries the stack's colour (``Choice.stack``). ``fault_*`` settings slow down or fail a
share of ``decide`` calls (the rollback proof)."""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
from prometheus_client import Counter

from stevie.contracts.rpc import (
    Choice,
    ChooseRequest,
    DecideRequest,
    PosteriorSummary,
    RouterSnapshot,
    SnapshotRequest,
    UpdateRequest,
)
from stevie.runtime.service import ServiceContext, ServiceSpec
from stevie.services.router.core import Router
from stevie.services.router.models import ModelSync
from stevie.services.router.settings import RouterSettings
from stevie.services.router.stack import FaultPlan


async def main(ctx: ServiceContext) -> None:
    s = ctx.settings
    assert isinstance(s, RouterSettings)
    router = Router(s.seed, s.prior_precision, s.exploration, s.mc_draws, max_abs_reward=s.max_abs_reward_bps)
    sync = ModelSync(ctx, router, s.checkpoint_every)
    await sync.start()
    decisions = Counter(
        "router_decisions_total",
        "Policy choices, by source: execution = a real decision (router.decide), api = a what-if query"
        " (the API or the blue/green mirror); stack = blue or green",
        ["policy", "source", "stack"],
        registry=ctx.registry,
    )
    updates = Counter("router_updates_total", "Posterior updates", ["policy", "stack"], registry=ctx.registry)
    rejected = Counter(
        "router_carried_rewards_rejected_total",
        "Rewards carried by a router.decide request that the posterior refused (unknown policy, bad reward)",
        registry=ctx.registry,
    )
    faults = FaultPlan(s.fault_delay_ms, s.fault_error_rate)
    if faults.active:
        ctx.log.warning("fault_injection", delay_ms=s.fault_delay_ms, rate=s.fault_error_rate, model=s.fault_model)

    async def inject() -> None:
        if faults.active and s.fault_model in ("", sync.loaded_from):
            await asyncio.sleep(faults.delay_s)
            if faults.next_fails():
                raise RuntimeError(f"fault injection: {s.colour} fails {s.fault_error_rate:.0%} of calls")

    async def choose(req: ChooseRequest) -> Choice:  # POST /api/router/choose, execution's mirror: not a decision
        await inject()
        c = router.choose(req.context, ctx.clock.now_ns(), decision=False)
        decisions.labels(c.policyId, "api", s.colour).inc()
        return msgspec.structs.replace(c, stack=s.colour)

    def update(req: UpdateRequest) -> PosteriorSummary:
        out = router.update(req.policyId, req.reward, req.context)
        updates.labels(req.policyId, s.colour).inc()
        sync.on_update()
        return out

    async def decide(req: DecideRequest) -> Choice:  # execution's decision clock
        for r in req.rewards:  # the rewards due at the decision's event time first (as in the backtest)
            try:
                update(r)
            except (KeyError, ValueError) as exc:  # one bad reward must not cost the decision
                rejected.inc()
                ctx.log.warning("carried_reward_rejected", policy=r.policyId[:60], error=str(exc)[:200])
        await inject()
        c = router.choose(req.context, ctx.clock.now_ns())
        decisions.labels(c.policyId, "execution", s.colour).inc()
        return msgspec.structs.replace(c, stack=s.colour)

    def snapshot(_: SnapshotRequest) -> RouterSnapshot:
        return router.snapshot(ctx.clock.now_ns())

    await ctx.serve_rpc("choose", ChooseRequest, choose)
    await ctx.serve_rpc("decide", DecideRequest, decide)
    await ctx.serve_rpc("update", UpdateRequest, update)
    await ctx.serve_rpc("snapshot", SnapshotRequest, snapshot)
    announcing = asyncio.ensure_future(sync.announce())
    try:
        await asyncio.Event().wait()
    finally:
        announcing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await announcing
        await sync.stop()  # SIGTERM: last checkpoint


SPEC = ServiceSpec("router", RouterSettings, main)
