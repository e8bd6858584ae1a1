"""Evidence contracts: off-policy estimates, promotion, the model registry, calibration,
PBT lineage (request/reply with the evidence service, and the router's checkpoints).

JSON field names are the HTTP contract (camelCase). Rewards and PnL are in bps of the mid
per decision; Sharpe ratios are per decision (not annualised); times are ms since epoch.
"""

from __future__ import annotations

import msgspec

# -- router posterior (model registry payload) ----------------------------------------------


class ArmState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Sufficient statistics of one policy's Bayesian linear model: B = λI + Σxxᵀ (d×d),
    f = Σ r·x (d), n updates."""

    B: list[list[float]]
    f: list[float]
    n: int


class RouterPosterior(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The router's whole learnt state: feature names (order of x), prior precision λ,
    exploration scale v, and every policy's ``ArmState``."""

    features: list[str]
    lam: float
    v: float
    arms: dict[str, ArmState]


# -- off-policy evaluation ----------------------------------------------------------------


class CfSummaryRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    source: str = "live"  # live (audits) | backtest (backtest decisions)


class Estimate(msgspec.Struct, frozen=True):
    """Point estimate of the policy value (bps per decision) and its percentile-bootstrap
    (1 − α) interval."""

    value: float
    low: float
    high: float


class CfRow(msgspec.Struct, frozen=True):
    """One target policy in one regime. ``n`` logged decisions with a reward, ``ess`` the
    Kish effective sample size of the importance weights, ``replay`` the mean of the
    policy's counterfactual reward (shadow signal × mid move: known here because rewards are
    mark-to-market), ``warning`` when the numbers are too thin to trust ('' otherwise)."""

    policyId: str
    regime: str
    n: int
    ess: float
    ips: Estimate | None
    snips: Estimate | None
    dm: Estimate | None
    dr: Estimate | None
    sndr: Estimate | None
    replay: float | None
    warning: str


class CfSummary(msgspec.Struct, frozen=True, tag=True):
    source: str
    n: int
    horizonS: float
    rewardUnit: str
    alpha: float
    rows: list[CfRow]
    warnings: list[str]


# -- promotion ----------------------------------------------------------------------------


class PromotionStatusRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    source: str = "live"  # live (audits) | backtest | backtest:<run-id>


class SpaView(msgspec.Struct, frozen=True):
    lower: float
    consistent: float
    upper: float


class Challenger(msgspec.Struct, frozen=True):
    """A challenger against the champion on the same decisions: mean PnL (bps/decision),
    per-decision Sharpe, PSR(0), DSR (trials counted), SPA p-values of it alone vs the
    champion, and whether it would be promoted, with the reason."""

    id: str
    n: int
    meanPnlBps: float
    sharpe: float | None
    psr: float | None
    dsr: float | None
    spa: SpaView | None
    promote: bool
    reason: str


class PromotionStatus(msgspec.Struct, frozen=True, tag=True):
    """``champion`` = the live router (its realised per-decision PnL); challengers = every
    policy on the same decisions (counterfactual PnL from the shadow actions). ``spa`` is the
    joint test of all challengers. ``trials`` counts every backtest run, parameter set and
    PBT member registered, plus the challengers evaluated here."""

    champion: str
    championMeanPnlBps: float | None
    n: int
    challengers: list[Challenger]
    spa: SpaView | None
    trials: int
    decision: str
    reason: str
    pMax: float
    dsrMin: float
    warnings: list[str]
    source: str = "live"


# -- model registry -----------------------------------------------------------------------


class ModelsRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    pass


class ModelView(msgspec.Struct, frozen=True):
    """A registered model: router posterior + policy hyper-parameters + where it came from.
    ``updates`` = posterior updates per policy; ``metrics`` e.g. sharpe, cvarBps, ece."""

    id: str
    kind: str
    createdAt: int
    source: str
    seed: int | None
    data: str
    parent: str | None
    current: bool
    updates: dict[str, int]
    params: dict[str, float]
    metrics: dict[str, float]


class ModelList(msgspec.Struct, frozen=True, tag=True):
    models: list[ModelView]


class ModelIdRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    """``actor`` is set by the gateway (the operator token id), for the audit."""

    id: str
    actor: str = ""


class ModelChange(msgspec.Struct, frozen=True, tag=True):
    """A promote or rollback: the model now current and the one it replaced."""

    action: str
    model: ModelView
    previous: str | None
    ts: int


# -- calibration ----------------------------------------------------------------------------


class MetaQualityRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    """``source``: ``live`` (the audits), ``backtest`` (the newest stored run) or
    ``backtest:<run-id>``."""

    source: str = "live"


class ReliabilityBin(msgspec.Struct, frozen=True):
    meanPredicted: float
    observed: float
    count: int


class CalibrationRow(msgspec.Struct, frozen=True):
    policyId: str
    regime: str
    n: int
    brier: float | None
    ece: float | None


class MetaQuality(msgspec.Struct, frozen=True, tag=True):
    """Win-probability forecasts Φ(m/w) of the router against realised reward > 0, over the
    last ``windowS`` seconds of event time; nudges as ``POST /api/meta/apply-nudges`` would
    apply them (bounded by ``bounds``; they are applied from the live source only).
    ``source``: the data it was computed on (``live`` or ``backtest:<run-id>``)."""

    n: int
    windowS: float
    brier: float | None
    ece: float | None
    reliability: list[ReliabilityBin]
    byPolicy: list[CalibrationRow]
    temperature: float | None
    routerPriorDelta: float
    sizingCapDelta: float
    bounds: dict[str, float]
    warnings: list[str]
    source: str = "live"


class ApplyNudgesRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    """Apply the computed nudges; or explicit ones (each must lie within its bound)."""

    routerPriorDelta: float | None = None
    sizingCapDelta: float | None = None
    actor: str = ""


class NudgesApplied(msgspec.Struct, frozen=True, tag=True):
    """Applied relative changes: router exploration/prior scale v ← v·(1 + routerPriorDelta),
    sizing cap s_max ← s_max·(1 + sizingCapDelta); ``applied`` false when there was nothing
    to apply (too few forecasts and no explicit values)."""

    routerPriorDelta: float
    sizingCapDelta: float
    applied: bool
    ece: float | None
    n: int
    reason: str
    ts: int


# -- PBT --------------------------------------------------------------------------------------


class PbtLineageRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    limit: int = 500


class LineageRow(msgspec.Struct, frozen=True):
    runId: str
    id: str
    member: int
    parent: str | None
    generation: int
    params: dict[str, float]
    score: float | None
    windowStart: int
    windowStop: int
    exploited: bool
    ts: int


class PbtLineage(msgspec.Struct, frozen=True, tag=True):
    lineage: list[LineageRow]


# -- baseline-challenger guard ------------------------------------------------------------


class BaselineGuard(msgspec.Struct, frozen=True, tag=True):
    """Policies the router must replace by ``p_flat`` per context region (a regime label or
    ``all``): their DR lower confidence bound is below the baseline's on enough evidence
    (n and ESS above the minimums). ``reasons`` by ``region:policy``."""

    regions: dict[str, list[str]]
    reasons: dict[str, str]
    ts: int
