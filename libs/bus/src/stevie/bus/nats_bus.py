"""``Bus`` over a real NATS server (nats-py), with JetStream for durable publish.

Degrades honestly while NATS is away (a restart, a cluster node lost): core publishes are
buffered by nats-py up to ``pending_bytes`` and then dropped and counted (``dropped``,
``on_drop``) — never raised into the publisher; a request fails at once with
``BusDisconnected`` instead of waiting for its timeout; a durable publish is retried with the
same ``Nats-Msg-Id`` (JetStream drops the duplicates) until it is stored or
``durable_retry_s`` has passed; a durable consumer waits and resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg as NatsMsg
from nats.errors import ConnectionClosedError, NoRespondersError, OutboundBufferLimitError
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import StreamConfig
from nats.js.errors import NoStreamResponseError
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service

from stevie.bus.core import AckHandler, Endpoint, Handler, Msg


class _NatsSub:
    def __init__(self, sub: object) -> None:
        self._sub = sub

    async def unsubscribe(self) -> None:
        await self._sub.unsubscribe()  # type: ignore[attr-defined]


class BusDisconnected(TimeoutError):
    """NATS is not connected right now: the request was not sent (a ``TimeoutError``, so
    callers that handle "no answer" handle this too, only without the wait)."""


class NatsBus:
    """Bus protocol on nats-py. Build with ``await NatsBus.connect(url, name=...)``.

    ``publish_durable`` publishes to JetStream with the ``Nats-Msg-Id`` header, so the
    stream's duplicate window drops re-sends; the subject must be bound to a stream
    (see ``ensure_stream``).
    """

    def __init__(self, nc: Client, durable_retry_s: float = 60.0) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self._services: dict[str, Service] = {}
        self.durable_retry_s = durable_retry_s
        self.dropped = 0
        self.on_drop: Callable[[str], None] = lambda subject: None

    @classmethod
    async def connect(
        cls, url: str, name: str = "stevie", pending_bytes: int = 8 * 1024 * 1024, **kwargs: object
    ) -> NatsBus:
        """Connect, retrying forever on disconnects (nats-py reconnect logic). ``url`` may list
        several servers separated by commas (a cluster); the client also learns the others
        from the server. ``pending_bytes`` bounds what is buffered while disconnected.

        Raises ``nats.errors.NoServersError`` if no server is reachable at start."""
        servers = [u.strip() for u in url.split(",") if u.strip()]
        nc = await nats.connect(
            servers,
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,
            pending_size=pending_bytes,
            drain_timeout=1,
            **kwargs,
        )
        return cls(nc)

    @property
    def connected(self) -> bool:
        return bool(self.nc.is_connected)

    async def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        """Publish (at most once). While disconnected the message is buffered within the
        bound; past it, or on a closed connection, it is dropped and counted."""
        try:
            await self.nc.publish(subject, data, headers=headers or None)
        except (OutboundBufferLimitError, ConnectionClosedError):
            self.dropped += 1
            self.on_drop(subject)

    async def subscribe(self, subject: str, handler: Handler, queue: str = "") -> _NatsSub:
        async def cb(m: NatsMsg) -> None:
            await handler(Msg(m.subject, m.data, dict(m.headers or {}), m.reply or ""))

        return _NatsSub(await self.nc.subscribe(subject, queue=queue, cb=cb))

    async def request(self, subject: str, data: bytes, timeout_s: float = 2.0) -> Msg:
        """Request/reply. Raises ``BusDisconnected`` at once while NATS is away, else
        ``TimeoutError`` when nobody answers in ``timeout_s``."""
        if not self.nc.is_connected:
            raise BusDisconnected(f"NATS is disconnected; {subject} not sent")
        try:
            m = await self.nc.request(subject, data, timeout=timeout_s)
        except (NatsTimeoutError, NoRespondersError) as exc:
            raise TimeoutError(f"no answer on {subject}: {exc!r}") from exc
        except (OutboundBufferLimitError, ConnectionClosedError) as exc:
            raise BusDisconnected(f"NATS is disconnected; {subject} not sent") from exc
        return Msg(m.subject, m.data, dict(m.headers or {}), "")

    async def respond(self, msg: Msg, data: bytes) -> None:
        if msg.reply:
            await self.nc.publish(msg.reply, data)

    async def add_endpoint(self, service: str, name: str, subject: str, handler: Endpoint) -> None:
        svc = self._services.get(service)
        if svc is None:
            svc = await add_service(
                self.nc, name=service, version="0.1.0", queue_group=service, description=f"Stevie {service}"
            )
            self._services[service] = svc

        async def on_request(req: Request) -> None:
            await req.respond(await handler(req.data))

        await svc.add_endpoint(name=name, subject=subject, handler=on_request)

    def cluster_size(self) -> int:
        """1 for a single server, else the number of servers the cluster announced (≥ 1)."""
        info = self.nc._server_info or {}
        if not info.get("cluster"):
            return 1
        return max(1, len(set(info.get("connect_urls") or [])))

    async def ensure_stream(
        self, name: str, subjects: list[str], duplicate_window_s: float = 120.0, replicas: int | None = None
    ) -> None:
        """Create or update a JetStream stream bound to ``subjects``. ``replicas``: None =
        3 on a cluster of three or more servers, else 1."""
        n = replicas if replicas is not None else (3 if self.cluster_size() >= 3 else 1)
        cfg = StreamConfig(name=name, subjects=subjects, duplicate_window=duplicate_window_s, num_replicas=n)
        try:
            await self.js.add_stream(cfg)
        except Exception:
            await self.js.update_stream(cfg)

    async def publish_durable(self, subject: str, data: bytes, msg_id: str) -> bool:
        """Store on JetStream with ``Nats-Msg-Id``; retried (same id, so never stored twice)
        while NATS or the stream leader is away. Returns False for a duplicate. Raises
        ``TimeoutError`` after ``durable_retry_s``."""
        deadline = time.monotonic() + self.durable_retry_s
        delay = 0.05
        while True:
            try:
                ack = await self.js.publish(subject, data, timeout=2.0, headers={"Nats-Msg-Id": msg_id})
                return not ack.duplicate
            except (NatsTimeoutError, NoStreamResponseError, OutboundBufferLimitError, TimeoutError) as exc:
                if self.nc.is_closed or time.monotonic() + delay > deadline:
                    raise TimeoutError(f"durable publish on {subject} not stored: {exc!r}") from exc
            except NatsError as exc:  # e.g. a JetStream API error while a new leader is elected
                if self.nc.is_closed or time.monotonic() + delay > deadline:
                    raise TimeoutError(f"durable publish on {subject} not stored: {exc!r}") from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def consume_durable(self, stream: str, durable: str, subject: str, handler: AckHandler) -> None:
        """Durable pull consumer with explicit acks: a nak'd message is redelivered by
        JetStream after a short delay; an unacked one after ``ack_wait``."""
        psub = await self.js.pull_subscribe(subject, durable=durable, stream=stream)
        while True:
            try:
                batch = await psub.fetch(batch=64, timeout=1.0)
            except (NatsTimeoutError, TimeoutError):
                continue
            except NatsError:  # disconnected, leader moving: wait and fetch again
                await asyncio.sleep(0.25)
                continue
            for m in batch:
                ok = await handler(Msg(m.subject, m.data, dict(m.headers or {}), ""))
                with contextlib.suppress(NatsError):  # not acked: redelivered, the write is idempotent
                    await (m.ack() if ok else m.nak(delay=1.0))
            await asyncio.sleep(0)

    async def wait_consumers_drained(self, stream: str, prefix: str, timeout_s: float) -> bool:
        """Wait (≤ ``timeout_s``) until every durable consumer of ``stream`` whose name starts
        with ``prefix`` has nothing pending or unacknowledged. True when drained."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                infos = await self.js.consumers_info(stream)
                if not [
                    c for c in infos if c.name.startswith(prefix) and ((c.num_pending or 0) + (c.num_ack_pending or 0))
                ]:
                    return True
            except (NatsError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)

    async def close(self, timeout_s: float = 0.5) -> None:
        """Stop the micro services and drain, within ``timeout_s`` (then close outright): a
        stop never waits on a NATS that is away."""
        if self.nc.is_connected:  # away: nothing to drain or unregister, just close
            try:
                async with asyncio.timeout(timeout_s):
                    for svc in self._services.values():
                        await svc.stop()
                    if not self.nc.is_closed:
                        await self.nc.drain()
            except (TimeoutError, NatsError):
                pass
        if not self.nc.is_closed:
            try:
                async with asyncio.timeout(0.1):
                    await self.nc.close()
            except (TimeoutError, NatsError):
                pass
