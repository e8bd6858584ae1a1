"""vol shell: loads kline history over the venue's REST API, follows 1-minute bars on the
bus, and answers ``vol.forecast``, ``vol.options_chain``, ``vol.options_smile`` and
``vol.portfolio`` requests. Model fits run in a worker thread so heartbeats keep going."""

from __future__ import annotations

import asyncio

import aiohttp
import msgspec
import stamina
from prometheus_client import Gauge

from stevie.bus import Msg
from stevie.contracts import Bar, decoder_for, subjects
from stevie.contracts.rpc import (
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
from stevie.runtime.service import ServiceContext, ServiceSpec
from stevie.services.vol.core import OptionsDesk, SymbolVol, allocate
from stevie.services.vol.settings import VolSettings

KlineRow = tuple[int, str, str, str, str, str, int, str, int, str, str, str]
_klines = msgspec.json.Decoder(list[KlineRow])


class VenueUnavailable(Exception):
    """Retryable venue answer (5xx, 418/429)."""


class Vol:
    def __init__(self, ctx: ServiceContext, s: VolSettings, http: aiohttp.ClientSession) -> None:
        self.ctx, self.s, self.http = ctx, s, http
        self.books = {
            sym: SymbolVol(sym, s.minutes_per_period, s.garch_window, s.refit_every_bars) for sym in s.symbols
        }
        self.desk = OptionsDesk()
        self._bar: msgspec.json.Decoder[Bar] = decoder_for(Bar)
        self.last_sync = Gauge(
            "ohlcv_last_sync_ts_seconds", "Wall time of the last OHLCV history load or bar", registry=ctx.registry
        )

    @stamina.retry(on=(aiohttp.ClientError, asyncio.TimeoutError, VenueUnavailable), attempts=10, timeout=60.0)
    async def _get(self, symbol: str, start_ms: int) -> list[KlineRow]:
        path = "/fapi/v1/klines" if self.s.venue == "binance-usdm" else "/api/v3/klines"
        params = {"symbol": symbol, "interval": "1m", "limit": "1500", "startTime": str(start_ms)}
        async with self.http.get(self.s.rest_url + path, params=params) as r:
            if r.status >= 500 or r.status in (418, 429):
                raise VenueUnavailable(f"{r.status}")
            r.raise_for_status()
            return _klines.decode(await r.read())

    async def load_history(self, symbol: str) -> None:
        """Page through the klines endpoint from the oldest bar (each page granted by the
        budgeter: Binance weight 10 on USD-M, 2 on spot for 1500 bars), then fit."""
        times: list[int] = []
        closes: list[float] = []
        start = 1
        while len(times) < self.s.history_bars:
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
            rows = [r for r in rows if not times or r[0] > times[-1]]
            if not rows:
                break
            times += [r[0] for r in rows]
            closes += [float(r[4]) for r in rows]
            start = rows[-1][0] + 1
        times, closes = times[-self.s.history_bars :], closes[-self.s.history_bars :]
        await asyncio.to_thread(self.books[symbol].add_bars, times, closes)
        self.last_sync.set_to_current_time()
        self.ctx.log.info("history_loaded", symbol=symbol, bars=len(times))

    async def on_bar(self, msg: Msg) -> None:
        try:
            bar = self._bar.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.ctx.log.warning("bad_bar", error=str(exc))
            return
        book = self.books.get(bar.symbol)
        if book is not None and book.closes:
            await asyncio.to_thread(book.add_bars, [bar.open_time_ns // 1_000_000], [bar.close])
            self.last_sync.set_to_current_time()

    # -- request handlers (pure calls into the core) --------------------------------------
    def forecast(self, req: VolForecastRequest) -> VolForecast:
        if not 1 <= req.h <= self.s.max_horizon_mins:
            raise QuantInputError(f"h must be an integer number of minutes in [1, {self.s.max_horizon_mins}]")
        return self.books[req.symbol.upper()].forecast(req.h)

    def store_chain(self, req: OptionsChainRequest) -> Smile:
        return self.desk.store(req.symbol.upper(), req.chain)

    def smile(self, req: SmileRequest) -> Smile:
        return self.desk.smile(req.symbol.upper())

    def portfolio(self, req: PortfolioRequest) -> PortfolioResult:
        return allocate(self.books, [s.upper() for s in req.symbols], req.cvarBudget, req.volTarget, req.alpha)


async def main(ctx: ServiceContext) -> None:
    s = ctx.settings
    assert isinstance(s, VolSettings)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        v = Vol(ctx, s, http)
        await ctx.serve_rpc("forecast", VolForecastRequest, v.forecast)
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


SPEC = ServiceSpec("vol", VolSettings, main)
