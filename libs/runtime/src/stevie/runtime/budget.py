"""Client side of the budgeter: every external (venue REST) request asks for a grant first.

``acquire`` waits through ``defer`` answers and through a budgeter that is not answering
yet (fail closed: no grant, no request), up to ``deadline_s``.
"""

from __future__ import annotations

import asyncio
import time

import msgspec

from stevie.bus import Bus
from stevie.contracts import encode, subjects
from stevie.contracts.rpc import Grant, GrantRequest, RpcError


class BudgetDenied(Exception):
    """The budgeter denied the request, or no grant came before the deadline."""


_reply = msgspec.json.Decoder(Grant | RpcError)


async def acquire(
    bus: Bus, root: str, provider: str, weight: int, caller: str, deadline_s: float = 120.0, priority: str = "high"
) -> str:
    """Block until ``weight`` of ``provider``'s budget is granted; returns the provider to use.
    Raises BudgetDenied."""
    end = time.monotonic() + deadline_s
    req = encode(GrantRequest(provider, weight, caller, priority=priority))
    while time.monotonic() < end:
        try:
            msg = await bus.request(subjects.rpc(root, "budgeter", "grant"), req, timeout_s=2.0)
        except TimeoutError:
            await asyncio.sleep(0.5)
            continue
        g = _reply.decode(msg.data)
        if isinstance(g, RpcError):
            raise BudgetDenied(f"{g.error}: {g.detail}")
        if g.decision == "grant":
            return g.provider
        if g.decision == "deny":
            raise BudgetDenied(g.reason)
        await asyncio.sleep(min(g.retryAfterMs / 1000.0, max(end - time.monotonic(), 0.0)))
    raise BudgetDenied(f"no grant for {provider} within {deadline_s} s")
