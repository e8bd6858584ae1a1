"""The trading policies the router chooses between: each maps the decision context to a
signal in {−1, 0, +1} (short, flat, long). Policy ids start with ``p_`` (the router's arms).

- ``p_flat``: always 0 (the do-nothing baseline every other policy must beat).
- ``p_obi_momentum``: follow the book: sign(OBI) when |OBI| ≥ threshold, confirmed by TI not
  pointing the other way (Cont, Kukanov & Stoikov 2014: order-flow imbalance predicts
  short-horizon mid moves).
- ``p_micro_reversion``: fade the micro-price deviation: the micro-price
  p_micro = (bid·A + ask·B)/(A + B) (Stoikov 2018, "The micro-price", Quantitative Finance
  18(12)) vs the mid; when the deviation in bps exceeds a threshold *and* micro-vol is
  elevated, bet on reversion (−sign).

Bar policies (1-minute closes, for ``stevie backtest``; hyper-parameters are frozen Structs a
tuner can replace, see ``PARAMS`` and ``with_params``):

- ``p_sma``: SMA crossover, sign(SMA_fast − SMA_slow) of the closes (Brock, Lakonishok &
  LeBaron 1992, "Simple Technical Trading Rules", J. Finance 47(5)).
- ``p_breakout``: Donchian channel breakout on closes: +1 (−1) when a close within the last
  ``hold`` bars exceeded the highest (fell below the lowest) of the ``window`` closes before it;
  the more recent break wins.
- ``p_mean_reversion``: z = (close − mean)/std over ``window`` closes; −sign(z) when |z| ≥
  ``entry_z``.
- ``p_funding_carry``: perpetual funding carry, −sign(funding) when |funding| ≥ ``threshold``
  (longs pay shorts when the rate is positive: be on the receiving side).

Routing: the live router knows every policy here as an arm (``POLICIES``), so the mission's
``POST /api/router/update {"policyId": "p_sma"}`` works; the L2 decision clock fills
``closes`` with the symbol's 1-minute closes closed by the decision (execution's
``BarCloses``, from ``vol.closes``) but no ``funding`` yet. The bar backtest routes over
``BAR_POLICIES``, the L2 backtest over ``L2_POLICIES``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import msgspec
import numpy as np

Signal = int


@dataclass(frozen=True)
class PolicyInputs:
    """What a policy sees at decision time (only data with event time ≤ the decision): OBI and
    TI ∈ [−1, 1], micro-price deviation from the mid and micro-volatility in bps."""

    obi: float = 0.0
    ti: float = 0.0
    micro_dev_bps: float = 0.0
    micro_vol_bps: float = 0.0
    closes: Sequence[float] | np.ndarray = ()
    """Trailing 1-minute closes, oldest first, the last one closed at or before the decision."""
    funding: float = 0.0
    """Last settled perpetual funding rate (fraction per 8 h) at or before the decision."""


def flat(_: PolicyInputs) -> Signal:
    return 0


def obi_momentum(x: PolicyInputs, threshold: float = 0.3) -> Signal:
    if abs(x.obi) < threshold:
        return 0
    s = 1 if x.obi > 0 else -1
    return 0 if x.ti * s < -0.5 else s


def micro_reversion(x: PolicyInputs, dev_bps: float = 0.05, vol_bps: float = 0.5) -> Signal:
    if abs(x.micro_dev_bps) < dev_bps or x.micro_vol_bps < vol_bps:
        return 0
    return -1 if x.micro_dev_bps > 0 else 1


class SmaParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``p_sma``: fast and slow SMA lengths in bars (1 ≤ fast < slow)."""

    fast: int = 30
    slow: int = 120


class BreakoutParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``p_breakout``: channel length and how many recent bars a break stays valid (bars)."""

    window: int = 60
    hold: int = 15


class MeanReversionParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``p_mean_reversion``: rolling window (bars) and entry threshold |z| (standard deviations)."""

    window: int = 120
    entry_z: float = 2.0


class FundingCarryParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``p_funding_carry``: minimum |funding rate| (fraction per 8 h) to take the carry."""

    threshold: float = 5e-5


SMA_DEFAULT = SmaParams()
BREAKOUT_DEFAULT = BreakoutParams()
MEAN_REVERSION_DEFAULT = MeanReversionParams()
FUNDING_CARRY_DEFAULT = FundingCarryParams()


def sma_crossover(x: PolicyInputs, p: SmaParams = SMA_DEFAULT) -> Signal:
    """sign(mean of the last ``fast`` closes − mean of the last ``slow``); 0 with < ``slow`` closes."""
    c = np.asarray(x.closes, dtype=float)
    if c.size < p.slow or not 1 <= p.fast < p.slow:
        return 0
    d = float(c[-p.fast :].sum()) / p.fast - float(c[-p.slow :].sum()) / p.slow
    return 1 if d > 0 else -1 if d < 0 else 0


def donchian_breakout(x: PolicyInputs, p: BreakoutParams = BREAKOUT_DEFAULT) -> Signal:
    """The most recent channel break within the last ``hold`` closes: +1 above the highest of the
    ``window`` closes before it, −1 below the lowest; 0 when none (or too little history)."""
    c = np.asarray(x.closes, dtype=float)
    n = p.window + p.hold
    if c.size < n or p.window < 1 or p.hold < 1:
        return 0
    tail = c[-n:]
    now = tail[p.window :]  # now[j] = tail[window + j], its channel = tail[j : window + j]
    if p.hold <= p.window:
        # every channel holds the core tail[hold−1 : window]; add the running max/min of the ends
        k, core = p.hold - 1, tail[p.hold - 1 : p.window]
        left, right = tail[:k][::-1], tail[p.window : p.window + k]
        ninf, pinf = np.array([-np.inf]), np.array([np.inf])
        hi = np.maximum(
            np.concatenate([np.maximum.accumulate(left)[::-1], ninf]),
            np.concatenate([ninf, np.maximum.accumulate(right)]),
        )
        lo = np.minimum(
            np.concatenate([np.minimum.accumulate(left)[::-1], pinf]),
            np.concatenate([pinf, np.minimum.accumulate(right)]),
        )
        hi, lo = np.maximum(hi, core.max()), np.minimum(lo, core.min())
    else:
        win = np.lib.stride_tricks.sliding_window_view(tail[:-1], p.window)
        hi, lo = win.max(axis=1), win.min(axis=1)
    up, down = now > hi, now < lo
    for j in range(p.hold - 1, -1, -1):
        if up[j]:
            return 1
        if down[j]:
            return -1
    return 0


def mean_reversion(x: PolicyInputs, p: MeanReversionParams = MEAN_REVERSION_DEFAULT) -> Signal:
    """−sign(z) when |z| ≥ ``entry_z``, z = (last close − mean)/std (population) over ``window``."""
    c = np.asarray(x.closes, dtype=float)
    if c.size < p.window or p.window < 2:
        return 0
    w = c[-p.window :]
    dev = w - w.sum() / w.size
    sd = math.sqrt(float(dev @ dev) / w.size)
    if not sd > 0:
        return 0
    z = float(dev[-1]) / sd
    return -1 if z >= p.entry_z else 1 if z <= -p.entry_z else 0


def funding_carry(x: PolicyInputs, p: FundingCarryParams = FUNDING_CARRY_DEFAULT) -> Signal:
    """−sign(funding) when |funding| ≥ ``threshold``, else 0."""
    f = x.funding
    if not abs(f) >= p.threshold or f == 0:
        return 0
    return -1 if f > 0 else 1


PARAMS: dict[str, msgspec.Struct] = {
    "p_sma": SMA_DEFAULT,
    "p_breakout": BREAKOUT_DEFAULT,
    "p_mean_reversion": MEAN_REVERSION_DEFAULT,
    "p_funding_carry": FUNDING_CARRY_DEFAULT,
}
"""Default hyper-parameters of the tunable policies."""

_TUNABLE: dict[str, Callable[..., Signal]] = {
    "p_sma": sma_crossover,
    "p_breakout": donchian_breakout,
    "p_mean_reversion": mean_reversion,
    "p_funding_carry": funding_carry,
}

POLICIES: dict[str, Callable[[PolicyInputs], Signal]] = {
    "p_flat": flat,
    "p_obi_momentum": obi_momentum,
    "p_micro_reversion": micro_reversion,
    **_TUNABLE,
}
"""Every policy by id: the router's arms, in this order."""

L2_POLICIES: tuple[str, ...] = ("p_flat", "p_obi_momentum", "p_micro_reversion")
"""Policies that read the book (the L2 decision clock and ``stevie backtest --l2``)."""

BAR_POLICIES: tuple[str, ...] = ("p_flat", "p_sma", "p_breakout", "p_mean_reversion", "p_funding_carry")
"""Policies that read 1-minute closes and funding (``stevie backtest`` on bars)."""


def with_params(policy_id: str, params: msgspec.Struct) -> Callable[[PolicyInputs], Signal]:
    """The policy ``policy_id`` with hyper-parameters ``params`` (its own Struct type).
    Raises KeyError for an unknown or untunable id, TypeError for the wrong Struct type."""
    if policy_id not in _TUNABLE:
        raise KeyError(f"{policy_id!r} has no hyper-parameters; tunable: {', '.join(_TUNABLE)}")
    if type(params) is not type(PARAMS[policy_id]):
        raise TypeError(f"{policy_id} takes {type(PARAMS[policy_id]).__name__}, got {type(params).__name__}")
    return functools.partial(_TUNABLE[policy_id], p=params)


def params_of(policy_id: str, values: Mapping[str, float]) -> msgspec.Struct:
    """``policy_id``'s hyper-parameters with ``values`` (name → number) replacing the defaults
    (``PARAMS``). Integer fields take integral numbers only (12.0 is 12). Raises KeyError for an
    untunable policy or an unknown parameter name, ValueError for a value the policy cannot use:
    non-finite, ≤ 0 or a fraction for an integer (an SMA with fast ≥ slow is allowed here: flat,
    as a tuner may propose it; ``tuned_params`` refuses it)."""
    if policy_id not in PARAMS:
        raise KeyError(f"{policy_id!r} has no hyper-parameters; tunable: {', '.join(PARAMS)}")
    default = PARAMS[policy_id]
    fields = default.__struct_fields__
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise KeyError(f"{policy_id} has no parameter {', '.join(unknown)}; its parameters: {', '.join(fields)}")
    out: dict[str, float | int] = {}
    for name, v in values.items():
        v = float(v)
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{policy_id}.{name} must be a finite number > 0, got {v:g}")
        if isinstance(getattr(default, name), int):
            if v != int(v):
                raise ValueError(f"{policy_id}.{name} is a whole number of bars, got {v:g}")
            out[name] = int(v)
        else:
            out[name] = v
    return msgspec.structs.replace(default, **out)


def tuned_params(flat: Mapping[str, float]) -> dict[str, msgspec.Struct]:
    """``{"p_sma.fast": 12, "p_sma.slow": 40}`` — the names ``stevie pbt`` registers a model's
    parameters under — → {policy id: its hyper-parameters} (``params_of``; fields not named
    keep their defaults). Raises KeyError / ValueError as ``params_of``, KeyError for a name
    without a ``policy.`` prefix, ValueError for an SMA with fast ≥ slow (it could never trade)."""
    by_policy: dict[str, dict[str, float]] = {}
    for key, v in flat.items():
        policy_id, dot, name = key.partition(".")
        if not dot or not name:
            raise KeyError(f"{key!r}: want POLICY.PARAM, e.g. p_sma.fast")
        by_policy.setdefault(policy_id, {})[name] = v
    out = {pid: params_of(pid, values) for pid, values in by_policy.items()}
    sma = out.get("p_sma")
    if isinstance(sma, SmaParams) and sma.fast >= sma.slow:
        raise ValueError(f"p_sma needs fast < slow, got fast {sma.fast}, slow {sma.slow}")
    return out


def lookback_of(params: msgspec.Struct) -> int:
    """Closes a policy with ``params`` reads at most (bars): SMA slow, breakout window + hold,
    mean-reversion window; 0 for funding carry."""
    if isinstance(params, SmaParams):
        return params.slow
    if isinstance(params, BreakoutParams):
        return params.window + params.hold
    if isinstance(params, MeanReversionParams):
        return params.window
    return 0


def micro_price(bid: float, bid_size: float, ask: float, ask_size: float) -> float:
    """Size-weighted micro-price (bid·A + ask·B)/(A + B); the mid when both sizes are 0."""
    total = bid_size + ask_size
    return 0.5 * (bid + ask) if total <= 0 else (bid * ask_size + ask * bid_size) / total
