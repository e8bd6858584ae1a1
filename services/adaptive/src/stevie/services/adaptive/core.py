"""adaptive core (pure): per-symbol regime by BOCPD, gating of the microstructure features,
the alpha registry and per-trade attribution. No I/O, no clock: every method takes the event
times it needs, so ``stevie backtest`` can run the same object over recorded data.

- Regime: a ``RegimeDetector`` per symbol on the 1-minute closes of ``bar_venue`` (seeded with
  kline history). A bar that does not follow the previous one (a gap, the seam between the
  history and the replay) starts a new return chain: the price jump across it is not a
  return; bars older than the last one (a replay loop) are ignored. With the BOCPD flag off
  the detectors keep running but every label is ``unknown``.
- Gating: ``FeatureGate`` over the features of the router context that the feature stream
  carries, sampled every ``sample_interval_s`` of event time per venue+symbol (pooled), against
  the forward mid log return over ``horizon_s``.
- Attribution: each audit (decision) waits until its horizon closed on the same book, then its
  blend game v(S) = u·clip(Σ_{S} wᵢsᵢ, −1, 1), u = s_max·(mid(t+h) − mid(t))/mid(t), is split
  by exact Shapley values and leave-one-out (``stevie.quant.alpha``).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass

from stevie.contracts import Bar, MicroFeatures
from stevie.contracts.adaptive import (
    AlphaAttribution,
    AlphaRegistryList,
    AlphaShare,
    AlphaSignal,
    AlphaView,
    FeatureRanking,
    FeatureRankView,
    GatingState,
    RegimeState,
    RegimeStates,
    RegimeView,
)
from stevie.contracts.rpc import Audit, RouterContext
from stevie.quant.alpha import AlphaInputs, AlphaRegistry, attribute_trade, blend, position
from stevie.quant.gating import FeatureGate
from stevie.quant.regime import RegimeDetector
from stevie.services.adaptive.settings import AdaptiveSettings

GATED_FEATURES: tuple[str, ...] = ("obi", "ti", "spread_bps", "micro_vol", "cancel_rate")
"""Router-context features the gate ranks (names of ``/api/microstructure``)."""

MINUTE_NS = 60_000_000_000
MID_COLUMN = 6  # feature_window rows: [ts_s, obi, ti, spread_bps, micro_vol_bps, cancel_rate, mid]


def feature_values(f: MicroFeatures) -> list[float]:
    """The gated features of one MicroFeatures message, in GATED_FEATURES order."""
    return [f.obi, f.ti, f.spread_bps, f.micro_vol_bps, f.cancel_rate]


def alpha_inputs(ctx: RouterContext, mids: tuple[float, ...]) -> AlphaInputs:
    """AlphaInputs from a decision's router context and recent mids (None → 0, neutral)."""

    def v(x: float | None) -> float:
        return float(x) if x is not None and math.isfinite(x) else 0.0

    return AlphaInputs(
        obi=v(ctx.obi),
        ti=v(ctx.ti),
        micro_dev_bps=v(ctx.micro_dev_bps),
        spread_bps=v(ctx.spread_bps),
        sigma_garch=v(ctx.sigmaGARCH),
        sigma_har=v(ctx.sigmaHAR),
        rr25=v(ctx.rr25),
        funding=v(ctx.funding),
        mids=mids,
    )


def audit_mids(a: Audit) -> tuple[float, ...]:
    return tuple(row[MID_COLUMN] for row in a.feature_window if len(row) > MID_COLUMN and row[MID_COLUMN] > 0)


def audit_alphas(a: Audit, registry: AlphaRegistry) -> list[AlphaSignal]:
    """The alpha signals and weights the decision logged, else (older audits) recomputed from
    its context and feature window with the registry's weights."""
    if a.alphas:
        return list(a.alphas)
    sig = registry.signals(alpha_inputs(a.context, audit_mids(a)))
    return [AlphaSignal(al.id, s, registry.weights[al.id]) for al, s in zip(registry.alphas, sig, strict=True)]


@dataclass
class _Pending:
    trade_id: str
    venue: str
    symbol: str
    policy: str
    regime: str
    ts_ns: int
    due_ns: int
    mid: float
    s_max_quote: float
    alphas: list[AlphaSignal]
    fill_side: int
    fill_qty: float
    fill_price: float
    fee_quote: float


class AdaptiveCore:
    def __init__(self, s: AdaptiveSettings) -> None:
        self.s = s
        self.enabled = True
        self.regimes = {sym: self._detector() for sym in s.symbols}
        self._last_open: dict[str, int] = {}
        self.gate = FeatureGate(
            list(GATED_FEATURES),
            horizon_ns=int(s.horizon_s * 1e9),
            schedule_ns=int(s.schedule_s * 1e9),
            window=s.gating_window,
            halflife=s.gating_halflife,
            hsic_window=s.hsic_window,
            min_pairs=s.min_pairs,
        )
        self._last_sample: dict[tuple[str, str], int] = {}
        self.registry = AlphaRegistry()
        self.pending: dict[tuple[str, str], deque[_Pending]] = {}
        self.attributions: OrderedDict[str, AlphaAttribution] = OrderedDict()
        self.alpha_pnl: dict[str, float] = {a.id: 0.0 for a in self.registry.alphas}
        self.alpha_trades: dict[str, int] = {a.id: 0 for a in self.registry.alphas}
        self.last_signals: dict[str, float] = {}

    def _detector(self) -> RegimeDetector:
        return RegimeDetector(hazard=self.s.hazard, max_run=self.s.max_run, window=self.s.change_window)

    # -- regime ------------------------------------------------------------------------
    def seed(self, symbol: str, open_times_ms: list[int], closes: list[float]) -> int:
        """Feed kline history (oldest first) to a fresh detector for ``symbol`` and swap it in
        at the end (readers on another thread never see a half-fed one); returns bars used."""
        if symbol not in self.regimes:
            return 0
        det = self._detector()
        last: int | None = None
        n = 0
        for t, c in zip(open_times_ms, closes, strict=True):
            open_ns = t * 1_000_000
            if last is not None and open_ns <= last:
                continue
            if last is not None and open_ns != last + MINUTE_NS:
                det.break_chain()
            last = open_ns
            det.update(float(c), open_ns + MINUTE_NS)
            n += 1
        self.regimes[symbol] = det
        if last is not None:
            self._last_open[symbol] = last
        return n

    def _advance(self, symbol: str, open_ns: int, interval_ns: int) -> bool:
        """False for a bar already seen or older than the last one (a replay loop repeats event
        times: the same bars again are no new information); breaks the return chain on a gap."""
        last = self._last_open.get(symbol)
        if last is not None and open_ns <= last:
            return False
        if last is not None and open_ns != last + interval_ns:
            self.regimes[symbol].break_chain()
        self._last_open[symbol] = open_ns
        return True

    def on_bar(self, bar: Bar, init_ns: int) -> RegimeState | None:
        """A 1-minute bar of ``bar_venue``: update the symbol's regime and return its state."""
        det = self.regimes.get(bar.symbol)
        if det is None or bar.venue != self.s.bar_venue or not (bar.close > 0 and math.isfinite(bar.close)):
            return None
        if not self._advance(bar.symbol, bar.open_time_ns, bar.interval_ns):
            return None
        det.update(bar.close, bar.ts_event_ns)
        return self.state(bar.symbol, init_ns)

    def state(self, symbol: str, init_ns: int) -> RegimeState | None:
        det = self.regimes[symbol]
        v = det.value
        if v is None:
            return None
        return RegimeState(
            venue=self.s.bar_venue,
            symbol=symbol,
            label=v.label if self.enabled else "unknown",
            run_length=v.run_length,
            change_prob=v.change_prob,
            vol_change_prob=v.vol_change_prob,
            since_ns=v.since_ns,
            drift_bps=v.drift_bps,
            vol_bps=v.vol_bps,
            ref_vol_bps=v.ref_vol_bps,
            trend_z=v.trend_z,
            bars=v.bars,
            enabled=self.enabled,
            ts_event_ns=v.ts_ns,
            ts_init_ns=init_ns,
        )

    def label(self, symbol: str) -> str:
        """The symbol's current regime label ("unknown" when off, warming up or unknown symbol)."""
        det = self.regimes.get(symbol)
        v = det.value if det is not None else None
        return v.label if self.enabled and v is not None else "unknown"

    def regime_states(self) -> RegimeStates:
        out: dict[str, RegimeView] = {}
        for sym in self.s.symbols:
            st = self.state(sym, 0)
            if st is not None:
                out[sym] = RegimeView(
                    st.venue,
                    st.label,
                    st.run_length,
                    st.change_prob,
                    st.vol_change_prob,
                    st.since_ns // 1_000_000,
                    st.drift_bps,
                    st.vol_bps,
                    st.ref_vol_bps,
                    st.trend_z,
                    st.bars,
                    st.ts_event_ns // 1_000_000,
                )
        return RegimeStates(self.enabled, self.s.hazard, self.s.change_window, out)

    # -- gating and attribution (both follow the feature stream) --------------------------
    def on_features(self, f: MicroFeatures, init_ns: int) -> tuple[GatingState | None, list[AlphaAttribution]]:
        """Sample the gated features, run the scheduled evaluation when due, and attribute the
        trades of this book whose horizon closed. Returns (gating state if evaluated, new
        attributions)."""
        key = (f.venue, f.symbol)
        if f.venue not in self.s.feature_venues or not (f.mid > 0 and math.isfinite(f.mid)):
            return None, []
        series = f"{f.venue}:{f.symbol}"
        last = self._last_sample.get(key)
        if last is not None and f.ts_event_ns < last:  # venue session restart: new event clock
            self.gate.reset_series(series)
            self.pending.pop(key, None)
            last = None
        if last is None or f.ts_event_ns - last >= self.s.sample_interval_s * 1e9:
            self._last_sample[key] = f.ts_event_ns
            self.gate.observe(f.ts_event_ns, feature_values(f), f.mid, series)
        gating = None
        if self.gate.maybe_evaluate(f.ts_event_ns):
            gating = GatingState(
                disabled=self.gate.disabled(),
                evaluated_ns=f.ts_event_ns,
                evaluations=self.gate.evaluations,
                ts_event_ns=f.ts_event_ns,
                ts_init_ns=init_ns,
            )
        return gating, self._resolve(key, f.ts_event_ns, f.mid)

    def ranking(self) -> FeatureRanking:
        return FeatureRanking(
            [
                FeatureRankView(
                    s.feature,
                    s.ic,
                    s.hsic,
                    s.drift,
                    s.score,
                    s.disabled,
                    s.since_ns // 1_000_000 if s.since_ns is not None else None,
                    s.pairs,
                    s.reason,
                    self.s.horizon_s,
                )
                for s in self.gate.ranking()
            ]
        )

    def on_audit(self, a: Audit) -> None:
        """Queue a decision for attribution once its horizon has closed."""
        mids = audit_mids(a)
        if not mids:
            return
        alphas = audit_alphas(a, self.registry)
        self.last_signals = {x.id: x.signal for x in alphas}
        fill = a.fill
        filled = fill is not None and fill.filled > 0
        p = _Pending(
            trade_id=a.event_id,
            venue=a.venue,
            symbol=a.symbol,
            policy=a.policy_id,
            regime=a.context.regime,
            ts_ns=a.ts_event_ns,
            due_ns=a.ts_event_ns + int(self.s.horizon_s * 1e9),
            mid=mids[-1],
            s_max_quote=a.sizing.s_max_quote,
            alphas=alphas,
            fill_side=fill.side if fill is not None and filled else 0,
            fill_qty=fill.filled if fill is not None and filled else 0.0,
            fill_price=fill.avg_price if fill is not None and filled else 0.0,
            fee_quote=fill.fee_quote if fill is not None and filled else 0.0,
        )
        q = self.pending.setdefault((a.venue, a.symbol), deque(maxlen=10_000))
        q.append(p)

    def _resolve(self, key: tuple[str, str], now_ns: int, mid: float) -> list[AlphaAttribution]:
        q = self.pending.get(key)
        out: list[AlphaAttribution] = []
        while q and q[0].due_ns <= now_ns:
            out.append(self._attribute(q.popleft(), mid))
        return out

    def _attribute(self, p: _Pending, mid_h: float) -> AlphaAttribution:
        ids = [x.id for x in p.alphas]
        sig = [x.signal for x in p.alphas]
        w = [x.weight for x in p.alphas]
        u = p.s_max_quote * (mid_h - p.mid) / p.mid
        shares = attribute_trade(ids, sig, w, u)
        b = blend(sig, w)
        trade_pnl = p.fill_side * p.fill_qty * (mid_h - p.fill_price) - p.fee_quote if p.fill_qty > 0 else None
        att = AlphaAttribution(
            tradeId=p.trade_id,
            symbol=p.symbol,
            venue=p.venue,
            policyId=p.policy,
            ts=p.ts_ns // 1_000_000,
            horizonS=self.s.horizon_s,
            regime=p.regime,
            blend=b,
            position=position(b),
            pnlPerUnit=u,
            blendPnl=u * position(b),
            tradePnl=trade_pnl,
            alphas=[AlphaShare(x.id, x.signal, x.weight, x.shapley, x.loo) for x in shares],
        )
        self.attributions[p.trade_id] = att
        while len(self.attributions) > self.s.attribution_keep:
            self.attributions.popitem(last=False)
        for x in shares:
            if x.id in self.alpha_pnl:
                self.alpha_pnl[x.id] += x.shapley
                self.alpha_trades[x.id] += 1
        return att

    def attribution(self, trade_id: str) -> AlphaAttribution:
        """The attribution of ``trade_id`` (or the latest for "latest"). KeyError when unknown
        (or not attributed yet: its horizon has not closed)."""
        if trade_id == "latest":
            if not self.attributions:
                raise KeyError("no trade attributed yet (a decision's horizon has not closed)")
            return next(reversed(self.attributions.values()))
        if trade_id not in self.attributions:
            raise KeyError(f"unknown tradeId {trade_id!r} (or its horizon has not closed yet)")
        return self.attributions[trade_id]

    def registry_view(self) -> AlphaRegistryList:
        return AlphaRegistryList(
            [
                AlphaView(
                    a.id,
                    a.desc,
                    self.registry.weights[a.id],
                    a.weight_init,
                    self.last_signals.get(a.id),
                    self.alpha_trades[a.id],
                    self.alpha_pnl[a.id],
                )
                for a in self.registry.alphas
            ]
        )
