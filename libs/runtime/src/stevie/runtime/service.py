"""Service lifecycle: settings → logging → NATS → heartbeat → main → drain on SIGTERM.

A service is ``settings.py`` + ``core.py`` (pure) + ``shell.py`` (async I/O). The shell
exports a ``ServiceSpec``; ``stevie run NAME`` (and ``stevie up``'s supervisor) run it here.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import msgspec
import stamina
from nats.errors import NoServersError
from prometheus_client import CollectorRegistry
from structlog.typing import FilteringBoundLogger

from stevie.bus import Bus, Msg, NatsBus
from stevie.contracts import Heartbeat, StreamStatus, encode, subjects
from stevie.contracts.rpc import RpcError
from stevie.runtime.clock import Clock, LiveClock
from stevie.runtime.logs import configure_logging, get_logger
from stevie.runtime.metrics import exposition, new_registry
from stevie.runtime.settings import CommonSettings, describe, load_settings

T = TypeVar("T")


@dataclass
class ServiceContext:
    """What a service shell gets: its settings, the bus, a logger, its metrics registry and
    a clock. ``streams`` and ``backend`` are read by the heartbeat."""

    name: str
    settings: CommonSettings
    bus: Bus
    registry: CollectorRegistry
    clock: Clock
    log: FilteringBoundLogger
    started_ns: int
    backend: str = "python"
    streams: Callable[[], list[StreamStatus]] = field(default=lambda: [])

    async def dead_letter(self, msg: Msg, error: Exception, counter: object) -> None:
        """Count and publish an undecodable message to ``{root}.dlq.{service}``."""
        counter.inc()  # type: ignore[attr-defined]
        self.log.warning("dead_letter", subject=msg.subject, error=str(error)[:200])
        await self.bus.publish(
            subjects.dlq(self.settings.subject_root, self.name),
            msg.data,
            {"Stevie-Error": str(error)[:200], "Stevie-Subject": msg.subject},
        )

    async def subscribe_typed(
        self, subject: str, tp: type[T], fn: Callable[[T], Awaitable[None] | None], dlq: object
    ) -> None:
        """Subscribe with a typed decoder: ``fn`` gets the decoded Struct; anything that fails
        to decode is counted on ``dlq`` (a Prometheus counter child) and dead-lettered."""
        decoder: msgspec.json.Decoder[T] = msgspec.json.Decoder(tp)

        async def handle(msg: Msg) -> None:
            try:
                item = decoder.decode(msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                await self.dead_letter(msg, exc, dlq)
                return
            out = fn(item)
            if out is not None:
                await out

        await self.bus.subscribe(subject, handle)

    async def serve_rpc(
        self, method: str, request_type: type[T], handler: Callable[[T], msgspec.Struct | Awaitable[msgspec.Struct]]
    ) -> None:
        """Answer ``{root}.rpc.{service}.{method}`` as a NATS micro endpoint: decode the
        request, call ``handler``, reply with its Struct or an ``RpcError`` — 400 for an
        undecodable request or ``QuantInputError``/``ValueError``, 404 for ``KeyError``, 503 for
        ``RuntimeError`` (model not fitted yet, solver failure)."""
        decoder = msgspec.json.Decoder(request_type)

        async def on_request(data: bytes) -> bytes:
            try:
                result = handler(decoder.decode(data))
                reply: msgspec.Struct = await result if inspect.isawaitable(result) else result
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                reply = RpcError(400, "bad_request", str(exc))
            except KeyError as exc:
                reply = RpcError(404, "not_found", str(exc).strip("'\""))
            except ValueError as exc:
                reply = RpcError(400, "bad_input", str(exc))
            except RuntimeError as exc:  # not fitted yet, solver failure: try again later
                reply = RpcError(503, "unavailable", str(exc))
            return encode(reply)

        subject = subjects.rpc(self.settings.subject_root, self.name, method)
        await self.bus.add_endpoint(self.name, method, subject, on_request)


@dataclass(frozen=True)
class ServiceSpec:
    """How to run one service: its name, settings type and async main."""

    name: str
    settings_cls: type[CommonSettings]
    main: Callable[[ServiceContext], Awaitable[None]]


@stamina.retry(on=(NoServersError, OSError, TimeoutError), attempts=30, timeout=30.0)
async def _connect(url: str, name: str) -> NatsBus:
    return await NatsBus.connect(url, name=name)


async def _heartbeat(ctx: ServiceContext) -> None:
    subject = subjects.heartbeat(ctx.settings.subject_root, ctx.name)
    instance = f"{socket.gethostname()}:{os.getpid()}"
    while True:
        now = ctx.clock.now_ns()
        hb = Heartbeat(
            service=ctx.name,
            instance=instance,
            pid=os.getpid(),
            started_ns=ctx.started_ns,
            backend=ctx.backend,
            streams=ctx.streams(),
            metrics_text=exposition(ctx.registry),
            ts_event_ns=now,
            ts_init_ns=now,
        )
        with contextlib.suppress(Exception):
            await ctx.bus.publish(subject, encode(hb))
        await asyncio.sleep(ctx.settings.heartbeat_interval_s)


async def serve(spec: ServiceSpec, settings: CommonSettings) -> None:
    """Run ``spec`` until SIGTERM/SIGINT, then cancel its main and drain NATS."""
    log = get_logger(service=spec.name)
    log.info("starting", settings=describe(settings))
    bus = await _connect(settings.nats_url, spec.name)
    clock = LiveClock()
    ctx = ServiceContext(spec.name, settings, bus, new_registry(), clock, log, clock.now_ns())
    main = asyncio.ensure_future(spec.main(ctx))
    beat = asyncio.ensure_future(_heartbeat(ctx))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, main.cancel)
    try:
        await main
    except asyncio.CancelledError:
        log.info("stopping")
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        await bus.close()
        log.info("stopped")


def run(spec: ServiceSpec) -> None:
    """Entry point: load settings (exit 2 with a clear message when invalid) and serve."""
    settings = load_settings(spec.settings_cls, spec.name)
    configure_logging(settings.log_level)
    asyncio.run(serve(spec, settings))
