"""router ⇄ model registry (async I/O): load the current model at start, checkpoint the
posterior into PostgreSQL every N updates and on shutdown, reload a promoted or rolled-back
model live (``subjects.model_current``), apply calibration nudges (``subjects.nudges``) and
the baseline-challenger guard (``subjects.baseline_guard``).

Each run of the router writes its checkpoints into one model row of its own
(``ckpt-<12 hex>``, parent = the model it started from), which becomes current by
compare-and-set (``stevie.store.evidence.checkpoint``); after a model change it starts a new
row whose parent is the new model. Without a database (``STEVIE_DATABASE_URL`` empty) the
router runs from the prior and nothing is persisted.

The green stack (``colour = green``, ``stevie.services.router.stack``) loads the candidate
instead (polled every ``candidate_poll_s``), follows promotes only while it serves the current
model, and never writes into the registry. Both stacks announce themselves (``RouterStack``
on ``subjects.deploy_stack``) every ``announce_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Coroutine

import asyncpg
import stamina
from prometheus_client import Counter

from stevie.contracts import encode, subjects
from stevie.contracts.evidence import BaselineGuard, ModelChange, NudgesApplied, RouterPosterior
from stevie.contracts.ops import RouterStack
from stevie.quant.errors import QuantInputError
from stevie.runtime.service import ServiceContext
from stevie.services.router import checkpoint, stack
from stevie.services.router.core import Router
from stevie.services.router.settings import RouterSettings
from stevie.store import connect_pool
from stevie.store import evidence as repo


class ModelSync:
    def __init__(self, ctx: ServiceContext, router: Router, every: int) -> None:
        self.ctx, self.router = ctx, router
        self.schedule = checkpoint.Schedule(every)
        self.pool: asyncpg.Pool | None = None
        self.parent: str | None = None
        self.session = self._new_id()
        self.source = f"router:{socket.gethostname()}:{os.getpid()}"
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        assert isinstance(ctx.settings, RouterSettings)
        self.s = ctx.settings
        dlq = Counter("router_model_dlq_total", "Undecodable model/nudge messages", ["stack"], registry=ctx.registry)
        self.dlq = dlq.labels(self.s.colour)
        self.green = self.s.colour == "green"
        self.loaded_from = ""  # the registry model this process loaded ('' = the prior)
        self.is_candidate = False  # green serving a model that is not current
        self.poller: asyncio.Future[None] | None = None

    @staticmethod
    def _new_id() -> str:
        return f"ckpt-{uuid.uuid4().hex[:12]}"

    async def start(self) -> None:
        """Connect, load the current model (if any), follow model changes and nudges."""
        root = self.ctx.settings.subject_root
        await self.ctx.subscribe_typed(subjects.model_current(root), ModelChange, self.on_change, self.dlq)
        await self.ctx.subscribe_typed(subjects.nudges(root), NudgesApplied, self.on_nudges, self.dlq)
        await self.ctx.subscribe_typed(subjects.baseline_guard(root), BaselineGuard, self.on_guard, self.dlq)
        url = self.ctx.settings.database_url
        if not url:
            self.ctx.log.warning("no_database", detail="posterior not persisted; starting from the prior")
            return
        retry = stamina.retry(on=(OSError, asyncpg.PostgresError), attempts=20, timeout=30.0)
        self.pool = await retry(connect_pool)(url)
        try:
            cur = await repo.current_model(self.pool)
        except asyncpg.UndefinedTableError:  # migrations not applied yet: nothing to load
            cur = None
        if self.green:
            await self.follow_candidate()
            self.poller = asyncio.ensure_future(self._poll_candidates())
            return
        if cur is None or cur[1] is None:
            self.ctx.log.info("model_prior", detail="no current model; starting from the prior")
            return
        self._load(cur[0].id, cur[1])

    def _spawn(self, coro: Coroutine[None, None, None]) -> None:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def follow_candidate(self) -> None:
        """Green: load ``green_model`` or the registry's candidate (``stack.candidate``), else
        the current model, when it differs from what is loaded. Database errors are logged."""
        assert self.pool is not None
        try:
            models = await repo.list_models(self.pool)
            ever = {mid for _, action, mid, _ in await repo.model_history(self.pool, 1000) if action != "register"}
            want = self.s.green_model or stack.candidate(models, ever)
            is_candidate = want is not None
            if want is None:
                want = next((m.id for m in models if m.current), None)
            if want is None or want == self.loaded_from:
                self.is_candidate = is_candidate and want is not None
                return
            post = await repo.model_posterior(self.pool, want)
        except (KeyError, OSError, asyncpg.PostgresError) as exc:
            self.ctx.log.warning("candidate_not_loaded", error=str(exc)[:200])
            return
        if post is not None:
            self._load(want, post)
            self.is_candidate = is_candidate

    async def _poll_candidates(self) -> None:
        while True:
            await asyncio.sleep(self.s.candidate_poll_s)
            await self.follow_candidate()

    async def announce(self) -> None:
        """Every ``announce_s``: this stack's colour and model (``RouterStack``)."""
        subject = subjects.deploy_stack(self.ctx.settings.subject_root, self.s.colour)
        while True:
            with contextlib.suppress(Exception):
                msg = RouterStack(
                    self.s.colour,
                    self.router.model_id,
                    self.loaded_from,
                    self.is_candidate,
                    os.getpid(),
                    self.ctx.clock.now_ns(),
                )
                await self.ctx.bus.publish(subject, encode(msg))
            await asyncio.sleep(self.s.announce_s)

    def _load(self, model_id: str, post: RouterPosterior) -> None:
        try:
            checkpoint.load(self.router, post)
        except QuantInputError as exc:
            self.ctx.log.warning("model_not_loaded", model=model_id, error=str(exc))
            return
        self.parent, self.session = model_id, self._new_id()
        self.router.model_id = self.loaded_from = model_id
        self.schedule.since = 0
        self.ctx.log.info("model_loaded", model=model_id, updates=self.router.updates())

    def on_update(self) -> None:
        """Call after every posterior update: checkpoints in the background when due."""
        if self.schedule.on_update() and self.pool is not None and not self.green:
            self._spawn(self.save())

    async def save(self) -> None:
        """Write the posterior now (a database error is logged; the next checkpoint retries).
        Green writes nothing."""
        if self.pool is None or self.green:
            return
        async with self._lock:
            await self._save()

    async def _save(self) -> None:
        assert self.pool is not None
        post = checkpoint.export(self.router)
        try:
            current = await repo.checkpoint(self.pool, self.session, self.source, post, self.parent)
        except (OSError, asyncpg.PostgresError) as exc:
            self.ctx.log.warning("checkpoint_failed", error=str(exc)[:200])
            return
        if current:
            self.router.model_id = self.session
        self.ctx.log.info("checkpoint", model=self.session, current=current, updates=self.router.updates())

    async def on_change(self, change: ModelChange) -> None:
        """A promote or rollback: store this session's posterior (its row stays, no longer
        current), then load that model's posterior now."""
        if self.pool is None:
            return
        async with self._lock:
            try:
                post = await repo.model_posterior(self.pool, change.model.id)
            except (KeyError, OSError, asyncpg.PostgresError) as exc:
                self.ctx.log.warning("model_change_failed", model=change.model.id, error=str(exc)[:200])
                return
            if post is not None:
                await self._save()  # keep this session's updates since its last checkpoint (not current)
                self._load(change.model.id, post)

    def on_nudges(self, n: NudgesApplied) -> None:
        """Scale the exploration (prior) scale: v ← v·(1 + routerPriorDelta)."""
        if n.applied and n.routerPriorDelta > -1:
            self.router.ts.v *= 1.0 + n.routerPriorDelta
            self.ctx.log.info("nudge_applied", router_prior_delta=n.routerPriorDelta, v=self.router.ts.v)

    def on_guard(self, g: BaselineGuard) -> None:
        """The baseline-challenger guard: policies replaced by ``p_flat`` per region."""
        new = {region: frozenset(ps) for region, ps in g.regions.items() if ps}
        if new != self.router.fallback:
            self.ctx.log.info("baseline_guard", regions={k: sorted(v) for k, v in new.items()})
        self.router.fallback, self.router.fallback_reasons = new, dict(g.reasons)

    async def stop(self) -> None:
        """Final checkpoint (SIGTERM), then close."""
        if self.poller is not None:
            self.poller.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(Exception):
                await t
        if self.pool is not None:
            await self.save()
            await self.pool.close()
