"""vol core (pure): per-symbol 1-minute history with fitted HAR-RV and GARCH(1,1) models,
the option-chain desk, and portfolio allocation on the same history. No I/O, no clock."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from stevie.contracts.rpc import ChainPoint, PortfolioResult, Smile, TenorSmileView, VolForecast
from stevie.quant import options, portfolio, quality, vol
from stevie.quant.errors import NotFitted, QuantInputError


@dataclass(frozen=True)
class VolFit:
    """The models fitted on one training window: HAR-RV coefficients with the per-period RV
    they were fitted on, GARCH(1,1) parameters and the GARCH state after the window."""

    har: vol.HarParams
    rv: np.ndarray
    garch: vol.GarchParams
    state: vol.GarchState


def fit_models(closes: list[float] | np.ndarray, minutes_per_period: int, garch_window: int) -> VolFit:
    """HAR-RV on the per-period RV of all ``closes`` and GARCH on the last ``garch_window``
    returns. Raises QuantInputError when the history is too short (HAR needs 27 periods)."""
    r = vol.log_returns(closes)
    rv = vol.realized_variance(r, minutes_per_period)
    har = vol.fit_har(rv)
    tail = r[-garch_window:]
    garch = vol.fit_garch(tail)
    return VolFit(har, rv, garch, vol.garch_state(garch, tail))


Fitter = Callable[[list[float], int, int], VolFit]


@dataclass
class SymbolVol:
    """One symbol: closes and bar times (ms), fitted models, online GARCH state.

    ``fitter`` (default ``fit_models``) fits the models at each refit; ``stevie backtest``
    passes one that returns the same fits computed ahead, in parallel, on the same
    walk-forward training windows (``stevie.quant.validation``)."""

    symbol: str
    minutes_per_period: int
    garch_window: int
    refit_every_bars: int
    closes: list[float] = field(default_factory=list)
    times_ms: list[int] = field(default_factory=list)
    har: vol.HarParams | None = None
    rv: np.ndarray | None = None
    garch: vol.GarchParams | None = None
    state: vol.GarchState | None = None
    since_fit: int = 0
    fitter: Fitter = field(default=fit_models, repr=False)
    failed_fits: int = 0

    def add_bars(self, times_ms: list[int], closes: list[float]) -> int:
        """Append bars newer than the last one (older or duplicate bars are ignored); returns
        how many were added. Updates the GARCH state online and refits when due."""
        added = 0
        for t, c in zip(times_ms, closes, strict=True):
            if not (math.isfinite(c) and c > 0) or (self.times_ms and t <= self.times_ms[-1]):
                continue
            if self.closes and self.garch is not None and self.state is not None:
                self.state = vol.garch_update(self.garch, self.state, math.log(c / self.closes[-1]))
            self.closes.append(c)
            self.times_ms.append(t)
            added += 1
        self.since_fit += added
        if self.garch is None or self.since_fit >= self.refit_every_bars:
            self.refit()
        return added

    def refit(self) -> None:
        """Fit HAR-RV on per-period RV and GARCH on the last ``garch_window`` returns.

        A GARCH optimisation that does not converge (``RuntimeError``) never takes the service
        down: a refit keeps the previous fit; before the first fit the window is halved up to
        twice, and if that fails too the models stay unfitted (forecasts answer "not fitted")
        until the next refit is due. Each such failure is counted in ``failed_fits``."""
        window = self.garch_window
        for _ in range(1 if self.garch is not None else 3):
            try:
                self.install(self.fitter(self.closes, self.minutes_per_period, window))
                return
            except RuntimeError:
                window //= 2
        self.failed_fits += 1
        self.since_fit = 0

    def install(self, fit: VolFit) -> None:
        """Use ``fit`` from now on (the GARCH state continues online from ``fit.state``)."""
        self.har, self.rv, self.garch, self.state = fit.har, fit.rv, fit.garch, fit.state
        self.since_fit = 0

    def forecast(self, h: int) -> VolForecast:
        """σ of the return over ``h`` minutes from both models. Raises NotFitted before the first fit."""
        if self.har is None or self.rv is None or self.garch is None or self.state is None:
            raise NotFitted(f"{self.symbol}: models not fitted yet (history loading)")
        return VolForecast(
            symbol=self.symbol,
            h=h,
            sigmaHAR=vol.har_sigma(vol.har_forecast(self.har, self.rv), h, self.minutes_per_period),
            sigmaGARCH=vol.garch_forecast(self.garch, self.state, h),
            bars=len(self.closes),
            lastBarTs=self.times_ms[-1],
        )


MAX_IV = 5.0  # decimal implied vol (500 %): above it a quote is junk, not a market
MAX_MONEYNESS = 20.0  # K/F and 1/(K/F) at most this (strikes from 5 % to 2000 % of the forward)
MAX_CHAIN_POINTS = 5000


def _check_point(iv: float | None, k: float | None) -> None:
    """IV in (0, MAX_IV] (decimal) and moneyness K/F in [1/MAX_MONEYNESS, MAX_MONEYNESS];
    raises QuantInputError naming the bound."""
    if iv is not None and not 0 < iv <= MAX_IV:
        raise QuantInputError(f"iv must be a decimal in (0, {MAX_IV:g}], got {iv:.6g}")
    if k is not None and not 1 / MAX_MONEYNESS <= k <= MAX_MONEYNESS:
        raise QuantInputError(f"moneyness k = K/F must be in [{1 / MAX_MONEYNESS:g}, {MAX_MONEYNESS:g}], got {k:.6g}")


def to_quotes(chain: list[ChainPoint]) -> list[options.OptionQuote]:
    """Chain points (moneyness or full form, not mixed) → quotes. Bounds: at most
    ``MAX_CHAIN_POINTS`` points, IV in (0, 5] (decimal; ``markIv`` in percent, (0, 500]),
    moneyness K/F (given, or strike / underlying) in [0.05, 20], strike and underlying > 0.
    Raises QuantInputError."""
    if not chain:
        raise QuantInputError("chain is empty")
    if len(chain) > MAX_CHAIN_POINTS:
        raise QuantInputError(f"chain has {len(chain)} points; at most {MAX_CHAIN_POINTS}")
    full = [p for p in chain if p.strike is not None]
    if full and len(full) != len(chain):
        raise QuantInputError("mix of moneyness and full-chain points")
    if not full:
        out = []
        for p in chain:
            if p.k is None or p.tenor is None or p.iv is None:
                raise QuantInputError("moneyness points need k, tenor, type and iv")
            _check_point(p.iv, p.k)
            out.append(options.quote(p.k, p.tenor, p.type, p.iv))
        return out
    rows = []
    for p in chain:
        iv_pct = p.markIv if p.markIv is not None else (p.iv * 100 if p.iv is not None else None)
        if None in (p.expiryMs, p.tsMs, p.underlying, iv_pct):
            raise QuantInputError("full-chain points need strike, expiryMs, tsMs, underlying, type and iv or markIv")
        if iv_pct is None or not iv_pct > 0:
            raise QuantInputError(f"iv must be > 0, got {iv_pct}")
        assert p.strike is not None and p.expiryMs is not None and p.tsMs is not None and p.underlying is not None
        if not (p.strike > 0 and p.underlying > 0 and math.isfinite(p.strike) and math.isfinite(p.underlying)):
            raise QuantInputError(
                f"strike and underlying must be finite and > 0, got {p.strike:.6g}, {p.underlying:.6g}"
            )
        _check_point(iv_pct / 100, p.strike / p.underlying)
        if p.expiryMs <= p.tsMs:
            raise QuantInputError("expiryMs must be after tsMs")
        rows.append(options.ChainRow(p.strike, p.expiryMs, p.tsMs, p.type, iv_pct, p.underlying))
    return options.chain_quotes(rows)


@dataclass
class OptionsDesk:
    """Last chain per symbol and the history of its headline rr25 (for skew_z)."""

    max_history: int = 500
    chains: dict[str, list[options.OptionQuote]] = field(default_factory=dict)
    rr25_history: dict[str, list[float]] = field(default_factory=dict)

    def store(self, symbol: str, chain: list[ChainPoint]) -> Smile:
        """Validate and store a chain; the previous chains' rr25 values form the history."""
        quotes = to_quotes(chain)
        metrics = options.smile_metrics(quotes, self.rr25_history.get(symbol, []))
        self.chains[symbol] = quotes
        if metrics.rr25 is not None:
            hist = self.rr25_history.setdefault(symbol, [])
            hist.append(metrics.rr25)
            del hist[: -self.max_history]
        return self.smile(symbol, metrics)

    def smile(self, symbol: str, metrics: options.SmileMetrics | None = None) -> Smile:
        """Smile of the stored chain. Raises KeyError when no chain is stored."""
        quotes = self.chains[symbol]
        hist = self.rr25_history.get(symbol, [])
        if metrics is None:
            metrics = options.smile_metrics(quotes, hist[:-1])
        tenors = [TenorSmileView(t.tenor_years, t.atm_iv, t.rr25, t.fly25, t.reason) for t in metrics.tenors]
        return Smile(
            symbol=symbol,
            rr25=metrics.rr25,
            fly25=metrics.fly25,
            atm_iv=metrics.atm_iv,
            iv_term_slope=metrics.iv_term_slope,
            skew_z=metrics.skew_z,
            tenors=tenors,
            reasons=metrics.reasons,
            points=len(quotes),
            history=len(hist),
        )


def allocate(
    books: dict[str, SymbolVol], symbols: list[str], cvar_budget: float, vol_target: float | None, alpha: float
) -> PortfolioResult:
    """CVaR-budgeted weights on the common 1-minute history (simple returns) of ``symbols``.
    Raises KeyError for an unknown symbol, QuantInputError for bad parameters."""
    if not symbols or len(set(symbols)) != len(symbols):
        raise QuantInputError("symbols must be a non-empty list without duplicates")
    series = [books[s] for s in symbols]
    common = set(series[0].times_ms)
    for b in series[1:]:
        common &= set(b.times_ms)
    ts = sorted(common)
    if len(ts) < 100:
        raise QuantInputError(f"only {len(ts)} common bars for {symbols}")
    cols = []
    for b in series:
        idx = dict(zip(b.times_ms, b.closes, strict=True))
        c = np.array([idx[t] for t in ts])
        cols.append(c[1:] / c[:-1] - 1)
    a = portfolio.optimize(np.column_stack(cols), cvar_budget, vol_target, alpha)
    return PortfolioResult(
        symbols=symbols,
        weights=dict(zip(symbols, map(float, a.weights), strict=True)),
        cvar=dict(zip(symbols, map(float, a.cvar), strict=True)),
        kelly=dict(zip(symbols, map(float, a.kelly), strict=True)),
        expectedReturn=a.expected_return,
        portfolioVol=a.portfolio_vol,
        portfolioCvar=a.portfolio_cvar,
        bars=len(ts),
        status=a.status,
    )


# -- data quality of the 1-minute history (stevie.quant.quality guards) -------------------


@dataclass(frozen=True)
class Candle:
    """One 1-minute kline: ``open_ms`` (ms since epoch), prices in quote units, ``volume`` in
    base units."""

    open_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True)
class BadCandle:
    """A candle a guard rejected: its ``index`` in the screened series, the ``reason``
    (``ohlcv_schema``'s reasons or ``spike``) and a human ``detail`` (for the quarantine row)."""

    index: int
    candle: Candle
    reason: str
    detail: str


@dataclass(frozen=True)
class GuardSettings:
    """Spike rule parameters (``stevie.quant.quality.spike_guard``): trailing ``window``
    returns, robust-z ``z_cap``, share of the jump the next close must undo (``min_revert``)."""

    window: int = 240
    z_cap: float = 25.0
    min_revert: float = 0.8


def screen_candles(candles: list[Candle], g: GuardSettings = GuardSettings()) -> list[BadCandle]:
    """Every bad candle of a series (oldest first): schema first (``ohlcv_schema``), then the
    two-sided spike rule on the closes of the schema-clean candles. Indices refer to
    ``candles``. An empty series has no bad candle."""
    if not candles:
        return []
    schema = quality.ohlcv_schema(
        [c.open_ms for c in candles],
        [c.open for c in candles],
        [c.high for c in candles],
        [c.low for c in candles],
        [c.close for c in candles],
        [c.volume for c in candles],
    )
    bad = [
        BadCandle(i, c, why, f"ohlcv schema: {why} (o={c.open} h={c.high} l={c.low} c={c.close} v={c.volume})")
        for i, (c, why) in enumerate(zip(candles, schema, strict=True))
        if why
    ]
    clean = [i for i, why in enumerate(schema) if not why]
    if len(clean) > g.window + 2:
        closes = np.array([candles[i].close for i in clean])
        verdict = quality.spike_guard(closes, g.window, g.z_cap, g.min_revert)
        for j in np.flatnonzero(verdict.spike):
            i = clean[int(j)]
            bad.append(BadCandle(i, candles[i], "spike", _spike_detail(closes, int(j), float(verdict.z_in[j]), g)))
    return sorted(bad, key=lambda b: b.index)


def _spike_detail(closes: np.ndarray, j: int, z_in: float, g: GuardSettings) -> str:
    """Why candle ``j`` of ``closes`` is a spike: its closes, the robust z in and out (against
    the window that judged its way in) and how much of the jump the next close undid."""
    r = np.diff(np.log(closes))
    w = r[j - 1 - g.window : j - 1]
    med = float(np.median(w))
    mad = float(np.median(np.abs(w - med))) * quality.MAD_TO_SIGMA
    z_out = (float(r[j]) - med) / mad if mad > 0 else math.nan
    undone = 100 * (1 - abs(r[j - 1] + r[j]) / abs(r[j - 1]))
    return (
        f"close {closes[j]:.8g} after {closes[j - 1]:.8g} and before {closes[j + 1]:.8g}: robust z of the return "
        f"in {z_in:+.1f}, out {z_out:+.1f} vs the trailing {g.window}-return MAD (cap {g.z_cap:g}); "
        f"the next close undid {undone:.0f} % of the jump"
    )


def accept_replacement(
    candles: list[Candle],
    bad: BadCandle,
    replacement: Candle | None,
    g: GuardSettings = GuardSettings(),
) -> bool:
    """Is ``replacement`` (re-fetched from the venue) a good stand-in for ``bad``? Same open
    time, schema-clean on its own and, put in place of the bad candle, no longer a spike
    (judged with the same trailing window and the next close)."""
    if replacement is None or replacement.open_ms != bad.candle.open_ms:
        return False
    if screen_candles([replacement], g):
        return False
    lo, hi = max(0, bad.index - g.window - 2), min(len(candles), bad.index + 2)
    seg = [replacement if i == bad.index else candles[i] for i in range(lo, hi)]
    return not any(b.index == bad.index - lo for b in screen_candles(seg, g))


def repair(candles: list[Candle], replaced: dict[int, Candle], dropped: set[int]) -> list[Candle]:
    """The series with quarantined candles replaced (index → replacement) or left out."""
    return [replaced.get(i, c) for i, c in enumerate(candles) if i not in dropped]


class LiveBarGuard:
    """Screens 1-minute bars as they arrive, against the closes already accepted (``history``,
    oldest first). A bar whose return in is within the cap is released at once. A candidate
    spike (|z| of its return in above the cap) is held until the next bar shows whether the
    price came back (the two-sided rule needs the next close); ``on_bar`` then returns
    ``(bar, reason_or_empty)`` for the held bar and judges the new one. Schema-bad bars are
    returned at once with their reason. Pure; no clock."""

    def __init__(self, g: GuardSettings = GuardSettings()) -> None:
        self.g = g
        self.held: Candle | None = None

    def on_bar(self, history: list[float], bar: Candle) -> list[tuple[Candle, str, str]]:
        """(candle, reason, detail) in the order to apply them; reason '' = good."""
        prev_ms = None if self.held is None else self.held.open_ms
        schema = screen_candles([bar], self.g)
        if schema or (prev_ms is not None and bar.open_ms <= prev_ms):
            why = schema[0].reason if schema else "non_increasing_time"
            return [(bar, why, schema[0].detail if schema else f"open {bar.open_ms} not after the held bar")]
        out: list[tuple[Candle, str, str]] = []
        g = self.g
        if self.held is not None:
            held, self.held = self.held, None
            closes = np.array([*history[-(g.window + 1) :], held.close, bar.close])
            reason, detail = "", ""
            if len(closes) == g.window + 3:
                v = quality.spike_guard(closes, g.window, g.z_cap, g.min_revert)
                if v.spike[-2]:
                    reason, detail = "spike", _spike_detail(closes, len(closes) - 2, float(v.z_in[-2]), g)
            out.append((held, reason, detail))
            if not reason:
                history = [*history, held.close]
        if len(history) > g.window + 1 and self._z_in(history, bar.close) > g.z_cap:
            self.held = bar
            return out
        out.append((bar, "", ""))
        return out

    def _z_in(self, history: list[float], close: float) -> float:
        c = np.array([*history[-(self.g.window + 1) :], close])
        r = np.diff(np.log(c))
        w = r[:-1]
        med = float(np.median(w))
        mad = float(np.median(np.abs(w - med))) * quality.MAD_TO_SIGMA
        return abs(float(r[-1]) - med) / mad if mad > 0 else 0.0


def accept_live_replacement(
    history: list[float], bad: Candle, replacement: Candle | None, g: GuardSettings = GuardSettings()
) -> bool:
    """A re-fetched live bar stands in for ``bad`` when it has the same open time, is
    schema-clean and its return from the last accepted close is within the cap."""
    if replacement is None or replacement.open_ms != bad.open_ms or screen_candles([replacement], g):
        return False
    if len(history) <= g.window + 1:
        return True
    return LiveBarGuard(g)._z_in(history, replacement.close) <= g.z_cap
