"""Execution cost: walk-the-book slippage, the impact model k·size^α + spread/2, and a
planner choosing Immediate / TWAP / VWAP / POV.

- Walk the book: the average fill price of a market order consuming levels best first
  (the cost a paper fill against the L2 book pays).
- Impact: cost_bps(size) = k·size^α + spread_bps/2 (power-law impact, Almgren et al. 2005,
  "Direct Estimation of Equity Market Impact", Risk; square-root law α ≈ 0.5). k and α are
  fitted by least squares on log(cost − spread/2) against log(size).
- Planner: an order that fits within the displayed depth at low micro-vol and high urgency
  goes Immediate; otherwise it is sliced: TWAP when the expected volume profile is flat,
  VWAP when a profile is given, POV when the order is large against traded volume. Slice
  schedules sum exactly to the order size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stevie.quant.errors import QuantInputError, finite_1d

Level = tuple[float, float]


@dataclass(frozen=True)
class Fill:
    """Walk-the-book result: filled size (base), average price (quote/base), slippage in bps
    against the touch, and whether the book had enough depth."""

    filled: float
    avg_price: float
    slippage_bps: float
    complete: bool


def walk_the_book(levels: Sequence[Level], size: float) -> Fill:
    """Fill ``size`` (base units) against ``levels`` (best first: asks for a buy, bids for a
    sell). Raises QuantInputError on size ≤ 0 or an empty book."""
    if not math.isfinite(size) or size <= 0:
        raise QuantInputError(f"size must be > 0, got {size}")
    if not levels:
        raise QuantInputError("empty book side")
    left, notional = size, 0.0
    for price, qty in levels:
        take = min(left, qty)
        notional += take * price
        left -= take
        if left <= 1e-15:
            break
    filled = size - max(left, 0.0)
    avg = notional / filled
    touch = levels[0][0]
    return Fill(filled, avg, abs(avg - touch) / touch * 1e4, left <= 1e-15)


@dataclass(frozen=True)
class ImpactModel:
    """cost_bps(size) = k·size^α + spread_bps/2; size in base units."""

    k: float
    alpha: float

    def cost_bps(self, size: float, spread_bps: float) -> float:
        if size < 0 or spread_bps < 0:
            raise QuantInputError("size and spread_bps must be >= 0")
        return self.k * size**self.alpha + spread_bps / 2.0


def fit_impact(sizes: object, costs_bps: object, spread_bps: float) -> ImpactModel:
    """Fit k, α by OLS of log(cost − spread/2) on log(size), on observations whose cost
    exceeds the half spread. Raises QuantInputError with fewer than 3 usable points."""
    s, c = finite_1d("sizes", sizes), finite_1d("costs_bps", costs_bps)
    if s.shape != c.shape:
        raise QuantInputError("sizes and costs_bps must have the same length")
    excess = c - spread_bps / 2.0
    ok = (s > 0) & (excess > 0)
    if ok.sum() < 3:
        raise QuantInputError("need at least 3 observations with cost above the half spread")
    alpha, logk = np.polyfit(np.log(s[ok]), np.log(excess[ok]), 1)
    return ImpactModel(float(math.exp(logk)), float(alpha))


@dataclass(frozen=True)
class Plan:
    """Execution plan: style, slice sizes (base units, summing to the order), slice interval
    in seconds, and the expected cost in bps."""

    style: str
    slices: list[float]
    interval_s: float
    cost_bps: float
    reason: str


def plan_execution(
    size: float,
    spread_bps: float,
    top_depth: float,
    micro_vol_bps: float,
    urgency: float,
    model: ImpactModel,
    volume_per_min: float = 0.0,
    horizon_s: float = 300.0,
    volume_profile: Sequence[float] = (),
    max_pov: float = 0.1,
    vol_forecast_bps: float = 0.0,
) -> Plan:
    """Choose Immediate / TWAP / VWAP / POV.

    size, top_depth, volume_per_min in base units; spread_bps, micro_vol_bps in bps;
    urgency in [0, 1] (1 = now); vol_forecast_bps = σ of the return over the horizon from the
    vol models (bps). Immediate when the order fits the displayed depth and either urgency ≥ 0.8
    or the impact saved by slicing is below the risk of waiting, the larger of
    micro-vol·sqrt(horizon) and the vol forecast. Else POV if the order exceeds ``max_pov`` of the volume
    expected over the horizon, VWAP if a volume profile is given, TWAP otherwise.
    Raises QuantInputError on bad inputs."""
    for name, v in (
        ("size", size),
        ("spread_bps", spread_bps),
        ("top_depth", top_depth),
        ("micro_vol_bps", micro_vol_bps),
        ("horizon_s", horizon_s),
        ("vol_forecast_bps", vol_forecast_bps),
    ):
        if not math.isfinite(v) or v < 0:
            raise QuantInputError(f"{name} must be finite and >= 0, got {v}")
    if size <= 0:
        raise QuantInputError("size must be > 0")
    if not 0 <= urgency <= 1:
        raise QuantInputError(f"urgency must be in [0, 1], got {urgency}")
    immediate_cost = model.cost_bps(size, spread_bps)
    n = max(2, min(20, math.ceil(size / max(top_depth, 1e-12))))
    sliced_cost = model.cost_bps(size / n, spread_bps)
    wait_risk = max(micro_vol_bps * math.sqrt(horizon_s), vol_forecast_bps)
    if size <= top_depth and (urgency >= 0.8 or immediate_cost - sliced_cost < wait_risk * (1 - urgency)):
        return Plan(
            "Immediate", [size], 0.0, immediate_cost, "fits the displayed depth; slicing saves less than waiting risks"
        )
    expected_volume = volume_per_min * horizon_s / 60.0
    if expected_volume > 0 and size > max_pov * expected_volume:
        per_min = max_pov * volume_per_min
        k = max(1, math.ceil(size / per_min))
        slices = [per_min] * (k - 1) + [size - per_min * (k - 1)]
        return Plan("POV", slices, 60.0, sliced_cost, f"order exceeds {max_pov:.0%} of the expected volume")
    if volume_profile:
        w = finite_1d("volume_profile", volume_profile)
        if np.any(w < 0) or w.sum() <= 0:
            raise QuantInputError("volume_profile must be >= 0 with a positive sum")
        slices = list(size * w / w.sum())
        return Plan("VWAP", slices, horizon_s / len(slices), sliced_cost, "sliced along the volume profile")
    return Plan("TWAP", [size / n] * n, horizon_s / n, sliced_cost, "sliced evenly over the horizon")
