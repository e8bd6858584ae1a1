"""Request/reply contracts between the gateway and the services (JSON field names are the
HTTP contract of MISSION.md, hence camelCase where it says so).

Every reply is either the typed answer or an ``RpcError`` (tagged union), so a caller always
decodes to a Struct and maps ``RpcError.status`` to an HTTP status.
"""

from __future__ import annotations

import msgspec

from stevie.contracts.adaptive import AlphaSignal
from stevie.contracts.venues import VenueRoute


class RpcError(msgspec.Struct, frozen=True, tag=True):
    """A request the service could not answer: ``status`` is the HTTP status to return."""

    status: int
    error: str
    detail: str


class VolForecastRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    symbol: str
    h: int = 60


class VolForecast(msgspec.Struct, frozen=True, tag=True):
    """σ of the log return over ``h`` minutes from each model (not annualised)."""

    symbol: str
    h: int
    sigmaHAR: float
    sigmaGARCH: float
    bars: int
    lastBarTs: int


MAX_CLOSES = 1500
"""The most 1-minute closes one ``vol.closes`` answer carries (Binance's klines page)."""


class ClosesRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    """The newest ``n`` (1 ≤ n ≤ ``MAX_CLOSES``) 1-minute closes of ``symbol`` the vol service holds."""

    symbol: str
    n: int = 512


class Closes(msgspec.Struct, frozen=True, tag=True):
    """1-minute bars, oldest first: ``openTimeMs[i]`` (event time, ms) and ``close[i]`` (quote
    units), the history the vol service loaded and screened plus the live bars since."""

    symbol: str
    openTimeMs: list[int]
    close: list[float]


class ChainPoint(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One option. Moneyness form: ``k`` (= K/F), ``tenor`` ('7d'), ``type``, ``iv`` (decimal).
    Full-chain form (Deribit-like): ``strike``, ``expiryMs``, ``tsMs``, ``underlying``
    (forward, quote units), ``type``, and ``iv`` (decimal) or ``markIv`` (percent)."""

    type: str
    iv: float | None = None
    k: float | None = None
    tenor: str | None = None
    strike: float | None = None
    expiryMs: int | None = None
    tsMs: int | None = None
    underlying: float | None = None
    markIv: float | None = None


class OptionsChainRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    symbol: str
    chain: list[ChainPoint]


class SmileRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    symbol: str


class TenorSmileView(msgspec.Struct, frozen=True):
    tenorYears: float
    atm_iv: float | None
    rr25: float | None
    fly25: float | None
    reason: str


class Smile(msgspec.Struct, frozen=True, tag=True):
    """Smile metrics of the last stored chain (IV decimals); ``reasons`` explains each null."""

    symbol: str
    rr25: float | None
    fly25: float | None
    atm_iv: float | None
    iv_term_slope: float | None
    skew_z: float | None
    tenors: list[TenorSmileView]
    reasons: dict[str, str]
    points: int
    history: int


class PortfolioRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    symbols: list[str]
    cvarBudget: float
    volTarget: float | None = None
    alpha: float = 0.95


class PortfolioResult(msgspec.Struct, frozen=True, tag=True):
    """Weights (fraction of capital, rest in cash), per-symbol CVaR and Kelly-lite advisory,
    portfolio vol and CVaR — all per 1-minute period of the history used."""

    symbols: list[str]
    weights: dict[str, float]
    cvar: dict[str, float]
    kelly: dict[str, float]
    expectedReturn: float
    portfolioVol: float
    portfolioCvar: float
    bars: int
    status: str


# -- budgeter ---------------------------------------------------------------------------


class GrantRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    """Ask to spend ``weight`` of ``provider``'s request budget; ``alternatives`` are other
    providers that can serve the same data (the cheapest viable one is used if needed).
    ``low`` priority (bulk history loads) may not use the reserve kept for ``high`` (book
    snapshots after a gap)."""

    provider: str
    weight: int = 1
    caller: str = ""
    alternatives: list[str] = []
    priority: str = "high"


class Grant(msgspec.Struct, frozen=True, tag=True):
    """decision: ``grant`` (go, on ``provider``), ``defer`` (retry after ``retryAfterMs``) or
    ``deny`` (never fits: ``reason``)."""

    decision: str
    provider: str
    retryAfterMs: int = 0
    reason: str = ""


class BudgetStatusRequest(msgspec.Struct, frozen=True, tag=True):
    pass


class ProviderBudget(msgspec.Struct, frozen=True):
    provider: str
    calls: int
    weightUsed: int
    weightLimit: int
    rateRemaining: int
    cost: float
    deferred: int
    denied: int
    resetAt: int  # ms since epoch (wall)


class BudgetStatus(msgspec.Struct, frozen=True, tag=True):
    providers: list[ProviderBudget]


# -- risk guards ------------------------------------------------------------------------


class OrderCheck(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    """A proposed paper order with the exposure it would leave. side +1 buy / −1 sell; size in
    base units; price, mid and notionals in quote units; book_age_ms since the last update."""

    venue: str
    symbol: str
    side: int
    size: float
    price: float
    mid: float
    book_state: str
    book_age_ms: float
    position_after_quote: float
    gross_after_quote: float
    equity_quote: float
    ts_ns: int


class GuardDecision(msgspec.Struct, frozen=True, tag=True):
    """``blocked`` with the first guard that failed as ``reason`` (empty when allowed)."""

    blocked: bool
    reason: str = ""


class GuardsStateRequest(msgspec.Struct, frozen=True, tag=True):
    pass


class KillRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    on: bool


class GuardsState(msgspec.Struct, frozen=True, tag=True):
    limits: dict[str, float]
    usage: dict[str, float]
    ordersLastMin: dict[str, int]
    breaker: dict[str, float | bool | None]
    killSwitch: bool
    blocked: dict[str, int]


# -- router -----------------------------------------------------------------------------


REGIMES: tuple[str, ...] = ("unknown", "bull", "bear", "chop", "high_vol")
"""Regime labels the router accepts (one-hot encoded; ``unknown`` = all zeros)."""


class RouterContext(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The decision context, in the names and units the other routes answer, so the output of
    ``/api/microstructure/:symbol`` and ``/api/vol/forecast/:symbol`` can be pasted in as is.
    Missing (or null) values are neutral (0).

    - ``regime``: a label of ``REGIMES`` (``/api/regime/state``).
    - ``sigmaHAR``, ``sigmaGARCH``: σ of the log return over the forecast horizon (return
      units, e.g. 0.004), as ``/api/vol/forecast`` answers them.
    - ``obi``, ``ti`` ∈ [−1, 1]; ``spread_bps`` and ``micro_vol`` in bps; ``cancel_rate`` in base
      units/s — as ``/api/microstructure`` answers them. ``micro_dev_bps``: micro-price minus mid.
    - ``rr25``, ``fly25`` (IV decimals), ``iv_term_slope`` (IV per year), ``skew_z``
      (``/api/options/smile``); ``funding`` (perpetual funding rate per 8 h, fraction);
      ``basis`` (perp/spot basis, fraction); ``sentiment`` ∈ [−1, 1].
    - ``venue``, ``ts``, ``h``, ``bars``, ``lastBarTs``: accepted so route outputs paste as is;
      not used by the router.
    """

    symbol: str = ""
    regime: str = "unknown"
    sigmaHAR: float | None = None
    sigmaGARCH: float | None = None
    obi: float | None = None
    ti: float | None = None
    spread_bps: float | None = None
    micro_vol: float | None = None
    cancel_rate: float | None = None
    micro_dev_bps: float | None = None
    rr25: float | None = None
    fly25: float | None = None
    iv_term_slope: float | None = None
    skew_z: float | None = None
    funding: float | None = None
    basis: float | None = None
    sentiment: float | None = None
    venue: str = ""
    ts: int | None = None
    h: int | None = None
    bars: int | None = None
    lastBarTs: int | None = None
    event_pc: list[float] | None = None
    """Events naming ``symbol`` (``/api/events/embeddings``): the newest one not after the
    decision, projected by the events service's frozen 4-dim PCA and multiplied by its decay
    weight (``stevie.quant.events.latest_event_dims``)."""
    event_decay: float | None = None
    """That event's weight exp(−ln 2 · minutes since / 60) ∈ [0, 1]."""
    event_minutes_since: float | None = None
    """Minutes from that event to the decision (None: no event known)."""

    def __post_init__(self) -> None:
        if self.regime not in REGIMES:
            raise ValueError(f"unknown regime {self.regime!r}; accepted: {', '.join(REGIMES)}")

    def value(self, name: str) -> float:
        """A numeric field, 0.0 when missing."""
        v = getattr(self, name)
        return 0.0 if v is None else float(v)


class ChooseRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    context: RouterContext


class Choice(msgspec.Struct, frozen=True, tag=True):
    """Chosen policy; ``propensity`` = P(TS picks it | context) (exact quadrature); ``width`` =
    posterior uncertainty of its score; ``sampled`` = every policy's sampled score."""

    policyId: str
    score: float
    explorationBonus: float
    propensity: float
    width: float
    sampled: dict[str, float]
    features: list[float]
    fallback: str = ""
    """Non-empty when the baseline-challenger guard replaced the sampled policy by ``p_flat``
    (which one, and the evidence: its DR lower bound vs the baseline's); ``propensity`` is then
    the baseline's under that rule."""
    stack: str = ""
    """The router stack (``blue`` or ``green``) that made the choice ('' = not a deployment stack)."""


class UpdateRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    policyId: str
    reward: float
    context: RouterContext


#: rewards one ``DecideRequest`` may carry (more are sent as ``router.update`` calls)
MAX_CARRIED_REWARDS = 256


class DecideRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    """``router.decide`` (execution's decision clock, not the public API): the decision's
    context and the rewards due at its event time for that stack, applied in order before
    the choice — one round trip instead of one ``router.update`` per reward and then
    ``router.decide``. At most ``MAX_CARRIED_REWARDS``."""

    context: RouterContext
    rewards: list[UpdateRequest] = []

    def __post_init__(self) -> None:
        if len(self.rewards) > MAX_CARRIED_REWARDS:
            raise ValueError(f"at most {MAX_CARRIED_REWARDS} rewards per decision, got {len(self.rewards)}")


class PosteriorSummary(msgspec.Struct, frozen=True, tag=True):
    policyId: str
    n: int
    mean: list[float]
    updates: dict[str, int]


class SnapshotRequest(msgspec.Struct, frozen=True, tag=True):
    pass


class RouterSnapshot(msgspec.Struct, frozen=True, tag=True):
    lastChoice: Choice | None
    featureNames: list[str]
    updates: dict[str, int]
    decisions: int
    decisionsLastMin: int
    modelId: str = ""
    """The registry model the posterior continues ('' = the prior)."""
    exploration: float = 0.0
    """The exploration (prior) scale v now (calibration nudges change it)."""


# -- execution --------------------------------------------------------------------------


class SizingSnapshot(msgspec.Struct, frozen=True, tag=True):
    """How a decision was sized: s = s_max·sigmoid(−w/w*), capped by vol targeting
    (capital·σ_target/σ_forecast over the horizon). Notionals in quote units."""

    symbol: str
    s_max_quote: float
    w: float
    w_star: float
    uncertainty_notional_quote: float
    sigma_forecast: float
    sigma_source: str
    vol_cap_notional_quote: float
    target_notional_quote: float
    signal: int
    target_size: float
    ts: int


class FillView(msgspec.Struct, frozen=True):
    side: int
    requested: float
    filled: float
    avg_price: float
    fee_quote: float
    slippage_bps: float


class ExecutionRecord(msgspec.Struct, frozen=True, tag=True):
    """One decision's outcome: ``blocked`` with ``reason`` when a guard stopped it."""

    eventId: str
    symbol: str
    venue: str
    policyId: str
    requestedSize: float
    finalSize: float
    fillPrice: float | None
    ts: int
    blocked: bool = False
    reason: str = ""
    position: float = 0.0


class Audit(msgspec.Struct, frozen=True, tag=True):
    """Everything a decision used and did; ``provenance`` = SHA-256 (hex) of the canonical
    (sorted-key msgspec JSON) encoding of ``ProvenanceInput(feature_window, context, decision)``."""

    event_id: str
    ts_event_ns: int
    ts_init_ns: int
    venue: str
    symbol: str
    policy_id: str
    feature_window: list[list[float]]
    context: RouterContext
    choice: Choice
    sizing: SizingSnapshot
    guard: GuardDecision
    fill: FillView | None
    position_after: float
    provenance: str
    shadow: dict[str, int] = {}
    """Shadow actions: the signal (−1/0/+1) every policy would have taken at this decision
    (off-policy evaluation needs the counterfactual of each policy)."""
    alphas: list[AlphaSignal] = []
    """Every registered alpha's signal and blend weight at this decision
    (``stevie.quant.alpha``; attribution in ``/api/alpha/attribution``)."""
    route: VenueRoute | None = None
    """Smart order routing of the order: chosen and filled venue, expected cost, reasons."""


class ProvenanceInput(msgspec.Struct, frozen=True):
    feature_window: list[list[float]]
    context: RouterContext
    decision: Choice


class PlanRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    symbol: str
    venue: str = "binance"


class SimulateRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    symbol: str
    size: float
    venue: str = "binance"
    urgency: float = 0.5


class SimulateResult(msgspec.Struct, frozen=True, tag=True):
    """A plan and its cost preview (bps): walk-the-book cost now and the impact-model cost of
    the planned slices."""

    symbol: str
    venue: str
    size: float
    style: str
    slices: list[float]
    intervalS: float
    costBps: float
    immediateSlippageBps: float
    spreadBps: float
    reason: str


class PaperOrder(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    symbol: str
    side: str
    size: float
    venue: str = "binance"


class SizingLastRequest(msgspec.Struct, frozen=True, tag=True):
    pass


class PositionsRequest(msgspec.Struct, frozen=True, tag=True):
    pass


class PositionView(msgspec.Struct, frozen=True):
    venue: str
    symbol: str
    size: float
    avgPrice: float
    mark: float
    unrealizedQuote: float
    realizedQuote: float


class Positions(msgspec.Struct, frozen=True, tag=True):
    positions: list[PositionView]
    cashQuote: float
    equityQuote: float
    blockedLastMin: int


class AuditLatestRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    limit: int = 5


class AuditList(msgspec.Struct, frozen=True, tag=True):
    audits: list[Audit]
