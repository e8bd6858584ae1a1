"""control shell: feature flags (PostgreSQL overrides, audited, pushed over NATS), data-quality
statistics, the blue/green cutover state and the canary ladder.

RPCs (``stevie.rpc.control.*``): ``flags_get``, ``flags_set``, ``dq_stats``, ``deploy_status``,
``deploy_action``, ``canary_state``, ``canary_action``. Flags are re-published every ``REPUBLISH_S`` seconds and at
once on a change (``subjects.flags``). Paper stats for the ladder are polled from execution
(positions, equity), risk-guards (breaker) and execution's heartbeat metrics (fills).

Blue/green: the router stacks announce their model (``subjects.deploy_stack``), execution
sends per-stack SLO samples (``subjects.deploy_slo``) into the two ``SloWindow``s; every
``cutover_eval_s`` the cutover is driven (``deploy.drive``), each transition audited
(``ops_audit``), and green's share published (``subjects.deploy_share``). Reaching ``active``
promotes green's model in the registry (evidence ``models_promote``), so the blue stack loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

import asyncpg
import msgspec
import stamina
from prometheus_client import Counter, Gauge

from stevie.contracts import Heartbeat, encode, subjects
from stevie.contracts.evidence import ModelChange, ModelIdRequest
from stevie.contracts.ops import (
    CanaryAction,
    CanaryState,
    CanaryStateRequest,
    DeployAction,
    DeployShare,
    DeployStatus,
    DeployStatusRequest,
    DqExample,
    DqStats,
    DqStatsRequest,
    FlagsGetRequest,
    FlagsSetRequest,
    FlagsState,
    FlagsUpdate,
    RouterStack,
    StackSlo,
    Transition,
)
from stevie.contracts.rpc import GuardsState, GuardsStateRequest, Positions, PositionsRequest, RpcError
from stevie.runtime import flags as fl
from stevie.runtime.service import ServiceContext, ServiceSpec
from stevie.services.control.core import dq_sources, samples
from stevie.services.control.deploy import (
    WEIGHTS,
    Call,
    CanaryLadder,
    Cutover,
    CutoverConfig,
    LadderConfig,
    PaperStats,
    SloThresholds,
    SloWindow,
    drive,
)
from stevie.services.control.settings import ControlSettings
from stevie.store import connect_pool, migrate
from stevie.store.ops import insert_ops_audit, load_overrides, quarantine_examples, write_flag_change

MS = 1_000_000


class Control:
    def __init__(self, ctx: ServiceContext, s: ControlSettings, pool: asyncpg.Pool | None) -> None:
        self.ctx, self.s, self.pool = ctx, s, pool
        self.book = fl.FlagBook(fl.defaults(os.environ))
        self.metrics_texts: dict[str, str] = {}
        t = SloThresholds(s.slo_max_p95_ms, s.slo_max_error_rate, s.slo_max_qos_gap, s.slo_min_samples)
        cfg = CutoverConfig(s.canary_share, s.partial_shares, s.cutover_window_s, thresholds=t)
        self.cutover = Cutover(s.blue_model, cfg)
        self.slo = {c: SloWindow(s.cutover_window_s, t) for c in ("blue", "green")}
        self.stacks: dict[str, RouterStack] = {}
        self.done: set[str] = set()  # models rolled back or made active: never proposed again
        self.ladder = CanaryLadder(
            LadderConfig(
                s.canary_min_fills, s.canary_min_pnl_quote, s.canary_max_cvar_quote, 0.95, s.canary_min_dwell_s
            )
        )
        r = ctx.registry
        self.m_changes = Counter("flag_changes_total", "Feature-flag changes", ["flag"], registry=r)
        self.m_flag = Gauge("flag_value", "Bool flags as 0/1 (DataQuality: 1 = strict)", ["flag"], registry=r)
        self.m_transitions = Counter(
            "deploy_transitions_total", "Cutover and canary transitions", ["machine", "to"], registry=r
        )
        self.m_share = Gauge("deploy_green_share", "Share of decisions sent to green", registry=r)
        self.m_weight = Gauge("canary_paper_weight", "Canary ladder paper weight", registry=r)
        self.m_p95 = Gauge("deploy_slo_p95_ms", "p95 latency of decide/choose per router stack", ["stack"], registry=r)
        self.m_err = Gauge("deploy_slo_error_rate", "Failed share of calls per router stack", ["stack"], registry=r)
        self._set_gauges()

    def _set_gauges(self) -> None:
        for name, v in self.book.values().items():
            self.m_flag.labels(name).set(1.0 if v is True or v == "strict" else 0.0)
        self.m_share.set(self.cutover.green_share)
        self.m_weight.set(WEIGHTS[self.ladder.state])

    # -- flags ----------------------------------------------------------------------------
    async def load(self) -> None:
        if self.pool is None:
            return
        for o in await load_overrides(self.pool):
            try:
                value = fl.parse_value(o.name, o.value)
            except ValueError:  # a flag that no longer exists, or a value it no longer takes
                self.ctx.log.warning("flag_override_ignored", flag=o.name, value=str(o.value))
                continue
            self.book.overrides[o.name] = fl.Override(value, o.updated_at_ms, o.updated_by, o.previous)
        self.book.version += 1
        self._set_gauges()

    def flags_get(self, _: FlagsGetRequest) -> FlagsState:
        return self.book.state()

    async def flags_set(self, req: FlagsSetRequest) -> FlagsState:
        """Validate all, persist each change with its audit row, push, answer the new state.
        ValueError (→ 400) on an unknown flag or a wrong type; RuntimeError (→ 503) when the
        database refuses (nothing changes then)."""
        before = dict(self.book.overrides)
        now_ms = self.ctx.clock.now_ns() // MS
        changes = self.book.apply(req.values, req.actor or "anonymous", now_ms)
        if self.pool is not None:
            try:
                for c in changes:
                    await write_flag_change(self.pool, c.name, c.old, c.new, c.removed, c.actor, c.at_ms)
            except (OSError, asyncpg.PostgresError) as exc:
                self.book.overrides = before
                raise RuntimeError(f"flags not stored: {exc}") from exc
        for c in changes:
            self.m_changes.labels(c.name).inc()
            self.ctx.log.info("flag_changed", flag=c.name, old=c.old, new=c.new, actor=c.actor)
        self._set_gauges()
        await self.publish_flags()
        return self.book.state()

    async def publish_flags(self) -> None:
        now = self.ctx.clock.now_ns()
        up = FlagsUpdate(self.book.values(), self.book.version, now, now)
        await self.ctx.bus.publish(subjects.flags(self.s.subject_root), encode(up))

    async def republish(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.publish_flags()
            await asyncio.sleep(fl.REPUBLISH_S)

    # -- data quality ---------------------------------------------------------------------
    def on_heartbeat(self, hb: Heartbeat) -> None:
        self.metrics_texts[hb.service] = hb.metrics_text

    async def dq_stats(self, req: DqStatsRequest) -> DqStats:
        if not 0 <= req.limit <= 100:
            raise ValueError("limit must be in [0, 100]")
        sources, resyncs = dq_sources(self.metrics_texts.values())
        total, examples = 0, list[DqExample]()
        if self.pool is not None:
            try:
                total, examples = await quarantine_examples(self.pool, req.limit)
            except (OSError, asyncpg.PostgresError) as exc:
                self.ctx.log.warning("quarantine_read_failed", error=str(exc)[:200])
        return DqStats(str(self.book.value("DataQuality")), sources, resyncs, total, examples)

    # -- deploy and canary ----------------------------------------------------------------
    async def audit(self, machine: str, trs: list[Transition]) -> None:
        for tr in trs:
            self.m_transitions.labels(machine, tr.toState).inc()
            self.ctx.log.info("transition", machine=machine, frm=tr.fromState, to=tr.toState, reason=tr.reason)
            if self.pool is not None:
                try:
                    await insert_ops_audit(
                        self.pool, machine, machine, tr.fromState, tr.toState, tr.actor, tr.reason, tr.atMs
                    )
                except (OSError, asyncpg.PostgresError) as exc:
                    self.ctx.log.warning("transition_not_audited", error=str(exc)[:200])
        self._set_gauges()

    def on_stack(self, m: RouterStack) -> None:
        if m.colour in self.slo:
            self.stacks[m.colour] = msgspec.structs.replace(m, ts_ns=self.ctx.clock.now_ns())  # arrival time

    def on_slo(self, batch: StackSlo) -> None:
        w = self.slo.get(batch.colour)
        if w is None:
            return
        now = self.ctx.clock.now_ns()  # the window runs on control's clock (arrival time)
        for x in batch.samples:
            w.add(Call(now, x.latencyMs, x.error, x.predicted, x.realised))

    async def drive_cutover(self) -> None:
        """One evaluation: drive the cutover, audit, promote on ``active``, publish the share."""
        now = self.ctx.clock.now_ns()
        c, blue = self.cutover, self.stacks.get("blue")
        if blue is not None and blue.modelId and c.state not in ("canary", "partial"):
            c.blue = blue.modelId
        views = {colour: w.view(now) for colour, w in self.slo.items()}
        for colour, v in views.items():
            self.m_p95.labels(colour).set(v.p95LatencyMs if v.p95LatencyMs is not None else float("nan"))
            self.m_err.labels(colour).set(v.errorRate if v.errorRate is not None else float("nan"))
        green_slo = views["green"]
        trs = drive(
            c, self.stacks.get("green"), green_slo, now, self.done, self.s.cutover_auto_start, self.s.stack_stale_s
        )
        await self.audit("deploy", trs)
        if any(tr.toState == "active" for tr in trs):
            await self.promote(c.blue)
        await self.publish_share()

    async def promote(self, model_id: str) -> None:
        """Make ``model_id`` current in the registry (evidence), so blue loads it."""
        got = await self._ask("evidence", "models_promote", ModelIdRequest(model_id, "control:cutover"), ModelChange)
        self.ctx.log.info("cutover_promoted", model=model_id, ok=isinstance(got, ModelChange))

    async def publish_share(self) -> None:
        c = self.cutover
        m = DeployShare(c.state, c.green_share, c.green, self.ctx.clock.now_ns())
        await self.ctx.bus.publish(subjects.deploy_share(self.s.subject_root), encode(m))

    async def cutover_loop(self) -> None:
        while True:
            try:
                await self.drive_cutover()
            except Exception as exc:  # one bad evaluation must not stop the cutover
                self.ctx.log.warning("cutover_eval_failed", error=str(exc)[:200])
            await asyncio.sleep(self.s.cutover_eval_s)

    async def deploy_action(self, req: DeployAction) -> DeployStatus:
        """Operator: ``start`` (candidate → canary) or ``rollback``. ValueError (→ 400) for
        another action or one the state does not allow."""
        now, actor = self.ctx.clock.now_ns(), req.actor or "anonymous"
        if req.action == "start":
            trs = self.cutover.start(now, actor)
        elif req.action == "rollback":
            trs = self.cutover.rollback(now, req.reason or "rolled back by operator", actor)
            if self.cutover.green:
                self.done.add(self.cutover.green)
        else:
            raise ValueError(f"action must be start or rollback, got {req.action[:40]!r}")
        await self.audit("deploy", trs)
        await self.publish_share()
        return self.deploy_status(DeployStatusRequest())

    def deploy_status(self, _: DeployStatusRequest) -> DeployStatus:
        now = self.ctx.clock.now_ns()
        c = self.cutover
        return DeployStatus(
            state=c.state,
            blue=c.blue,
            green=c.green,
            greenShare=c.green_share,
            slo={colour: w.view(now) for colour, w in self.slo.items()},
            healthySinceMs=None if c.healthy_since_ns is None else c.healthy_since_ns // MS,
            windowS=c.cfg.window_s,
            transitions=c.transitions[-20:],
            stacks=dict(self.stacks),
        )

    def canary_state(self, _: CanaryStateRequest | None = None) -> CanaryState:
        lad = self.ladder
        return CanaryState(
            state=lad.state,
            paperWeight=WEIGHTS[lad.state],
            held=lad.held,
            next=lad.next,
            gates=lad.gates(),
            blockedBy=lad.blocked_by(),
            transitions=lad.transitions[-20:],
        )

    async def canary_action(self, req: CanaryAction) -> CanaryState:
        trs = self.ladder.act(req.action, self.ctx.clock.now_ns(), req.actor or "anonymous", req.reason)
        await self.audit("canary", trs)
        return self.canary_state()

    async def _ask(self, service: str, method: str, req: msgspec.Struct, tp: type) -> object | None:
        try:
            msg = await self.ctx.bus.request(subjects.rpc(self.s.subject_root, service, method), encode(req), 2.0)
            out = msgspec.json.decode(msg.data, type=tp | RpcError)
        except (TimeoutError, msgspec.DecodeError, msgspec.ValidationError):
            return None
        return None if isinstance(out, RpcError) else out

    def _fills(self) -> int:
        text = self.metrics_texts.get("execution", "")
        return int(sum(v for _, v in samples([text], "exec_fills_total")))

    async def poll_paper(self) -> None:
        """Every ``canary_poll_s``: paper stats → the ladder (transitions audited)."""
        while True:
            await asyncio.sleep(self.s.canary_poll_s)
            pos = await self._ask("execution", "positions", PositionsRequest(), Positions)
            guards = await self._ask("risk-guards", "state", GuardsStateRequest(), GuardsState)
            if not isinstance(pos, Positions):
                continue
            tripped = bool(guards.breaker.get("tripped")) if isinstance(guards, GuardsState) else True
            stats = PaperStats(self.ctx.clock.now_ns(), self._fills(), pos.equityQuote, tripped)
            await self.audit("canary", self.ladder.observe(stats))


async def main(ctx: ServiceContext) -> None:
    s = ctx.settings
    assert isinstance(s, ControlSettings)
    pool = None
    if s.database_url:
        retry = stamina.retry(on=(OSError, asyncpg.PostgresError), attempts=20, timeout=30.0)
        await retry(migrate)(s.database_url)
        pool = await retry(connect_pool)(s.database_url, max_size=2)
    c = Control(ctx, s, pool)
    await c.load()
    dlq = Counter("control_dlq_total", "Undecodable messages", ["type"], registry=ctx.registry)
    await ctx.subscribe_typed(
        subjects.heartbeat(s.subject_root, "*"), Heartbeat, c.on_heartbeat, dlq.labels("heartbeat")
    )
    await ctx.serve_rpc("flags_get", FlagsGetRequest, c.flags_get)
    await ctx.serve_rpc("flags_set", FlagsSetRequest, c.flags_set)
    await ctx.serve_rpc("dq_stats", DqStatsRequest, c.dq_stats)
    await ctx.subscribe_typed(
        subjects.deploy_stack(s.subject_root, "*"), RouterStack, c.on_stack, dlq.labels("deploy_stack")
    )
    await ctx.subscribe_typed(subjects.deploy_slo(s.subject_root, "*"), StackSlo, c.on_slo, dlq.labels("deploy_slo"))
    await ctx.serve_rpc("deploy_status", DeployStatusRequest, c.deploy_status)
    await ctx.serve_rpc("deploy_action", DeployAction, c.deploy_action)
    await ctx.serve_rpc("canary_state", CanaryStateRequest, c.canary_state)
    await ctx.serve_rpc("canary_action", CanaryAction, c.canary_action)
    ctx.log.info("control_ready", flags=c.book.values())
    try:
        await asyncio.gather(c.republish(), c.poll_paper(), c.cutover_loop())
    finally:
        if pool is not None:
            with contextlib.suppress(Exception):
                await pool.close()


SPEC = ServiceSpec("control", ControlSettings, main, nice=5)  # background: yields the cores to the decision path
