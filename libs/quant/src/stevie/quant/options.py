"""Options: Black–Scholes/Black-76 pricing and greeks, implied volatility, and smile metrics.

Conventions (stated because they matter):
- Forward convention (Black 1976): price = D·[F·N(d1) − K·N(d2)] for a call, with
  d1 = (ln(F/K) + σ²T/2)/(σ√T), d2 = d1 − σ√T, D the discount factor. Forward delta is
  the undiscounted N(d1) (call) and N(d1) − 1 (put): Deribit publishes this delta.
- Spot convention (Black–Scholes–Merton 1973): F = S·e^{(r−q)T}, D = e^{−rT}; spot delta
  = e^{−qT}·N(d1) (call), e^{−qT}·(N(d1) − 1) (put).
- IVs are decimals (0.6 = 60 %); T in years (ACT/365); moneyness k = K/F.
- Smile metrics per tenor (market convention, e.g. Clark 2011 "Foreign Exchange Option
  Pricing", ch. 3): IV is interpolated linearly in call-delta space Δc = N(d1) using the
  out-of-the-money option at each strike; IV25c = IV(Δc=0.25), IV25p = IV(Δc=0.75) (a
  −25Δ put), ATM = IV(Δc=0.5); rr25 = IV25c − IV25p; fly25 = (IV25c + IV25p)/2 − ATM.
  No extrapolation: a metric the chain cannot define is None, with a reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import brentq
from scipy.stats import norm

from stevie.quant.errors import QuantInputError

_TENOR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dwmy])\s*$", re.IGNORECASE)
_TENOR_DAYS = {"d": 1.0, "w": 7.0, "m": 365.0 / 12.0, "y": 365.0}
DAYS_PER_YEAR = 365.0


def _check(F: float, K: float, T: float, sigma: float | None = None) -> None:
    if not (math.isfinite(F) and F > 0 and math.isfinite(K) and K > 0):
        raise QuantInputError(f"forward and strike must be finite and > 0, got F={F}, K={K}")
    if not (math.isfinite(T) and T > 0):
        raise QuantInputError(f"T must be finite and > 0 years, got {T}")
    if sigma is not None and not (math.isfinite(sigma) and sigma > 0):
        raise QuantInputError(f"sigma must be finite and > 0, got {sigma}")


def d1(F: float, K: float, T: float, sigma: float) -> float:
    """(ln(F/K) + σ²T/2) / (σ√T). Raises QuantInputError on non-positive inputs."""
    _check(F, K, T, sigma)
    return (math.log(F / K) + 0.5 * sigma * sigma * T) / (sigma * math.sqrt(T))


def black_price(F: float, K: float, T: float, sigma: float, is_call: bool, discount: float = 1.0) -> float:
    """Black-76 price in the units of F and K, discounted by ``discount``."""
    a = d1(F, K, T, sigma)
    b = a - sigma * math.sqrt(T)
    if is_call:
        return discount * (F * norm.cdf(a) - K * norm.cdf(b))
    return discount * (K * norm.cdf(-b) - F * norm.cdf(-a))


def bs_price(S: float, K: float, T: float, sigma: float, is_call: bool, r: float = 0.0, q: float = 0.0) -> float:
    """Black–Scholes–Merton price on spot ``S`` with rate ``r`` and yield ``q`` (continuous)."""
    return black_price(S * math.exp((r - q) * T), K, T, sigma, is_call, math.exp(-r * T))


def forward_delta(F: float, K: float, T: float, sigma: float, is_call: bool) -> float:
    """Undiscounted forward delta: N(d1) for a call, N(d1) − 1 for a put."""
    n = float(norm.cdf(d1(F, K, T, sigma)))
    return n if is_call else n - 1.0


def spot_delta(S: float, K: float, T: float, sigma: float, is_call: bool, r: float = 0.0, q: float = 0.0) -> float:
    """Spot delta ∂V/∂S: e^{−qT}·N(d1) (call), e^{−qT}·(N(d1) − 1) (put)."""
    return math.exp(-q * T) * forward_delta(S * math.exp((r - q) * T), K, T, sigma, is_call)


def vega(F: float, K: float, T: float, sigma: float, discount: float = 1.0) -> float:
    """∂price/∂σ = D·F·φ(d1)·√T (per 1.00 of vol)."""
    return discount * F * float(norm.pdf(d1(F, K, T, sigma))) * math.sqrt(T)


def implied_vol(price: float, F: float, K: float, T: float, is_call: bool, discount: float = 1.0) -> float:
    """The σ with ``black_price(F, K, T, σ) == price``, by Brent's method on [1e-6, 20].

    Raises QuantInputError when the price is outside the no-arbitrage bounds
    (intrinsic < price < D·F for calls, D·K for puts)."""
    _check(F, K, T)
    intrinsic = discount * max(F - K, 0.0) if is_call else discount * max(K - F, 0.0)
    upper = discount * (F if is_call else K)
    if not (math.isfinite(price) and intrinsic < price < upper):
        raise QuantInputError(f"price {price} outside the no-arbitrage bounds ({intrinsic}, {upper})")
    return float(
        brentq(
            lambda s: black_price(F, K, T, s, is_call, discount) - price,
            1e-6,
            20.0,
            xtol=1e-14,
            rtol=1e-15,
            maxiter=500,
        )
    )


def parse_tenor(tenor: str) -> float:
    """'7d', '2w', '3m', '1y' → years (ACT/365; a month is 365/12 days). Raises QuantInputError."""
    m = _TENOR.match(tenor or "")
    if m is None:
        raise QuantInputError(f"unknown tenor {tenor!r}: use a number and d, w, m or y, e.g. '7d'")
    years = float(m.group(1)) * _TENOR_DAYS[m.group(2).lower()] / DAYS_PER_YEAR
    if years <= 0:
        raise QuantInputError(f"tenor must be > 0, got {tenor!r}")
    return years


@dataclass(frozen=True)
class OptionQuote:
    """One option: moneyness k = K/F, time to expiry in years, call/put, implied vol (decimal).
    ``expiry_ms`` (0 if unknown) groups quotes of one expiry taken at slightly different times."""

    k: float
    tenor_years: float
    is_call: bool
    iv: float
    expiry_ms: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.k) and self.k > 0):
            raise QuantInputError(f"moneyness k must be > 0, got {self.k}")
        if not (math.isfinite(self.tenor_years) and self.tenor_years > 0):
            raise QuantInputError(f"tenor must be > 0 years, got {self.tenor_years}")
        if not (math.isfinite(self.iv) and self.iv > 0):
            raise QuantInputError(f"iv must be finite and > 0, got {self.iv}")


def quote(k: float, tenor: str, type_: str, iv: float) -> OptionQuote:
    """The moneyness form ``{k, tenor, type, iv}`` → OptionQuote. Raises QuantInputError."""
    if type_ not in ("call", "put"):
        raise QuantInputError(f"type must be 'call' or 'put', got {type_!r}")
    return OptionQuote(float(k), parse_tenor(tenor), type_ == "call", float(iv))


@dataclass(frozen=True)
class ChainRow:
    """A full-chain row (Deribit-style): strike and underlying (forward) in USD, expiry and
    quote time in ms since the epoch, mark IV in percent."""

    strike: float
    expiry_ms: int
    ts_ms: int
    type: str
    mark_iv_pct: float
    underlying_price: float


def chain_quotes(rows: Iterable[ChainRow]) -> list[OptionQuote]:
    """Full-chain rows → OptionQuotes. One forward per expiry (the median of the rows'
    underlying prices, which drift while a chain is polled), so a call and a put of one
    strike share one moneyness. Raises QuantInputError on bad rows."""
    by_exp: dict[int, list[ChainRow]] = {}
    for r in rows:
        if r.type not in ("call", "put"):
            raise QuantInputError(f"type must be 'call' or 'put', got {r.type!r}")
        if not (r.underlying_price > 0 and r.strike > 0):
            raise QuantInputError("strike and underlying price must be > 0")
        by_exp.setdefault(r.expiry_ms, []).append(r)
    out = []
    for exp, rs in by_exp.items():
        fwd = float(np.median([r.underlying_price for r in rs]))
        for r in rs:
            years = (exp - r.ts_ms) / (DAYS_PER_YEAR * 86_400_000.0)
            out.append(OptionQuote(r.strike / fwd, years, r.type == "call", r.mark_iv_pct / 100.0, exp))
    return out


@dataclass(frozen=True)
class TenorSmile:
    """Smile metrics of one expiry (IV decimals; None where the chain cannot define them)."""

    tenor_years: float
    atm_iv: float | None
    iv25c: float | None
    iv25p: float | None
    rr25: float | None
    fly25: float | None
    reason: str = ""


@dataclass(frozen=True)
class SmileMetrics:
    """Headline metrics (from the tenor nearest 30 days) plus every tenor.

    iv_term_slope: OLS slope of ATM IV against tenor (vol per year), None under 2 tenors.
    skew_z: (rr25 − mean(history)) / std(history), None under 5 history points."""

    rr25: float | None
    fly25: float | None
    atm_iv: float | None
    iv_term_slope: float | None
    skew_z: float | None
    tenors: list[TenorSmile]
    reasons: dict[str, str] = field(default_factory=dict)


def _otm_points(quotes: Sequence[OptionQuote]) -> tuple[np.ndarray, np.ndarray]:
    by_strike: dict[float, list[OptionQuote]] = {}
    for q in quotes:
        by_strike.setdefault(q.k, []).append(q)
    xs, ys = [], []
    for k, qs in by_strike.items():
        otm = [q for q in qs if q.is_call == (k >= 1.0)]
        q = (otm or qs)[0]
        xs.append(float(norm.cdf(d1(1.0, k, q.tenor_years, q.iv))))
        ys.append(q.iv)
    order = np.argsort(xs)
    x, y = np.asarray(xs)[order], np.asarray(ys)[order]
    keep = np.concatenate([[True], np.diff(x) > 1e-12])
    return x[keep], y[keep]


def tenor_smile(quotes: Sequence[OptionQuote]) -> TenorSmile:
    """Metrics of one expiry by linear interpolation in call-delta space (no extrapolation)."""
    if not quotes:
        raise QuantInputError("empty chain")
    x, y = _otm_points(quotes)

    def at(delta: float) -> float | None:
        return float(np.interp(delta, x, y)) if x.size >= 2 and x[0] <= delta <= x[-1] else None

    c, p, atm = at(0.25), at(0.75), at(0.5)
    reason = (
        ""
        if None not in (c, p, atm)
        else (f"the chain spans call deltas [{x[0]:.3f}, {x[-1]:.3f}]; 0.25, 0.5 and 0.75 must lie inside")
    )
    rr = c - p if c is not None and p is not None else None
    fly = 0.5 * (c + p) - atm if c is not None and p is not None and atm is not None else None
    tenor = float(np.mean([q.tenor_years for q in quotes]))
    return TenorSmile(tenor, atm, c, p, rr, fly, reason)


def smile_metrics(
    quotes: Iterable[OptionQuote], rr25_history: Sequence[float] = (), headline_years: float = 30 / DAYS_PER_YEAR
) -> SmileMetrics:
    """rr25, fly25, ATM IV per tenor, the ATM term slope and the skew z-score.

    Quotes are grouped by ``expiry_ms`` when given, else by tenor (to 1e-6 years). Raises QuantInputError on an
    empty chain or invalid quotes."""
    groups: dict[tuple[int, float], list[OptionQuote]] = {}
    for q in quotes:
        key = (q.expiry_ms, 0.0) if q.expiry_ms else (0, round(q.tenor_years, 6))
        groups.setdefault(key, []).append(q)
    if not groups:
        raise QuantInputError("empty chain")
    tenors = sorted((tenor_smile(qs) for qs in groups.values()), key=lambda t: t.tenor_years)
    reasons: dict[str, str] = {}
    head = min(tenors, key=lambda t: abs(t.tenor_years - headline_years))
    if head.reason:
        reasons["rr25"] = reasons["fly25"] = head.reason
    atm = [(t.tenor_years, t.atm_iv) for t in tenors if t.atm_iv is not None]
    slope = None
    if len(atm) >= 2:
        tx, ty = np.array(atm).T
        slope = float(np.polyfit(tx, ty, 1)[0])
    else:
        reasons["iv_term_slope"] = "needs ATM IV on at least 2 tenors"
    hist = np.asarray([h for h in rr25_history if math.isfinite(h)], dtype=float)
    skew_z = None
    if head.rr25 is None:
        reasons["skew_z"] = "rr25 is not defined"
    elif hist.size < 5 or hist.std(ddof=1) == 0:
        reasons["skew_z"] = f"needs at least 5 distinct stored rr25 values, have {hist.size}"
    else:
        skew_z = float((head.rr25 - hist.mean()) / hist.std(ddof=1))
    return SmileMetrics(head.rr25, head.fly25, head.atm_iv, slope, skew_z, tenors, reasons)
