"""Data-quality guards (pure): OHLCV schema and spike guards, L2 level guards.

OHLCV (arrays of equal length T; times in ms, prices in quote units, volume in base units):

- schema (``ohlcv_schema``): strictly increasing open times, finite numbers, volume ≥ 0,
  low ≤ min(open, close) and max(open, close) ≤ high, prices > 0. Reason per row or ''.
- spike (``spike_guard``): the robust z-score of the log return against the trailing
  ``window`` returns, z_t = (r_t − median(r_{t−w..t−1})) / (1.4826 · MAD(r_{t−w..t−1}))
  (MAD scaled to σ under normality; ``scipy.stats.median_abs_deviation(scale="normal")``).
  A candle is a spike when its return *in* and the return *out* (to the next close) are both
  beyond ``z_cap`` with opposite signs and the way out undoes ≥ 80 % of the way in — the
  price jumps and comes back (a bad print). A genuine level shift (in, no way back) is not a
  spike. Calibration on the recorded USD-M 1-minute histories (≈ 1 M bars, window 240):
  one-sided |z| reaches 52.8 on real moves (BNBUSDT 2025-05-05 00:00, +1.1 % on 30× volume,
  then −0.6 %: a real move, not reverted 80 %); with the rule and cap 25 no real candle of
  BTC/ETH/BNB is flagged (tested).

L2 (``l2_levels``): a level of a diff is bad when its price is more than ``max_price_ratio``
away from the mid in ratio terms (p/mid > R or mid/p > R) or its size exceeds
``size_spike_mult`` × the total visible top-k size of both sides. Measured on every diff
of the six real captures against the book it is applied to (top 20 levels per side): the
largest price ratio is 115 (USD-M BTCUSDT 2024: resting bids at 556.9 and 1000, the
contract's minimum price band, with the mid at 64,000; spot at most 4) and the largest size
/ visible size is 121 (spot BTCUSDT). The defaults (400, 200) pass every real diff (tested
by the book maintainer's capture tests) and catch the chaos ``depth_spike`` (a bid at
0.001× the best bid, ratio 1000).
A crossed book is caught by the book maintainer itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stevie.quant.errors import QuantInputError

MAD_TO_SIGMA = 1.482602218505602  # 1 / Φ⁻¹(3/4)


def ohlcv_schema(
    open_ms: Sequence[int] | np.ndarray,
    o: Sequence[float] | np.ndarray,
    h: Sequence[float] | np.ndarray,
    low: Sequence[float] | np.ndarray,
    c: Sequence[float] | np.ndarray,
    v: Sequence[float] | np.ndarray,
) -> list[str]:
    """Reason per row: '' (ok), ``non_increasing_time``, ``non_finite``, ``non_positive_price``,
    ``negative_volume`` or ``ohlc_inconsistent`` (the first that applies). Raises
    QuantInputError when the arrays differ in length."""
    t = np.asarray(open_ms, dtype=np.int64)
    arr = [np.asarray(x, dtype=float) for x in (o, h, low, c, v)]
    if any(a.shape != t.shape for a in arr) or t.ndim != 1:
        raise QuantInputError("open_ms, o, h, l, c, v must be 1-d arrays of one length")
    oo, hh, ll, cc, vv = arr
    # vectorised; a row's time is judged against the latest time before it (the running max)
    non_incr = np.zeros(t.shape, dtype=bool)
    non_incr[1:] = t[1:] <= np.maximum.accumulate(t)[:-1]
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(oo) & np.isfinite(hh) & np.isfinite(ll) & np.isfinite(cc) & np.isfinite(vv)
        non_pos = np.minimum(np.minimum(oo, hh), np.minimum(ll, cc)) <= 0
        neg_vol = vv < 0
        incons = ~((ll <= np.minimum(oo, cc)) & (np.maximum(oo, cc) <= hh))
    out = np.full(t.shape, "", dtype=object)
    for mask, why in (
        (incons, "ohlc_inconsistent"),
        (neg_vol, "negative_volume"),
        (non_pos, "non_positive_price"),
        (~finite, "non_finite"),
        (non_incr, "non_increasing_time"),
    ):  # lowest priority first: a later mask overwrites
        out[mask] = why
    return [str(x) for x in out]


def robust_z(returns: Sequence[float] | np.ndarray, window: int) -> np.ndarray:
    """z_t of each return against the ``window`` returns before it (NaN for the first
    ``window`` and where the MAD is 0). Shape (T,). Vectorised (sliding windows)."""
    r = np.asarray(returns, dtype=float)
    if window < 10:
        raise QuantInputError("window must be ≥ 10 returns")
    z = np.full(r.shape, np.nan)
    if len(r) <= window:
        return z
    w = np.lib.stride_tricks.sliding_window_view(r[:-1], window)
    med = np.median(w, axis=1)
    mad = np.median(np.abs(w - med[:, None]), axis=1) * MAD_TO_SIGMA
    with np.errstate(divide="ignore", invalid="ignore"):
        z[window:] = np.where(mad > 0, (r[window:] - med) / mad, np.nan)
    return z


@dataclass(frozen=True)
class SpikeVerdict:
    """Per candle: ``spike`` flags and ``z_in`` (robust z of the return into the candle,
    computed where the way out undoes the way in — the only candles that can be spikes; NaN
    elsewhere and where undefined). Shapes (T,)."""

    spike: np.ndarray
    z_in: np.ndarray


def spike_guard(
    close: Sequence[float] | np.ndarray, window: int = 240, z_cap: float = 25.0, min_revert: float = 0.8
) -> SpikeVerdict:
    """Two-sided spike rule on closes (see module doc); the way back must also undo at least
    ``min_revert`` of the jump (|r_in + r_out| ≤ (1 − min_revert)·|r_in|). The out-return of candle t is scored
    against the same trailing window as its in-return (the spike itself never enters the
    window that judges it). The last candle cannot be judged (no next close): never a spike."""
    c = np.asarray(close, dtype=float)
    if c.ndim != 1 or not np.all(np.isfinite(c)) or np.any(c <= 0):
        raise QuantInputError("closes must be a 1-d array of finite positive prices")
    if z_cap <= 0:
        raise QuantInputError("z_cap must be > 0")
    r = np.diff(np.log(c))  # r[i] = ln c[i+1] / c[i]
    spike = np.zeros(len(c), dtype=bool)
    z_in = np.full(len(c), np.nan)
    if len(r) <= window + 1:
        return SpikeVerdict(spike, z_in)
    j = np.arange(window, len(r) - 1)  # in-return r[j] (into candle j+1), out-return r[j+1]
    # The reversal and a change of sign are necessary and need no MAD: the rolling median and
    # MAD are computed only there (~6 % of real 1-minute candles; same verdicts, ~15x faster).
    back = np.abs(r[j] + r[j + 1]) <= (1 - min_revert) * np.abs(r[j])
    j = j[back & (r[j] != r[j + 1])]
    if j.size == 0:
        return SpikeVerdict(spike, z_in)
    w = np.lib.stride_tricks.sliding_window_view(r, window)[j - window]  # r[j-window .. j-1]
    med = np.median(w, axis=1)
    mad = np.median(np.abs(w - med[:, None]), axis=1) * MAD_TO_SIGMA
    with np.errstate(divide="ignore", invalid="ignore"):
        zi = np.where(mad > 0, (r[j] - med) / mad, np.nan)
        zo = np.where(mad > 0, (r[j + 1] - med) / mad, np.nan)
    hit = (np.abs(zi) > z_cap) & (np.abs(zo) > z_cap) & (np.sign(zi) != np.sign(zo))
    spike[j + 1] = hit
    z_in[j + 1] = zi
    return SpikeVerdict(spike, z_in)


@dataclass(frozen=True)
class L2Limits:
    max_price_ratio: float = 400.0
    size_spike_mult: float = 200.0


def l2_levels(
    levels: Sequence[tuple[float, float]], mid: float, visible_size: float, limits: L2Limits = L2Limits()
) -> str:
    """'' when every (price, size) level of a diff is plausible against the current book
    (``mid`` in quote units, ``visible_size`` = total size of the top-k levels of both sides,
    base units), else ``far_from_mid`` or ``size_spike``. Size-0 levels (deletions) pass."""
    if not (mid > 0 and math.isfinite(mid)):
        return ""
    for price, size in levels:
        if size == 0:
            continue
        if not (price > 0 and size > 0 and math.isfinite(price) and math.isfinite(size)):
            return "non_finite"
        if price / mid > limits.max_price_ratio or mid / price > limits.max_price_ratio:
            return "far_from_mid"
        if visible_size > 0 and size > limits.size_spike_mult * visible_size:
            return "size_spike"
    return ""
