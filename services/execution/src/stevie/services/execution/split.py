"""Blue/green split of execution's decisions between the router stacks, and the per-stack SLO
samples measured where the calls happen (issue 13 item 5).

- **Split** (pure): a decision goes to green when ``u < share``, ``u`` = the first 8 bytes of
  BLAKE2b(``venue/symbol/ts_event_ns``) / 2⁶⁴ — uniform on [0, 1), the same for the same
  decision on every replay, independent of the share (raising the share only adds decisions
  to green). The share is the cutover's (``DeployShare`` from control); a share older than
  ``share_ttl_s`` of the injected clock counts as 0 (control away: everything to blue).
- **Fallback**: a green call that fails is counted against green and the decision is taken by
  blue (trading never waits on the candidate); a blue failure raises as before.
- **Rewards** go back to the stack that made the decision (the context object the decision
  used identifies it; ``core.due_rewards`` hands the same object back), with a QoS sample:
  the predicted score (posterior mean = score − exploration bonus, bps) next to the realised
  reward (bps). Those due at a decision ride in the ``DecideRequest`` of the stack asked
  (one round trip); the other stack's are sent beside it.
- **Mirroring**: while a cutover runs (share > 0), each decision taken by blue is also sent
  to green's ``choose`` (a what-if: not traded, not counted as a decision, off the decision
  path, at most ``MAX_MIRRORS`` in flight) so green's latency and errors are measured at the
  full decision rate — a 1 % canary alone sees a few decisions an hour. QoS (predicted vs
  realised) comes only from the decisions green really made.
- **SLO samples** (latency of ``decide``/``choose`` as execution waits for it, ms; error) are
  batched per colour and published every ``every_s`` (``subjects.deploy_slo``) for control's
  SLO windows.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

import msgspec

from stevie.bus import Bus
from stevie.contracts import encode, subjects
from stevie.contracts.ops import DeployShare, SloSample, StackSlo
from stevie.contracts.rpc import (
    MAX_CARRIED_REWARDS,
    Choice,
    ChooseRequest,
    DecideRequest,
    RouterContext,
    UpdateRequest,
)

#: the service that serves each stack's RPCs (``stevie.rpc.<service>.decide``)
SERVICE = {"blue": "router", "green": "green-router"}
MAX_PENDING = 20_000
MAX_BATCH = 5_000
MAX_MIRRORS = 4

R = TypeVar("R")


class Caller(Protocol):
    """Request/reply to ``service.method``; raises TimeoutError or RuntimeError."""

    def __call__(self, service: str, method: str, req: msgspec.Struct, tp: type[R], /) -> Awaitable[R]: ...


#: a reward on its way: (the service of the stack that made the decision, the update)
Routed = tuple[str, UpdateRequest]
#: sends one reward as ``service.update`` (the caller logs and counts; never raises)
Sender = Callable[[str, UpdateRequest], Awaitable[None]]


def unit(decision_key: str) -> float:
    """A uniform number in [0, 1) fixed by ``decision_key`` (BLAKE2b, first 8 bytes / 2⁶⁴)."""
    return int.from_bytes(hashlib.blake2b(decision_key.encode(), digest_size=8).digest(), "big") / 2.0**64


def colour_for(decision_key: str, share: float) -> str:
    """``green`` when ``unit(decision_key) < share`` else ``blue``. Raises ValueError for a
    share outside [0, 1]."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"green share must be in [0, 1], got {share}")
    return "green" if unit(decision_key) < share else "blue"


class StackSplit:
    """The split state of one execution process. ``now_ns``: the injected clock (sample times,
    share freshness). ``timer``: a monotonic seconds counter for the call latency."""

    def __init__(
        self, now_ns: Callable[[], int], timer: Callable[[], float], share_ttl_s: float = 5.0, mirror: bool = True
    ) -> None:
        self.now_ns, self.timer, self.mirror = now_ns, timer, mirror
        self.mirrors: set[asyncio.Future[None]] = set()
        self.ttl_ns = int(share_ttl_s * 1e9)
        self.share, self.state, self.share_at_ns = 0.0, "active", 0
        self.pending: OrderedDict[int, tuple[RouterContext, str, float]] = OrderedDict()
        self.samples: dict[str, list[SloSample]] = {c: [] for c in SERVICE}
        self.decided = dict.fromkeys(SERVICE, 0)

    def on_share(self, m: DeployShare) -> None:
        """A share from control (invalid shares are ignored: the last good one stays)."""
        if 0.0 <= m.greenShare <= 1.0:
            self.share, self.state, self.share_at_ns = m.greenShare, m.state, self.now_ns()

    def current_share(self) -> float:
        """The share in force: 0 when control has not spoken within ``share_ttl_s``."""
        return self.share if self.now_ns() - self.share_at_ns <= self.ttl_ns else 0.0

    def pick(self, venue: str, symbol: str, ts_event_ns: int) -> str:
        return colour_for(f"{venue}/{symbol}/{ts_event_ns}", self.current_share())

    def _sample(self, colour: str, s: SloSample) -> None:
        batch = self.samples[colour]
        if len(batch) < MAX_BATCH:  # bounded between two publishes
            batch.append(s)

    def _remember(self, ctx: RouterContext, colour: str, choice: Choice) -> None:
        self.pending[id(ctx)] = (ctx, colour, choice.score - choice.explorationBonus)
        while len(self.pending) > MAX_PENDING:  # decisions whose reward never comes (book gap)
            self.pending.popitem(last=False)

    async def decide(
        self,
        call: Caller,
        ctx: RouterContext,
        venue: str,
        symbol: str,
        ts_event_ns: int,
        rewards: Sequence[Routed] = (),
        send: Sender | None = None,
        on_carried: Callable[[Sequence[UpdateRequest]], None] = lambda _: None,
    ) -> Choice:
        """The decision's choice from its stack (green falls back to blue on failure). Raises
        what ``call`` raises for blue (TimeoutError, RuntimeError).

        ``rewards`` (due at the decision's event time, each routed by ``reward_to``) reach
        every stack before it decides: those of the stack asked first ride in its
        ``DecideRequest`` (≤ ``MAX_CARRIED_REWARDS``; the rest go ahead through ``send``);
        the other stack's go through ``send`` meanwhile — blue's are awaited before blue is
        asked as the fallback. Carried rewards are applied before the choice, so a stack that
        fails the call has learnt them (or, on a timeout, may have): they are not re-sent, and
        ``on_carried`` gets them once the first call is over. Raises ValueError for rewards
        that need ``send`` without one."""
        colour = self.pick(venue, symbol, ts_event_ns)
        if colour == "blue" and self.mirror and self.current_share() > 0 and len(self.mirrors) < MAX_MIRRORS:
            task = asyncio.ensure_future(self._mirror(call, ctx))
            self.mirrors.add(task)
            task.add_done_callback(self.mirrors.discard)
        order = ("green", "blue") if colour == "green" else ("blue",)
        first = SERVICE[order[0]]
        own = [u for svc, u in rewards if svc == first]
        carried, overflow = own[:MAX_CARRIED_REWARDS], own[MAX_CARRIED_REWARDS:]
        others = [(svc, u) for svc, u in rewards if svc != first]
        apart = None
        if overflow or others:
            if send is None:
                raise ValueError("rewards beyond the first stack's carried ones need a sender")
            await asyncio.gather(*(send(first, u) for u in overflow))
            apart = asyncio.gather(*(send(svc, u) for svc, u in others)) if others else None
        try:
            for c in order:
                if c != order[0] and apart is not None:
                    await asyncio.shield(apart)  # the fallback stack's rewards before its choice
                t0 = self.timer()
                req = DecideRequest(ctx, carried if c == order[0] else [])
                try:
                    choice = await call(SERVICE[c], "decide", req, Choice)
                except (TimeoutError, RuntimeError):
                    if req.rewards:
                        on_carried(req.rewards)
                    self._sample(c, SloSample(self.now_ns(), (self.timer() - t0) * 1e3, True))
                    if c == "blue":
                        raise
                    continue
                if req.rewards:
                    on_carried(req.rewards)
                self._sample(c, SloSample(self.now_ns(), (self.timer() - t0) * 1e3, False))
                self._remember(ctx, c, choice)
                self.decided[c] += 1
                return choice
            raise AssertionError("unreachable: blue either answers or raises")
        finally:
            if apart is not None:
                await apart

    async def _mirror(self, call: Caller, ctx: RouterContext) -> None:
        """Green's ``choose`` on a decision blue took: one latency/error sample for green."""
        t0 = self.timer()
        try:
            await call(SERVICE["green"], "choose", ChooseRequest(ctx), Choice)
            failed = False
        except (TimeoutError, RuntimeError):
            failed = True
        self._sample("green", SloSample(self.now_ns(), (self.timer() - t0) * 1e3, failed))

    def reward_to(self, ctx: RouterContext, reward_bps: float) -> str:
        """The service the reward of the decision made with ``ctx`` goes to (``router`` when
        the decision is unknown, e.g. a manual order), recording the QoS sample."""
        entry = self.pending.pop(id(ctx), None)
        if entry is None or entry[0] is not ctx:
            return SERVICE["blue"]
        _, colour, predicted = entry
        self._sample(colour, SloSample(self.now_ns(), None, False, predicted, reward_bps))
        return SERVICE[colour]

    def drain(self) -> list[StackSlo]:
        """The batches collected since the last drain (non-empty ones), emptied."""
        out = [StackSlo(c, batch) for c, batch in self.samples.items() if batch]
        self.samples = {c: [] for c in SERVICE}
        return out


async def publish_slo(split: StackSplit, bus: Bus, root: str, every_s: float = 1.0) -> None:
    """Forever: every ``every_s`` publish the drained batches (``subjects.deploy_slo``); a
    publish that fails loses that batch only."""
    while True:
        await asyncio.sleep(every_s)
        for batch in split.drain():
            with contextlib.suppress(Exception):
                await bus.publish(subjects.deploy_slo(root, batch.colour), encode(batch))
