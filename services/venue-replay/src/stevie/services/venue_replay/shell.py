"""venue-replay shell: two loopback Binance venues (``binance`` spot, ``binance-usdm``) over
aiohttp, paced by the recorded event times on one ``ReplayClock``.

REST: ``/api/v3/{depth,klines,exchangeInfo,time,ping}`` (spot) and the ``/fapi/v1/...``
twins (USD-M). WebSocket: combined streams ``/stream?streams=btcusdt@depth@100ms/btcusdt@trade``.
At the end of the capture with ``loop`` on, every socket is closed and a new session starts
(update ids restart), as after an exchange restart; each pass replays the window one day
later in event time (``core.pass_shift_ms``), so event time never goes back.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import WSMsgType, web
from prometheus_client import Counter, Gauge

from stevie.contracts.ops import ChaosRequest, ChaosResult
from stevie.runtime.clock import ReplayClock
from stevie.runtime.service import ServiceContext, ServiceSpec
from stevie.services.venue_replay.captures import Capture, KlineHistory, PreparedWindow, load_prepared, prepare_window
from stevie.services.venue_replay.chaos import TYPES as CHAOS_TYPES
from stevie.services.venue_replay.chaos import Chaos
from stevie.services.venue_replay.core import (
    MS,
    Event,
    ReplayBook,
    exchange_info,
    first_mid,
    pass_shift_ms,
    shift_klines,
    shift_payload,
    stream_kind,
    wire_payload,
)
from stevie.services.venue_replay.settings import VenueReplaySettings

DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000, 5000)


@dataclass(eq=False)
class _Client:
    ws: web.WebSocketResponse
    wants: dict[tuple[str, str], str]  # (SYMBOL, kind) → stream name as requested
    queue: asyncio.Queue[str]


@dataclass
class Venue:
    """One replayed venue: its captures, books and connected clients."""

    name: str
    usdm: bool
    captures: dict[str, Capture]
    history: dict[str, KlineHistory] = field(default_factory=dict)
    books: dict[str, ReplayBook] = field(default_factory=dict)
    clients: set[_Client] = field(default_factory=set)

    def reset(self) -> None:
        self.books = {s: ReplayBook(c) for s, c in self.captures.items()}


class Replay:
    """The pump and the HTTP handlers over shared replay state."""

    def __init__(
        self, ctx: ServiceContext, settings: VenueReplaySettings, prepared: PreparedWindow | None = None
    ) -> None:
        self.ctx, self.s = ctx, settings
        # the compact, cached timeline (captures.py); prepared here, slowly, when not given
        self.prepared = prepared or prepare_window(Path(settings.data_dir), settings.window)
        caps = self.prepared.captures()
        self.venues = {
            name: Venue(name, name == "binance-usdm", {c.symbol: c for c in caps if c.venue == name})
            for name in ("binance", "binance-usdm")
        }
        self.events: Sequence[Event] = self.prepared.events()
        origin_ms = self.events[0].ts_ns // MS
        usdm = self.venues["binance-usdm"]
        for sym, rows in self.prepared.history.items():  # continuous with the capture's first mid
            cap = usdm.captures.get(sym)
            usdm.history[sym] = rows.reanchored(origin_ms, first_mid(cap.snapshot) if cap else None)
        self.clock = ReplayClock(self.events[0].ts_ns, settings.speed)
        self.session = 0
        self.shift_ms = 0  # event-time shift of this pass (core.pass_shift_ms): time never goes back
        self._closing: set[asyncio.Future[bool]] = set()
        self.sent = Counter("venue_replay_messages_total", "WS messages sent", ["venue", "kind"], registry=ctx.registry)
        self.dropped = Counter(
            "venue_replay_slow_clients_total", "WS clients closed for being slow", ["venue"], registry=ctx.registry
        )
        self.sessions = Gauge("venue_replay_session", "Replay session number (loops)", registry=ctx.registry)
        self.chaos = Chaos({v.name: list(v.captures) for v in self.venues.values()})
        self.m_chaos = Counter("chaos_injections_total", "Chaos faults injected", ["type"], registry=ctx.registry)
        self.m_chaos_hits = Counter(
            "chaos_effects_total", "Chaos fault effects", ["type", "venue"], registry=ctx.registry
        )
        for t in CHAOS_TYPES:
            self.m_chaos.labels(t)
        for v in self.venues.values():
            v.reset()

    # -- pump -------------------------------------------------------------------------
    async def pump(self) -> None:
        while True:
            self.ctx.log.info("replay_session", session=self.session, events=len(self.events))
            self.sessions.set(self.session)
            first_ms, last_ms = self.events[0].ts_ns // MS, self.events[-1].ts_ns // MS
            self.shift_ms = pass_shift_ms(first_ms, last_ms, self.session)
            shift_ns = self.shift_ms * MS
            self.clock = ReplayClock(self.events[0].ts_ns + shift_ns, self.s.speed)
            for v in self.venues.values():
                v.reset()
            for ev in self.events:
                delay = (self.clock.mono_due_ns(ev.ts_ns + shift_ns) - time.monotonic_ns()) / 1e9
                if delay > 0:
                    await asyncio.sleep(delay)
                self._emit(ev, ev.ts_ns + shift_ns)
            if not self.s.loop:
                return
            await self._close_all()
            self.session += 1

    def _emit(self, ev: Event, ts_ns: int) -> None:
        """Send ``ev`` to its subscribers at (this pass's) event time ``ts_ns``."""
        venue = self.venues[ev.venue]
        payload = shift_payload(wire_payload(ev), self.shift_ms)
        if ev.kind == "depth":
            book = venue.books[ev.symbol]
            spiked = self.chaos.spike_diff(ev.venue, ev.symbol, payload, book.bids, ts_ns)
            book.apply(ev.payload)
            if spiked is not payload:
                payload = spiked
                self.m_chaos_hits.labels("depth_spike", ev.venue).inc()
            if self.chaos.drop_diff(ev.venue, ev.symbol, ts_ns):
                self.m_chaos_hits.labels("l2_gap", ev.venue).inc()
                return
        for client in list(venue.clients):
            stream = client.wants.get((ev.symbol, ev.kind))
            if stream is None:
                continue
            try:
                client.queue.put_nowait(json.dumps({"stream": stream, "data": payload}))
            except asyncio.QueueFull:
                self.dropped.labels(venue.name).inc()
                venue.clients.discard(client)
                task = asyncio.ensure_future(client.ws.close(code=1008, message=b"slow client"))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
                continue
            self.sent.labels(venue.name, ev.kind).inc()

    async def _close_all(self) -> None:
        for v in self.venues.values():
            for c in list(v.clients):
                v.clients.discard(c)
                await c.ws.close(code=1012, message=b"session restart")

    # -- chaos ------------------------------------------------------------------------
    async def chaos_inject(self, req: ChaosRequest) -> ChaosResult:
        """``POST /api/chaos/inject`` (dev only; ValueError → 400)."""
        if self.s.env != "dev":
            raise ValueError("chaos is only available with STEVIE_ENV=dev")
        fault, result = self.chaos.inject(req, self.clock.now_ns())
        self.m_chaos.labels(req.type).inc()
        self.ctx.log.warning(
            "chaos_injected",
            type=req.type,
            venues=result.venues,
            symbols=result.symbols,
            ends_at_ms=result.endsAtMs,
            actor=req.actor,
        )
        if req.type == "ws_flap":
            for name in fault.venues:
                fault.pending.discard((name, "*"))
                v = self.venues[name]
                for c in list(v.clients):
                    v.clients.discard(c)
                    await c.ws.close(code=1012, message=b"chaos ws_flap")
                self.m_chaos_hits.labels("ws_flap", name).inc()
        return result

    async def _maybe_hang(self, venue: Venue) -> None:
        if self.chaos.hang_rest(venue.name, self.clock.now_ns()):
            self.m_chaos_hits.labels("api_timeout", venue.name).inc()
            await asyncio.sleep(self.s.chaos_hang_s)

    # -- HTTP -------------------------------------------------------------------------
    def app(self, venue: Venue) -> web.Application:
        prefix = "/fapi/v1" if venue.usdm else "/api/v3"
        app = web.Application()
        app.router.add_get(f"{prefix}/depth", lambda r: self.depth(venue, r))
        app.router.add_get(f"{prefix}/klines", lambda r: self.klines(venue, r))
        app.router.add_get(f"{prefix}/exchangeInfo", lambda r: self.info(venue))
        app.router.add_get(f"{prefix}/time", self.server_time)
        app.router.add_get(f"{prefix}/ping", self.ping)
        app.router.add_get("/stream", lambda r: self.stream(venue, r))
        return app

    async def server_time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": self.now_ms()})

    async def ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    def now_ms(self) -> int:
        return self.clock.now_ns() // MS

    @staticmethod
    def _error(code: int, msg: str, status: int = 400) -> web.Response:
        return web.json_response({"code": code, "msg": msg}, status=status)

    def _symbol(self, venue: Venue, request: web.Request, klines: bool = False) -> str | web.Response:
        sym = request.query.get("symbol", "").upper()
        if not sym:
            return self._error(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        if sym not in venue.captures and not (klines and sym in venue.history):
            return self._error(-1121, "Invalid symbol.")
        return sym

    async def depth(self, venue: Venue, request: web.Request) -> web.Response:
        await self._maybe_hang(venue)
        sym = self._symbol(venue, request)
        if isinstance(sym, web.Response):
            return sym
        try:
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            return self._error(-1100, "Illegal characters found in parameter 'limit'.")
        if limit not in DEPTH_LIMITS:
            return self._error(-1100, f"Illegal value for parameter 'limit'; legal: {DEPTH_LIMITS}.")
        book = venue.books[sym]
        body = book.snapshot(limit)
        if venue.usdm:
            shift = self.shift_ms
            body["E"] = book.last_event_ms + shift if book.last_event_ms else self.now_ms()
            body["T"] = book.last_trans_ms + shift if book.last_trans_ms else self.now_ms()
        return web.json_response(body)

    async def klines(self, venue: Venue, request: web.Request) -> web.Response:
        await self._maybe_hang(venue)
        sym = self._symbol(venue, request, klines=True)
        if isinstance(sym, web.Response):
            return sym
        if request.query.get("interval", "") != "1m":
            return self._error(-1120, "Invalid interval (this replay serves 1m).")
        try:
            limit = min(int(request.query.get("limit", "500")), 1500)
            start = int(request.query.get("startTime", "0"))
            end = int(request.query.get("endTime", str(self.now_ms())))
        except ValueError:
            return self._error(-1100, "Illegal characters found in a parameter.")
        # this pass's closed bars, moved to its event time (earlier passes are not served)
        live = shift_klines(
            self.prepared.live_klines(venue.name, sym, min(end, self.now_ms()) - self.shift_ms), self.shift_ms
        )
        hist = venue.history.get(sym, KlineHistory.empty())
        lo = bisect.bisect_left(hist, start, key=lambda r: int(str(r[0])))
        hi = bisect.bisect_right(hist, end, key=lambda r: int(str(r[0])))
        lo, hi = (lo, min(hi, lo + limit)) if start else (max(lo, hi - limit), hi)  # rows are built on demand
        rows = hist[lo:hi] + [r for r in live if start <= int(str(r[0])) <= end]
        return web.json_response(rows[:limit] if start else rows[-limit:])

    async def info(self, venue: Venue) -> web.Response:
        return web.json_response(exchange_info(list(venue.captures.values()), self.now_ms()))

    async def stream(self, venue: Venue, request: web.Request) -> web.StreamResponse:
        wants: dict[tuple[str, str], str] = {}
        for name in request.query.get("streams", "").split("/"):
            parsed = stream_kind(name)
            if parsed is None or parsed[0] not in venue.captures:
                return self._error(-1100, f"Invalid stream {name!r}.")
            wants[parsed] = name
        if self.chaos.refuse_ws(venue.name, self.clock.now_ns()):
            return self._error(-1003, "chaos ws_flap: streams unavailable", status=503)
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        client = _Client(ws, wants, asyncio.Queue(self.s.ws_client_queue))
        venue.clients.add(client)

        async def writer() -> None:
            while True:
                await ws.send_str(await client.queue.get())

        task = asyncio.ensure_future(writer())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            venue.clients.discard(client)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
        return ws


async def main(ctx: ServiceContext) -> None:
    s = ctx.settings
    assert isinstance(s, VenueReplaySettings)
    cache = Path(s.cache_dir) if s.cache_dir else None
    replay = Replay(ctx, s, await load_prepared(Path(s.data_dir), s.window, cache))
    runners = []
    for venue, port in ((replay.venues["binance"], s.spot_port), (replay.venues["binance-usdm"], s.usdm_port)):
        runner = web.AppRunner(replay.app(venue), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, s.host, port).start()
        runners.append(runner)
        ctx.log.info("venue_listening", venue=venue.name, port=port)
    await ctx.serve_rpc("chaos_inject", ChaosRequest, replay.chaos_inject)
    try:
        await replay.pump()
        await asyncio.Event().wait()
    finally:
        await replay._close_all()
        for r in runners:
            await r.cleanup()


# the exchange's stand-in: live, the venue is not on our cores, so it yields them to the
# decision path (its pacing is by event time; the tick → decision clock starts at our edge)
SPEC = ServiceSpec("venue-replay", VenueReplaySettings, main, nice=5)
