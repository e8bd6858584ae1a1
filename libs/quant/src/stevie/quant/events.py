"""Event studies on 1-minute bars with calendar-matched placebo event times, and the fixed
projection of event embeddings used in the router context.

Event study (MacKinlay 1997, "Event Studies in Economics and Finance", J. Economic Literature
35(1): 13–39; Campbell, Lo & MacKinlay 1997, ch. 4). With r_t the 1-minute log return of the
bar that opens at minute t (ln C_t − ln C_{t−1}) and τ the event minute (the first bar that
opens at or after the event holds the announcement), windows are, in minutes:

    estimation  E = [τ − pre − est, τ − pre)      normal-return model fitted here only
    pre-event   P = [τ − pre, τ)                   (ends before the announcement: no look-ahead)
    post-event  Q = [τ, τ + post)

Constant-mean-return model: μ̂ = mean(r_E), σ̂² = var(r_E) (ddof 1). Abnormal return
AR_t = r_t − μ̂, cumulative abnormal return CAR(Q) = Σ_{t∈Q} AR_t (log-return units; the
reports print bps), and MacKinlay's J₁ = CAR(Q) / sqrt(|Q|·σ̂²) (≈ N(0, 1) under i.i.d.
normal returns, a parametric cross-check only: minute returns are neither).

Abnormal realised volatility: RV(Q) = sqrt(Σ_{t∈Q} r_t²) (Andersen et al. 2003) against the
expected sqrt(|Q|·mean(r_E²)); AV(Q) = ln(RV(Q) / sqrt(|Q|·mean(r_E²))), so AV = 0 means
"as volatile per minute as the estimation window", AV = ln 2 twice as volatile.

Placebos. Minute volatility has a strong intraday and weekly pattern (US hours are busier
than Asian nights, weekends are quiet), and a macro release sits at a fixed clock time, so
AV > 0 on its own says nothing. Each statistic is compared with its distribution over placebo
event times drawn from the same hour of day (UTC) and the same weekday (``match="weekday"``)
or any Monday–Friday (``match="business_day"``), whose whole window is inside the data with no
missing bar and whose event window [m − pre, m + post) does not overlap any real event's
(Brown & Warner 1985 use the same "pseudo-event" idea). At least ``n_placebo`` (≥ 1,000) draws
are made, without replacement while the candidate pool is large enough and with replacement
beyond it (the pool size is reported: it bounds the p-value's real resolution). For a group
of K events the statistic is the mean over the group, and each placebo draw takes one matched
time per event. Empirical p-value (Phipson & Smyth 2010, "Permutation P-values should never
be zero", Stat. Appl. Genet. Mol. Biol. 9(1)): p = (1 + #{placebo ≥ observed}) / (1 + n),
one-sided "greater" for AV (does volatility rise?), two-sided on |CAR| for CAR.

Units: times in integer ns since the Unix epoch (UTC); windows in minutes; returns in log
units. Every bad input raises ``QuantInputError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from stevie.quant.errors import QuantInputError, finite_1d

MINUTE_NS = 60_000_000_000
_DAY_MIN = 1440
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)

Match = Literal["weekday", "business_day"]
Alternative = Literal["greater", "less", "two-sided"]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def hour_of_day(minute: IntArray | int) -> IntArray:
    """UTC hour (0–23) of minutes since the epoch."""
    return np.asarray((np.asarray(minute, dtype=np.int64) % _DAY_MIN) // 60, dtype=np.int64)


def weekday(minute: IntArray | int) -> IntArray:
    """UTC weekday (Monday = 0 … Sunday = 6) of minutes since the epoch."""
    return np.asarray((np.asarray(minute, dtype=np.int64) // _DAY_MIN + _EPOCH_WEEKDAY) % 7, dtype=np.int64)


@dataclass(frozen=True)
class MinuteReturns:
    """Log returns on a dense 1-minute grid: ``r[i]`` is the return of the bar that opens at
    minute ``start + i`` (minutes since the epoch); NaN where that bar or the one before it is
    missing. Build with :meth:`from_bars`."""

    start: int
    r: FloatArray

    @staticmethod
    def from_bars(open_time_ns: object, close: object) -> MinuteReturns:
        """From bars' open times (ns, strictly increasing multiples of one minute) and closes
        (> 0). Shape (n,) each, n ≥ 2."""
        t = np.asarray(open_time_ns, dtype=np.int64)
        c = finite_1d("close", close, 2)
        if t.ndim != 1 or t.size != c.size:
            raise QuantInputError(f"open_time_ns and close must have the same length, got {t.size} and {c.size}")
        if np.any(t % MINUTE_NS):
            raise QuantInputError("open_time_ns must be whole minutes")
        if np.any(np.diff(t) <= 0):
            raise QuantInputError("open_time_ns must be strictly increasing")
        if np.any(c <= 0):
            raise QuantInputError("close must be > 0")
        m = t // MINUTE_NS
        start = int(m[0])
        logc = np.full(int(m[-1]) - start + 1, np.nan)
        logc[m - start] = np.log(c)
        r = np.full(logc.size, np.nan)
        r[1:] = np.diff(logc)
        return MinuteReturns(start, r)

    @property
    def minutes(self) -> IntArray:
        return np.arange(self.start, self.start + self.r.size, dtype=np.int64)


@dataclass(frozen=True)
class Windows:
    """Window lengths in minutes (see the module docstring): ``pre`` and ``post`` ≥ 1,
    ``est`` ≥ 2."""

    pre: int = 60
    post: int = 60
    est: int = 1440

    def __post_init__(self) -> None:
        if self.pre < 1 or self.post < 1 or self.est < 2:
            raise QuantInputError(f"windows need pre ≥ 1, post ≥ 1, est ≥ 2 minutes, got {self}")


@dataclass(frozen=True)
class WindowStats:
    """Per-event statistics, arrays of shape (k,) for k event minutes (log-return units)."""

    car_pre: FloatArray
    car_post: FloatArray
    car_z: FloatArray
    av_pre: FloatArray
    av_post: FloatArray
    rv_post: FloatArray
    rv_expected: FloatArray


class _Sums:
    """Prefix sums of r, r² and of missing bars, so any window costs O(1)."""

    def __init__(self, mr: MinuteReturns) -> None:
        bad = ~np.isfinite(mr.r)
        r0 = np.where(bad, 0.0, mr.r)
        self.start, self.n = mr.start, mr.r.size
        self.s1 = np.concatenate([[0.0], np.cumsum(r0)])
        self.s2 = np.concatenate([[0.0], np.cumsum(r0 * r0)])
        self.nbad = np.concatenate([[0], np.cumsum(bad)])

    def valid(self, idx: IntArray, w: Windows) -> npt.NDArray[np.bool_]:
        """Whether [idx − pre − est, idx + post) lies inside the grid with no missing return."""
        lo, hi = idx - w.pre - w.est, idx + w.post
        ok = (lo >= 0) & (hi <= self.n)
        lo_c, hi_c = np.clip(lo, 0, self.n), np.clip(hi, 0, self.n)
        return np.asarray(ok & (self.nbad[hi_c] - self.nbad[lo_c] == 0))

    def stats(self, idx: IntArray, w: Windows) -> WindowStats:
        def s(a: IntArray, b: IntArray) -> tuple[FloatArray, FloatArray]:
            return self.s1[b] - self.s1[a], self.s2[b] - self.s2[a]

        e1, e2 = s(idx - w.pre - w.est, idx - w.pre)
        p1, p2 = s(idx - w.pre, idx)
        q1, q2 = s(idx, idx + w.post)
        mu = e1 / w.est
        var = np.maximum((e2 - e1 * e1 / w.est) / (w.est - 1), 1e-300)
        ms = np.maximum(e2 / w.est, 1e-300)  # mean squared return of the estimation window
        rv_exp = np.sqrt(w.post * ms)
        with np.errstate(divide="ignore"):
            av_post = np.log(np.sqrt(q2) / rv_exp)
            av_pre = np.log(np.sqrt(p2) / np.sqrt(w.pre * ms))
        car_post = q1 - w.post * mu
        return WindowStats(
            car_pre=p1 - w.pre * mu,
            car_post=car_post,
            car_z=car_post / np.sqrt(w.post * var),
            av_pre=av_pre,
            av_post=av_post,
            rv_post=np.sqrt(q2),
            rv_expected=rv_exp,
        )


def window_stats(mr: MinuteReturns, event_ns: Sequence[int] | IntArray, w: Windows) -> WindowStats:
    """CAR, J₁, AV and RV for each event time (ns; floored to its minute). Raises
    QuantInputError when an event's window leaves the data or has a missing bar."""
    sums = _Sums(mr)
    idx = _event_index(mr, event_ns)
    bad = ~sums.valid(idx, w)
    if bad.any():
        raise QuantInputError(
            f"event(s) at index {np.flatnonzero(bad).tolist()} have windows outside the data or with missing bars"
        )
    return sums.stats(idx, w)


def _event_index(mr: MinuteReturns, event_ns: Sequence[int] | IntArray) -> IntArray:
    ev = np.asarray(event_ns, dtype=np.int64)
    if ev.ndim != 1 or ev.size == 0:
        raise QuantInputError("event_ns must be a non-empty 1-d sequence of ns timestamps")
    return np.asarray(ev // MINUTE_NS - mr.start, dtype=np.int64)


def placebo_pool(
    mr: MinuteReturns, event_ns: int, all_event_ns: Sequence[int], w: Windows, match: Match = "weekday"
) -> IntArray:
    """Grid indices of the candidate placebo minutes for one event: same UTC hour of day, same
    weekday (``"weekday"``) or any Monday–Friday (``"business_day"``); the full window valid;
    the event window [m − pre, m + post) overlapping no real event's (``all_event_ns``)."""
    if match not in ("weekday", "business_day"):
        raise QuantInputError(f"match must be 'weekday' or 'business_day', got {match!r}")
    sums = _Sums(mr)
    m = mr.minutes
    ev_min = event_ns // MINUTE_NS
    keep = hour_of_day(m) == hour_of_day(ev_min)
    wd = weekday(m)
    keep &= (wd == weekday(ev_min)) if match == "weekday" else (wd < 5)
    keep &= sums.valid(np.arange(m.size, dtype=np.int64), w)
    for other in all_event_ns:
        keep &= np.abs(m - other // MINUTE_NS) >= w.pre + w.post
    return np.asarray(np.flatnonzero(keep), dtype=np.int64)


def empirical_p_value(observed: float, placebo: FloatArray, alternative: Alternative = "greater") -> float:
    """Monte-Carlo p-value with the observed value counted as one of the draws (Phipson &
    Smyth 2010): (1 + #{x ≥ obs}) / (1 + n) for "greater", ≤ for "less", |x| ≥ |obs| for
    "two-sided" (a statistic centred at 0 under the null). Never 0; 1 / (1 + n) at best."""
    x = np.asarray(placebo, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0 or not np.isfinite(observed):
        raise QuantInputError("empirical_p_value needs a finite observed value and at least one finite placebo")
    if alternative == "greater":
        hits = int(np.sum(x >= observed))
    elif alternative == "less":
        hits = int(np.sum(x <= observed))
    elif alternative == "two-sided":
        hits = int(np.sum(np.abs(x) >= abs(observed)))
    else:
        raise QuantInputError(f"alternative must be 'greater', 'less' or 'two-sided', got {alternative!r}")
    return (1 + hits) / (1 + x.size)


@dataclass(frozen=True)
class EventResult:
    """One event: its statistics, matched-placebo p-values and the placebo pool size.

    ``p_car``/``p_av`` use the minute-level pool (every minute of the matched hour on the
    matched days, ``pool`` minutes); neighbouring minutes share most of their window, so the
    effectively independent placebos are the matched *days*. ``p_av_day``/``p_car_day`` compare
    with the same clock minute on each of the ``days`` matched days (one placebo per day): their
    smallest possible value is 1 / (1 + days), the honest resolution of the evidence."""

    ts_ns: int
    label: str
    kind: str
    car_pre: float
    car_post: float
    car_z: float
    av_pre: float
    av_post: float
    rv_post: float
    rv_expected: float
    p_car: float
    p_av: float
    pool: int
    days: int
    p_car_day: float
    p_av_day: float


@dataclass(frozen=True)
class GroupResult:
    """Events of one kind pooled: mean CAR and mean AV over the group, their placebo
    distributions (``n_placebo`` draws each, one matched time per event) and p-values;
    ``p_av_day`` takes each event's placebo from its same-clock-minute day pool instead, over
    every combination of matched days (so 5 matched days for each of 2 events give 25)."""

    kind: str
    n_events: int
    mean_car_post: float
    mean_av_post: float
    p_car: float
    p_av: float
    placebo_car: FloatArray = field(repr=False)
    placebo_av: FloatArray = field(repr=False)
    p_av_day: float = 1.0


@dataclass(frozen=True)
class StudyResult:
    windows: Windows
    match: Match
    n_placebo: int
    events: list[EventResult]
    groups: list[GroupResult]


def _combination_means(per_event: list[FloatArray], n: int, rng: np.random.Generator) -> FloatArray:
    """Means over one value per event: every combination when there are at most 200,000,
    else ``n`` random ones (the day-level group placebo)."""
    sizes = [a.size for a in per_event]
    if int(np.prod(sizes, dtype=np.float64)) <= 200_000:
        grids = np.meshgrid(*per_event, indexing="ij")
        return np.asarray(np.mean([g.ravel() for g in grids], axis=0))
    return np.asarray(np.mean([rng.choice(a, size=n) for a in per_event], axis=0))


def _draw(pool: IntArray, n: int, rng: np.random.Generator) -> IntArray:
    return np.asarray(rng.choice(pool, size=n, replace=pool.size < n), dtype=np.int64)


def event_study(
    mr: MinuteReturns,
    event_ns: Sequence[int],
    kinds: Sequence[str],
    labels: Sequence[str] | None = None,
    w: Windows | None = None,
    *,
    n_placebo: int = 2000,
    match: Match = "weekday",
    seed: int = 0,
) -> StudyResult:
    """The study over ``event_ns`` (ns, UTC), grouped by ``kinds`` (same length). Events whose
    window leaves the data or has a missing bar raise QuantInputError (drop them first).
    Deterministic for a given ``seed``. ``n_placebo`` ≥ 1,000."""
    w = w or Windows()
    if n_placebo < 1000:
        raise QuantInputError(f"n_placebo must be ≥ 1000, got {n_placebo}")
    ev = [int(t) for t in event_ns]
    if len(kinds) != len(ev) or (labels is not None and len(labels) != len(ev)):
        raise QuantInputError("event_ns, kinds and labels must have the same length")
    labels = list(labels) if labels is not None else [str(k) for k in kinds]
    obs = window_stats(mr, ev, w)
    sums = _Sums(mr)
    rng = np.random.default_rng(seed)
    draws: list[IntArray] = []
    day_av: list[FloatArray] = []
    rows: list[EventResult] = []
    for i, t in enumerate(ev):
        pool = placebo_pool(mr, t, ev, w, match)
        if pool.size < 2:
            raise QuantInputError(f"event {labels[i]!r}: only {pool.size} matched placebo minutes in the data")
        d = _draw(pool, n_placebo, rng)
        draws.append(d)
        ps = sums.stats(d, w)
        same_minute = pool[(mr.start + pool) % _DAY_MIN == (t // MINUTE_NS) % _DAY_MIN]
        if same_minute.size < 1:
            raise QuantInputError(f"event {labels[i]!r}: no matched day has its clock minute in the data")
        pd = sums.stats(same_minute, w)
        day_av.append(pd.av_post)
        rows.append(
            EventResult(
                ts_ns=t,
                label=labels[i],
                kind=kinds[i],
                car_pre=float(obs.car_pre[i]),
                car_post=float(obs.car_post[i]),
                car_z=float(obs.car_z[i]),
                av_pre=float(obs.av_pre[i]),
                av_post=float(obs.av_post[i]),
                rv_post=float(obs.rv_post[i]),
                rv_expected=float(obs.rv_expected[i]),
                p_car=empirical_p_value(float(obs.car_post[i]), ps.car_post, "two-sided"),
                p_av=empirical_p_value(float(obs.av_post[i]), ps.av_post, "greater"),
                pool=int(pool.size),
                days=int(same_minute.size),
                p_car_day=empirical_p_value(float(obs.car_post[i]), pd.car_post, "two-sided"),
                p_av_day=empirical_p_value(float(obs.av_post[i]), pd.av_post, "greater"),
            )
        )
    groups: list[GroupResult] = []
    for kind in dict.fromkeys(kinds):
        members = [i for i, k in enumerate(kinds) if k == kind]
        stats = [sums.stats(draws[i], w) for i in members]
        pc = np.mean([s.car_post for s in stats], axis=0)
        pa = np.mean([s.av_post for s in stats], axis=0)
        pa_day = _combination_means([day_av[i] for i in members], n_placebo, rng)
        mc = float(np.mean(obs.car_post[members]))
        ma = float(np.mean(obs.av_post[members]))
        groups.append(
            GroupResult(
                kind=kind,
                n_events=len(members),
                mean_car_post=mc,
                mean_av_post=ma,
                p_car=empirical_p_value(mc, pc, "two-sided"),
                p_av=empirical_p_value(ma, pa, "greater"),
                placebo_car=pc,
                placebo_av=pa,
                p_av_day=empirical_p_value(ma, pa_day, "greater"),
            )
        )
    return StudyResult(w, match, n_placebo, rows, groups)


# -- router context: a fixed projection of event embeddings ------------------------------------


@dataclass(frozen=True)
class Projection:
    """PCA projection fitted once: z = (x − mean) · components.T, shape (k,) per vector.
    ``explained`` is each component's share of the training variance. Frozen after fitting, so
    the router's context dims mean the same thing on every decision."""

    mean: FloatArray
    components: FloatArray  # (k, d), orthonormal rows
    explained: FloatArray  # (k,)

    @property
    def k(self) -> int:
        return int(self.components.shape[0])

    def transform(self, x: object) -> FloatArray:
        """(n, d) or (d,) → (n, k) or (k,)."""
        a = np.asarray(x, dtype=float)
        if a.shape[-1] != self.mean.size:
            raise QuantInputError(f"vectors must have {self.mean.size} dims, got {a.shape[-1]}")
        return np.asarray((a - self.mean) @ self.components.T)


def fit_projection(train: object, k: int) -> Projection:
    """PCA by SVD of the centred training matrix (n, d), n ≥ 2: the top-k right singular
    vectors, each signed so that its largest-|·| loading is positive (a deterministic sign;
    the same components as scikit-learn's ``PCA`` up to that sign). Fit on the training split
    only; apply with :meth:`Projection.transform`."""
    x = np.asarray(train, dtype=float)
    if x.ndim != 2 or x.shape[0] < 2:
        raise QuantInputError(f"train must be (n ≥ 2, d), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise QuantInputError("train contains NaN or infinite values")
    if not 1 <= k <= min(x.shape):
        raise QuantInputError(f"k must be in [1, {min(x.shape)}], got {k}")
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    comps = vt[:k].copy()
    signs = np.sign(comps[np.arange(k), np.argmax(np.abs(comps), axis=1)])
    comps *= np.where(signs == 0, 1.0, signs)[:, None]
    var = s**2
    return Projection(mean, comps, var[:k] / var.sum() if var.sum() > 0 else np.zeros(k))


def decay_weight(minutes_since: float, half_life_min: float) -> float:
    """exp(−ln 2 · Δ / half-life): 1 at the event, ½ after one half-life, 0 before any event
    (Δ = +inf) or for Δ < 0 (an event in the future is not known yet)."""
    if half_life_min <= 0:
        raise QuantInputError(f"half_life_min must be > 0, got {half_life_min}")
    if not np.isfinite(minutes_since) or minutes_since < 0:
        return 0.0
    return float(np.exp(-np.log(2.0) * minutes_since / half_life_min))


EVENT_HALF_LIFE_MIN = 60.0
"""Default half-life of an event's weight in the router context (minutes)."""


@dataclass(frozen=True)
class EventDims:
    """An event's contribution to one decision: ``dims`` = w · z of the newest known event
    (k values), ``decay`` w ∈ [0, 1], ``minutes_since`` (None when no event is known)."""

    dims: list[float]
    decay: float
    minutes_since: float | None


def latest_event_dims(
    event_ts_ns: Sequence[int],
    projected: Sequence[Sequence[float]],
    now_ns: int,
    k: int,
    half_life_min: float = EVENT_HALF_LIFE_MIN,
) -> EventDims:
    """The newest event with time ≤ ``now_ns`` (events after it are unknown at that time: no
    look-ahead), its projection ``z`` (truncated or zero-padded to k) weighted by
    w = decay_weight(minutes since it, half-life). Zeros and ``minutes_since=None`` when no
    event is known yet."""
    if len(event_ts_ns) != len(projected):
        raise QuantInputError("event_ts_ns and projected must have the same length")
    known = [i for i, t in enumerate(event_ts_ns) if t <= now_ns]
    if not known:
        return EventDims([0.0] * k, 0.0, None)
    i = max(known, key=lambda j: event_ts_ns[j])
    mins = (now_ns - event_ts_ns[i]) / MINUTE_NS
    w = decay_weight(mins, half_life_min)
    z = [float(x) for x in projected[i][:k]]
    return EventDims([w * x for x in z] + [0.0] * (k - len(z)), w, mins)
