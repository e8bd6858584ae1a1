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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Signal = int


@dataclass(frozen=True)
class PolicyInputs:
    """What a policy sees at decision time (only data with event time ≤ the decision): OBI and
    TI ∈ [−1, 1], micro-price deviation from the mid and micro-volatility in bps."""

    obi: float = 0.0
    ti: float = 0.0
    micro_dev_bps: float = 0.0
    micro_vol_bps: float = 0.0


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


POLICIES: dict[str, Callable[[PolicyInputs], Signal]] = {
    "p_flat": flat,
    "p_obi_momentum": obi_momentum,
    "p_micro_reversion": micro_reversion,
}
"""Every policy by id: the router's arms, in this order."""


def micro_price(bid: float, bid_size: float, ask: float, ask_size: float) -> float:
    """Size-weighted micro-price (bid·A + ask·B)/(A + B); the mid when both sizes are 0."""
    total = bid_size + ask_size
    return 0.5 * (bid + ask) if total <= 0 else (bid * ask_size + ask * bid_size) / total
