"""vol core (pure): per-symbol 1-minute history with fitted HAR-RV and GARCH(1,1) models,
the option-chain desk, and portfolio allocation on the same history. No I/O, no clock."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from stevie.contracts.rpc import ChainPoint, PortfolioResult, Smile, TenorSmileView, VolForecast
from stevie.quant import options, portfolio, vol
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
        """Fit HAR-RV on per-period RV and GARCH on the last ``garch_window`` returns."""
        self.install(self.fitter(self.closes, self.minutes_per_period, self.garch_window))

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


def to_quotes(chain: list[ChainPoint]) -> list[options.OptionQuote]:
    """Chain points (moneyness or full form, not mixed) → quotes. Raises QuantInputError."""
    if not chain:
        raise QuantInputError("chain is empty")
    full = [p for p in chain if p.strike is not None]
    if full and len(full) != len(chain):
        raise QuantInputError("mix of moneyness and full-chain points")
    if not full:
        out = []
        for p in chain:
            if p.k is None or p.tenor is None or p.iv is None:
                raise QuantInputError("moneyness points need k, tenor, type and iv")
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
