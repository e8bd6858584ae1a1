"""Data quality of vol's 1-minute history: a 40-sigma spike put into the real BTCUSDT history
is quarantined with its reason and replaced by the venue's REST kline (core and shell).

Core: ``screen_candles`` flags exactly the spiked candle of real history (and nothing on the
clean one), explains it (robust z in/out, the MAD window, how much the next close undid),
``accept_replacement`` takes the real candle and refuses the spike; ``LiveBarGuard`` holds a
candidate spike one bar and flags it when the next close comes back.

Shell (``@pytest.mark.integration``): ``Vol.load_history`` against a loopback aiohttp server
speaking the USD-M klines API, through the real budgeter on an in-memory bus, with the
quarantine row written to a real PostgreSQL: strict replaces, a venue that re-serves the
spike leaves it out (still quarantined), relaxed only counts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import math

import numpy as np
import pytest
from aiohttp import web

from stevie.bus import InMemoryBus
from stevie.runtime.clock import LiveClock
from stevie.runtime.flags import FlagsClient
from stevie.runtime.logs import get_logger
from stevie.runtime.metrics import new_registry
from stevie.runtime.service import ServiceContext
from stevie.services.budgeter.settings import BudgeterSettings
from stevie.services.budgeter.shell import main as budgeter_main
from stevie.services.vol.core import (
    Candle,
    GuardSettings,
    LiveBarGuard,
    accept_live_replacement,
    accept_replacement,
    repair,
    screen_candles,
)
from stevie.services.vol.settings import VolSettings
from stevie.services.vol.shell import Vol
from tests.helpers.capture import SAMPLES

N = 4000
SPIKE_AT = 3000


def _real(n: int = N) -> list[Candle]:
    out = []
    with gzip.open(SAMPLES / "binance/usdm/klines_1m/BTCUSDT.csv.gz", "rt") as f:
        next(f)
        for line, _ in zip(f, range(n), strict=False):
            t, o, h, lo, c, v = line.strip().split(",")[:6]
            out.append(Candle(int(t), float(o), float(h), float(lo), float(c), float(v)))
    return out


def _spiked(candles: list[Candle], at: int = SPIKE_AT, sigmas: float = 40.0) -> tuple[list[Candle], float]:
    """The close of candle ``at`` up ``sigmas`` σ of the 1-minute returns (high raised with it:
    schema-clean, only the spike rule can catch it); the next candle is untouched."""
    c = np.array([x.close for x in candles])
    sigma = float(np.std(np.diff(np.log(c))))
    x = candles[at]
    close = x.close * math.exp(sigmas * sigma)
    out = list(candles)
    out[at] = Candle(x.open_ms, x.open, max(x.high, close), x.low, close, x.volume)
    return out, sigma


def test_the_real_history_is_clean_and_a_40_sigma_spike_is_quarantined_with_its_reason():
    real = _real()
    assert screen_candles(real) == []
    spiked, _ = _spiked(real)
    bad = screen_candles(spiked)
    assert [(b.index, b.reason) for b in bad] == [(SPIKE_AT, "spike")]
    d = bad[0].detail
    assert "robust z of the return in +" in d and "trailing 240-return MAD (cap 25)" in d
    z_in = float(d.split("return in ")[1].split(",")[0])
    assert z_in > 25  # 40 σ of the raw std; the robust (MAD) σ is smaller, so z is larger
    assert "undid 100 %" in d or "undid 99 %" in d
    assert accept_replacement(spiked, bad[0], real[SPIKE_AT])
    assert not accept_replacement(spiked, bad[0], spiked[SPIKE_AT])  # the venue re-serves the spike
    assert not accept_replacement(spiked, bad[0], real[SPIKE_AT + 1])  # not the same minute
    assert repair(spiked, {SPIKE_AT: real[SPIKE_AT]}, set()) == real
    assert len(repair(spiked, {}, {SPIKE_AT})) == N - 1


def test_schema_reasons_reach_the_quarantine_detail():
    real = _real(400)
    x = real[10]
    broken = list(real)
    broken[10] = Candle(x.open_ms, x.open, x.low - 1, x.low, x.close, x.volume)  # high below low
    broken[20] = Candle(real[19].open_ms, *[getattr(real[20], f) for f in ("open", "high", "low", "close", "volume")])
    bad = screen_candles(broken)
    assert [(b.index, b.reason) for b in bad] == [(10, "ohlc_inconsistent"), (20, "non_increasing_time")]
    assert bad[0].detail.startswith("ohlcv schema: ohlc_inconsistent")


def test_live_bar_guard_holds_a_candidate_one_bar_and_flags_the_spike():
    real = _real(2500)
    spiked, _ = _spiked(real, at=2000)
    g = GuardSettings()
    guard = LiveBarGuard(g)
    history = [c.close for c in spiked[:300]]
    released = []
    for c in spiked[300:]:
        for cand, reason, detail in guard.on_bar(history, c):
            released.append((cand.open_ms, reason))
            if not reason:
                history.append(cand.close)
            else:
                assert "robust z" in detail
    assert [t for t, r in released if r] == [spiked[2000].open_ms]
    assert [t for t, _ in released] == [c.open_ms for c in spiked[300:]]  # every bar, in order
    assert accept_live_replacement(history[:1700], spiked[2000], real[2000], g)
    assert not accept_live_replacement(history[:1700], spiked[2000], spiked[2000], g)


# -- shell: loopback klines server, real budgeter, real PostgreSQL ---------------------------


def _row(c: Candle) -> list:
    head = [c.open_ms, repr(c.open), repr(c.high), repr(c.low), repr(c.close), repr(c.volume)]
    return [*head, c.open_ms + 59_999, "0", 0, "0", "0", "0"]


async def _klines_server(history: list[Candle], refetch: list[Candle]) -> tuple[web.AppRunner, str, list[int]]:
    """Pages (limit 1500) from ``history``; one-bar re-fetches (limit 1) from ``refetch``."""
    asked: list[int] = []

    async def klines(req: web.Request) -> web.Response:
        start, limit = int(req.query["startTime"]), int(req.query["limit"])
        src = refetch if limit == 1 else history
        if limit == 1:
            asked.append(start)
        return web.json_response([_row(c) for c in src if c.open_ms >= start][:limit])

    app = web.Application()
    app.router.add_get("/fapi/v1/klines", klines)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}", asked


def _ctx(bus, name, s):
    return ServiceContext(name, s, bus, new_registry(), LiveClock(), get_logger(service=name), 0)


async def _load(pg_url: str, root: str, history: list[Candle], refetch: list[Candle], mode: str):
    import aiohttp

    from stevie.store import connect_pool, migrate

    await migrate(pg_url)
    pool = await connect_pool(pg_url)
    bus = InMemoryBus()
    budgeter = asyncio.ensure_future(budgeter_main(_ctx(bus, "budgeter", BudgeterSettings(subject_root=root))))
    runner, url, asked = await _klines_server(history, refetch)
    s = VolSettings(
        subject_root=root,
        symbols=["BTCUSDT"],
        rest_url=url,
        minutes_per_period=60,
        garch_window=1000,
        history_bars=len(history),
    )
    ctx = _ctx(bus, "vol", s)
    try:
        async with aiohttp.ClientSession() as http:
            v = Vol(ctx, s, http, pool, FlagsClient(ctx, environ={"STEVIE_FLAG_DATA_QUALITY": mode}))
            await v.load_history("BTCUSDT")
        rows = await pool.fetch(
            "SELECT reason, detail, replaced, item, replacement FROM quarantine WHERE source = 'vol_history'"
            " AND item_ts = to_timestamp($1 / 1000.0) AND detail LIKE $2",
            history[SPIKE_AT].open_ms,
            f"close {history[SPIKE_AT].close:.8g} %",
        )
        return v, ctx, rows, asked
    finally:
        budgeter.cancel()
        await runner.cleanup()
        await pool.execute(
            "DELETE FROM quarantine WHERE source = 'vol_history' AND item_ts = to_timestamp($1 / 1000.0)",
            history[SPIKE_AT].open_ms,
        )
        await pool.close()


def _flagged(ctx, action: str) -> float | None:
    return ctx.registry.get_sample_value(
        "data_quality_flagged_total", {"source": "vol_history", "reason": "spike", "action": action}
    )


@pytest.mark.integration
async def test_strict_load_quarantines_the_spike_and_replaces_it_from_rest(pg_server, subject_root):
    real = _real()
    spiked, _ = _spiked(real)
    v, ctx, rows, asked = await _load(pg_server.url, subject_root, spiked, real, "strict")
    assert asked == [real[SPIKE_AT].open_ms]  # one re-fetch, of that minute, granted by the budgeter
    book = v.books["BTCUSDT"]
    assert book.closes == [c.close for c in real] and book.times_ms == [c.open_ms for c in real]
    assert len(rows) == 1
    r = rows[0]
    assert r["reason"] == "spike" and r["replaced"] is True
    assert "robust z of the return in" in r["detail"] and "replaced by the venue's REST kline" in r["detail"]
    assert json.loads(r["item"])["close"] == spiked[SPIKE_AT].close
    assert json.loads(r["replacement"]) == dataclasses.asdict(real[SPIKE_AT])
    assert _flagged(ctx, "quarantined") == 1
    assert (
        ctx.registry.get_sample_value("data_quality_replaced_total", {"source": "vol_history", "reason": "spike"}) == 1
    )
    assert ctx.registry.get_sample_value("data_quality_checked_total", {"source": "vol_history"}) == N


@pytest.mark.integration
async def test_a_venue_that_re_serves_the_spike_leaves_it_out_and_relaxed_only_counts(pg_server, subject_root):
    real = _real()
    spiked, _ = _spiked(real)
    v, ctx, rows, _ = await _load(pg_server.url, subject_root, spiked, spiked, "strict")
    assert len(v.books["BTCUSDT"].closes) == N - 1 and spiked[SPIKE_AT].close not in v.books["BTCUSDT"].closes
    assert len(rows) == 1 and rows[0]["replaced"] is False and "fails the guards too" in rows[0]["detail"]
    v, ctx, rows, asked = await _load(pg_server.url, subject_root, spiked, real, "relaxed")
    assert rows == [] and asked == [] and _flagged(ctx, "counted") == 1 and _flagged(ctx, "quarantined") is None
    assert v.books["BTCUSDT"].closes[SPIKE_AT] == spiked[SPIKE_AT].close  # used as is


def _spike_reference(c: np.ndarray, window: int = 240, z_cap: float = 25.0, min_revert: float = 0.8) -> np.ndarray:
    """The spike rule computed for every candle (rolling median/MAD of every window)."""
    from stevie.quant.quality import MAD_TO_SIGMA

    r = np.diff(np.log(c))
    out = np.zeros(len(c), dtype=bool)
    for j in range(window, len(r) - 1):
        w = r[j - window : j]
        med = np.median(w)
        mad = np.median(np.abs(w - med)) * MAD_TO_SIGMA
        if mad <= 0:
            continue
        zi, zo = (r[j] - med) / mad, (r[j + 1] - med) / mad
        back = abs(r[j] + r[j + 1]) <= (1 - min_revert) * abs(r[j])
        out[j + 1] = abs(zi) > z_cap and abs(zo) > z_cap and np.sign(zi) != np.sign(zo) and back
    return out


def test_spike_guard_equals_the_every_window_computation():
    from stevie.quant.quality import spike_guard

    real = np.array([x.close for x in _real(3000)])
    rng = np.random.default_rng(7)
    c = real.copy()
    for at in rng.choice(np.arange(300, 2990), 12, replace=False):  # spikes of 10-60 σ, some not reverted
        c[at] *= np.exp(rng.uniform(10, 60) * 0.0007 * rng.choice([-1, 1]))
        if rng.random() < 0.3:
            c[at + 1 :] *= c[at] / real[at]
    for z_cap in (5.0, 25.0):
        got, want = spike_guard(c, z_cap=z_cap).spike, _spike_reference(c, z_cap=z_cap)
        assert np.array_equal(got, want) and want.sum() >= 3
