"""In-process bus with the same semantics as NATS, for tests and ``stevie backtest``.

Delivery is synchronous and in publish order: ``publish`` awaits every matching handler,
which makes a backtest over it deterministic.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict
from dataclasses import dataclass

from stevie.bus.core import AckHandler, Endpoint, Handler, Msg, subject_matches


@dataclass(eq=False)
class _Sub:
    bus: InMemoryBus
    pattern: str
    handler: Handler
    queue: str

    async def unsubscribe(self) -> None:
        if self in self.bus._subs:
            self.bus._subs.remove(self)


class InMemoryBus:
    """Bus protocol in memory. ``dedup_window`` bounds the remembered durable msg ids."""

    def __init__(self, dedup_window: int = 100_000) -> None:
        self._subs: list[_Sub] = []
        self._rr = itertools.count()
        self._inbox = itertools.count()
        self._pending: dict[str, asyncio.Future[Msg]] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._dedup_window = dedup_window
        self.durable_log: list[Msg] = []

    async def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        await self._deliver(Msg(subject, data, dict(headers or {})))

    async def _deliver(self, msg: Msg) -> int:
        if msg.subject in self._pending:
            fut = self._pending.pop(msg.subject)
            if not fut.done():
                fut.set_result(msg)
            return 1
        plain: list[_Sub] = []
        groups: dict[str, list[_Sub]] = {}
        for sub in list(self._subs):
            if subject_matches(sub.pattern, msg.subject):
                if sub.queue:
                    groups.setdefault(sub.queue, []).append(sub)
                else:
                    plain.append(sub)
        chosen = plain + [members[next(self._rr) % len(members)] for members in groups.values()]
        for sub in chosen:
            await sub.handler(msg)
        return len(chosen)

    async def subscribe(self, subject: str, handler: Handler, queue: str = "") -> _Sub:
        sub = _Sub(self, subject, handler, queue)
        self._subs.append(sub)
        return sub

    async def request(self, subject: str, data: bytes, timeout_s: float = 2.0) -> Msg:
        inbox = f"_INBOX.{next(self._inbox)}"
        fut: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        self._pending[inbox] = fut
        try:
            if await self._deliver(Msg(subject, data, {}, inbox)) == 0:
                raise TimeoutError(f"no responders on {subject}")
            return await asyncio.wait_for(fut, timeout_s)
        finally:
            self._pending.pop(inbox, None)

    async def respond(self, msg: Msg, data: bytes) -> None:
        if msg.reply:
            await self._deliver(Msg(msg.reply, data))

    async def publish_durable(self, subject: str, data: bytes, msg_id: str) -> bool:
        if msg_id in self._seen:
            return False
        self._seen[msg_id] = None
        if len(self._seen) > self._dedup_window:
            self._seen.popitem(last=False)
        msg = Msg(subject, data, {"Nats-Msg-Id": msg_id})
        self.durable_log.append(msg)
        await self._deliver(msg)
        return True

    async def add_endpoint(self, service: str, name: str, subject: str, handler: Endpoint) -> None:
        async def on_request(m: Msg) -> None:
            await self.respond(m, await handler(m.data))

        await self.subscribe(subject, on_request, queue=service)

    async def ensure_stream(self, name: str, subjects: list[str], duplicate_window_s: float = 120.0) -> None:
        """Durable messages are kept in ``durable_log``; nothing to create."""

    async def consume_durable(self, stream: str, durable: str, subject: str, handler: AckHandler) -> None:
        """Replay the durable log, then follow new durable messages (a nak'd message is
        retried once more at the end of the replay)."""
        retry = [m for m in self.durable_log if subject_matches(subject, m.subject) and not await handler(m)]
        for m in retry:
            await handler(m)

        async def live(m: Msg) -> None:
            if m.headers.get("Nats-Msg-Id") and not await handler(m):
                await handler(m)

        await self.subscribe(subject, live)
        await asyncio.Event().wait()

    async def close(self) -> None:
        self._subs.clear()
