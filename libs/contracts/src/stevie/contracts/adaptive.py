"""Adaptive-context contracts: regime state (bus + ``/api/regime/state``), feature gating
(``/api/features/ranking``, the gating state on the bus), the alpha registry and per-trade
attribution (``/api/alpha/*``), and the alpha-PnL / risk reports (``/api/report/*``).

HTTP field names follow MISSION.md (camelCase where it names camelCase fields). Times in the
HTTP answers are ms since the epoch in event time; bus messages carry ``ts_event_ns`` /
``ts_init_ns`` as every bus message does.
"""

from __future__ import annotations

import msgspec

# -- bus ---------------------------------------------------------------------------------


class RegimeState(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """One symbol's regime after a 1-minute bar (``stevie.quant.regime.RegimeDetector``).
    ``label`` ∈ ``stevie.contracts.rpc.REGIMES`` ("unknown" while warming up or when the BOCPD
    flag is off); ``run_length`` in bars; ``change_prob`` = P(a change point within the last
    ``window`` bars); ``since_ns`` = event time of the first bar of the current run;
    ``drift_bps`` / ``vol_bps`` = the run's mean log return and σ per bar (bps); ``ref_vol_bps``
    = the long-run EWMA σ per bar; ``trend_z`` = drift·√n/σ."""

    venue: str
    symbol: str
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
    enabled: bool
    ts_event_ns: int
    ts_init_ns: int


class GatingState(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """The features disabled by the last scheduled gating evaluation (zeroed in the router
    context and excluded from sizing) and the time of that evaluation."""

    disabled: list[str]
    evaluated_ns: int
    evaluations: int
    ts_event_ns: int
    ts_init_ns: int


class AlphaSignal(msgspec.Struct, frozen=True):
    """One alpha at one decision: ``signal`` ∈ [−1, 1] (+ = long) and its blend ``weight``."""

    id: str
    signal: float
    weight: float


# -- request / reply -----------------------------------------------------------------------


class RegimeStateRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    pass


class RegimeView(msgspec.Struct, frozen=True):
    venue: str
    label: str
    runLength: int
    changeProb: float
    volChangeProb: float
    since: int
    driftBps: float
    volBps: float
    refVolBps: float
    trendZ: float
    bars: int
    ts: int


class RegimeStates(msgspec.Struct, frozen=True, tag=True):
    """Per symbol: label, runLength (bars), changeProb, since (ms, event time of the run's first
    bar). ``enabled`` is the BOCPD flag; ``hazard`` the constant hazard per bar."""

    enabled: bool
    hazard: float
    window: int
    symbols: dict[str, RegimeView]


class FeatureRankingRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    pass


class FeatureRankView(msgspec.Struct, frozen=True):
    """``ic``: EW Spearman IC with the forward return over ``horizonS``; ``hsic``: normalised
    HSIC (RBF, median heuristic, biased estimator); ``drift`` ∈ [0, 1]; ``score`` ∈ [0, 1];
    ``since``: ms of the last change of ``disabled`` (null if never); ``pairs``: closed pairs used."""

    feature: str
    ic: float | None
    hsic: float | None
    drift: float
    score: float | None
    disabled: bool
    since: int | None
    pairs: int
    reason: str
    horizonS: float


class FeatureRanking(msgspec.Struct, frozen=True, tag=True):
    features: list[FeatureRankView]


class AlphaRegistryRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    pass


class AlphaView(msgspec.Struct, frozen=True):
    id: str
    desc: str
    weight: float
    weightInit: float
    lastSignal: float | None
    trades: int
    shapleyPnl: float


class AlphaRegistryList(msgspec.Struct, frozen=True, tag=True):
    alphas: list[AlphaView]


class AlphaAttributionRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    tradeId: str | int = "latest"


class AlphaShare(msgspec.Struct, frozen=True):
    id: str
    signal: float
    weight: float
    shapley: float
    loo: float


class AlphaAttribution(msgspec.Struct, frozen=True, tag=True):
    """One trade (decision) attributed: ``blend`` = Σ w·s, ``position`` = clip(blend, −1, 1),
    ``pnlPerUnit`` = notional·(mid(t+h) − mid(t))/mid(t) (quote), ``blendPnl`` =
    position·pnlPerUnit = Σ shapley (efficiency), ``tradePnl`` = the paper fill's PnL over the
    same horizon (side·filled·(mid(t+h) − fill price) − fee, quote; null when not filled)."""

    tradeId: str
    symbol: str
    venue: str
    policyId: str
    ts: int
    horizonS: float
    regime: str
    blend: float
    position: float
    pnlPerUnit: float
    blendPnl: float
    tradePnl: float | None
    alphas: list[AlphaShare]


class ReportRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    """``window``: e.g. 7d, 24h, 90m (event time, ending at the source's last event);
    ``source``: ``live`` or ``backtest:<run-id>``."""

    window: str = "7d"
    source: str = "live"


class AlphaPnl(msgspec.Struct, frozen=True):
    id: str
    shapleyPnl: float
    looPnl: float
    meanSignal: float
    weight: float
    trades: int


class AlphaPnlReport(msgspec.Struct, frozen=True, tag=True):
    """Per-alpha PnL contribution (quote) over the window: Σ of the per-trade Shapley values of
    the blend game (their sum is ``blendPnl``) and of the leave-one-out values."""

    window: str
    source: str
    fromTs: int | None
    toTs: int | None
    trades: int
    blendPnl: float
    tradePnl: float
    alphas: list[AlphaPnl]


class RiskReport(msgspec.Struct, frozen=True, tag=True):
    """Risk roll-up of the paper fills over the window (quote units unless named): realised vol
    and historical CVaR (95 %) of the per-trade returns (bps of notional); turnover = Σ |fill
    notional|; slippage vs the arrival mid (notional-weighted, bps, + = paid); fees."""

    window: str
    source: str
    fromTs: int | None
    toTs: int | None
    trades: int
    fills: int
    pnlQuote: float
    realizedVolBps: float | None
    cvar95Bps: float | None
    var95Bps: float | None
    turnoverQuote: float
    turnoverPerDayQuote: float
    slippageBps: float | None
    feesQuote: float
    bySymbol: dict[str, dict[str, float]]
