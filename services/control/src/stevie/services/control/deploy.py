"""Blue/green router deployment with canary cutover, and the canary ladder (pure cores).

Both are state machines over event time (``now_ns``); they never read a clock and do no I/O.
The shell feeds them measurements and persists the transitions they return (audited).

**Cutover** (blue = current model, green = candidate)::

    candidate --start--> canary (1 %) --healthy window--> partial (10 %) --> partial (25 %)
        --healthy window--> active (green becomes blue, 100 %)
    canary/partial --SLO breach (``breach_evals`` consecutive unhealthy evaluations)--> rolled_back (0 %)

Healthy = the green stack's window has ≥ ``min_samples`` calls, p95 latency of ``choose`` ≤
``max_p95_ms``, error rate ≤ ``max_error_rate`` and router QoS gap |mean predicted score −
mean realised reward| ≤ ``max_qos_gap``. A step advances only after ``window_s`` of
uninterrupted healthy evaluations *since entering the step* (an evaluation without enough
samples neither extends nor breaks the streak's requirement of fresh evidence: it restarts
nothing but cannot complete a window either). No flapping: a rollback is terminal until an
operator starts a new candidate, and any unhealthy evaluation restarts the streak.

**Canary ladder** (live-readiness, paper only — nothing is ever sent to an exchange)::

    disabled (0 %) -> canary (1 %) -> partial (25 %) -> live (100 %)

One step at a time, each gated by: fills since entering the step ≥ ``min_fills``, paper PnL
since entering > ``min_pnl_quote``, CVaR(α) of the per-interval PnL < ``max_cvar_quote``,
the drawdown breaker clear, and ``min_dwell_s`` in the step. A breaker trip or a CVaR breach
demotes one step automatically. Operators may ``hold``, ``resume`` or ``demote``; nothing
skips a gate.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from stevie.contracts.ops import CanaryGate, RouterStack, SloView, Transition
from stevie.quant.errors import QuantInputError

S = 1_000_000_000
MS = 1_000_000


# -- SLO window ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """One measurement on a stack: a ``decide`` call (time, latency in ms, failed?) or — with
    ``latency_ms`` None — a decision's predicted score next to its realised reward (bps), which
    is known only a horizon later (``SloSample`` from execution)."""

    ts_ns: int
    latency_ms: float | None
    error: bool
    predicted: float | None = None
    realised: float | None = None


@dataclass(frozen=True)
class SloThresholds:
    max_p95_ms: float = 50.0
    max_error_rate: float = 0.02
    max_qos_gap: float = 0.05
    min_samples: int = 20


class SloWindow:
    """Calls within the last ``window_s`` → ``SloView``. ``samples`` = calls with a latency; p95
    is numpy's linear percentile of their latencies, the error rate their failed share; the QoS
    gap |mean predicted − mean realised| is over the measurements that have both, and only
    counts (for health) once there are ``min_samples`` of them (one noisy reward is no verdict)."""

    def __init__(self, window_s: float, thresholds: SloThresholds) -> None:
        self.window_ns = int(window_s * S)
        self.t = thresholds
        self.calls: deque[Call] = deque()

    def add(self, call: Call) -> None:
        self.calls.append(call)

    def view(self, now_ns: int) -> SloView:
        while self.calls and self.calls[0].ts_ns <= now_ns - self.window_ns:
            self.calls.popleft()
        timed = [c for c in self.calls if c.latency_ms is not None]
        n = len(timed)
        pairs = [(c.predicted, c.realised) for c in self.calls if c.predicted is not None and c.realised is not None]
        gap = abs(float(np.mean([p for p, _ in pairs])) - float(np.mean([r for _, r in pairs]))) if pairs else None
        if n == 0:
            return SloView(None, None, None if gap is None else round(gap, 6), 0, False)
        p95 = float(np.percentile([c.latency_ms for c in timed], 95))
        err = sum(c.error for c in timed) / n
        healthy = (
            n >= self.t.min_samples
            and p95 <= self.t.max_p95_ms
            and err <= self.t.max_error_rate
            and (gap is None or len(pairs) < self.t.min_samples or gap <= self.t.max_qos_gap)
        )
        return SloView(round(p95, 3), round(err, 6), None if gap is None else round(gap, 6), n, healthy)


def breached(v: SloView, t: SloThresholds) -> bool:
    """Unhealthy with enough evidence (too few samples is not a breach)."""
    return v.samples >= t.min_samples and not v.healthy


# -- blue/green cutover --------------------------------------------------------------------
@dataclass(frozen=True)
class CutoverConfig:
    canary_share: float = 0.01
    partial_shares: tuple[float, ...] = (0.10, 0.25)
    window_s: float = 300.0
    breach_evals: int = 2
    thresholds: SloThresholds = field(default_factory=SloThresholds)

    def __post_init__(self) -> None:
        shares = (self.canary_share, *self.partial_shares)
        if not all(0 < a < b <= 1 for a, b in zip(shares, (*shares[1:], 1.0), strict=True)):
            raise QuantInputError(f"shares must increase strictly within (0, 1), got {shares}")
        if self.window_s <= 0 or self.breach_evals < 1:
            raise QuantInputError("window_s must be > 0 and breach_evals ≥ 1")


class Cutover:
    """The blue/green state machine. ``state`` ∈ candidate, canary, partial, active,
    rolled_back; ``green_share`` is the share of decisions execution sends to green."""

    def __init__(self, blue: str, cfg: CutoverConfig) -> None:
        self.cfg, self.blue = cfg, blue
        self.green: str | None = None
        self.state = "active"  # blue alone, nothing to cut over
        self.step = 0  # index into the ladder of shares while canary/partial
        self.entered_ns = 0
        self.healthy_since_ns: int | None = None
        self.unhealthy_run = 0
        self.transitions: list[Transition] = []

    @property
    def shares(self) -> tuple[float, ...]:
        return (self.cfg.canary_share, *self.cfg.partial_shares)

    @property
    def green_share(self) -> float:
        if self.state in ("canary", "partial"):
            return self.shares[self.step]
        return 0.0

    def _go(self, to: str, now_ns: int, reason: str, actor: str = "auto") -> Transition:
        tr = Transition(self.state, to, now_ns // MS, reason, actor)
        self.state, self.entered_ns = to, now_ns
        self.healthy_since_ns, self.unhealthy_run = None, 0
        self.transitions.append(tr)
        return tr

    def propose(self, green: str, now_ns: int, actor: str) -> list[Transition]:
        """A candidate model for green (replaces a rolled-back or finished one). Raises
        ValueError while a cutover is in progress."""
        if self.state in ("canary", "partial"):
            raise ValueError(f"a cutover of {self.green} is in progress ({self.state}); roll it back first")
        self.green, self.step = green, 0
        return [self._go("candidate", now_ns, f"candidate {green}", actor)]

    def start(self, now_ns: int, actor: str) -> list[Transition]:
        """candidate → canary. Raises ValueError from any other state."""
        if self.state != "candidate":
            raise ValueError(f"start needs a candidate, state is {self.state}")
        self.step = 0
        return [self._go("canary", now_ns, f"canary at {self.shares[0]:.0%}", actor)]

    def rollback(self, now_ns: int, reason: str, actor: str = "auto") -> list[Transition]:
        if self.state not in ("canary", "partial", "candidate"):
            raise ValueError(f"nothing to roll back in state {self.state}")
        return [self._go("rolled_back", now_ns, reason, actor)]

    def observe(self, green: SloView, now_ns: int) -> list[Transition]:
        """One evaluation of green's SLO window at ``now_ns``; returns the transitions made."""
        if self.state not in ("canary", "partial"):
            return []
        t = self.cfg.thresholds
        if breached(green, t):
            self.unhealthy_run += 1
            self.healthy_since_ns = None
            if self.unhealthy_run >= self.cfg.breach_evals:
                why = f"SLO breach: p95 {green.p95LatencyMs} ms, errors {green.errorRate}, qos gap {green.qosGap}"
                return self.rollback(now_ns, why)
            return []
        self.unhealthy_run = 0
        if not green.healthy:  # too few samples: no evidence either way
            return []
        if self.healthy_since_ns is None:
            self.healthy_since_ns = now_ns
        window_ns = int(self.cfg.window_s * S)
        if now_ns - self.healthy_since_ns < window_ns or now_ns - self.entered_ns < window_ns:
            return []
        if self.step + 1 < len(self.shares):
            self.step += 1
            return [self._go("partial", now_ns, f"healthy for {self.cfg.window_s:g} s: {self.green_share:.0%}")]
        out = [self._go("active", now_ns, f"healthy for {self.cfg.window_s:g} s: {self.green} is now blue")]
        self.blue, self.green = self.green or self.blue, None
        return out


def drive(
    c: Cutover,
    green: RouterStack | None,
    green_slo: SloView,
    now_ns: int,
    done: set[str],
    auto_start: bool,
    stale_s: float,
) -> list[Transition]:
    """One evaluation of the running system (control calls it every ``cutover_eval_s``):

    - a cutover in progress (canary/partial) rolls back when the green stack is gone (no
      announcement within ``stale_s``) or serves another model than the one being cut over;
      else green's SLO view is observed (advance after a healthy window, rollback on a breach);
    - otherwise a green stack announcing a candidate model not seen before (not in ``done``:
      models already rolled back or made active never come back by themselves — no flapping)
      is proposed, and its canary started when ``auto_start``.

    ``done`` is updated with the model of a rollback or of an activation. Returns the
    transitions made (for the audit)."""
    fresh = green is not None and now_ns - green.ts_ns <= stale_s * S
    out: list[Transition] = []
    if c.state in ("canary", "partial"):
        if green is None or not fresh:
            out = c.rollback(now_ns, f"green stack gone (no announcement for {stale_s:g} s)")
        elif green.modelId != c.green:
            out = c.rollback(now_ns, f"green stack now serves {green.modelId or 'the prior'}, not {c.green}")
        else:
            before = c.green
            out = c.observe(green_slo, now_ns)
            if c.state == "active" and before:
                done.add(before)
    elif green is not None and fresh and green.candidate and green.modelId and green.modelId not in done:
        if not (c.state == "candidate" and c.green == green.modelId):
            out = c.propose(green.modelId, now_ns, "auto")
        if auto_start:
            out += c.start(now_ns, "auto")
    if c.state == "rolled_back" and c.green:
        done.add(c.green)
    return out


# -- canary ladder -------------------------------------------------------------------------
LADDER = ("disabled", "canary", "partial", "live")
WEIGHTS = {"disabled": 0.0, "canary": 0.01, "partial": 0.25, "live": 1.0}


@dataclass(frozen=True)
class LadderConfig:
    min_fills: int = 20
    min_pnl_quote: float = 0.0
    max_cvar_quote: float = 50.0
    cvar_alpha: float = 0.95
    min_dwell_s: float = 600.0


@dataclass(frozen=True)
class PaperStats:
    """Cumulative paper figures at ``ts_ns``: fills, equity (quote), breaker tripped."""

    ts_ns: int
    fills: int
    equity_quote: float
    breaker_tripped: bool


def cvar_of_changes(equity: list[float], alpha: float) -> float | None:
    """Historical CVaR_α of the loss −ΔE of equity changes (quote units, positive = loss);
    None with fewer than 10 changes. Rockafellar–Uryasev: VaR + E[(L − VaR)+]/(1 − α)."""
    if len(equity) < 11:
        return None
    losses = -np.diff(np.asarray(equity, dtype=float))
    var = float(np.quantile(losses, alpha, method="inverted_cdf"))
    return var + float(np.mean(np.maximum(losses - var, 0.0))) / (1 - alpha)


class CanaryLadder:
    def __init__(self, cfg: LadderConfig) -> None:
        self.cfg = cfg
        self.state = "disabled"
        self.held = False
        self.entered: PaperStats | None = None
        self.equity: deque[float] = deque(maxlen=5000)
        self.last: PaperStats | None = None
        self.transitions: list[Transition] = []

    @property
    def next(self) -> str | None:
        i = LADDER.index(self.state)
        return LADDER[i + 1] if i + 1 < len(LADDER) else None

    def _go(self, to: str, stats: PaperStats | None, now_ns: int, reason: str, actor: str) -> Transition:
        tr = Transition(self.state, to, now_ns // MS, reason, actor)
        self.state, self.entered = to, stats
        self.equity.clear()
        if stats is not None:
            self.equity.append(stats.equity_quote)
        self.transitions.append(tr)
        return tr

    def gates(self) -> list[CanaryGate]:
        """The gates to the next step, evaluated on the last stats."""
        s, e, c = self.last, self.entered, self.cfg
        fills = float(s.fills - e.fills) if s and e else None
        pnl = s.equity_quote - e.equity_quote if s and e else None
        cvar = cvar_of_changes(list(self.equity), c.cvar_alpha)
        dwell = (s.ts_ns - e.ts_ns) / S if s and e else None
        breaker = float(s.breaker_tripped) if s else None
        return [
            CanaryGate("minFills", fills, ">=", float(c.min_fills), fills is not None and fills >= c.min_fills),
            CanaryGate("pnlQuote", pnl, ">", c.min_pnl_quote, pnl is not None and pnl > c.min_pnl_quote),
            CanaryGate("cvarQuote", cvar, "<", c.max_cvar_quote, cvar is not None and cvar < c.max_cvar_quote),
            CanaryGate("breakerClear", breaker, "==", 0.0, breaker == 0.0),
            CanaryGate("dwellS", dwell, ">=", c.min_dwell_s, dwell is not None and dwell >= c.min_dwell_s),
        ]

    def observe(self, stats: PaperStats) -> list[Transition]:
        """New cumulative paper stats; returns the transitions made (at most one step)."""
        if self.entered is None:
            self.entered = stats
        self.last = stats
        self.equity.append(stats.equity_quote)
        cvar = cvar_of_changes(list(self.equity), self.cfg.cvar_alpha)
        if self.state != "disabled" and (
            stats.breaker_tripped or (cvar is not None and cvar >= self.cfg.max_cvar_quote)
        ):
            why = "drawdown breaker tripped" if stats.breaker_tripped else f"CVaR {cvar:.4g} ≥ cap"
            return [self._go(LADDER[LADDER.index(self.state) - 1], stats, stats.ts_ns, why, "auto")]
        if self.held or self.next is None:
            return []
        if all(g.passed for g in self.gates()):
            return [self._go(self.next, stats, stats.ts_ns, "every gate passed", "auto")]
        return []

    def act(self, action: str, now_ns: int, actor: str, reason: str = "") -> list[Transition]:
        """Operator action: ``hold``, ``resume`` or ``demote``. Raises ValueError otherwise (there
        is no way to advance by hand: the gates decide)."""
        if action == "hold":
            self.held = True
            return [Transition(self.state, self.state, now_ns // MS, reason or "held by operator", actor)]
        if action == "resume":
            self.held = False
            return [Transition(self.state, self.state, now_ns // MS, reason or "resumed by operator", actor)]
        if action == "demote":
            if self.state == "disabled":
                raise ValueError("already disabled: nothing to demote")
            return [self._go(LADDER[LADDER.index(self.state) - 1], self.last, now_ns, reason or "demoted", actor)]
        raise ValueError(f"action must be hold, resume or demote (gates advance the ladder), got {action!r}")

    def blocked_by(self) -> list[str]:
        if self.next is None:
            return []
        held = ["held"] if self.held else []
        return held + [g.name for g in self.gates() if not g.passed]
