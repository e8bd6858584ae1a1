"""book-maintainer shell: venue WebSocket + REST I/O, publishing, metrics, persistence.

One task per venue holds one combined-stream connection for all its symbols. Inbound
messages go through a bounded queue; on overflow every book of that stream resyncs (we
never continue a book across lost messages). A disconnect resyncs every book of the venue.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import aiohttp
import asyncpg
import msgspec
import stamina
from prometheus_client import Counter, Gauge

from stevie.bus import Msg
from stevie.contracts import BookTopK, StreamStatus, encode, subjects
from stevie.quant.kernels import Kernels
from stevie.quant.kernels import load as load_kernels
from stevie.runtime.budget import BudgetDenied, acquire
from stevie.runtime.dataquality import DqRecorder
from stevie.runtime.flags import FlagsClient
from stevie.runtime.service import ServiceContext, ServiceSpec
from stevie.services.book_maintainer import binance
from stevie.services.book_maintainer.bars import BarBuilder
from stevie.services.book_maintainer.core import BookSync, Out, RejectedDiff
from stevie.services.book_maintainer.settings import BookMaintainerSettings
from stevie.store import connect_pool, insert_bar, insert_resync, migrate
from stevie.store.ops import QuarantineRow

_OVERFLOW = object()
L2_GUARD_REASONS = ("far_from_mid", "size_spike", "non_finite")  # stevie.quant.quality.l2_levels
RESYNC_REASONS = ("gap", "crossed", "stale_run", "overflow", "disconnect", *L2_GUARD_REASONS)
MAX_QUARANTINED_LEVELS = 50


def depth_weight(venue: str, limit: int) -> int:
    """Request weight of a depth snapshot (Binance REST docs: spot 5/25/50/250 and USD-M
    2/5/10/20 for limits up to 100/500/1000/5000)."""
    tiers = (2, 5, 10, 20) if venue == "binance-usdm" else (5, 25, 50, 250)
    for bound, w in zip((100, 500, 1000, 5000), tiers, strict=True):
        if limit <= bound:
            return w
    return tiers[-1]


class VenueUnavailable(Exception):
    """The venue answered with a retryable HTTP status (5xx, 418/429 rate limits)."""


@dataclass
class Metrics:
    resyncs: Counter
    connected: Gauge
    backlog: Gauge
    applied: Counter
    dlq: Counter
    book_live: Gauge

    @classmethod
    def create(cls, ctx: ServiceContext) -> Metrics:
        r = ctx.registry
        return cls(
            Counter("l2_resyncs_total", "Book resynchronisations", ["venue", "symbol", "reason"], registry=r),
            Gauge("price_stream_connected", "1 while the venue WebSocket is connected", ["venue"], registry=r),
            Gauge("md_queue_backlog", "Inbound messages queued, not yet processed", ["venue"], registry=r),
            Counter("l2_diffs_applied_total", "Diffs applied to LIVE books", ["venue", "symbol"], registry=r),
            Counter("dlq_messages_total", "Undecodable messages dead-lettered", ["source"], registry=r),
            Gauge("l2_book_live", "1 while the book is LIVE", ["venue", "symbol"], registry=r),
        )


@dataclass
class VenueStream:
    """State of one venue's stream (for heartbeats and ``/api/ws/status``)."""

    venue: str
    queue: asyncio.Queue[object]
    connected: bool = False
    last_beat_ns: int = 0
    syncs: dict[str, BookSync] = field(default_factory=dict)
    bars: dict[str, BarBuilder] = field(default_factory=dict)
    last_msg_mono: dict[str, float] = field(default_factory=dict)
    fetching: set[str] = field(default_factory=set)

    def status(self) -> StreamStatus:
        return StreamStatus(
            venue=self.venue, connected=self.connected, backlog_size=self.queue.qsize(), last_beat_ns=self.last_beat_ns
        )


class BookMaintainer:
    def __init__(
        self,
        ctx: ServiceContext,
        s: BookMaintainerSettings,
        http: aiohttp.ClientSession,
        pool: asyncpg.Pool | None,
        kernels: Kernels,
        flags: FlagsClient | None = None,
    ) -> None:
        self.ctx, self.s, self.http, self.pool = ctx, s, http, pool
        self.m = Metrics.create(ctx)
        # L2 guard: data_quality_*_total{source="l2"}; strict = a quarantine row per refused diff
        self.dq = DqRecorder(ctx.registry, pool, flags, ctx.log)
        self.root = s.subject_root
        clock = ctx.clock.now_ns
        self.streams = {
            v: VenueStream(
                v,
                asyncio.Queue(s.queue_size),
                syncs={
                    sym: BookSync(
                        v,
                        sym,
                        v == "binance-usdm",
                        book=kernels.OrderBook(usdm=v == "binance-usdm"),
                        top_k=s.top_k,
                        coalesce_ns=s.coalesce_ms * 1_000_000,
                        buffer_size=s.buffer_size,
                        init_clock=clock,
                    )
                    for sym in s.symbols
                },
                bars={sym: BarBuilder(v, sym, init_clock=clock) for sym in s.symbols},
            )
            for v in s.venues
        }
        self._tasks: set[asyncio.Task[None]] = set()
        for v in s.venues:
            self.m.connected.labels(v).set(0)
            for sym in s.symbols:
                self.m.book_live.labels(v, sym).set(0)
                for reason in RESYNC_REASONS:
                    self.m.resyncs.labels(v, sym, reason)

    # -- publishing ---------------------------------------------------------------------
    async def publish(self, outs: list[Out]) -> None:
        for out in outs:
            if isinstance(out, BookTopK):
                await self.ctx.bus.publish(subjects.md_book(self.root, out.venue, out.symbol), encode(out))
                continue
            await self.ctx.bus.publish(subjects.md_status(self.root, out.venue, out.symbol), encode(out))
            self.m.book_live.labels(out.venue, out.symbol).set(1 if out.state.value == "LIVE" else 0)
            self.ctx.log.info(
                "book_state",
                venue=out.venue,
                symbol=out.symbol,
                state=out.state.value,
                reason=out.reason,
                seq=out.seq,
            )
            if out.state.value == "SYNCING":
                self.m.resyncs.labels(out.venue, out.symbol, out.reason).inc()
                await self._persist(insert_resync, out)

    async def _persist(self, fn: object, item: object) -> None:
        if self.pool is None:
            return
        try:
            await fn(self.pool, item)  # type: ignore[operator]
        except (OSError, asyncpg.PostgresError) as exc:
            self.ctx.log.warning("persist_failed", error=str(exc))

    async def resync_all(self, st: VenueStream, reason: str) -> None:
        now = self.ctx.clock.now_ns()
        for sync in st.syncs.values():
            await self.publish(sync.resync(reason, now))

    # -- REST snapshot ------------------------------------------------------------------
    def maybe_fetch(self, st: VenueStream) -> None:
        if not st.connected:
            return
        for sym, sync in st.syncs.items():
            if sync.wants_snapshot and sync.buffer and sym not in st.fetching:
                st.fetching.add(sym)
                task = asyncio.ensure_future(self.fetch_snapshot(st, sym))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    @stamina.retry(on=(aiohttp.ClientError, asyncio.TimeoutError, VenueUnavailable), attempts=5, timeout=20.0)
    async def _get_depth(self, venue: str, symbol: str) -> bytes:
        path = "/fapi/v1/depth" if venue == "binance-usdm" else "/api/v3/depth"
        url = f"{self.s.rest_url(venue)}{path}"
        params = {"symbol": symbol, "limit": str(self.s.snapshot_limit)}
        timeout = aiohttp.ClientTimeout(total=self.s.snapshot_timeout_s)
        async with self.http.get(url, params=params, timeout=timeout) as r:
            if r.status >= 500 or r.status in (418, 429):
                raise VenueUnavailable(f"{url} answered {r.status}")
            r.raise_for_status()
            return await r.read()

    async def fetch_snapshot(self, st: VenueStream, symbol: str) -> None:
        try:
            await acquire(
                self.ctx.bus, self.root, st.venue, depth_weight(st.venue, self.s.snapshot_limit), self.ctx.name
            )
            raw = await self._get_depth(st.venue, symbol)
            snap = binance.to_snapshot(st.venue, symbol, binance.snapshot_decoder.decode(raw), self.ctx.clock.now_ns())
        except (TimeoutError, aiohttp.ClientError, VenueUnavailable, msgspec.DecodeError, BudgetDenied) as exc:
            self.ctx.log.warning("snapshot_failed", venue=st.venue, symbol=symbol, error=str(exc))
            return
        finally:
            st.fetching.discard(symbol)
        sync = st.syncs[symbol]
        if sync.wants_snapshot and st.connected:
            await self.publish(sync.on_snapshot(snap))
            self.maybe_fetch(st)

    # -- stream -------------------------------------------------------------------------
    async def run_venue(self, st: VenueStream) -> None:
        names = "/".join(f"{s.lower()}@{k}" for s in self.s.symbols for k in ("depth@100ms", "trade"))
        url = f"{self.s.ws_url(st.venue)}/stream?streams={names}"
        backoff = 0.2
        refused_before = False
        while True:
            refused = False
            try:
                async with self.http.ws_connect(url, heartbeat=10, max_msg_size=0) as ws:
                    st.connected, backoff = True, 0.2
                    self.m.connected.labels(st.venue).set(1)
                    self.ctx.log.info("stream_connected", venue=st.venue)
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            break
                        st.last_beat_ns = time.time_ns()
                        try:
                            st.queue.put_nowait(msg.data)
                        except asyncio.QueueFull:
                            self._drain(st)
                            st.queue.put_nowait(_OVERFLOW)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                # nothing listens yet (the venue is starting): poll every 0.1 s, log once
                refused = isinstance(exc, aiohttp.ClientConnectorError) and not st.connected
                if not (refused and refused_before):
                    self.ctx.log.warning("stream_error", venue=st.venue, error=str(exc))
            refused_before = refused
            if refused:  # never got in: no book of this stream changed state
                await asyncio.sleep(0.1)
                continue
            if st.connected:
                self.ctx.log.warning("stream_disconnected", venue=st.venue)
            st.connected = False
            self.m.connected.labels(st.venue).set(0)
            self._drain(st)
            await self.resync_all(st, "disconnect")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    @staticmethod
    def _drain(st: VenueStream) -> None:
        while not st.queue.empty():
            st.queue.get_nowait()

    async def process(self, st: VenueStream) -> None:
        while True:
            item = await st.queue.get()
            self.m.backlog.labels(st.venue).set(st.queue.qsize())
            if item is _OVERFLOW:
                await self.resync_all(st, "overflow")
                continue
            try:
                env = binance.envelope_decoder.decode(item)  # type: ignore[arg-type]
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                await self.ctx.dead_letter(Msg(f"ws.{st.venue}", str(item).encode()), exc, self.m.dlq.labels(st.venue))
                continue
            await self.handle(st, env.data)

    async def handle(self, st: VenueStream, data: binance.BnDepth | binance.BnTrade | binance.BnMarkPrice) -> None:
        now = self.ctx.clock.now_ns()
        if isinstance(data, binance.BnDepth):
            sync = st.syncs.get(data.s)
            if sync is None:
                return
            st.last_msg_mono[data.s] = time.monotonic()
            was_live = sync.state.value == "LIVE"
            checked = sync.counters.l2_checked
            await self.publish(sync.on_diff(binance.to_diff(st.venue, data, now)))
            if sync.counters.l2_checked != checked:
                self.dq.checked("l2", sync.counters.l2_checked - checked)
            for rej in sync.take_rejected():
                await self.record_rejected(rej)
            if was_live and sync.state.value == "LIVE":
                self.m.applied.labels(st.venue, data.s).inc()
            self.maybe_fetch(st)
        elif isinstance(data, binance.BnTrade):
            trade = binance.to_trade(st.venue, data, now)
            await self.ctx.bus.publish(subjects.md_trade(self.root, st.venue, trade.symbol), encode(trade))
            builder = st.bars.get(trade.symbol)
            for bar in builder.on_trade(trade) if builder else []:
                await self.ctx.bus.publish(subjects.md_bar(self.root, st.venue, bar.symbol), encode(bar))
                await self._persist(insert_bar, bar)

    async def record_rejected(self, rej: RejectedDiff) -> None:
        """A diff the L2 guard refused (the book already resynced): ``strict`` keeps it in the
        quarantine table with its reason, ``relaxed`` only counts it. Either way it is never
        applied — a wrong book is never served as LIVE."""
        d = rej.diff
        if not self.dq.strict:
            self.dq.counted("l2", rej.reason)
            return
        await self.dq.quarantine(
            QuarantineRow(
                source="l2",
                venue=d.venue,
                symbol=d.symbol,
                item_ts_ms=d.ts_event_ns // 1_000_000,
                reason=rej.reason,
                detail=(
                    f"diff U={d.first_update_id} u={d.final_update_id}: a level vs mid {rej.mid:.8g} and "
                    f"visible top-20 size {rej.visible_size:.8g}; not applied, book resynced from a REST snapshot"
                ),
                item={
                    "U": d.first_update_id,
                    "u": d.final_update_id,
                    "b": d.bids[:MAX_QUARANTINED_LEVELS],
                    "a": d.asks[:MAX_QUARANTINED_LEVELS],
                },
                replaced=False,
            )
        )

    async def ticker(self) -> None:
        """Every 100 ms: flush coalesced books, mark idle books STALE."""
        stale_ns = int(self.s.stale_after_s * 1e9)
        while True:
            await asyncio.sleep(0.1)
            now, mono = self.ctx.clock.now_ns(), time.monotonic()
            for st in self.streams.values():
                for sym, sync in st.syncs.items():
                    idle = int((mono - st.last_msg_mono.get(sym, mono)) * 1e9)
                    await self.publish(sync.flush() + sync.check_stale(idle, stale_ns, now))

    async def run(self) -> None:
        jobs = [self.ticker()]
        for st in self.streams.values():
            jobs += [self.run_venue(st), self.process(st)]
        await asyncio.gather(*jobs)


async def main(ctx: ServiceContext) -> None:
    s = ctx.settings
    assert isinstance(s, BookMaintainerSettings)
    pool = None
    if s.database_url:
        await stamina.retry(on=(OSError, asyncpg.PostgresError), attempts=20, timeout=30.0)(migrate)(s.database_url)
        pool = await stamina.retry(on=(OSError, asyncpg.PostgresError), attempts=20, timeout=30.0)(connect_pool)(
            s.database_url
        )
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        kernels = load_kernels(s.kernels)
        ctx.backend = kernels.BACKEND
        flags = FlagsClient(ctx)
        await flags.start()
        bm = BookMaintainer(ctx, s, http, pool, kernels, flags)
        ctx.streams = lambda: [st.status() for st in bm.streams.values()]
        try:
            await bm.run()
        finally:
            if pool is not None:
                with contextlib.suppress(Exception):
                    await pool.close()


SPEC = ServiceSpec("book-maintainer", BookMaintainerSettings, main)
