"""PBT over the bar history (pure): walk-forward windows of 1-minute closes, one tunable
bar policy scored per member.

The decision clock and reward are the bar backtest's (``stevie.backtest.bars``): every
``interval`` minutes T the policy sees the closes up to T (``lookback`` of them, nothing
later) and takes a signal s ∈ {−1, 0, +1}; the decision's PnL in bps is
s·(close(T+H) − close(T))/close(T)·1e4 − fee_bps·|s − s_prev| (H = the interval; the fee is
paid on every change of position, taker, per unit of notional). A member's score on a block
of windows is the per-decision Sharpe ratio of that PnL pooled over the symbols, the same
quantity the DSR deflates (each scored version is registered as a trial).

Window w covers decisions with T in [start + w·W, start + (w+1)·W) (W = ``window_bars``
minutes), with ``start`` = the first bar after the longest lookback a member may need, so
every generation is scored on data it has not seen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stevie.quant import pbt
from stevie.quant.errors import QuantInputError
from stevie.quant.policies import PARAMS, PolicyInputs, params_of, with_params


@dataclass(frozen=True)
class Series:
    """One symbol's closes (n,) and bar open times (ms), oldest first."""

    symbol: str
    open_time_ms: np.ndarray
    close: np.ndarray


def space_of(policy_id: str, widen: float = 4.0) -> list[pbt.Param]:
    """The search space of a tunable policy: each hyper-parameter in [default/widen,
    default·widen] (log-uniform; integers stay integers, ≥ 1). KeyError for an untunable id."""
    if policy_id not in PARAMS:
        raise KeyError(f"{policy_id!r} has no hyper-parameters; tunable: {', '.join(PARAMS)}")
    default = PARAMS[policy_id]
    out = []
    for name in default.__struct_fields__:
        v = getattr(default, name)
        integer = isinstance(v, int) and not isinstance(v, bool)
        lo, hi = v / widen, v * widen
        if integer:
            lo, hi = max(1.0, math.floor(lo)), max(2.0, math.ceil(hi))
        out.append(pbt.Param(name, float(lo), float(hi), log=True, integer=integer))
    return out


@dataclass(frozen=True)
class Walk:
    """The walk-forward layout: decisions every ``interval`` minutes, windows of
    ``window_bars`` minutes starting at bar ``start``, the policy sees ``lookback`` closes."""

    interval: int
    window_bars: int
    start: int
    lookback: int
    fee_bps: float

    def windows(self, n_bars: int) -> int:
        """Complete windows that fit (the last decision needs H more bars)."""
        return max(0, (n_bars - self.start - self.interval) // self.window_bars)


def decision_pnl(policy_id: str, params: dict[str, float], series: Series, walk: Walk, w0: int, w1: int) -> np.ndarray:
    """Per-decision PnL (bps, net of the fee on position changes) of the policy with
    ``params`` on windows [w0, w1) of one symbol."""
    fn = with_params(policy_id, params_of(policy_id, params))
    c = series.close
    lo = walk.start + w0 * walk.window_bars
    hi = min(walk.start + w1 * walk.window_bars, c.size - walk.interval)
    out = []
    prev = 0
    for t in range(lo, hi, walk.interval):
        sig = int(fn(PolicyInputs(closes=c[max(0, t + 1 - walk.lookback) : t + 1])))
        ret = (c[t + walk.interval] - c[t]) / c[t] * 1e4
        out.append(sig * ret - walk.fee_bps * abs(sig - prev))
        prev = sig
    return np.asarray(out, dtype=float)


def score(policy_id: str, params: dict[str, float], data: Sequence[Series], walk: Walk, w0: int, w1: int) -> float:
    """Per-decision Sharpe ratio of the pooled PnL (−inf when it is undefined: no trade)."""
    pnl = np.concatenate([decision_pnl(policy_id, params, s, walk, w0, w1) for s in data])
    if pnl.size < 2 or float(np.std(pnl, ddof=1)) == 0:
        return -math.inf
    return float(np.mean(pnl) / np.std(pnl, ddof=1))


def default_walk(space: Sequence[pbt.Param], interval: int, window_bars: int, fee_bps: float) -> Walk:
    """A walk whose first window starts after the longest look-back a member may need (the sum
    of the integer parameters' upper bounds: e.g. a breakout's window + hold) and whose
    policies see that many closes."""
    need = int(sum(p.high for p in space if p.integer) or 60) + 1
    if interval < 1 or window_bars < interval:
        raise QuantInputError("need interval >= 1 and window_bars >= interval")
    return Walk(interval, window_bars, need, need, fee_bps)
