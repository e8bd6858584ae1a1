"""Operations contracts: feature flags, chaos injection, data quality, blue/green deploy and
the canary ladder (HTTP field names are the gateway's contract, camelCase like MISSION.md).

Times: ``*Ms`` fields are milliseconds since the Unix epoch; ``ts_*_ns`` nanoseconds.
"""

from __future__ import annotations

import msgspec

FlagValue = bool | str


# -- feature flags ---------------------------------------------------------------------------
class FlagView(msgspec.Struct, frozen=True):
    """One flag: current ``value``, its ``default`` (from the env or the built-in default),
    ``source`` (``default``, ``env`` or ``override``), the allowed values, and the last change
    (``changedAtMs``, ``changedBy`` = operator token id, ``previous`` value) if any."""

    name: str
    value: FlagValue
    default: FlagValue
    source: str
    allowed: list[FlagValue]
    description: str
    changedAtMs: int | None = None
    changedBy: str | None = None
    previous: FlagValue | None = None


class FlagsGetRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    pass


class FlagsSetRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    """``values``: flag name → new value (``null`` removes the override: back to the default).
    ``actor``: the operator token id (set by the gateway, never by the body)."""

    values: dict[str, FlagValue | None]
    actor: str = ""


class FlagsState(msgspec.Struct, frozen=True, tag=True):
    """Every flag (``flags``), the plain name → value map (``values``), and ``version`` (bumped
    on every change)."""

    flags: dict[str, FlagView]
    values: dict[str, FlagValue]
    version: int


class FlagsUpdate(msgspec.Struct, frozen=True, tag=True):
    """Pushed on ``subjects.flags`` on every change (and re-sent every few seconds)."""

    values: dict[str, FlagValue]
    version: int
    ts_event_ns: int
    ts_init_ns: int


# -- chaos -----------------------------------------------------------------------------------
class ChaosRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``type``: ``ws_flap`` | ``api_timeout`` | ``l2_gap`` | ``depth_spike``. ``venue`` /
    ``symbol``: restrict the fault (default: every venue / symbol). ``durationS``: seconds of
    replay event time the fault lasts (``null`` = one shot)."""

    type: str
    venue: str | None = None
    symbol: str | None = None
    durationS: float | None = None
    actor: str = ""


class ChaosResult(msgspec.Struct, frozen=True):
    """What was injected: ``id``, ``type``, the venues and symbols hit, ``injectedAtMs`` and
    ``endsAtMs`` in replay event time (a one-shot fault ends when it has fired once:
    ``oneShot``), and a human ``detail``."""

    id: int
    type: str
    venues: list[str]
    symbols: list[str]
    oneShot: bool
    injectedAtMs: int
    endsAtMs: int | None
    detail: str


# -- data quality ----------------------------------------------------------------------------
class DqExample(msgspec.Struct, frozen=True):
    """One quarantined item: where it came from, why, and whether a replacement was used."""

    source: str
    venue: str
    symbol: str
    tsMs: int
    reason: str
    detail: str
    replaced: bool
    quarantinedAtMs: int


class DqReasonStats(msgspec.Struct, frozen=True):
    quarantined: float
    replaced: float
    counted: float


class DqSourceStats(msgspec.Struct, frozen=True):
    """Per source (``vol_history``, ``live_bars``, ``l2``, ``backtest``): items ``checked`` and,
    per reason, how many were quarantined / replaced / only counted (``relaxed`` mode)."""

    checked: float
    reasons: dict[str, DqReasonStats]


class DqStatsRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    limit: int = 10


class DqStats(msgspec.Struct, frozen=True, tag=True):
    """``mode`` (the DataQuality flag), per-source stats, book resyncs by reason (the L2
    guards and chaos faults show there), and the last quarantined examples."""

    mode: str
    sources: dict[str, DqSourceStats]
    resyncs: dict[str, float]
    quarantineRows: int
    lastExamples: list[DqExample]


# -- blue/green deploy and canary ladder -----------------------------------------------------
class SloView(msgspec.Struct, frozen=True):
    """One stack's service-level figures over the evaluation window: ``p95LatencyMs`` of
    ``choose``, ``errorRate`` (failed / all calls), ``qosGap`` (|mean predicted score − mean
    realised reward|), ``samples``; ``healthy`` against the thresholds."""

    p95LatencyMs: float | None
    errorRate: float | None
    qosGap: float | None
    samples: int
    healthy: bool


class Transition(msgspec.Struct, frozen=True):
    fromState: str
    toState: str
    atMs: int
    reason: str
    actor: str


class DeployStatusRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    pass


class DeployStatus(msgspec.Struct, frozen=True, tag=True):
    """Blue = current model, green = candidate. ``state``: candidate → canary → partial →
    active (or ``rolled_back``); ``greenShare`` of decisions sent to green; per-stack SLOs;
    ``healthySinceMs``: start of the current healthy streak; transitions, newest last."""

    state: str
    blue: str
    green: str | None
    greenShare: float
    slo: dict[str, SloView]
    healthySinceMs: int | None
    windowS: float
    transitions: list[Transition]
    stacks: dict[str, RouterStack] = {}
    """The router stacks as they announce themselves (colour → model, process)."""


class DeployAction(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    """Operator action on the cutover: ``start`` (candidate → canary) or ``rollback``."""

    action: str
    reason: str = ""
    actor: str = ""


class DeployShare(msgspec.Struct, frozen=True, tag=True):
    """The cutover's share of decisions for green, published by control every second and on
    each transition (``subjects.deploy_share``); execution splits its decisions by it."""

    state: str
    greenShare: float
    green: str | None
    ts_ns: int


class RouterStack(msgspec.Struct, frozen=True, tag=True):
    """A router stack announcing itself (``subjects.deploy_stack``, every 2 s): its colour, the
    registry model it serves (``modelId``; '' = the prior), the model it started from
    (``loadedFrom``), and whether it is a candidate (green serving a model that is not current)."""

    colour: str
    modelId: str
    loadedFrom: str
    candidate: bool
    pid: int
    ts_ns: int


class SloSample(msgspec.Struct, frozen=True, array_like=True):
    """One measurement on a router stack by its caller: a ``decide`` call (``latencyMs``,
    ``error``) or, once the horizon passed, the realised reward of that decision next to its
    predicted score (``latencyMs`` None). Scores and rewards in bps."""

    ts_ns: int
    latencyMs: float | None
    error: bool
    predicted: float | None = None
    realised: float | None = None


class StackSlo(msgspec.Struct, frozen=True, tag=True):
    """A batch of ``SloSample`` of one stack (``colour``) from execution (``subjects.deploy_slo``)."""

    colour: str
    samples: list[SloSample]


class CanaryGate(msgspec.Struct, frozen=True):
    """One gate of the current step: its ``value`` against ``threshold`` (``op`` is ``>=``,
    ``>``, ``<`` or ``==``); ``passed``."""

    name: str
    value: float | None
    op: str
    threshold: float
    passed: bool


class CanaryStateRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    pass


class CanaryAction(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    """``action``: ``hold`` (stop advancing), ``resume`` (let the gates advance again) or
    ``demote`` (one step down). Nothing skips a gate."""

    action: str
    reason: str = ""
    actor: str = ""


class CanaryState(msgspec.Struct, frozen=True, tag=True):
    """Canary ladder (paper only): ``state`` disabled → canary → partial → live, ``paperWeight``
    of that state, ``held``, the gates to the next step and which holds (``blockedBy``)."""

    state: str
    paperWeight: float
    held: bool
    next: str | None
    gates: list[CanaryGate]
    blockedBy: list[str]
    transitions: list[Transition]
    paperOnly: bool = True
