"""vol shell: loads kline history over the venue's REST API, follows 1-minute bars on the
bus, and answers ``vol.forecast``, ``vol.closes``, ``vol.options_chain``, ``vol.options_smile`` and
``vol.portfolio`` requests. Model fits run in a worker thread so heartbeats keep going.

Data quality (``stevie.quant.quality`` via the core's ``screen_candles`` / ``LiveBarGuard``):
the history load and every live bar pass the OHLCV schema and spike guards. With the flag
``DataQuality=strict`` a bad candle is quarantined (a ``quarantine`` row with its reason and
the numbers behind it) and a replacement is fetched from the venue's REST klines through the
budgeter; the replacement is used only if it passes the same guards, else the candle is left
out. ``relaxed`` only counts (``data_quality_flagged_total{action="counted"}``) and uses it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses

import aiohttp
import asyncpg
import msgspec
import stamina
from prometheus_client import Gauge

from stevie.bus import Msg
from stevie.contracts import Bar, decoder_for, subjects
from stevie.contracts.rpc import (
    MAX_CLOSES,
    Closes,
    ClosesRequest,
    OptionsChainRequest,
    PortfolioRequest,
    PortfolioResult,
    Smile,
    SmileRequest,
    VolForecast,
    VolForecastRequest,
)
from stevie.quant.errors import QuantInputError
from stevie.runtime.budget import BudgetDenied, acquire
from stevie.runtime.dataquality import DqRecorder
from stevie.runtime.flags import FlagsClient
from stevie.runtime.service import ServiceContext, ServiceSpec
from stevie.services.vol.core import (
    BadCandle,
    Candle,
    GuardSettings,
    LiveBarGuard,
    OptionsDesk,
    SymbolVol,
    accept_live_replacement,
    accept_replacement,
    allocate,
    repair,
    screen_candles,
)
from stevie.services.vol.settings import VolSettings
from stevie.store import connect_pool, migrate
from stevie.store.ops import QuarantineRow

KlineRow = tuple[int, str, str, str, str, str, int, str, int, str, str, str]
_klines = msgspec.json.Decoder(list[KlineRow])
MAX_REFETCH_PER_LOAD = 50  # replacement fetches per history load (beyond: quarantined, left out)


def base_asset(symbol: str) -> str:
    """BTCUSDT → BTC (quote assets USDT, USDC, BUSD, FDUSD); other names unchanged."""
    for quote in ("FDUSD", "USDT", "USDC", "BUSD"):
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)]
    return symbol


def to_candle(r: KlineRow) -> Candle:
    return Candle(r[0], float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]))


class VenueUnavailable(Exception):
    """Retryable venue answer (5xx, 418/429)."""


class Vol:
    def __init__(
        self,
        ctx: ServiceContext,
        s: VolSettings,
        http: aiohttp.ClientSession,
        pool: asyncpg.Pool | None = None,
        flags: FlagsClient | None = None,
    ) -> None:
        self.ctx, self.s, self.http = ctx, s, http
        self.dq = DqRecorder(ctx.registry, pool, flags, ctx.log)
        self.guard = GuardSettings(s.spike_window, s.spike_z_cap)
        self.live_guards = {sym: LiveBarGuard(self.guard) for sym in s.symbols}
        self.options_universe = frozenset(s.symbols) | {base_asset(sym) for sym in s.symbols}
        self.books = {
            sym: SymbolVol(sym, s.minutes_per_period, s.garch_window, s.refit_every_bars) for sym in s.symbols
        }
        self.desk = OptionsDesk()
        self._bar: msgspec.json.Decoder[Bar] = decoder_for(Bar)
        self.last_sync = Gauge(
            "ohlcv_last_sync_ts_seconds", "Wall time of the last OHLCV history load or bar", registry=ctx.registry
        )

    @stamina.retry(on=(aiohttp.ClientError, asyncio.TimeoutError, VenueUnavailable), attempts=10, timeout=60.0)
    async def _get(self, symbol: str, start_ms: int, limit: int = 1500) -> list[KlineRow]:
        path = "/fapi/v1/klines" if self.s.venue == "binance-usdm" else "/api/v3/klines"
        params = {"symbol": symbol, "interval": "1m", "limit": str(limit), "startTime": str(start_ms)}
        async with self.http.get(self.s.rest_url + path, params=params) as r:
            if r.status >= 500 or r.status in (418, 429):
                raise VenueUnavailable(f"{r.status}")
            r.raise_for_status()
            return _klines.decode(await r.read())

    async def load_history(self, symbol: str) -> None:
        """Page through the klines endpoint from the oldest bar (each page granted by the
        budgeter: Binance weight 10 on USD-M, 2 on spot for 1500 bars), then fit."""
        candles: list[Candle] = []
        start = 1
        while len(candles) < self.s.history_bars:
            await acquire(
                self.ctx.bus,
                self.s.subject_root,
                self.s.venue,
                10 if self.s.venue == "binance-usdm" else 2,
                self.ctx.name,
                deadline_s=300.0,
                priority="low",
            )
            rows = await self._get(symbol, start)
            rows = [r for r in rows if not candles or r[0] > candles[-1].open_ms]
            if not rows:
                break
            candles += [to_candle(r) for r in rows]
            start = rows[-1][0] + 1
        candles = await self.screen_history(symbol, candles[-self.s.history_bars :])
        times, closes = [c.open_ms for c in candles], [c.close for c in candles]
        await asyncio.to_thread(self.books[symbol].add_bars, times, closes)
        self.last_sync.set_to_current_time()
        self.ctx.log.info("history_loaded", symbol=symbol, bars=len(times))

    async def fetch_candle(self, symbol: str, open_ms: int) -> Candle | None:
        """The venue's REST kline opening at ``open_ms`` (a replacement), through the
        budgeter (weight 1 on USD-M, 2 on spot for one bar); None when unavailable."""
        try:
            await acquire(
                self.ctx.bus,
                self.s.subject_root,
                self.s.venue,
                1 if self.s.venue == "binance-usdm" else 2,
                self.ctx.name,
                deadline_s=30.0,
                priority="low",
            )
            rows = await self._get(symbol, open_ms, limit=1)
        except (aiohttp.ClientError, TimeoutError, VenueUnavailable, BudgetDenied, msgspec.DecodeError) as exc:
            self.ctx.log.warning("replacement_fetch_failed", symbol=symbol, open_ms=open_ms, error=str(exc)[:200])
            return None
        try:
            return to_candle(rows[0]) if rows and rows[0][0] == open_ms else None
        except ValueError:
            return None

    async def screen_history(self, symbol: str, candles: list[Candle]) -> list[Candle]:
        """The loaded history through the guards (see the module doc); returns the series to fit."""
        bad = await asyncio.to_thread(screen_candles, candles, self.guard)
        self.dq.checked("vol_history", len(candles))
        if not self.dq.strict:
            for b in bad:
                self.dq.counted("vol_history", b.reason)
            return candles
        replaced: dict[int, Candle] = {}
        dropped: set[int] = set()
        for n, b in enumerate(bad):
            rep = await self.fetch_candle(symbol, b.candle.open_ms) if n < MAX_REFETCH_PER_LOAD else None
            ok = rep is not None and accept_replacement(candles, b, rep, self.guard)
            if ok and rep is not None:
                replaced[b.index] = rep
            else:
                dropped.add(b.index)
            await self._quarantine("vol_history", symbol, b, rep if ok else None, rep)
        if bad:
            self.ctx.log.warning("history_quarantined", symbol=symbol, bad=len(bad), replaced=len(replaced))
        return repair(candles, replaced, dropped)

    async def _quarantine(
        self, source: str, symbol: str, b: BadCandle, used: Candle | None, fetched: Candle | None
    ) -> None:
        if used is not None:
            outcome = "; replaced by the venue's REST kline (passes the guards)"
        elif fetched is None:
            outcome = "; left out: no replacement from the venue's REST klines"
        else:
            outcome = f"; left out: the venue's REST kline fails the guards too (close {fetched.close:.8g})"
        await self.dq.quarantine(
            QuarantineRow(
                source=source,
                venue=self.s.venue,
                symbol=symbol,
                item_ts_ms=b.candle.open_ms,
                reason=b.reason,
                detail=b.detail + outcome,
                item=dataclasses.asdict(b.candle),
                replaced=used is not None,
                replacement=None if used is None else dataclasses.asdict(used),
            )
        )

    async def on_bar(self, msg: Msg) -> None:
        try:
            bar = self._bar.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.ctx.log.warning("bad_bar", error=str(exc))
            return
        book = self.books.get(bar.symbol)
        if book is None or not book.closes:
            return
        candle = Candle(bar.open_time_ns // 1_000_000, bar.open, bar.high, bar.low, bar.close, bar.volume)
        if candle.open_ms <= book.times_ms[-1]:
            return  # older or duplicate bar (replay loops): ignored as before
        use: list[Candle] = []
        for c, reason, detail in self.live_guards[bar.symbol].on_bar(book.closes, candle):
            self.dq.checked("live_bars")
            if not reason:
                use.append(c)
            elif not self.dq.strict:
                self.dq.counted("live_bars", reason)
                use.append(c)
            else:
                history = book.closes + [u.close for u in use]
                rep = await self.fetch_candle(bar.symbol, c.open_ms)
                ok = accept_live_replacement(history, c, rep, self.guard)
                await self._quarantine(
                    "live_bars", bar.symbol, BadCandle(-1, c, reason, detail), rep if ok else None, rep
                )
                if ok and rep is not None:
                    use.append(rep)
        if use:
            await asyncio.to_thread(book.add_bars, [u.open_ms for u in use], [u.close for u in use])
            self.last_sync.set_to_current_time()

    # -- request handlers (pure calls into the core) --------------------------------------
    def forecast(self, req: VolForecastRequest) -> VolForecast:
        if not 1 <= req.h <= self.s.max_horizon_mins:
            raise QuantInputError(f"h must be an integer number of minutes in [1, {self.s.max_horizon_mins}]")
        sym = req.symbol.upper()
        if sym not in self.books:
            raise KeyError(f"unknown symbol {sym[:40]!r}; known: {', '.join(self.books)}")
        return self.books[sym].forecast(req.h)

    def closes(self, req: ClosesRequest) -> Closes:
        """The newest ``req.n`` 1-minute closes of the series the forecasts are fitted on (the
        screened history and the live bars since; the bar policies' input on the live clock).
        Raises QuantInputError (400) for n outside 1..MAX_CLOSES, KeyError (404) for a symbol
        the service does not follow."""
        if not 1 <= req.n <= MAX_CLOSES:
            raise QuantInputError(f"n must be an integer in [1, {MAX_CLOSES}]")
        sym = req.symbol.upper()
        if sym not in self.books:
            raise KeyError(f"unknown symbol {sym[:40]!r}; known: {', '.join(self.books)}")
        book = self.books[sym]
        m = min(len(book.times_ms), len(book.closes))  # add_bars (a worker thread) may be between appends
        return Closes(sym, book.times_ms[max(0, m - req.n) : m], book.closes[max(0, m - req.n) : m])

    def store_chain(self, req: OptionsChainRequest) -> Smile:
        """Only symbols of the configured universe (``symbols`` and their base assets, e.g.
        BTCUSDT and BTC): the desk never grows with junk names. Unknown → KeyError (404)."""
        sym = req.symbol.upper()
        if sym not in self.options_universe:
            raise KeyError(f"unknown options symbol {sym[:40]!r}; known: {', '.join(sorted(self.options_universe))}")
        return self.desk.store(sym, req.chain)

    def smile(self, req: SmileRequest) -> Smile:
        sym = req.symbol.upper()
        if sym not in self.desk.chains:
            raise KeyError(f"no options chain stored for {sym[:40]!r}; POST /api/options/chain/{{symbol}} first")
        return self.desk.smile(sym)

    def portfolio(self, req: PortfolioRequest) -> PortfolioResult:
        return allocate(self.books, [s.upper() for s in req.symbols], req.cvarBudget, req.volTarget, req.alpha)


async def main(ctx: ServiceContext) -> None:
    s = ctx.settings
    assert isinstance(s, VolSettings)
    pool: asyncpg.Pool | None = None
    if s.database_url:  # the quarantine table (data quality); without it, counters only
        retry = stamina.retry(on=(OSError, asyncpg.PostgresError), attempts=20, timeout=30.0)
        await retry(migrate)(s.database_url)
        pool = await retry(connect_pool)(s.database_url)
    flags = FlagsClient(ctx)
    await flags.start()
    async with (
        contextlib.AsyncExitStack() as stack,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
    ):
        if pool is not None:
            stack.push_async_callback(pool.close)
        v = Vol(ctx, s, http, pool, flags)
        await ctx.serve_rpc("forecast", VolForecastRequest, v.forecast)
        await ctx.serve_rpc("closes", ClosesRequest, v.closes)
        await ctx.serve_rpc("options_chain", OptionsChainRequest, v.store_chain)
        await ctx.serve_rpc("options_smile", SmileRequest, v.smile)
        await ctx.serve_rpc("portfolio", PortfolioRequest, v.portfolio)
        await ctx.bus.subscribe(subjects.md_bar(s.subject_root, s.venue, "*"), v.on_bar)
        for sym in s.symbols:
            while True:
                try:
                    await v.load_history(sym)
                    break
                except BudgetDenied as exc:  # the venue's budget stayed exhausted: try again later
                    ctx.log.warning("history_deferred", symbol=sym, error=str(exc))
                    await asyncio.sleep(5)
        await asyncio.Event().wait()


SPEC = ServiceSpec("vol", VolSettings, main, nice=5)  # background: yields the cores to the decision path
