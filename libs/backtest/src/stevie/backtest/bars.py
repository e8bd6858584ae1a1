"""The bar backtest: 1-minute klines of many symbols through the live decision cores.

Event order (one global event-time loop, symbols in name order at equal times):

1. At every funding settlement F of a symbol (``funding_rate_8h``), the position held at F
   pays ``size · price(F) · rate`` (longs pay when the rate is positive, Binance USD-M).
2. Every ``decision_interval`` minutes T (on the UTC clock grid) per symbol whose bar closing
   at T exists: rewards whose horizon ended are sent to the router core (the bandit update of
   ``Router.update`` on the features of the decision's context); the context (σ HAR / σ GARCH
   from the live vol core ``SymbolVol`` — HAR-RV + GARCH(1,1), online GARCH recursion between
   walk-forward refits — the BOCPD regime label and the last settled funding) goes to
   ``Router.choose`` (Thompson sampling over ``BAR_POLICIES``); the chosen policy's signal
   (every policy's is kept as ``shadow_*``) and ``size_decision`` (the execution core's sizing)
   give the target; the order is checked by the risk-guards core (``RiskGuards.check``) and,
   when allowed, filled at the **open of the next bar** moved by the cost model
   ``k·size^α + spread/2`` (impact in the square-root law form, k = Y·σ₁ₘ/√V₁ₘ, α = ½, Tóth et
   al. 2011 / Almgren et al. 2005, σ₁ₘ and V₁ₘ trailing 60-bar volatility (bps) and volume)
   plus the taker fee.
3. The reward of a decision is the live one: signal·(price(T+H) − price(T))/price(T) in bps,
   H = the decision interval, sent when T+H is reached.

Decision-free work — parsing, validation, trailing σ and volume, funding alignment, the
decision grid, and per symbol the vol refits, the vol core's forecasts, the policies' signals
and the regime labels (``stevie.backtest.prepare``, one worker process per symbol) — is
vectorised or done ahead; the replay loop runs only what depends on decisions (router, sizing,
guards, fills, funding payments), on preconverted Python lists.
Nothing reads data after T: ``tests/test_backtest_lookahead.py`` perturbs every later input.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
import numpy as np

from stevie.backtest.data import MINUTE_MS, BacktestInputError, Funding, Klines
from stevie.backtest.fits import min_train_bars
from stevie.backtest.prepare import Prepared, PreparedStream, PrepareJob
from stevie.contracts.rpc import OrderCheck, RouterContext
from stevie.quant.impact import ImpactModel
from stevie.quant.policies import BAR_POLICIES, lookback_of, tuned_params
from stevie.services.execution.core import Position, size_decision
from stevie.services.execution.settings import ExecutionSettings
from stevie.services.risk_guards.core import RiskGuards
from stevie.services.risk_guards.settings import RiskGuardsSettings
from stevie.services.router.core import Router

VENUE = "binance-usdm"
CTX_FIELDS = ("sigmaHAR", "sigmaGARCH", "funding")
"""Context numbers the bar mode fills (the others are unknown from klines and stay neutral)."""


def backtest_guards(stale_book_ms: float) -> RiskGuardsSettings:
    """The risk-guard limits of a backtest account (100,000 quote of paper capital): caps in
    quote units, 30 orders/min, a 100 bps collar, a 10,000 quote drawdown breaker reset after
    an hour; ``stale_book_ms``: how old the priced book may be (a bar, or an L2 book)."""
    return RiskGuardsSettings(
        global_notional_cap_quote=500_000.0,
        symbol_notional_cap_quote=50_000.0,
        max_order_notional_quote=50_000.0,
        orders_per_min=30,
        collar_bps=100.0,
        max_drawdown_quote=10_000.0,
        breaker_reset_s=3_600.0,
        stale_book_ms=stale_book_ms,
    )


DEFAULT_LOOKBACK_BARS = 240
"""Closes the bar policies see (more when tuned parameters read more: ``stevie backtest --params``)."""


class BarSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Everything that decides a bar backtest's result (hashed into the run id).

    decision_interval_min: minutes between decisions per symbol (also the reward horizon and
    the vol forecast horizon). minutes_per_period: HAR-RV period (60 = hourly RV).
    garch_window: returns per GARCH fit; refit_every_bars: bars per walk-forward fold.
    lookback_bars: closes the policies see. mc_draws / prior_precision / exploration: router.
    capital_quote … min_order_quote: execution sizing (quote units, USDT). fee_bps: taker fee.
    spread_bps: assumed quoted spread; impact_y: square-root-law constant Y; cost_window_bars:
    trailing bars of σ and volume in the impact model. data_quality (``strict`` / ``relaxed``),
    spike_window, spike_z_cap: the kline guards (``stevie.backtest.quality``). policy_params:
    tuned hyper-parameters by ``POLICY.PARAM`` (``stevie.quant.policies.tuned_params``, the
    names ``stevie pbt`` registers; the rest keep their defaults); each must fit in
    ``lookback_bars``. Raises ValueError / KeyError for parameters the policies cannot take."""

    symbols: list[str]
    start_ms: int | None = None
    end_ms: int | None = None
    seed: int = 0
    decision_interval_min: int = 5
    minutes_per_period: int = 60
    garch_window: int = 20_000
    refit_every_bars: int = 10_080
    lookback_bars: int = DEFAULT_LOOKBACK_BARS
    regime_max_run: int = 288
    policies: list[str] = msgspec.field(default_factory=lambda: list(BAR_POLICIES))
    mc_draws: int = 500
    prior_precision: float = 1.0
    exploration: float = 0.5
    capital_quote: float = 100_000.0
    s_max_quote: float = 20_000.0
    w_star: float = 0.5
    sigma_target_bps: float = 20.0
    fee_bps: float = 5.0
    min_order_quote: float = 10.0
    spread_bps: float = 1.0
    impact_y: float = 1.0
    cost_window_bars: int = 60
    guards: RiskGuardsSettings = msgspec.field(default_factory=lambda: backtest_guards(stale_book_ms=120_000.0))
    data_quality: str = "strict"
    spike_window: int = 240
    spike_z_cap: float = 25.0
    policy_params: dict[str, float] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        for pid, p in self.tuned().items():
            if lookback_of(p) > self.lookback_bars:
                raise ValueError(f"{pid} reads {lookback_of(p)} closes, more than lookback_bars {self.lookback_bars}")

    def tuned(self) -> dict[str, msgspec.Struct]:
        """Policy id → its tuned hyper-parameters (``policy_params``)."""
        return tuned_params(self.policy_params)

    def execution(self) -> ExecutionSettings:
        return ExecutionSettings(
            books=[f"{VENUE}:{s}" for s in self.symbols],
            decision_interval_s=self.decision_interval_min * 60.0,
            horizon_s=self.decision_interval_min * 60.0,
            s_max_quote=self.s_max_quote,
            w_star=self.w_star,
            sigma_target_bps=self.sigma_target_bps,
            capital_quote=self.capital_quote,
            fee_bps=self.fee_bps,
            min_order_quote=self.min_order_quote,
        )


@dataclass
class Columns:
    """The decisions table, column by column (one entry per decision)."""

    names: list[str]
    data: dict[str, list[object]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data = {n: [] for n in self.names}

    def __len__(self) -> int:
        return len(self.data[self.names[0]])


@dataclass
class BarResult:
    """Decisions (columns), the equity curve at each decision time, counters."""

    decisions: dict[str, list[object]]
    equity_ts_ns: list[int]
    equity_quote: list[float]
    gross_quote: list[float]
    bars: int
    warmup_bars: int
    fits: int
    funding_events: int
    cash_quote: float
    blocked: dict[str, int]


def trailing_mean(x: np.ndarray, w: int) -> np.ndarray:
    """Mean of x[max(0, i−w+1) .. i] for each i (shape of x), by cumulative sums."""
    c = np.concatenate([[0.0], np.cumsum(x, dtype=np.float64)])
    i = np.arange(x.size)
    lo = np.maximum(0, i - w + 1)
    return (c[i + 1] - c[lo]) / (i + 1 - lo)


@dataclass
class _Sym:
    k: Klines
    prep: Prepared
    idx: np.ndarray  # bar index of each decision
    impact_k: np.ndarray  # per bar: Y·σ₁ₘ(bps)/√V₁ₘ, known at the bar's close
    funding_t: np.ndarray
    funding_r: np.ndarray
    # (reward due ms, policy, router features x at the decision, signal, price, row)
    pending: deque[tuple[int, str, list[float], int, float, int]] = field(default_factory=deque)


def decision_index(k: Klines, interval_min: int) -> np.ndarray:
    """Bar indices i whose close (open + 1 min) is on the decision grid and whose next bar
    (the fill bar) opens right then; ascending."""
    t = k.open_time_ms
    close = t + MINUTE_MS
    on_grid = close % (interval_min * MINUTE_MS) == 0
    nxt = np.zeros(t.size, dtype=bool)
    nxt[:-1] = t[1:] == close[:-1]
    return np.flatnonzero(on_grid & nxt)


def run_bars(
    klines: dict[str, Klines],
    funding: Funding,
    s: BarSettings,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
) -> BarResult:
    """Run the backtest. ``progress(bars_done)`` is called now and then.
    Raises QuantInputError from the splitter when a symbol has too few bars to fit once.
    The decision-free preparation runs in ``workers`` processes (≤ 1: here), streamed to the
    replay (``stevie.backtest.prepare.PreparedStream``)."""
    router = Router(s.seed, s.prior_precision, s.exploration, s.mc_draws, arms=s.policies)
    guards = RiskGuards(s.guards)
    policies = list(s.policies)
    mpp, interval = s.minutes_per_period, s.decision_interval_min
    first = min_train_bars(mpp)
    for sym, k in klines.items():
        if k.n <= first + 1:
            raise BacktestInputError(
                f"{sym}: {k.n} bars in the window; the vol models need more than {first + 1} "
                f"({first // 60} h of warm-up at minutes_per_period={mpp})"
            )
    names = sorted(klines)
    didx = {sym: decision_index(klines[sym], interval) for sym in names}
    jobs = []
    for sym in names:
        k = klines[sym]
        ft, fr = funding.of(sym)
        jobs.append(
            PrepareJob(
                sym,
                k.open_time_ms,
                k.close,
                ft,
                fr,
                didx[sym],
                mpp,
                s.garch_window,
                s.refit_every_bars,
                interval,
                s.lookback_bars,
                tuple(policies),
                s.regime_max_run,
                s.tuned(),
            )
        )
    if progress is not None:
        progress(0)
    with PreparedStream(jobs, workers) as stream:
        return _replay(klines, funding, s, names, didx, stream, router, guards, progress)


def _replay(
    klines: dict[str, Klines],
    funding: Funding,
    s: BarSettings,
    names: list[str],
    didx: dict[str, np.ndarray],
    stream: PreparedStream,
    router: Router,
    guards: RiskGuards,
    progress: Callable[[int], None] | None,
) -> BarResult:
    """The event-time loop over the decision-dependent cores (``run_bars``)."""
    ex = s.execution()
    policies = list(s.policies)
    interval = s.decision_interval_min
    first = min_train_bars(s.minutes_per_period)
    prepared = stream.prepared

    syms: dict[str, _Sym] = {}
    for sym in names:
        k = klines[sym]
        r = np.concatenate([[0.0], np.diff(np.log(k.close))])
        sigma_bps = np.sqrt(np.maximum(trailing_mean(r * r, s.cost_window_bars), 0.0)) * 1e4
        vol_1m = np.maximum(trailing_mean(k.volume, s.cost_window_bars), 1e-12)
        ft, fr = funding.of(sym)
        syms[sym] = _Sym(k, prepared[sym], didx[sym], s.impact_y * sigma_bps / np.sqrt(vol_1m), ft, fr)

    # one global event list: (time ms, kind 0 = funding / 1 = decision, symbol order, index);
    # index = the decision's number for decisions, the settlement's for funding
    ev_t, ev_kind, ev_sym, ev_i = [], [], [], []
    for j, sym in enumerate(names):
        st = syms[sym]
        idx = st.idx
        ev_t.append(st.k.open_time_ms[idx] + MINUTE_MS)
        ev_kind.append(np.ones(idx.size, dtype=np.int64))
        ev_sym.append(np.full(idx.size, j))
        ev_i.append(np.arange(idx.size))
        t = st.k.open_time_ms
        inside = (st.funding_t > t[0]) & (st.funding_t <= t[-1] + MINUTE_MS)
        ft = st.funding_t[inside]
        ev_t.append(ft)
        ev_kind.append(np.zeros(ft.size, dtype=np.int64))
        ev_sym.append(np.full(ft.size, j))
        ev_i.append(np.flatnonzero(inside))
    T = np.concatenate(ev_t)
    K = np.concatenate(ev_kind)
    J = np.concatenate(ev_sym)
    Ix = np.concatenate(ev_i)
    perm = np.lexsort((J, K, T))
    T, K, J, Ix = T[perm].tolist(), K[perm].tolist(), J[perm].tolist(), Ix[perm].tolist()

    cols = Columns(
        [
            "ts_event_ns",
            "symbol",
            "policy_id",
            "propensity",
            "score",
            "width",
            "exploration_bonus",
            "signal",
            "target_size",
            "order_size",
            "fill_price",
            "cost_bps",
            "fee_quote",
            "funding_quote",
            "reward",
            "blocked",
            "reason",
            "position_after",
            "price",
            "equity_quote",
            "ctx_regime",
            *[f"ctx_{c}" for c in CTX_FIELDS],
            *[f"shadow_{pid}" for pid in policies],
        ]
    )
    d = cols.data
    positions = {sym: Position() for sym in names}
    last_price = {sym: float(syms[sym].k.close[0]) for sym in names}
    cash = s.capital_quote
    funding_due: dict[str, float] = dict.fromkeys(names, 0.0)
    eq_t: list[int] = []
    eq_v: list[float] = []
    eq_g: list[float] = []
    h = interval
    horizon_ms = interval * MINUTE_MS
    bars_total = sum(k.n for k in klines.values())
    bars_seen = dict.fromkeys(names, 0)
    n_funding = 0
    pol_index = {p: n for n, p in enumerate(policies)}
    shadow_cols = [d[f"shadow_{p}"] for p in policies]
    # per-symbol views as Python lists (no numpy scalar boxing inside the loop)
    close_l = {sym: st.k.close.tolist() for sym, st in syms.items()}
    open_l = {sym: st.k.open.tolist() for sym, st in syms.items()}
    idx_l = {sym: st.idx.tolist() for sym, st in syms.items()}
    impact_l = {sym: st.impact_k.tolist() for sym, st in syms.items()}
    # the prepared lists grow in place as the stream delivers chunks (stream.need)
    ready_l = {sym: st.prep.ready for sym, st in syms.items()}
    har_l = {sym: st.prep.sigma_har for sym, st in syms.items()}
    garch_l = {sym: st.prep.sigma_garch for sym, st in syms.items()}
    fund_l = {sym: st.prep.funding for sym, st in syms.items()}
    shadows_l = {sym: st.prep.shadows for sym, st in syms.items()}
    regime_l = {sym: st.prep.regime for sym, st in syms.items()}
    fr_l = {sym: st.funding_r.tolist() for sym, st in syms.items()}
    source = f"garch h={h}m"
    spread, fee_bps, min_order = s.spread_bps, s.fee_bps, s.min_order_quote
    col_names = [
        "ts_event_ns", "symbol", "policy_id", "propensity", "score", "width", "exploration_bonus", "signal",
        "target_size", "order_size", "fill_price", "cost_bps", "fee_quote", "funding_quote", "reward", "blocked",
        "reason", "position_after", "price", "equity_quote", "ctx_regime", "ctx_sigmaHAR", "ctx_sigmaGARCH",
        "ctx_funding",
    ]  # fmt: skip
    appenders = [d[n].append for n in col_names]
    rewards = d["reward"]

    def equity() -> float:
        return cash + sum(p.size * last_price[n] for n, p in positions.items())

    def gross() -> float:
        return sum(abs(p.size) * last_price[n] for n, p in positions.items())

    prev_t = -1
    for n_ev, (t_ms, kind, j, q) in enumerate(zip(T, K, J, Ix, strict=True)):
        if t_ms != prev_t and prev_t >= 0:
            eq_t.append(prev_t * 1_000_000)
            eq_v.append(equity())
            eq_g.append(gross())
        prev_t = t_ms
        sym = names[j]
        st = syms[sym]
        pos = positions[sym]
        if kind == 0:  # funding settlement at t_ms, before any fill at t_ms
            rate = fr_l[sym][q]
            if pos.size != 0.0:
                paid = pos.size * last_price[sym] * rate
                cash -= paid
                funding_due[sym] += paid
                n_funding += 1
            continue
        i = idx_l[sym][q]
        price = close_l[sym][i]
        last_price[sym] = price
        bars_seen[sym] = i + 1
        now_ns = t_ms * 1_000_000
        # rewards whose horizon has passed (live: signal · Δmid/mid in bps), to the router core
        while st.pending and st.pending[0][0] <= t_ms:
            _, pid, px, psig, pprice, row = st.pending.popleft()
            reward = psig * (price - pprice) / pprice * 1e4
            router.ts.update(pid, reward, px)  # = Router.update(pid, reward, ctx) on features(ctx)
            rewards[row] = reward
        ready = ready_l[sym]
        if q >= len(ready):
            stream.need(sym, q)
        if not ready[q]:
            continue
        s_har, s_garch, fund = har_l[sym][q], garch_l[sym][q], fund_l[sym][q]
        regime = regime_l[sym][q]
        ctx = RouterContext(symbol=sym, venue=VENUE, regime=regime, sigmaHAR=s_har, sigmaGARCH=s_garch, funding=fund)
        choice = router.choose(ctx, now_ns)
        shadows = shadows_l[sym][q]
        signal = shadows[pol_index[choice.policyId]]
        snap = size_decision(ex, sym, choice.width, s_garch, source, signal, price, now_ns)
        order = snap.target_size - pos.size
        side, qty = (1 if order > 0 else -1), abs(order)
        fill_price = cost = fee = math.nan
        blocked, reason = False, "no_order"
        eq_now = equity()
        if qty * price >= min_order:
            cost = ImpactModel(impact_l[sym][i], 0.5).cost_bps(qty, spread)
            est = price * (1 + side * cost / 1e4)
            pos_after = (pos.size + side * qty) * price
            gross_after = sum(abs(p.size) * last_price[n] for n, p in positions.items() if n != sym) + abs(pos_after)
            check = OrderCheck(VENUE, sym, side, qty, est, price, "LIVE", 0.0, pos_after, gross_after, eq_now, now_ns)
            g = guards.check(check)
            blocked, reason = g.blocked, g.reason
            if not g.blocked:
                fill_price = open_l[sym][i + 1] * (1 + side * cost / 1e4)
                fee = qty * fill_price * fee_bps / 1e4
                pos.apply(side, qty, fill_price)
                cash -= side * qty * fill_price + fee
                eq_now = equity()
            else:
                cost = math.nan
        row = len(rewards)
        if not blocked:
            st.pending.append((t_ms + horizon_ms, choice.policyId, choice.features, signal, price, row))
        traded = not (blocked or math.isnan(fill_price))
        values = (
            now_ns, sym, choice.policyId, choice.propensity, choice.score, choice.width, choice.explorationBonus,
            signal, snap.target_size,
            side * qty if traded else 0.0, fill_price, cost, 0.0 if math.isnan(fee) else fee, funding_due[sym],
            math.nan, blocked, reason, pos.size, price, eq_now, regime, s_har, s_garch, fund,
        )  # fmt: skip
        for app, v in zip(appenders, values, strict=True):
            app(v)
        for col, sig in zip(shadow_cols, shadows, strict=True):
            col.append(sig)
        funding_due[sym] = 0.0
        if progress is not None and n_ev % 4096 == 0:
            progress(sum(bars_seen.values()))
    if prev_t >= 0:
        eq_t.append(prev_t * 1_000_000)
        eq_v.append(equity())
        eq_g.append(gross())
    if progress is not None:
        progress(bars_total)
    return BarResult(
        decisions=d,
        equity_ts_ns=eq_t,
        equity_quote=eq_v,
        gross_quote=eq_g,
        bars=bars_total,
        warmup_bars=first,
        fits=sum(p.fits for p in stream.finish().values()),
        funding_events=n_funding,
        cash_quote=cash,
        blocked=dict(guards.blocked),
    )
