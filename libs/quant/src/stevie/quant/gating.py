"""Feature gating: which features still carry information about the forward return.

Per feature, on the (feature value, forward return) pairs whose horizon has closed:

- **IC** — exponentially weighted Spearman rank correlation (``ewma_ic``): ranks over the
  window (average ranks for ties, as ``scipy.stats.rankdata``), then the weighted Pearson
  correlation of the ranks with weights wᵢ = 2^(−age/halflife) (the newest pair weighs 1).
  With ``halflife=None`` the weights are equal and the value is exactly ``scipy.stats.spearmanr``.
- **HSIC** with Gaussian RBF kernels k(a, b) = exp(−‖a − b‖² / (2σ²)), σ per variable by the
  median heuristic (median of the pairwise distances ‖aᵢ − aⱼ‖, i < j; Gretton et al. 2005/2008).
  Biased estimator (Gretton, Bousquet, Smola & Schölkopf 2005, "Measuring statistical dependence
  with Hilbert-Schmidt norms", ALT, eq. 4): HSIC_b = (m − 1)⁻² tr(K H L H), H = I − 11ᵀ/m.
  Unbiased estimator (Song, Smola, Gretton, Bedo & Borgwardt 2012, JMLR 13, eq. 5), with K̃, L̃
  the Gram matrices with zero diagonal: HSIC_u = [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((m−1)(m−2))
  − 2/(m−2)·1ᵀK̃L̃1] / (m(m−3)). The gate ranks by the normalised HSIC_b(x, y) /
  √(HSIC_b(x, x)·HSIC_b(y, y)) ∈ [0, 1] (centred kernel alignment).
- **Drift** — Page–Hinkley (``PageHinkley``, the semantics of ``river.drift.PageHinkley``) and
  BOCPD (``stevie.quant.regime.Bocpd``) on the feature's own standardised values: drift = 1 when
  Page–Hinkley fired since the last evaluation, else the BOCPD probability that the feature's
  current run began within the last ``drift_window`` samples.

Score = (|IC| + √nHSIC)/2 · (1 − drift/2) ∈ [0, 1] (the square root puts nHSIC on the
correlation scale: with linear kernels and 1-d variables the alignment is ρ²). On a schedule in event time (weekly by
default) the bottom decile (⌈0.1·n⌉ features) of the features with enough pairs is disabled,
the rest enabled: a disabled feature comes back when its score recovers above the decile.
A feature that fails the look-ahead check (``leaks_future``) is excluded for good: it is
ranked last with score 0 and stays disabled.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from stevie.quant.errors import QuantInputError, finite_1d
from stevie.quant.regime import Bocpd

WEEK_NS = 7 * 86_400 * 1_000_000_000


# -- HSIC --------------------------------------------------------------------------------


def _as_2d(name: str, x: object) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] < 2:
        raise QuantInputError(f"{name} must be shape (m,) or (m, d) with m >= 2, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise QuantInputError(f"{name} contains NaN or infinite values")
    return a


def _sq_dists(a: np.ndarray) -> np.ndarray:
    sq = np.sum(a * a, axis=1)
    return np.asarray(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (a @ a.T), 0.0))


def median_bandwidth(x: object) -> float:
    """Median heuristic σ: the median of ‖xᵢ − xⱼ‖ over i < j; 1.0 when that median is 0
    (a constant or mostly constant variable, whose centred Gram matrix is then ~0 anyway)."""
    a = _as_2d("x", x)
    d = np.sqrt(_sq_dists(a)[np.triu_indices(a.shape[0], k=1)])
    med = float(np.median(d))
    return med if med > 0 else 1.0


def rbf_gram(x: object, sigma: float) -> np.ndarray:
    """Gram matrix Kᵢⱼ = exp(−‖xᵢ − xⱼ‖² / (2σ²)), shape (m, m)."""
    if not (math.isfinite(sigma) and sigma > 0):
        raise QuantInputError(f"bandwidth must be finite and > 0, got {sigma}")
    a = _as_2d("x", x)
    return np.asarray(np.exp(-_sq_dists(a) / (2.0 * sigma * sigma)))


def hsic(
    x: object,
    y: object,
    bandwidth: str | float | tuple[float, float] = "median",
    unbiased: bool = False,
) -> float:
    """Raw HSIC between samples x and y (shape (m,) or (m, d), same m) with RBF kernels.

    ``bandwidth``: "median" (per-variable median heuristic), one σ for both, or (σx, σy).
    ``unbiased=False``: HSIC_b = (m−1)⁻² tr(KHLH) (Gretton et al. 2005), m ≥ 2, ≥ 0.
    ``unbiased=True``: HSIC_u of Song et al. 2012 (m ≥ 4; may be slightly negative).
    Raises QuantInputError on mismatched lengths, non-finite values or a bad bandwidth.
    """
    a, b = _as_2d("x", x), _as_2d("y", y)
    m = a.shape[0]
    if b.shape[0] != m:
        raise QuantInputError(f"x and y need the same number of samples, got {m} and {b.shape[0]}")
    if isinstance(bandwidth, str):
        if bandwidth != "median":
            raise QuantInputError(f"bandwidth must be 'median', a float or a pair, got {bandwidth!r}")
        sx, sy = median_bandwidth(a), median_bandwidth(b)
    elif isinstance(bandwidth, tuple):
        sx, sy = float(bandwidth[0]), float(bandwidth[1])
    else:
        sx = sy = float(bandwidth)
    k, lg = rbf_gram(a, sx), rbf_gram(b, sy)
    if not unbiased:
        kc = k - k.mean(axis=0, keepdims=True) - k.mean(axis=1, keepdims=True) + k.mean()
        return float(np.sum(kc * lg) / (m - 1) ** 2)
    if m < 4:
        raise QuantInputError(f"the unbiased HSIC needs m >= 4 samples, got {m}")
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(lg, 0.0)
    one_k, one_l = k.sum(axis=0), lg.sum(axis=0)
    term1 = float(np.sum(k * lg))
    term2 = float(one_k.sum() * one_l.sum()) / ((m - 1) * (m - 2))
    term3 = 2.0 / (m - 2) * float(one_k @ one_l)
    return (term1 + term2 - term3) / (m * (m - 3))


def normalized_hsic(x: object, y: object) -> float:
    """HSIC_b(x, y) / √(HSIC_b(x, x)·HSIC_b(y, y)) ∈ [0, 1] (median-heuristic RBF kernels);
    0 when either variable is constant."""
    hxy, hxx, hyy = hsic(x, y), hsic(x, x), hsic(y, y)
    den = math.sqrt(max(hxx, 0.0) * max(hyy, 0.0))
    return float(min(max(hxy / den, 0.0), 1.0)) if den > 1e-300 else 0.0


# -- IC ----------------------------------------------------------------------------------


def ewma_ic(feature: object, forward_return: object, halflife: float | None = None) -> float:
    """Exponentially weighted Spearman IC of ``feature`` with ``forward_return`` (both shape
    (n,), oldest first, n ≥ 3; each pair's forward return must have been realised by the time
    it is passed in — the caller's no-look-ahead duty, see ``FeatureGate``).

    Average ranks over the window, then the Pearson correlation of the ranks weighted by
    wᵢ = 2^(−(n−1−i)/halflife). ``halflife=None`` → equal weights = ``scipy.stats.spearmanr``.
    NaN when either side is constant. Raises QuantInputError on bad input.
    """
    x = finite_1d("feature", feature, 3)
    y = finite_1d("forward_return", forward_return, 3)
    if x.size != y.size:
        raise QuantInputError(f"feature and forward_return differ in length: {x.size} vs {y.size}")
    if halflife is not None and not (math.isfinite(halflife) and halflife > 0):
        raise QuantInputError(f"halflife must be > 0 or None, got {halflife}")
    rx, ry = rankdata(x), rankdata(y)
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return float("nan")
    n = x.size
    w = np.ones(n) if halflife is None else 0.5 ** ((n - 1 - np.arange(n)) / halflife)
    w = w / w.sum()
    dx, dy = rx - w @ rx, ry - w @ ry
    vx, vy = float(w @ (dx * dx)), float(w @ (dy * dy))
    if vx <= 0 or vy <= 0:
        return float("nan")
    return float(w @ (dx * dy)) / math.sqrt(vx * vy)


# -- Page-Hinkley ------------------------------------------------------------------------


class PageHinkley:
    """Page–Hinkley change detector with the semantics of ``river.drift.PageHinkley``
    (Page 1954; Sebastião & Fernandes 2017).

    Per value x: x̄ = arithmetic mean of the values since the last reset, dev = x − x̄;
    S⁺ ← α·S⁺ + dev − δ, S⁻ ← α·S⁻ + dev + δ; m⁺ = min S⁺ (from +∞), M⁻ = max S⁻ (from −1, as
    river starts it); after ``min_instances`` values a drift is S⁺ − m⁺ > λ (mode "up"),
    M⁻ − S⁻ > λ ("down") or either ("both"). The update after a detection resets first.
    """

    def __init__(
        self,
        delta: float = 0.005,
        threshold: float = 50.0,
        alpha: float = 1 - 0.0001,
        min_instances: int = 30,
        mode: str = "both",
    ) -> None:
        if mode not in ("up", "down", "both"):
            raise QuantInputError(f"mode must be 'up', 'down' or 'both', got {mode!r}")
        if threshold <= 0 or min_instances < 1 or not (0 < alpha <= 1):
            raise QuantInputError("threshold > 0, min_instances >= 1, alpha in (0, 1]")
        self.delta, self.threshold, self.alpha = float(delta), float(threshold), float(alpha)
        self.min_instances, self.mode = int(min_instances), mode
        self.drift_detected = False
        self._reset()

    def _reset(self) -> None:
        self.drift_detected = False
        self._n = 0
        self._mean = 0.0
        self._s_up = 0.0
        self._s_down = 0.0
        self._min_up = math.inf
        self._max_down = -1.0

    def reset(self) -> None:
        self._reset()

    def update(self, x: float) -> bool:
        """Add one value; returns whether a drift is detected at this value."""
        if self.drift_detected:
            self._reset()
        self._n += 1
        self._mean += (x - self._mean) / self._n
        dev = x - self._mean
        self._s_up = self.alpha * self._s_up + dev - self.delta
        self._s_down = self.alpha * self._s_down + dev + self.delta
        self._min_up = min(self._min_up, self._s_up)
        self._max_down = max(self._max_down, self._s_down)
        if self._n >= self.min_instances:
            up = self._s_up - self._min_up > self.threshold
            down = self._max_down - self._s_down > self.threshold
            self.drift_detected = up if self.mode == "up" else down if self.mode == "down" else (up or down)
        return self.drift_detected


# -- look-ahead check ----------------------------------------------------------------------


def leaks_future(
    compute: Callable[[np.ndarray], np.ndarray],
    data: object,
    cut: int,
    seed: int = 0,
    atol: float = 0.0,
) -> bool:
    """True when ``compute`` (rows of ``data`` → one feature value per row, oldest first) uses
    the future: the rows after ``cut`` are replaced by a random permutation of themselves scaled
    by a random factor, and any value at rows ≤ ``cut`` that changes (beyond ``atol``) is a leak.
    ``data`` shape (n, k) or (n,); 0 ≤ cut < n − 1."""
    a = np.array(data, dtype=float)
    if a.ndim not in (1, 2) or not (0 <= cut < a.shape[0] - 1):
        raise QuantInputError(f"data must be (n,) or (n, k) and 0 <= cut < n-1, got {a.shape}, cut={cut}")
    rng = np.random.default_rng(seed)
    b = a.copy()
    tail = b[cut + 1 :]
    b[cut + 1 :] = tail[rng.permutation(tail.shape[0])] * rng.uniform(0.5, 1.5)
    fa, fb = np.asarray(compute(a), dtype=float), np.asarray(compute(b), dtype=float)
    if fa.shape[0] != a.shape[0] or fb.shape != fa.shape:
        raise QuantInputError("compute must return one value per row")
    head_a, head_b = fa[: cut + 1], fb[: cut + 1]
    same = np.isclose(head_a, head_b, rtol=0.0, atol=atol) | (np.isnan(head_a) & np.isnan(head_b))
    return not bool(np.all(same))


# -- the gate ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureScore:
    """One feature's gating figures: ``ic`` (EW Spearman), ``hsic`` (normalised HSIC_b),
    ``drift`` ∈ [0, 1], ``score`` ∈ [0, 1] (None until ``min_pairs`` pairs), ``disabled`` by the
    last scheduled evaluation (or for good by a look-ahead failure: ``reason``), ``since_ns``
    = event time of the last change of ``disabled`` (None if never), ``pairs`` used."""

    feature: str
    ic: float | None
    hsic: float | None
    drift: float
    score: float | None
    disabled: bool
    since_ns: int | None
    pairs: int
    reason: str


class _FeatureState:
    def __init__(self, window: int, drift_hazard: float, drift_window: int, ph: Mapping[str, float]) -> None:
        self.x: deque[float] = deque(maxlen=window)
        self.y: deque[float] = deque(maxlen=window)
        self.ph = PageHinkley(
            delta=float(ph.get("delta", 0.005)),
            threshold=float(ph.get("threshold", 50.0)),
            alpha=float(ph.get("alpha", 1 - 0.0001)),
            min_instances=int(ph.get("min_instances", 30)),
        )
        self.ph_fired = False
        self.bocpd = Bocpd(drift_hazard, 0.0, 1.0, 2.0, 1.0, max_run=max(4 * drift_window, 50), window=drift_window)
        self.warm: list[float] = []
        self.loc = 0.0
        self.scale = 0.0
        self.disabled = False
        self.since: int | None = None
        self.excluded = ""


class FeatureGate:
    """Incremental gating of named features against the forward log return over ``horizon_ns``.

    ``observe(ts_ns, values, price)`` records the features at a decision time together with the
    price (e.g. the mid); a sample's forward return ln(p(t+h)/p(t)) is taken from the first
    observation at or after t + h — so a pair only enters the statistics once its horizon has
    closed in event time (no look-ahead). Drift detectors see every value (standardised by the
    first ``warmup`` values). ``ranking(now)`` gives the current figures; ``maybe_evaluate(now)``
    runs the scheduled disable/enable of the bottom decile every ``schedule_ns``.
    """

    def __init__(
        self,
        features: Sequence[str],
        horizon_ns: int,
        schedule_ns: int = WEEK_NS,
        window: int = 5000,
        halflife: float | None = 1000.0,
        hsic_window: int = 400,
        min_pairs: int = 200,
        bottom_fraction: float = 0.1,
        warmup: int = 50,
        drift_hazard: float = 1.0 / 1000.0,
        drift_window: int = 50,
        page_hinkley: Mapping[str, float] | None = None,
        start_ns: int | None = None,
    ) -> None:
        if not features or len(set(features)) != len(features):
            raise QuantInputError("features must be a non-empty list of distinct names")
        if horizon_ns <= 0 or schedule_ns <= 0 or not (0 < bottom_fraction < 1):
            raise QuantInputError("horizon_ns > 0, schedule_ns > 0, 0 < bottom_fraction < 1")
        if min_pairs < 10 or hsic_window < 10 or window < min_pairs or warmup < 2:
            raise QuantInputError("min_pairs >= 10, hsic_window >= 10, window >= min_pairs, warmup >= 2")
        self.features = list(features)
        self.horizon_ns, self.schedule_ns, self.halflife = int(horizon_ns), int(schedule_ns), halflife
        self.hsic_window, self.min_pairs, self.bottom_fraction, self.warmup = (
            hsic_window,
            min_pairs,
            bottom_fraction,
            warmup,
        )
        self.drift_window = drift_window
        ph = dict(page_hinkley or {})
        self._st = {f: _FeatureState(window, drift_hazard, drift_window, ph) for f in self.features}
        self._pending: dict[str, deque[tuple[int, float, tuple[float, ...]]]] = {}
        self._last_ts: dict[str, int] = {}
        self.next_eval_ns: int | None = None if start_ns is None else start_ns + schedule_ns
        self.evaluations = 0

    def exclude(self, feature: str, reason: str, now_ns: int) -> None:
        """Disable ``feature`` for good (e.g. it failed ``leaks_future``). KeyError if unknown."""
        st = self._st[feature]
        st.excluded = reason
        if not st.disabled:
            st.disabled, st.since = True, now_ns

    def reset_series(self, series: str) -> None:
        """Drop the open samples of ``series`` (e.g. its venue session restarted)."""
        self._pending.pop(series, None)
        self._last_ts.pop(series, None)

    def observe(self, ts_ns: int, values: Sequence[float], price: float, series: str = "") -> None:
        """One decision-time sample of ``series`` (e.g. one venue+symbol; pairs of every series
        are pooled): ``values`` aligned with ``features`` (NaN = not known), ``price`` > 0 in
        quote units. Event times of a series must not go backwards (QuantInputError)."""
        if len(values) != len(self.features):
            raise QuantInputError(f"expected {len(self.features)} values, got {len(values)}")
        if not (math.isfinite(price) and price > 0):
            raise QuantInputError(f"price must be finite and > 0, got {price}")
        if ts_ns < self._last_ts.get(series, ts_ns):
            raise QuantInputError("event time went backwards")
        self._last_ts[series] = ts_ns
        if self.next_eval_ns is None:
            self.next_eval_ns = ts_ns + self.schedule_ns
        pending = self._pending.setdefault(series, deque())
        # close every pending sample whose horizon has passed
        while pending and pending[0][0] + self.horizon_ns <= ts_ns:
            _, p0, vals = pending.popleft()
            fwd = math.log(price / p0)
            for f, v in zip(self.features, vals, strict=True):
                if math.isfinite(v):
                    st = self._st[f]
                    st.x.append(v)
                    st.y.append(fwd)
        pending.append((ts_ns, price, tuple(float(v) for v in values)))
        for f, v in zip(self.features, values, strict=True):
            if math.isfinite(v):
                self._drift_update(self._st[f], float(v), ts_ns)

    def _drift_update(self, st: _FeatureState, v: float, ts_ns: int) -> None:
        if st.scale == 0.0:
            st.warm.append(v)
            if len(st.warm) < self.warmup:
                return
            st.loc, st.scale = float(np.mean(st.warm)), float(np.std(st.warm)) or 1.0
            vals, st.warm = st.warm, []
        else:
            vals = [v]
        for u in vals:
            z = (u - st.loc) / st.scale
            if st.ph.update(z):
                st.ph_fired = True
            st.bocpd.update(z, ts_ns)

    def _score(self, f: str) -> FeatureScore:
        st = self._st[f]
        n = len(st.x)
        bstep = st.bocpd.last
        drift = 1.0 if st.ph_fired else (bstep.change_prob if bstep is not None else 0.0)
        if st.excluded:
            return FeatureScore(f, None, None, drift, 0.0, True, st.since, n, st.excluded)
        if n < self.min_pairs:
            return FeatureScore(f, None, None, drift, None, st.disabled, st.since, n, "warming up")
        x, y = np.fromiter(st.x, float, n), np.fromiter(st.y, float, n)
        ic = ewma_ic(x, y, self.halflife)
        ic = 0.0 if math.isnan(ic) else ic
        h = normalized_hsic(x[-self.hsic_window :], y[-self.hsic_window :])
        score = (abs(ic) + math.sqrt(h)) / 2.0 * (1.0 - drift / 2.0)
        return FeatureScore(f, ic, h, drift, score, st.disabled, st.since, n, "")

    def ranking(self) -> list[FeatureScore]:
        """Every feature, best score first (features without a score after the scored ones,
        excluded ones last)."""
        scores = [self._score(f) for f in self.features]

        def key(s: FeatureScore) -> tuple[int, float, str]:
            group = 2 if self._st[s.feature].excluded else (1 if s.score is None else 0)
            return group, -(s.score or 0.0), s.feature

        return sorted(scores, key=key)

    def maybe_evaluate(self, now_ns: int) -> bool:
        """Run the scheduled evaluation when ``now_ns`` reached it: disable the bottom
        ⌈fraction·n⌉ of the scored features, enable the others. True when it ran."""
        if self.next_eval_ns is None or now_ns < self.next_eval_ns:
            return False
        while self.next_eval_ns <= now_ns:
            self.next_eval_ns += self.schedule_ns
        self.evaluate(now_ns)
        return True

    def evaluate(self, now_ns: int) -> list[FeatureScore]:
        """Disable the bottom decile now (see ``maybe_evaluate``); resets the Page–Hinkley flags."""
        scores = [self._score(f) for f in self.features]
        scored = [s for s in scores if s.score is not None and not self._st[s.feature].excluded]
        if len(scored) >= 2:
            k = max(1, math.ceil(self.bottom_fraction * len(scored)))
            bottom = {s.feature for s in sorted(scored, key=lambda s: (s.score, s.feature))[:k]}
            for s in scored:
                st = self._st[s.feature]
                off = s.feature in bottom
                if off != st.disabled:
                    st.disabled, st.since = off, now_ns
        for st in self._st.values():
            st.ph_fired = False
        self.evaluations += 1
        return self.ranking()

    def disabled(self) -> list[str]:
        """Names of the features now disabled."""
        return [f for f in self.features if self._st[f].disabled]
