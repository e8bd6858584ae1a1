"""The bar backtest: 1-minute klines of many symbols through the live decision cores.

Event order (one global event-time loop, symbols in name order at equal times):

1. At every funding settlement F of a symbol (``funding_rate_8h``), the position held at F
   pays ``size · price(F) · rate`` (longs pay when the rate is positive, Binance USD-M).
2. Every ``decision_interval`` minutes T (on the UTC clock grid) per symbol whose bar closing
   at T exists: the vol core (``stevie.services.vol.core.SymbolVol``, HAR-RV + GARCH(1,1),
   online GARCH recursion between walk-forward refits) is fed the bars closed by T; rewards
   whose horizon ended are sent to the router core (``Router.update``); the context (σ from the
   vol core, last settled funding) goes to ``Router.choose`` (Thompson sampling over
   ``BAR_POLICIES``); every policy's signal is computed on the closes up to T (shadows, the
   chosen one trades); ``size_decision`` (the execution core's sizing) gives the target; the
   order is checked by the risk-guards core (``RiskGuards.check``) and, when allowed, filled at
   the **open of the next bar** moved by the cost model ``k·size^α + spread/2`` (impact in the
   square-root law form, k = Y·σ₁ₘ/√V₁ₘ, α = ½, Tóth et al. 2011 / Almgren et al. 2005, σ₁ₘ and
   V₁ₘ trailing 60-bar volatility (bps) and volume) plus the taker fee.
3. The reward of a decision is the live one: signal·(price(T+H) − price(T))/price(T) in bps,
   H = the decision interval, sent when T+H is reached.

Decision-free per-bar work (parsing, validation, trailing σ and volume, funding alignment,
the decision grid, the vol refits) is vectorised or done ahead; the decision path is the cores.
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
from stevie.backtest.fits import PrecomputedFitter, fit_all, min_train_bars, schedule
from stevie.contracts.rpc import OrderCheck, RouterContext
from stevie.quant.impact import ImpactModel
from stevie.quant.policies import BAR_POLICIES, POLICIES, PolicyInputs
from stevie.services.execution.core import Position, size_decision
from stevie.services.execution.settings import ExecutionSettings
from stevie.services.risk_guards.core import RiskGuards
from stevie.services.risk_guards.settings import RiskGuardsSettings
from stevie.services.router.core import Router
from stevie.services.vol.core import SymbolVol

VENUE = "binance-usdm"
CTX_FIELDS = ("sigmaHAR", "sigmaGARCH", "funding")
"""Context numbers the bar mode fills (the others are unknown from klines and stay neutral)."""


class BarSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Everything that decides a bar backtest's result (hashed into the run id).

    decision_interval_min: minutes between decisions per symbol (also the reward horizon and
    the vol forecast horizon). minutes_per_period: HAR-RV period (60 = hourly RV).
    garch_window: returns per GARCH fit; refit_every_bars: bars per walk-forward fold.
    lookback_bars: closes the policies see. mc_draws / prior_precision / exploration: router.
    capital_quote … min_order_quote: execution sizing (quote units, USDT). fee_bps: taker fee.
    spread_bps: assumed quoted spread; impact_y: square-root-law constant Y; cost_window_bars:
    trailing bars of σ and volume in the impact model."""

    symbols: list[str]
    start_ms: int | None = None
    end_ms: int | None = None
    seed: int = 0
    decision_interval_min: int = 5
    minutes_per_period: int = 60
    garch_window: int = 20_000
    refit_every_bars: int = 10_080
    lookback_bars: int = 240
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
    guards: RiskGuardsSettings = msgspec.field(
        default_factory=lambda: RiskGuardsSettings(
            global_notional_cap_quote=500_000.0,
            symbol_notional_cap_quote=50_000.0,
            max_order_notional_quote=50_000.0,
            orders_per_min=30,
            collar_bps=100.0,
            max_drawdown_quote=10_000.0,
            breaker_reset_s=3_600.0,
            stale_book_ms=120_000.0,
        )
    )

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
    vol: SymbolVol
    fed: int
    boundaries: list[int]
    impact_k: np.ndarray  # per bar: Y·σ₁ₘ(bps)/√V₁ₘ, known at the bar's close
    funding_t: np.ndarray
    funding_r: np.ndarray
    pending: deque[tuple[int, str, RouterContext, int, float, int]] = field(default_factory=deque)


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
    Raises QuantInputError from the splitter when a symbol has too few bars to fit once."""
    ex = s.execution()
    router = Router(s.seed, s.prior_precision, s.exploration, s.mc_draws, arms=s.policies)
    guards = RiskGuards(s.guards)
    policies = [(pid, POLICIES[pid]) for pid in s.policies]
    mpp, step, interval = s.minutes_per_period, s.refit_every_bars, s.decision_interval_min
    first = min_train_bars(mpp)
    for sym, k in klines.items():
        if k.n <= first + 1:
            raise BacktestInputError(
                f"{sym}: {k.n} bars in the window; the vol models need more than {first + 1} "
                f"({first // 60} h of warm-up at minutes_per_period={mpp})"
            )
    points = {sym: schedule(k.open_time_ms, mpp, step) for sym, k in klines.items()}
    fits = fit_all({sym: k.close for sym, k in klines.items()}, points, mpp, s.garch_window, workers)

    syms: dict[str, _Sym] = {}
    for sym, k in sorted(klines.items()):
        r = np.concatenate([[0.0], np.diff(np.log(k.close))])
        sigma_bps = np.sqrt(np.maximum(trailing_mean(r * r, s.cost_window_bars), 0.0)) * 1e4
        vol_1m = np.maximum(trailing_mean(k.volume, s.cost_window_bars), 1e-12)
        ft, fr = funding.of(sym)
        sv = SymbolVol(sym, mpp, s.garch_window, step, fitter=PrecomputedFitter(sym, fits, first))
        syms[sym] = _Sym(k, sv, 0, points[sym], s.impact_y * sigma_bps / np.sqrt(vol_1m), ft, fr)

    # one global event list: (time ms, kind 0 = funding / 1 = decision, symbol order, bar index)
    names = sorted(syms)
    ev_t, ev_kind, ev_sym, ev_i = [], [], [], []
    for j, sym in enumerate(names):
        st = syms[sym]
        idx = decision_index(st.k, interval)
        ev_t.append(st.k.open_time_ms[idx] + MINUTE_MS)
        ev_kind.append(np.ones(idx.size, dtype=np.int64))
        ev_sym.append(np.full(idx.size, j))
        ev_i.append(idx)
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
            *[f"shadow_{pid}" for pid, _ in policies],
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
    lookback = s.lookback_bars

    def equity() -> float:
        return cash + sum(p.size * last_price[n] for n, p in positions.items())

    prev_t = -1
    for n_ev, (t_ms, kind, j, i) in enumerate(zip(T, K, J, Ix, strict=True)):
        if t_ms != prev_t and prev_t >= 0:
            eq_t.append(prev_t * 1_000_000)
            eq_v.append(equity())
            eq_g.append(sum(abs(p.size) * last_price[n] for n, p in positions.items()))
        prev_t = t_ms
        sym = names[j]
        st = syms[sym]
        pos = positions[sym]
        if kind == 0:  # funding settlement at t_ms, before any fill at t_ms
            rate = float(st.funding_r[i])
            if pos.size != 0.0:
                paid = pos.size * last_price[sym] * rate
                cash -= paid
                funding_due[sym] += paid
                n_funding += 1
            continue
        c = st.k.close
        price = float(c[i])
        last_price[sym] = price
        bars_seen[sym] = i + 1
        # feed the vol core the bars closed by t_ms, cut at the walk-forward fold starts
        upto = i + 1
        sv = st.vol
        while st.fed < upto:
            nxt = upto
            for b in st.boundaries:
                if st.fed < b <= upto:
                    nxt = b
                    break
            if sv.garch is None and nxt < first:
                break  # still warming up: fed in one piece at the first fit
            lo = 0 if sv.garch is None else st.fed
            sv.add_bars(st.k.open_time_ms[lo:nxt].tolist(), c[lo:nxt].tolist())
            st.fed = nxt
        now_ns = t_ms * 1_000_000
        # rewards whose horizon has passed (live: signal · Δmid/mid in bps)
        while st.pending and st.pending[0][0] <= t_ms:
            _, pid, pctx, psig, pprice, row = st.pending.popleft()
            reward = psig * (price - pprice) / pprice * 1e4
            router.update(pid, reward, pctx)
            d["reward"][row] = reward
        if sv.garch is None:
            continue
        fc = sv.forecast(h)
        fi = int(np.searchsorted(st.funding_t, t_ms, side="right")) - 1
        fund = float(st.funding_r[fi]) if fi >= 0 else 0.0
        ctx = RouterContext(symbol=sym, venue=VENUE, sigmaHAR=fc.sigmaHAR, sigmaGARCH=fc.sigmaGARCH, funding=fund)
        choice = router.choose(ctx, now_ns)
        inputs = PolicyInputs(closes=c[max(0, upto - lookback) : upto], funding=fund)
        shadows = [fn(inputs) for _, fn in policies]
        signal = shadows[s.policies.index(choice.policyId)]
        snap = size_decision(ex, sym, choice.width, fc.sigmaGARCH, f"garch h={h}m", signal, price, now_ns)
        order = snap.target_size - pos.size
        side, qty = (1 if order > 0 else -1), abs(order)
        fill_price = cost = fee = math.nan
        blocked, reason = False, "no_order"
        if qty * price >= s.min_order_quote:
            cost = ImpactModel(float(st.impact_k[i]), 0.5).cost_bps(qty, s.spread_bps)
            est = price * (1 + side * cost / 1e4)
            pos_after = (pos.size + side * qty) * price
            gross = sum(abs(p.size) * last_price[n] for n, p in positions.items() if n != sym) + abs(pos_after)
            check = OrderCheck(VENUE, sym, side, qty, est, price, "LIVE", 0.0, pos_after, gross, equity(), now_ns)
            g = guards.check(check)
            blocked, reason = g.blocked, g.reason
            if not g.blocked:
                fill_price = float(st.k.open[i + 1]) * (1 + side * cost / 1e4)
                fee = qty * fill_price * s.fee_bps / 1e4
                pos.apply(side, qty, fill_price)
                cash -= side * qty * fill_price + fee
            else:
                cost = math.nan
        row = len(cols)
        if not blocked:
            st.pending.append((t_ms + horizon_ms, choice.policyId, ctx, signal, price, row))
        for name, v in (
            ("ts_event_ns", now_ns),
            ("symbol", sym),
            ("policy_id", choice.policyId),
            ("propensity", choice.propensity),
            ("score", choice.score),
            ("width", choice.width),
            ("signal", signal),
            ("target_size", snap.target_size),
            ("order_size", side * qty if not (blocked or math.isnan(fill_price)) else 0.0),
            ("fill_price", fill_price),
            ("cost_bps", cost),
            ("fee_quote", 0.0 if math.isnan(fee) else fee),
            ("funding_quote", funding_due[sym]),
            ("reward", math.nan),
            ("blocked", blocked),
            ("reason", reason),
            ("position_after", pos.size),
            ("price", price),
            ("equity_quote", equity()),
            ("ctx_regime", ctx.regime),
            ("ctx_sigmaHAR", fc.sigmaHAR),
            ("ctx_sigmaGARCH", fc.sigmaGARCH),
            ("ctx_funding", fund),
        ):
            d[name].append(v)
        for (pid, _), sig in zip(policies, shadows, strict=True):
            d[f"shadow_{pid}"].append(sig)
        funding_due[sym] = 0.0
        if progress is not None and n_ev % 2048 == 0:
            progress(sum(bars_seen.values()))
    if prev_t >= 0:
        eq_t.append(prev_t * 1_000_000)
        eq_v.append(equity())
        eq_g.append(sum(abs(p.size) * last_price[n] for n, p in positions.items()))
    if progress is not None:
        progress(bars_total)
    return BarResult(
        decisions=d,
        equity_ts_ns=eq_t,
        equity_quote=eq_v,
        gross_quote=eq_g,
        bars=bars_total,
        warmup_bars=first,
        fits=len(fits),
        funding_events=n_funding,
        cash_quote=cash,
        blocked=dict(guards.blocked),
    )
