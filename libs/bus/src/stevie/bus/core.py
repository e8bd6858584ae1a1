"""The Bus protocol shared by ``NatsBus`` and ``InMemoryBus``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Msg:
    """A received message. ``reply`` is set on requests; answer with ``Bus.respond``."""

    subject: str
    data: bytes
    headers: dict[str, str] = field(default_factory=dict)
    reply: str = ""


Handler = Callable[[Msg], Awaitable[None]]
AckHandler = Callable[[Msg], Awaitable[bool]]
Endpoint = Callable[[bytes], Awaitable[bytes]]


class Subscription(Protocol):
    async def unsubscribe(self) -> None: ...


class Bus(Protocol):
    """Publish/subscribe, queue groups, request/reply and de-duplicated durable publish.

    Semantics both implementations honour (tested by one test body over both):
    - a subject pattern may use NATS wildcards ``*`` (one token) and ``>`` (the rest);
    - subscribers sharing a ``queue`` name get each message once between them;
    - ``request`` raises ``TimeoutError`` when nobody answers in ``timeout_s``;
    - ``publish_durable`` de-duplicates on ``msg_id`` (``Nats-Msg-Id``) and returns False
      for a duplicate.
    """

    async def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None: ...

    async def subscribe(self, subject: str, handler: Handler, queue: str = "") -> Subscription: ...

    async def request(self, subject: str, data: bytes, timeout_s: float = 2.0) -> Msg: ...

    async def respond(self, msg: Msg, data: bytes) -> None: ...

    async def publish_durable(self, subject: str, data: bytes, msg_id: str) -> bool: ...

    async def add_endpoint(self, service: str, name: str, subject: str, handler: Endpoint) -> None:
        """Serve request/reply on ``subject`` as endpoint ``name`` of ``service`` (queue group =
        the service). On NATS this is the micro service API, so ``nats micro list`` and
        ``nats micro stats`` see every endpoint."""
        ...

    async def ensure_stream(self, name: str, subjects: list[str], duplicate_window_s: float = 120.0) -> None: ...

    async def consume_durable(self, stream: str, durable: str, subject: str, handler: AckHandler) -> None:
        """Deliver every durable message on ``subject`` (at least once, from where the named
        consumer left off) until cancelled; ``handler`` returns True to ack, False to have
        the message redelivered later."""
        ...

    async def close(self) -> None: ...


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` matches one token, a final ``>`` one or more tokens."""
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)
