"""``Bus`` over a real NATS server (nats-py), with JetStream for durable publish."""

from __future__ import annotations

import asyncio

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg as NatsMsg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import StreamConfig
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service

from stevie.bus.core import AckHandler, Endpoint, Handler, Msg


class _NatsSub:
    def __init__(self, sub: object) -> None:
        self._sub = sub

    async def unsubscribe(self) -> None:
        await self._sub.unsubscribe()  # type: ignore[attr-defined]


class NatsBus:
    """Bus protocol on nats-py. Build with ``await NatsBus.connect(url, name=...)``.

    ``publish_durable`` publishes to JetStream with the ``Nats-Msg-Id`` header, so the
    stream's duplicate window drops re-sends; the subject must be bound to a stream
    (see ``ensure_stream``).
    """

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self._services: dict[str, Service] = {}

    @classmethod
    async def connect(cls, url: str, name: str = "stevie", **kwargs: object) -> NatsBus:
        """Connect, retrying forever on disconnects (nats-py reconnect logic).

        Raises ``nats.errors.NoServersError`` if the server is not reachable at start."""
        nc = await nats.connect(
            url,
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            **kwargs,
        )
        return cls(nc)

    async def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        await self.nc.publish(subject, data, headers=headers or None)

    async def subscribe(self, subject: str, handler: Handler, queue: str = "") -> _NatsSub:
        async def cb(m: NatsMsg) -> None:
            await handler(Msg(m.subject, m.data, dict(m.headers or {}), m.reply or ""))

        return _NatsSub(await self.nc.subscribe(subject, queue=queue, cb=cb))

    async def request(self, subject: str, data: bytes, timeout_s: float = 2.0) -> Msg:
        try:
            m = await self.nc.request(subject, data, timeout=timeout_s)
        except (NatsTimeoutError, NoRespondersError) as exc:
            raise TimeoutError(f"no answer on {subject}: {exc!r}") from exc
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

    async def ensure_stream(self, name: str, subjects: list[str], duplicate_window_s: float = 120.0) -> None:
        """Create or update a JetStream stream bound to ``subjects``."""
        cfg = StreamConfig(name=name, subjects=subjects, duplicate_window=duplicate_window_s)
        try:
            await self.js.add_stream(cfg)
        except Exception:
            await self.js.update_stream(cfg)

    async def publish_durable(self, subject: str, data: bytes, msg_id: str) -> bool:
        ack = await self.js.publish(subject, data, headers={"Nats-Msg-Id": msg_id})
        return not ack.duplicate

    async def consume_durable(self, stream: str, durable: str, subject: str, handler: AckHandler) -> None:
        """Durable pull consumer with explicit acks: a nak'd message is redelivered by
        JetStream after a short delay; an unacked one after ``ack_wait``."""
        psub = await self.js.pull_subscribe(subject, durable=durable, stream=stream)
        while True:
            try:
                batch = await psub.fetch(batch=64, timeout=1.0)
            except (NatsTimeoutError, TimeoutError):
                continue
            for m in batch:
                ok = await handler(Msg(m.subject, m.data, dict(m.headers or {}), ""))
                await (m.ack() if ok else m.nak(delay=1.0))
            await asyncio.sleep(0)

    async def close(self) -> None:
        for svc in self._services.values():
            await svc.stop()
        if not self.nc.is_closed:
            await self.nc.drain()
