"""Regime: Bayesian online change-point detection (BOCPD) and a per-symbol regime label.

Source: R. P. Adams & D. J. C. MacKay (2007), "Bayesian Online Changepoint Detection",
arXiv:0710.3742, Algorithm 1, with the conjugate Normal-Gamma model of K. P. Murphy (2007),
"Conjugate Bayesian analysis of the Gaussian distribution", §7.6 (unknown mean and precision):

- prior μ | λ ~ N(μ₀, (κ₀λ)⁻¹), λ ~ Gamma(α₀, rate β₀);
- after n observations of a run: κₙ = κ₀ + n, μₙ = (κ₀μ₀ + Σx)/κₙ, αₙ = α₀ + n/2,
  βₙ = β₀ + ½Σ(x − x̄)² + κ₀n(x̄ − μ₀)²/(2κₙ) (computed recursively, one x at a time);
- predictive of the next x: Student-t with ν = 2αₙ, location μₙ, scale² βₙ(κₙ + 1)/(αₙκₙ);
- constant hazard H = 1/λ_gap (geometric prior on run lengths).

Recursion (log space, one observation xₜ): growth log P(rₜ = r+1, x₁..ₜ) = log P(rₜ₋₁ = r, x₁..ₜ₋₁)
+ log πₜ(r) + log(1 − H); change log P(rₜ = 0, x₁..ₜ) = logsumexp_r(log P(rₜ₋₁ = r, ·) + log πₜ(r))
+ log H; then normalise. πₜ(r) is the predictive of xₜ under the statistics of the last r
observations (r = 0: the prior). The run length rₜ = r means the current run holds the last r
observations x_{t−r+1..t}; rₜ = 0 means a change right after xₜ (the convention of the
reference implementations, e.g. ``sdt.changepoint.BayesOnline``). Under a constant hazard
P(rₜ = 0 | x₁..ₜ) = H exactly, so the useful "change probability" is P(rₜ ≤ k): the probability
that the current run began within the last k observations.

Pruning: with ``max_run`` the run lengths above it are dropped (their mass discarded and the
rest renormalised), so memory and time per step stay O(max_run); with max_run ≥ T the result
is exact.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from stevie.quant.errors import QuantInputError, finite_1d

REGIME_LABELS: tuple[str, ...] = ("unknown", "bull", "bear", "chop", "high_vol")
"""Every label ``RegimeDetector`` can give (the order of ``stevie.contracts.rpc.REGIMES``)."""


def logsumexp(a: np.ndarray) -> float:
    """log Σ exp(aᵢ), shifted by the max (a fast 1-d version of scipy.special.logsumexp)."""
    m = float(a.max())
    if not math.isfinite(m):
        return m
    return m + math.log(float(np.exp(a - m).sum()))


def _check_prior(hazard: float, mu0: float, kappa0: float, alpha0: float, beta0: float) -> None:
    if not (0.0 < hazard < 1.0):
        raise QuantInputError(f"hazard must be in (0, 1), got {hazard}")
    for name, v in (("kappa0", kappa0), ("alpha0", alpha0), ("beta0", beta0)):
        if not (math.isfinite(v) and v > 0):
            raise QuantInputError(f"{name} must be finite and > 0, got {v}")
    if not math.isfinite(mu0):
        raise QuantInputError(f"mu0 must be finite, got {mu0}")


@dataclass(frozen=True)
class BocpdStep:
    """What one ``Bocpd.update`` saw. ``run_length``: MAP run length (observations in the
    current run); ``change_prob``: P(r ≤ ``window``); ``changepoint``: the MAP run length did
    not grow by one (the MAP-drop rule of Adams & MacKay §2.1: the posterior collapsed onto a
    newer run); ``mean``/``var``: posterior mean of μ and of σ² = 1/λ for the MAP run (input units)."""

    ts_ns: int
    run_length: int
    change_prob: float
    changepoint: bool
    mean: float
    var: float


class Bocpd:
    """Incremental BOCPD with a Normal-Gamma prior, Student-t predictive and constant hazard.

    ``update(x, ts_ns)`` adds one observation and returns a ``BocpdStep``; ``posterior`` is the
    current run-length distribution P(rₜ = r | x₁..ₜ), shape (min(t, max_run) + 1,), index = r.
    ``window``: the k of ``change_prob`` = P(rₜ ≤ k). Raises QuantInputError on a bad prior or a
    non-finite x.
    """

    def __init__(
        self,
        hazard: float,
        mu0: float = 0.0,
        kappa0: float = 1.0,
        alpha0: float = 1.0,
        beta0: float = 1.0,
        max_run: int | None = 1000,
        window: int = 5,
    ) -> None:
        _check_prior(hazard, mu0, kappa0, alpha0, beta0)
        if max_run is not None and max_run < 1:
            raise QuantInputError(f"max_run must be >= 1 or None, got {max_run}")
        if window < 0:
            raise QuantInputError(f"window must be >= 0, got {window}")
        self.hazard, self.max_run, self.window = float(hazard), max_run, int(window)
        self._prior = (float(mu0), float(kappa0), float(alpha0), float(beta0))
        self._log_h, self._log_1mh = math.log(hazard), math.log1p(-hazard)
        self._lp: np.ndarray = np.zeros(0)
        self._mu: np.ndarray = np.zeros(0)
        self._beta: np.ndarray = np.zeros(0)
        self._h = 0
        self.reset()

    def reset(self) -> None:
        """Forget every observation: the run length is 0 with probability 1."""
        self._alloc(self.max_run + 1 if self.max_run is not None else 64)
        self.t = 0
        self._map = 0
        self.last: BocpdStep | None = None

    # Storage: the live run lengths r = 0..n−1 sit at positions h..h+n−1 of buffers twice the
    # capacity, so a new run length 0 is a write at h−1 (the segment is moved back to the middle
    # once every ``cap`` steps) and the growth of every other run is an in-place update.
    # κᵣ = κ₀ + r and αᵣ = α₀ + r/2 depend on r only: their functions are cached per r.
    def _alloc(self, cap: int, keep: int = 0) -> None:
        mu0, kappa0, alpha0, beta0 = self._prior
        old = (self._lp, self._mu, self._beta, self._h) if keep else None
        self._cap = cap
        self._lp, self._mu, self._beta = np.zeros(2 * cap + 1), np.zeros(2 * cap + 1), np.zeros(2 * cap + 1)
        if old is not None:
            lp, mu, beta, h = old
            for dst, src in ((self._lp, lp), (self._mu, mu), (self._beta, beta)):
                dst[cap : cap + keep] = src[h : h + keep]
            self._h, self._n = cap, keep
        else:
            self._h, self._n = cap, 1
            self._lp[cap], self._mu[cap], self._beta[cap] = 0.0, mu0, beta0
        r = np.arange(cap, dtype=float)
        alpha, kappa = alpha0 + r / 2.0, kappa0 + r
        nu = 2.0 * alpha
        self._kappa_r = kappa
        self._two_alpha = nu
        self._const = gammaln((nu + 1.0) / 2.0) - gammaln(nu / 2.0) - 0.5 * np.log(nu * math.pi)
        self._half_nu1 = (nu + 1.0) / 2.0
        self._ratio = (kappa + 1.0) / (alpha * kappa)

    @property
    def posterior(self) -> np.ndarray:
        """P(rₜ = r | x₁..ₜ) for r = 0..len−1 (sums to 1)."""
        return np.asarray(np.exp(self._lp[self._h : self._h + self._n]))

    @property
    def value(self) -> BocpdStep | None:
        """The last step (None before the first observation)."""
        return self.last

    def log_predictive(self, x: float) -> np.ndarray:
        """log πₜ(r): Student-t log density of ``x`` under each run length's statistics."""
        h, n = self._h, self._n
        scale2 = self._beta[h : h + n] * self._ratio[:n]
        d = x - self._mu[h : h + n]
        z2 = d * d / (self._two_alpha[:n] * scale2)
        return np.asarray(self._const[:n] - 0.5 * np.log(scale2) - self._half_nu1[:n] * np.log1p(z2))

    def run_moments(self, r: int) -> tuple[float, float]:
        """Posterior mean of μ and of σ² (= βᵣ/(αᵣ − 1), or βᵣ/αᵣ when αᵣ ≤ 1) for run length ``r``."""
        a, b = self._prior[2] + r / 2.0, float(self._beta[self._h + r])
        return float(self._mu[self._h + r]), (b / (a - 1.0) if a > 1.0 else b / a)

    def update(self, x: float, ts_ns: int = 0) -> BocpdStep:
        """Add observation ``x`` (event time ``ts_ns``) and return the step summary."""
        x = float(x)
        if not math.isfinite(x):
            raise QuantInputError(f"x must be finite, got {x}")
        mu0, _, _, beta0 = self._prior
        h, n = self._h, self._n
        lp, mu, beta = self._lp[h : h + n], self._mu[h : h + n], self._beta[h : h + n]
        joint = lp + self.log_predictive(x)
        log_change = logsumexp(joint) + self._log_h
        # growth, in place: run length r becomes r + 1 with the statistics updated by x
        k = self._kappa_r[:n]
        d = x - mu
        np.add(joint, self._log_1mh, out=lp)
        beta += k * d * d / (2.0 * (k + 1.0))
        mu += d / (k + 1.0)
        if self.max_run is not None:
            n = min(n, self.max_run)  # the longest run falls off: pruned
        elif n + 1 > self._cap:
            self._alloc(2 * self._cap, keep=n)
            h = self._h
        if h == 0:  # no room before the segment: move it back to the middle
            for buf in (self._lp, self._mu, self._beta):
                buf[self._cap : self._cap + n] = buf[:n].copy()
            h = self._cap
        h -= 1
        self._lp[h], self._mu[h], self._beta[h] = log_change, mu0, beta0
        self._h, self._n = h, n + 1
        seg = self._lp[h : h + n + 1]
        seg -= logsumexp(seg)
        self.t += 1
        prev_map = self._map
        self._map = int(np.argmax(seg))
        changepoint = self.t > 1 and self._map < prev_map
        m, v = self.run_moments(self._map)
        cp = float(np.exp(logsumexp(seg[: self.window + 1])))
        self.last = BocpdStep(int(ts_ns), self._map, min(cp, 1.0), changepoint, m, v)
        return self.last


def bocpd(
    x: object,
    hazard: float,
    mu0: float,
    kappa0: float,
    alpha0: float,
    beta0: float,
    max_run: int | None = None,
) -> np.ndarray:
    """Run-length posterior of BOCPD (Adams & MacKay 2007, Algorithm 1; Normal-Gamma prior
    (μ₀, κ₀, α₀, β₀) with β₀ a rate; constant hazard ``hazard`` = 1/λ).

    Returns R, shape (T + 1, M) with T = len(x) and M = T + 1 (or min(T, max_run) + 1):
    row t = P(rₜ = · | x₁..ₜ) after the first t observations (row 0 = the prior, R[0, 0] = 1),
    column r = run length r (the current run holds the last r observations); entries beyond
    the reachable run lengths are 0; every row sums to 1. Raises QuantInputError on empty or
    non-finite x or a bad prior.
    """
    a = finite_1d("x", x)
    _check_prior(hazard, mu0, kappa0, alpha0, beta0)
    det = Bocpd(hazard, mu0, kappa0, alpha0, beta0, max_run=max_run, window=0)
    width = a.size + 1 if max_run is None else min(a.size, max_run) + 1
    out = np.zeros((a.size + 1, width))
    out[0, 0] = 1.0
    for t, v in enumerate(a, start=1):
        det.update(float(v))
        p = det.posterior
        out[t, : p.size] = p
    return out


# -- regime label ------------------------------------------------------------------------


@dataclass(frozen=True)
class RegimeView:
    """One symbol's regime after a bar. ``label`` ∈ REGIME_LABELS; ``run_length`` in bars
    (MAP run of the returns detector); ``change_prob`` = P(a change within the last ``window``
    bars) from the returns detector; ``vol_change_prob`` the same from the realised-vol
    detector (per RV block); ``since_ns`` = event time of the first bar of the current run;
    ``drift_bps`` = posterior mean log return of the run per bar and ``vol_bps`` = its σ per
    bar, both in basis points; ``ref_vol_bps`` = the long-run (EWMA) σ per bar; ``trend_z`` =
    drift / (σ/√n) over the run."""

    label: str
    run_length: int
    change_prob: float
    vol_change_prob: float
    since_ns: int
    drift_bps: float
    vol_bps: float
    ref_vol_bps: float
    trend_z: float
    bars: int
    ts_ns: int


class RegimeDetector:
    """Per-symbol regime from 1-minute closes: BOCPD on the log returns (scaled by the σ of the
    first ``warmup`` returns so the unit prior μ₀ = 0, κ₀ = 1, α₀ = 2, β₀ = 1 — E[σ²] = 1 —
    fits every symbol) and BOCPD on log realised vol over non-overlapping ``rv_block``-bar blocks.

    Label of the current MAP run (n bars, drift μ and σ per bar, long-run EWMA σ_ref with
    half-life ``ref_halflife`` bars): ``unknown`` before ``warmup`` returns or while n <
    ``min_run``; ``high_vol`` when σ > ``high_vol_ratio``·σ_ref; otherwise ``bull`` / ``bear``
    when the trend z = μ√n/σ exceeds ±``trend_z``; else ``chop``.
    """

    def __init__(
        self,
        hazard: float = 1.0 / 240.0,
        max_run: int = 1440,
        window: int = 5,
        warmup: int = 120,
        min_run: int = 10,
        rv_block: int = 15,
        ref_halflife: float = 1440.0,
        high_vol_ratio: float = 1.6,
        trend_z: float = 2.0,
    ) -> None:
        if warmup < 10 or rv_block < 2 or min_run < 1 or ref_halflife <= 0:
            raise QuantInputError("warmup >= 10, rv_block >= 2, min_run >= 1, ref_halflife > 0")
        self.hazard, self.max_run, self.window, self.warmup = hazard, max_run, window, warmup
        self.min_run, self.rv_block, self.high_vol_ratio, self.trend_z = min_run, rv_block, high_vol_ratio, trend_z
        self._ref_lambda = 0.5 ** (1.0 / ref_halflife)
        self.returns = Bocpd(hazard, 0.0, 1.0, 2.0, 1.0, max_run=max_run, window=window)
        self.vol = Bocpd(hazard * rv_block, 0.0, 1.0, 2.0, 1.0, max_run=max(2, max_run // rv_block), window=1)
        self.reset()

    def reset(self) -> None:
        self.returns.reset()
        self.vol.reset()
        self._last_close: float | None = None
        self._pending: list[tuple[float, int]] = []
        self._scale = 0.0
        self._ref_var = 0.0
        self._block: list[float] = []
        self._log_rv_ref = 0.0
        self._times: deque[int] = deque(maxlen=self.max_run + 1)
        self.bars = 0
        self.last: RegimeView | None = None

    @property
    def value(self) -> RegimeView | None:
        return self.last

    def break_chain(self) -> None:
        """The next close does not follow the last one (a gap in the bars, a data seam): it
        starts a new return chain instead of making a return across the gap."""
        self._last_close = None

    def update(self, close: float, ts_ns: int) -> RegimeView | None:
        """Add one bar close (quote units, > 0) at event time ``ts_ns``; returns the view
        (None until the first return)."""
        if not (math.isfinite(close) and close > 0):
            raise QuantInputError(f"close must be finite and > 0, got {close}")
        prev, self._last_close = self._last_close, close
        self.bars += 1
        if prev is None:
            return None
        r = math.log(close / prev)
        if self._scale == 0.0:
            self._pending.append((r, ts_ns))
            if len(self._pending) < self.warmup:
                return self._view_unknown(ts_ns)
            rs = np.array([p[0] for p in self._pending])
            self._scale = float(np.std(rs)) or 1e-8
            self._ref_var = float(np.mean(rs**2))
            pending, self._pending = self._pending, []
            for rr, tt in pending:
                self._step(rr, tt)
        else:
            self._step(r, ts_ns)
        return self._view(ts_ns)

    def _step(self, r: float, ts_ns: int) -> None:
        self._times.append(ts_ns)
        self.returns.update(r / self._scale, ts_ns)
        lam = self._ref_lambda
        self._ref_var = lam * self._ref_var + (1 - lam) * r * r
        self._block.append(r)
        if len(self._block) == self.rv_block:
            rv = float(np.sum(np.square(self._block))) + (self._scale**2) * 1e-6
            self._block = []
            log_rv = 0.5 * math.log(rv / (self.rv_block * self._scale**2))
            self.vol.update(log_rv, ts_ns)

    def _view_unknown(self, ts_ns: int) -> RegimeView:
        self.last = RegimeView("unknown", 0, 0.0, 0.0, ts_ns, 0.0, 0.0, 0.0, 0.0, self.bars, ts_ns)
        return self.last

    def _view(self, ts_ns: int) -> RegimeView:
        step = self.returns.last
        assert step is not None
        n = step.run_length
        drift = step.mean * self._scale
        vol = math.sqrt(max(step.var, 0.0)) * self._scale
        ref = math.sqrt(self._ref_var)
        z = drift * math.sqrt(n) / vol if n > 0 and vol > 0 else 0.0
        if n < self.min_run:
            label = "unknown"
        elif ref > 0 and vol > self.high_vol_ratio * ref:
            label = "high_vol"
        elif z > self.trend_z:
            label = "bull"
        elif z < -self.trend_z:
            label = "bear"
        else:
            label = "chop"
        since = self._times[-n] if 0 < n <= len(self._times) else ts_ns
        vstep = self.vol.last
        self.last = RegimeView(
            label,
            n,
            step.change_prob,
            vstep.change_prob if vstep is not None else 0.0,
            since,
            drift * 1e4,
            vol * 1e4,
            ref * 1e4,
            z,
            self.bars,
            ts_ns,
        )
        return self.last


def one_hot(label: str) -> list[float]:
    """One-hot vector of ``label`` in REGIME_LABELS order. Raises QuantInputError on an unknown label."""
    if label not in REGIME_LABELS:
        raise QuantInputError(f"unknown regime label {label!r}; known: {', '.join(REGIME_LABELS)}")
    return [1.0 if lab == label else 0.0 for lab in REGIME_LABELS]


@dataclass(frozen=True)
class RegimePath:
    """``regime_path`` output, one entry per close (index i uses closes[0..i] only): ``label``,
    ``run_length`` (bars), ``change_prob``, ``changepoint`` (MAP run length dropped at i)."""

    label: list[str]
    run_length: np.ndarray
    change_prob: np.ndarray
    changepoint: np.ndarray


def regime_path(closes: object, ts_ns: object, **detector: float) -> RegimePath:
    """The causal regime of every bar of one symbol (the batch twin of feeding a
    ``RegimeDetector`` bar by bar — what ``stevie backtest`` calls once per symbol): entry i
    is the detector's view after close i, so it never depends on a later bar. ``closes`` (n,)
    quote units > 0, ``ts_ns`` (n,) bar close times; ``detector``: RegimeDetector settings."""
    c = finite_1d("closes", closes)
    t = np.asarray(ts_ns, dtype=np.int64)
    if t.shape != c.shape:
        raise QuantInputError(f"ts_ns must match closes, got {t.shape} and {c.shape}")
    det = RegimeDetector(**detector)  # type: ignore[arg-type]
    labels: list[str] = []
    run = np.zeros(c.size, dtype=np.int64)
    prob = np.zeros(c.size)
    flag = np.zeros(c.size, dtype=bool)
    for i in range(c.size):
        v = det.update(float(c[i]), int(t[i]))
        step = det.returns.last
        labels.append(v.label if v is not None else "unknown")
        if v is not None:
            run[i], prob[i] = v.run_length, v.change_prob
        flag[i] = bool(step is not None and step.changepoint and step.ts_ns == int(t[i]))
    return RegimePath(labels, run, prob, flag)
