"""evidence core (pure): logged decisions → rewards → off-policy estimates, promotion
tests, calibration and nudges. No I/O: the shell reads PostgreSQL and hands the rows here.

Rewards. Execution rewards a decision at t with signal·(mid(t+H) − mid(t))/mid(t) in bps
(mark to market over the horizon H) and sends it to the router only. Here the same
quantity is recomputed from the audits themselves: every audit carries its feature window
(rows [ts_s, obi, ti, spread_bps, micro_vol_bps, cancel_rate, mid]), so mid(t) is the last
row of the decision's own window and mid(t+H) the first row at or after t+H in a later
audit of the same book and session (decisions come every ~10 s, windows end at the
decision, so that row lies within one decision interval of t+H). A session ends where
event time goes backwards (the replay venue restarts its clock on every loop); decisions
with no later audit past t+H yet have no reward. Because the reward is mark-to-market, the
counterfactual reward of *every* policy is known too: shadow signal × the same mid move
(``replay``), which gives the off-policy estimators a ground truth to be checked against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stevie.contracts.evidence import (
    CalibrationRow,
    CfRow,
    Challenger,
    Estimate,
    ReliabilityBin,
    RouterPosterior,
    SpaView,
)
from stevie.contracts.rpc import Audit
from stevie.quant import calibration, ope, promotion
from stevie.quant.errors import QuantInputError
from stevie.quant.policies import POLICIES, PolicyInputs
from stevie.quant.portfolio import var_cvar
from stevie.store.evidence import BacktestDecision

ROUTER = "router"
BASELINE = "p_flat"


@dataclass(frozen=True)
class Logged:
    """One decision with its outcome. ``ret_bps``: mid move over the horizon in bps;
    ``rewards``: each policy's reward (shadow signal × ret_bps); ``x`` the router's feature
    vector; ``mean``/``width`` the chosen policy's posterior score mean and width."""

    ts_ns: int
    init_ns: int
    venue: str
    symbol: str
    regime: str
    policy: str
    propensity: float
    x: tuple[float, ...]
    signal: int
    ret_bps: float
    rewards: dict[str, float]
    mean: float
    width: float

    @property
    def reward(self) -> float:
        return self.signal * self.ret_bps


def shadow_of(a: Audit) -> dict[str, int]:
    """The audit's shadow actions; recomputed from its context for audits that predate them."""
    if a.shadow:
        return dict(a.shadow)
    c = a.context
    inputs = PolicyInputs(c.value("obi"), c.value("ti"), c.value("micro_dev_bps"), c.value("micro_vol"))
    return {pid: int(fn(inputs)) for pid, fn in POLICIES.items()}


def outcomes(audits: list[Audit], horizon_s: float) -> list[Logged]:
    """Decisions (router choices, not manual orders) with their reward over ``horizon_s``,
    in the order they were made. ``audits`` in any order."""
    h = int(horizon_s * 1e9)
    books: dict[tuple[str, str], list[Audit]] = {}
    for a in audits:
        if a.feature_window:  # manual orders' audits are mid sources too
            books.setdefault((a.venue, a.symbol), []).append(a)
    out: list[Logged] = []
    for rows in books.values():
        rows.sort(key=lambda a: a.ts_init_ns)
        sessions: list[list[Audit]] = [[]]
        for a in rows:
            if sessions[-1] and a.ts_event_ns < sessions[-1][-1].ts_event_ns:
                sessions.append([])
            sessions[-1].append(a)
        for s in sessions:
            for i, a in enumerate(s):
                if a.choice.policyId not in POLICIES or not a.feature_window:
                    continue
                due = a.ts_event_ns + h
                mid1 = None
                for b in s[i + 1 :]:
                    if b.ts_event_ns >= due and b.feature_window:
                        mid1 = next((r[6] for r in b.feature_window if r[0] * 1e9 >= due - 1000), None)
                        break
                mid0 = a.feature_window[-1][6]
                if mid1 is None or not (mid0 > 0 and math.isfinite(mid1)):
                    continue
                ret = (mid1 - mid0) / mid0 * 1e4
                shadow = shadow_of(a)
                out.append(
                    Logged(
                        a.ts_event_ns,
                        a.ts_init_ns,
                        a.venue,
                        a.symbol,
                        a.context.regime,
                        a.choice.policyId,
                        a.choice.propensity,
                        tuple(a.choice.features),
                        a.sizing.signal,
                        ret,
                        {p: sig * ret for p, sig in shadow.items()},
                        a.choice.score - a.choice.explorationBonus,
                        a.choice.width,
                    )
                )
    out.sort(key=lambda d: d.init_ns)
    return out


BACKTEST_CTX = ("sigmaHAR", "sigmaGARCH", "funding")


def backtest_outcomes(rows: list[BacktestDecision], horizon_s: float) -> list[Logged]:
    """Logged decisions of a backtest run: the return of a decision at t is
    (price(t+H) − price(t))/price(t) in bps, price(t+H) the price of the first decision on
    the same venue and symbol at or after t+H (H = ``horizon_s``, the run's own reward horizon:
    a bar run's decision interval, an L2 run's ``horizon_s``; the venue matters in an L2 run,
    whose spot and USD-M books of one symbol differ by the basis), so the counterfactual reward
    of every policy is its shadow signal × that return. The reward model's features: a bias,
    σ HAR/GARCH (%), funding (bps); ``mean``/``width`` the stored posterior forecast (0 where
    none was stored). Raises QuantInputError for ``horizon_s`` ≤ 0."""
    if not horizon_s > 0:
        raise QuantInputError(f"horizon_s must be > 0, got {horizon_s}")
    h = int(horizon_s * 1e9)
    by: dict[tuple[str, str], list[BacktestDecision]] = {}
    for r in rows:
        by.setdefault((r.venue, r.symbol), []).append(r)
    out = []
    for (venue, sym), rs in by.items():
        rs.sort(key=lambda r: r.ts_ns)
        j = 0
        for i, r in enumerate(rs):
            j = max(j, i + 1)
            while j < len(rs) and rs[j].ts_ns < r.ts_ns + h:
                j += 1
            if j >= len(rs) or r.price <= 0 or r.policy_id not in POLICIES:
                continue
            ret = (rs[j].price - r.price) / r.price * 1e4
            c = r.context
            x = (1.0, 100 * _num(c.get("sigmaHAR")), 100 * _num(c.get("sigmaGARCH")), 1e4 * _num(c.get("funding")))
            regime = c.get("regime")
            out.append(
                Logged(
                    r.ts_ns,
                    r.ts_ns,
                    venue or "backtest",
                    sym,
                    regime if isinstance(regime, str) else "unknown",
                    r.policy_id,
                    r.propensity,
                    x,
                    r.signal,
                    ret,
                    {p: sig * ret for p, sig in r.shadow.items()},
                    _num(r.mean_bps),
                    _num(r.width_bps),  # 0 (no forecast: not calibrated) for rows before 009
                )
            )
    out.sort(key=lambda d: (d.ts_ns, d.symbol, d.venue))
    return out


def _num(v: object) -> float:
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else 0.0


# -- off-policy evaluation ----------------------------------------------------------------


@dataclass(frozen=True)
class OpeSettings:
    n_boot: int = 300
    alpha: float = 0.05
    seed: int = 0
    min_n: int = 30
    min_ess: float = 20.0
    ridge_alpha: float = 1.0
    folds: int = 2
    ts_draws: int = 200


def router_dist(post: RouterPosterior, x: np.ndarray, arms: list[str], draws: int, seed: int) -> np.ndarray:
    """Thompson sampling's action distribution under ``post`` at every row of ``x`` (n, d):
    score of arm a ~ N(μₐ·x, v²·xᵀBₐ⁻¹x), P(a = argmax) by Monte Carlo (seeded)."""
    means = np.zeros((x.shape[0], len(arms)))
    sds = np.zeros_like(means)
    for k, a in enumerate(arms):
        st = post.arms[a]
        b = np.asarray(st.B)
        mu = np.linalg.solve(b, np.asarray(st.f))
        binv = np.linalg.inv(b)
        means[:, k] = x @ mu
        sds[:, k] = post.v * np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", x, binv, x), 0.0))
    return ope.gaussian_argmax_dist(means, sds, draws, np.random.default_rng(seed))


def _estimates(
    args: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], q_hat: np.ndarray | None, s: OpeSettings
) -> dict[str, Estimate | None]:
    """All five estimators with their bootstrap intervals from one set of resamples."""
    names = ("ips", "snips", "dm", "dr", "sndr")
    if args[0].size < 2:
        return dict.fromkeys(names)
    try:
        got = ope.bootstrap_terms(ope.round_terms(*args, q_hat=q_hat), s.alpha, s.n_boot, s.seed)
    except QuantInputError:
        return dict.fromkeys(names)
    out: dict[str, Estimate | None] = {}
    for k in names:
        v = got.get(k)
        out[k] = Estimate(*v) if v is not None else None
    return out


def cf_rows(logged: list[Logged], s: OpeSettings, posterior: RouterPosterior | None) -> tuple[list[CfRow], list[str]]:
    """Per target policy × regime (and ``all``): IPS, SNIPS, DM, DR, SNDR with bootstrap CIs,
    the ESS and the counterfactual replay value. Targets: every policy (deterministic) and,
    when a posterior with the same features is given, the TS router under it."""
    warnings: list[str] = []
    arms = list(POLICIES)
    rows = [d for d in logged if d.policy in arms and len(d.x) > 0]
    if not rows:
        return [], ["no logged decisions with a reward yet"]
    dims = {len(d.x) for d in rows}
    if len(dims) > 1:
        d0 = max(dims, key=lambda k: sum(len(d.x) == k for d in rows))
        rows = [d for d in rows if len(d.x) == d0]
        warnings.append("decisions with another feature layout were left out")
    x = np.array([d.x for d in rows])
    a = np.array([arms.index(d.policy) for d in rows])
    p = np.array([d.propensity for d in rows])
    r = np.array([d.reward for d in rows])
    cf = np.array([[d.rewards.get(k, 0.0) for k in arms] for d in rows])
    q_hat = ope.cross_fit_q_hat(x, a, r, len(arms), alpha=s.ridge_alpha, folds=s.folds) if len(rows) >= 4 else None
    targets: dict[str, np.ndarray] = {
        k: ope.deterministic_dist(np.full(len(rows), i), len(arms)) for i, k in enumerate(arms)
    }
    if posterior is not None and set(arms) <= set(posterior.arms) and len(posterior.features) == x.shape[1]:
        targets[ROUTER] = router_dist(posterior, x, arms, s.ts_draws, s.seed)
    elif posterior is not None:
        warnings.append("the current model's features differ from the logged ones: router target left out")
    regimes = ["all", *sorted({d.regime for d in rows})]
    out = []
    for name, dist in targets.items():
        for reg in regimes:
            m = np.ones(len(rows), dtype=bool) if reg == "all" else np.array([d.regime == reg for d in rows])
            n = int(m.sum())
            if n == 0 or (reg != "all" and len(regimes) == 2):
                continue  # one regime only: 'all' says it
            w = dist[m][np.arange(n), a[m]] / p[m]
            ess = ope.effective_sample_size(w)
            args = (r[m], a[m], p[m], dist[m])
            warn = []
            if n < s.min_n:
                warn.append(f"n = {n} < {s.min_n}: too few decisions to trust")
            if ess < s.min_ess:
                warn.append(f"ESS = {ess:.1f} < {s.min_ess:g}: the logging policy rarely took this policy's action")
            est = _estimates(args, q_hat[m] if q_hat is not None else None, s)
            out.append(
                CfRow(
                    policyId=name,
                    regime=reg,
                    n=n,
                    ess=ess,
                    ips=est["ips"],
                    snips=est["snips"],
                    dm=est["dm"],
                    dr=est["dr"],
                    sndr=est["sndr"],
                    replay=float(np.mean(np.sum(dist[m] * cf[m], axis=1))),
                    warning="; ".join(warn),
                )
            )
    return out, warnings


def baseline_guard(rows: list[CfRow], min_n: int, min_ess: float) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Baseline-challenger (VW's ``--baseline_challenger_cb``): per region (regime label or
    ``all``), the policies whose DR lower confidence bound is below the baseline's (``p_flat``)
    with n ≥ ``min_n`` and ESS ≥ ``min_ess`` — too little evidence never blocks a policy.
    Returns (region → policies, ``region:policy`` → reason)."""
    base = {r.regime: r for r in rows if r.policyId == BASELINE and r.dr is not None}
    regions: dict[str, list[str]] = {}
    reasons: dict[str, str] = {}
    for r in rows:
        b = base.get(r.regime)
        if r.policyId in (BASELINE, ROUTER) or b is None or b.dr is None or r.dr is None:
            continue
        if r.n >= min_n and r.ess >= min_ess and r.dr.low < b.dr.low:
            regions.setdefault(r.regime, []).append(r.policyId)
            reasons[f"{r.regime}:{r.policyId}"] = (
                f"DR lower bound {r.dr.low:.3f} < {BASELINE}'s {b.dr.low:.3f} bps (n={r.n}, ESS={r.ess:.0f})"
            )
    return regions, reasons


# -- promotion ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PromotionSettings:
    p_max: float = 0.05
    dsr_min: float = 0.95
    reps: int = 500
    block_size: int = 10
    seed: int = 0
    min_n: int = 30


@dataclass(frozen=True)
class PromotionResult:
    champion_mean: float | None
    n: int
    challengers: list[Challenger]
    spa: SpaView | None
    trials: int
    decision: str
    reason: str
    warnings: list[str]


def _safe(fn: object, *args: object) -> float | None:
    try:
        v = fn(*args)  # type: ignore[operator]
    except (QuantInputError, ValueError, np.linalg.LinAlgError, ZeroDivisionError):
        return None
    return float(v) if math.isfinite(v) else None


def _spa(bench: np.ndarray, models: np.ndarray, s: PromotionSettings) -> SpaView | None:
    try:
        r = promotion.spa(bench, models, s.reps, min(s.block_size, bench.size), s.seed)
    except (QuantInputError, ValueError, np.linalg.LinAlgError, ZeroDivisionError):
        return None
    if not all(math.isfinite(v) for v in (r.lower, r.consistent, r.upper)):
        return None
    return SpaView(r.lower, r.consistent, r.upper)


def router_metrics(logged: list[Logged], min_n: int) -> dict[str, float]:
    """The live router's measured metrics over ``logged``: n, mean PnL and per-decision Sharpe
    (bps), historical CVaR 95 % of the per-decision loss (bps). Empty below ``min_n``."""
    pnl = np.array([d.reward for d in logged if d.policy in POLICIES])
    if pnl.size < max(min_n, 10):
        return {}
    out = {"n": float(pnl.size), "meanPnlBps": float(pnl.mean())}
    sr = _safe(promotion.sharpe, pnl)
    if sr is not None:
        out["sharpe"] = sr
    _, cvar = var_cvar(pnl[:, None], 0.95)
    out["cvar95Bps"] = float(cvar[0])
    return out


def warm_up() -> None:
    """Run one small SPA so arch's compiled kernels are ready before the first request."""
    rng = np.random.default_rng(0)
    promotion.spa(rng.standard_normal(50), rng.standard_normal((50, 2)), 100, 5, 0)


def promotion_status(logged: list[Logged], trial_sharpes: list[float], s: PromotionSettings) -> PromotionResult:
    """Champion = the live router's realised PnL per decision; challengers = every policy's
    counterfactual PnL on the same decisions. Losses for SPA = −PnL. DSR deflates by every
    registered trial plus the challengers evaluated here."""
    warnings: list[str] = []
    rows = [d for d in logged if d.policy in POLICIES]
    n = len(rows)
    arms = list(POLICIES)
    if n < s.min_n:
        warnings.append(f"n = {n} < {s.min_n} decisions with a reward: promotion tests are not trustworthy yet")
    champ = np.array([d.reward for d in rows])
    pnl = {k: np.array([d.rewards.get(k, 0.0) for d in rows]) for k in arms}
    sharpes = {k: _safe(promotion.sharpe, v) for k, v in pnl.items()} if n >= 2 else dict.fromkeys(arms)
    trials = [*trial_sharpes, *(v for v in sharpes.values() if v is not None)]
    active = [k for k in arms if np.any(pnl[k] != 0)]  # a policy that never took a position has no test
    spa_all = _spa(-champ, np.column_stack([-pnl[k] for k in active]), s) if n >= 10 and active else None
    challengers = []
    for k in arms:
        sr = sharpes[k]
        ps = _safe(promotion.psr, pnl[k]) if n >= 3 and sr is not None else None
        dsr = _safe(promotion.deflated_sharpe, pnl[k], trials) if ps is not None and trials else None
        sp = _spa(-champ, -pnl[k], s) if n >= 10 and k in active else None
        d = promotion.decide(sp.consistent if sp else None, dsr, s.p_max, s.dsr_min)
        if k not in active:
            d = promotion.Decision(False, "never took a position on these decisions (PnL identically 0)")
        challengers.append(Challenger(k, n, float(pnl[k].mean()) if n else 0.0, sr, ps, dsr, sp, d.promote, d.reason))
    winners = [c for c in challengers if c.promote]
    if winners:
        best = max(winners, key=lambda c: c.meanPnlBps)
        decision, reason = f"promote {best.id}", best.reason
    elif challengers:
        best = max(challengers, key=lambda c: c.meanPnlBps)
        decision, reason = "keep champion", f"best challenger {best.id}: {best.reason}"
    else:
        decision, reason = "keep champion", "no challengers"
    return PromotionResult(
        float(champ.mean()) if n else None, n, challengers, spa_all, len(trials), decision, reason, warnings
    )


# -- calibration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationResult:
    n: int
    brier: float | None
    ece: float | None
    bins: list[ReliabilityBin]
    by_policy: list[CalibrationRow]
    nudges: calibration.Nudges | None
    warnings: list[str]


def forecasts(logged: list[Logged], window_s: float) -> list[Logged]:
    """Decisions of the last ``window_s`` seconds (decision clock, the newest decision's
    ``init_ns`` back) that took a position (signal ≠ 0: a flat decision has no outcome)
    with a positive posterior width."""
    if not logged:
        return []
    end = max(d.init_ns for d in logged)
    return [d for d in logged if d.init_ns >= end - window_s * 1e9 and d.signal != 0 and d.width > 0]


def calibration_report(
    logged: list[Logged], window_s: float, bounds: calibration.NudgeBounds, n_bins: int, min_n: int
) -> CalibrationResult:
    """Forecast Φ(m/w) of the chosen policy against reward > 0, overall and per policy × regime."""
    rows = forecasts(logged, window_s)
    warnings = []
    if len(rows) < min_n:
        warnings.append(f"n = {len(rows)} < {min_n} forecasts in the window: nudges are 0")
    if not rows:
        return CalibrationResult(0, None, None, [], [], None, warnings)
    z = np.array([d.mean / d.width for d in rows])
    p = calibration.win_probability([d.mean for d in rows], [d.width for d in rows])
    y = np.array([1.0 if d.reward > 0 else 0.0 for d in rows])
    mp, fr, ct = calibration.reliability(p, y, n_bins)
    bins = [ReliabilityBin(float(a), float(b), int(c)) for a, b, c in zip(mp, fr, ct, strict=True)]
    by = []
    for key in sorted({(d.policy, d.regime) for d in rows}):
        m = np.array([(d.policy, d.regime) == key for d in rows])
        by.append(
            CalibrationRow(
                key[0], key[1], int(m.sum()), calibration.brier(p[m], y[m]), calibration.ece(p[m], y[m], n_bins)
            )
        )
    nd = calibration.nudges(z, y, bounds, n_bins) if len(rows) >= min_n else None
    return CalibrationResult(len(rows), calibration.brier(p, y), calibration.ece(p, y, n_bins), bins, by, nd, warnings)


def check_explicit_nudges(prior: float | None, sizing: float | None, bounds: calibration.NudgeBounds) -> None:
    """Explicit nudges must be finite and within their bounds (ValueError → 400)."""
    for name, v, b in (("routerPriorDelta", prior, bounds.prior), ("sizingCapDelta", sizing, bounds.sizing)):
        if v is not None and not (math.isfinite(v) and -b <= v <= b):
            raise QuantInputError(f"{name} must lie in [−{b}, {b}], got {v}")
