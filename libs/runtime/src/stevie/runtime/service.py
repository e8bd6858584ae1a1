"""Service lifecycle: settings → logging → NATS → heartbeat → main → drain on SIGTERM.

Stopping is bounded: on SIGTERM/SIGINT the main task is cancelled, given ``STOP_MAIN_S`` to
finish its ``finally`` blocks, and the bus is drained within ``STOP_BUS_S``; a watchdog thread
ends the process at ``STOP_DEADLINE_S`` whatever happens (a cleanup stuck on a server that is
away), so every service exits within 1 s of SIGTERM, with NATS up or down.

A service is ``settings.py`` + ``core.py`` (pure) + ``shell.py`` (async I/O). The shell
exports a ``ServiceSpec``; ``stevie run NAME`` (and ``stevie up``'s supervisor) run it here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import inspect
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg
import msgspec
import stamina
import uvloop
from nats.errors import NoServersError
from prometheus_client import CollectorRegistry, Counter, Histogram
from structlog.typing import FilteringBoundLogger

from stevie.bus import Bus, Msg, NatsBus
from stevie.contracts import Heartbeat, StreamStatus, encode, subjects
from stevie.contracts.rpc import RpcError
from stevie.runtime.clock import Clock, LiveClock
from stevie.runtime.logs import configure_logging, get_logger
from stevie.runtime.metrics import exposition, new_registry
from stevie.runtime.settings import CommonSettings, describe, load_settings

T = TypeVar("T")
#: seconds; fine at the low end for in-process and loopback latencies (tick → decision, RPCs)
#: seconds; fine below 5 ms, where the tick → decision goal (p99 ≤ 3 ms) and its steps lie
LATENCY_BUCKETS_S = (
    0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.0025, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02,
    0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
)  # fmt: skip
STOP_MAIN_S = 0.4
STOP_BUS_S = 0.25
STOP_DEADLINE_S = 0.85
#: seconds between two ``malloc_trim`` calls (the first comes ``TRIM_FIRST_S`` after the start)
TRIM_INTERVAL_S = 30.0
TRIM_FIRST_S = 10.0


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
    _rpc_hist: Histogram | None = field(default=None, repr=False)
    _rpc_errors: Counter | None = field(default=None, repr=False)

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
        to decode is counted on ``dlq`` (a Prometheus counter child) and dead-lettered. With
        ``partition_symbols`` set, a message whose ``symbol`` this instance does not own is
        skipped (scale-out by symbol)."""
        decoder: msgspec.json.Decoder[T] = msgspec.json.Decoder(tp)
        owned = frozenset(s.upper() for s in self.settings.partition_symbols)

        async def handle(msg: Msg) -> None:
            try:
                item = decoder.decode(msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                await self.dead_letter(msg, exc, dlq)
                return
            if owned and getattr(item, "symbol", None) not in (None, *owned):
                return
            out = fn(item)
            if out is not None:
                await out

        await self.bus.subscribe(subject, handle)

    def _rpc_metrics(self) -> tuple[Histogram, Counter]:
        if self._rpc_hist is None or self._rpc_errors is None:
            self._rpc_hist = Histogram(
                "rpc_server_duration_seconds",
                "Time to answer a request/reply call, by service and method",
                ["service", "method"],
                registry=self.registry,
                buckets=LATENCY_BUCKETS_S,
            )
            self._rpc_errors = Counter(
                "rpc_server_errors_total",
                "Request/reply calls answered with an error",
                ["service", "method", "status"],
                registry=self.registry,
            )
        return self._rpc_hist, self._rpc_errors

    async def serve_rpc(
        self, method: str, request_type: type[T], handler: Callable[[T], msgspec.Struct | Awaitable[msgspec.Struct]]
    ) -> None:
        """Answer ``{root}.rpc.{service}.{method}`` as a NATS micro endpoint: decode the
        request, call ``handler``, reply with its Struct or an ``RpcError`` — 400 for an
        undecodable request or ``QuantInputError``/``ValueError``, 400 for an arithmetic error
        (``OverflowError``, ``ZeroDivisionError``: numbers out of range), 404 for ``KeyError``,
        503 for ``RuntimeError``/``TimeoutError`` (model not fitted yet, solver failure, a
        dependency not answering) and 503 ``internal_error`` (logged with its traceback) for
        anything else — the reply is never empty. Each call is timed in
        ``rpc_server_duration_seconds{service,method}`` and errors are counted by status."""
        decoder = msgspec.json.Decoder(request_type)
        hist, errors = self._rpc_metrics()

        async def on_request(data: bytes) -> bytes:
            t0 = time.perf_counter()
            try:
                result = handler(decoder.decode(data))
                reply: msgspec.Struct = await result if inspect.isawaitable(result) else result
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                reply = RpcError(400, "bad_request", str(exc)[:500])
            except KeyError as exc:
                reply = RpcError(404, "not_found", str(exc).strip("'\"")[:500])
            except ValueError as exc:
                reply = RpcError(400, "bad_input", str(exc)[:500])
            except ArithmeticError as exc:
                reply = RpcError(400, "bad_input", f"numbers out of range: {exc}"[:500])
            except (RuntimeError, TimeoutError) as exc:  # not fitted yet, solver failure: try again later
                reply = RpcError(503, "unavailable", str(exc)[:500])
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:  # a server is away
                reply = RpcError(503, "unavailable", f"{type(exc).__name__}: {exc}"[:500])
            except Exception as exc:
                self.log.exception("rpc_failed", method=method)
                reply = RpcError(503, "internal_error", f"{type(exc).__name__} in {self.name}.{method}")
            hist.labels(self.name, method).observe(time.perf_counter() - t0)
            if isinstance(reply, RpcError):
                errors.labels(self.name, method, str(reply.status)).inc()
            return encode(reply)

        subject = subjects.rpc(self.settings.subject_root, self.name, method)
        await self.bus.add_endpoint(self.name, method, subject, on_request)


@dataclass(frozen=True)
class ServiceSpec:
    """How to run one service: its name, settings type and async main. ``nice``: the CPU
    niceness it runs at — 0 for the tick → decision path and the API, higher for background
    work (evidence, adaptive context, events…), which then yields the two cores to the path
    whenever both want them (``STEVIE_<SERVICE>_NICE`` overrides it)."""

    name: str
    settings_cls: type[CommonSettings]
    main: Callable[[ServiceContext], Awaitable[None]]
    nice: int = 0


def apply_nice(nice: int) -> int:
    """Set this process's niceness to ``nice`` (0–19; ``setpriority``, absolute). Lowering it
    below the current value needs CAP_SYS_NICE: without it the niceness stays. Returns the
    niceness in force. Raises ValueError outside 0–19."""
    if not 0 <= nice <= 19:
        raise ValueError(f"niceness must be within 0..19, got {nice}")
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    return os.getpriority(os.PRIO_PROCESS, 0)


@stamina.retry(on=(NoServersError, OSError, TimeoutError), attempts=30, timeout=30.0)
async def _connect(url: str, name: str) -> NatsBus:
    """With ``STEVIE_NATS_PASSWORD`` set the service logs in as the NATS user named like it
    (``deploy/nats-cluster/accounts.conf``: per-service subject permissions); else anonymous.
    Either way its request replies come on ``_INBOX_<name>``, the only inbox its user may read."""
    password = os.environ.get("STEVIE_NATS_PASSWORD", "")
    inbox = subjects.inbox_prefix(name)  # replies on the service's own prefix (nats_perms)
    if password:
        return await NatsBus.connect(url, name=name, user=name, password=password, inbox_prefix=inbox)
    return await NatsBus.connect(url, name=name, inbox_prefix=inbox)


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


def _malloc_trim() -> Callable[[], int] | None:
    """glibc's ``malloc_trim(0)`` (returns 1 when memory was given back), or None where the C
    library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        fn = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
    if fn is None:
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: int(fn(0))


async def _trim_heap(first_s: float = TRIM_FIRST_S, every_s: float = TRIM_INTERVAL_S) -> None:
    """Give the heap's free pages back to the OS, ``first_s`` after the start (the imports
    and a service's loading are done: onnxruntime's model load alone leaves ≈ 60 MB free but
    mapped) and then every ``every_s``. glibc returns free memory only from the top of the
    heap by itself; ``malloc_trim`` also releases the free pages in the middle of every arena
    (``madvise(MADV_DONTNEED)``), which is what a long-lived process with a fragmented heap
    needs. A few ms per call, in a worker thread (ctypes releases the GIL): the event loop
    keeps answering meanwhile. A no-op where the C library has no ``malloc_trim``."""
    trim = _malloc_trim()
    if trim is None:
        return
    await asyncio.sleep(first_s)
    while True:
        await asyncio.to_thread(trim)
        await asyncio.sleep(every_s)


def _exit_watchdog(name: str, after_s: float) -> None:
    """A daemon thread that ends the process ``after_s`` from now (the stop deadline)."""

    def fire() -> None:
        sys.stderr.write(f'{{"service": "{name}", "event": "forced_exit", "after_s": {after_s}}}\n')
        sys.stderr.flush()
        os._exit(0)

    t = threading.Timer(after_s, fire)
    t.daemon = True
    t.start()


async def serve(spec: ServiceSpec, settings: CommonSettings) -> None:
    """Run ``spec`` until SIGTERM/SIGINT, then cancel its main and drain NATS (bounded)."""
    log = get_logger(service=spec.name)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal() -> None:
        if not stop.is_set():
            stop.set()
            _exit_watchdog(spec.name, STOP_DEADLINE_S)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    nice = apply_nice(spec.nice if settings.nice is None else settings.nice)
    log.info("starting", settings=describe(settings), nice=nice)  # a SIGTERM from now on stops it cleanly
    connecting = asyncio.ensure_future(_connect(settings.nats_url, spec.name))
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({connecting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if stop.is_set():
        connecting.cancel()
        log.info("stopped", before="connected")
        return
    stopped.cancel()
    bus = connecting.result()
    clock = LiveClock()
    ctx = ServiceContext(spec.name, settings, bus, new_registry(), clock, log, clock.now_ns())
    dropped = Counter(
        "bus_publish_dropped_total", "Publishes dropped while NATS was away (buffer full)", registry=ctx.registry
    )
    bus.on_drop = lambda subject: dropped.inc()
    main = asyncio.ensure_future(spec.main(ctx))
    beat = asyncio.ensure_future(_heartbeat(ctx))
    trimmer = asyncio.ensure_future(_trim_heap())
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({main, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if main.done():
            main.result()  # a main that returned or raised on its own
        else:
            log.info("stopping")
            main.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError, Exception):
                await asyncio.wait_for(main, STOP_MAIN_S)
    finally:
        waiter.cancel()
        beat.cancel()
        trimmer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        await bus.close(STOP_BUS_S)
        log.info("stopped")


def run(spec: ServiceSpec) -> None:
    """Entry point: load settings (exit 2 with a clear message when invalid) and serve."""
    settings = load_settings(spec.settings_cls, spec.name)
    configure_logging(settings.log_level)
    factory = uvloop.new_event_loop if settings.event_loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(spec, settings))
    # A clean stop skips interpreter finalisation: freeing a large heap object by object
    # (venue-replay's captures) took seconds, and daemon threads (the stop watchdog) cannot
    # run during it. Everything worth keeping is flushed or on the bus already.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
