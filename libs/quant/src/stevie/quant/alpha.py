"""Alpha registry, signal blend and per-trade attribution (exact Shapley values, leave-one-out).

An alpha is ``{id, desc, transform(inputs) → signal ∈ [−1, 1] (+ = long), weight_init}``.
The blend of a decision is b = Σᵢ wᵢ·sᵢ and its position (fraction of the sized notional) is
g(b) = clip(b, −1, 1). The attribution game of one trade, for a coalition S of alphas, is
v(S) = u · g(Σ_{i∈S} wᵢsᵢ), with u the realised PnL of one unit of position over the decision
horizon (quote units); v(∅) = 0 and v(N) is the blend's PnL on the trade.

- Shapley (1953): φᵢ = Σ_{S ⊆ N∖{i}} |S|!(n − |S| − 1)!/n! · (v(S ∪ {i}) − v(S)), by exact
  enumeration of the 2ⁿ coalitions (n ≤ 12); Σᵢ φᵢ = v(N) − v(∅) (efficiency).
- Leave-one-out: LOOᵢ = v(N) − v(N ∖ {i}) (does not sum to v(N) when g is non-linear).

Coalitions are bitmasks: bit i set ⇔ alpha i is in S.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from stevie.quant.errors import QuantInputError

MAX_SHAPLEY_PLAYERS = 12

Game = Callable[[int], float]
"""A coalition value function: bitmask of players → value."""


@dataclass(frozen=True)
class AlphaInputs:
    """What the alphas read at decision time (event time ≤ the decision): ``obi``, ``ti`` ∈
    [−1, 1]; ``micro_dev_bps`` (micro-price − mid) and ``spread_bps`` in bps; ``sigma_garch`` and
    ``sigma_har`` (σ of the log return over the forecast horizon, return units); ``rr25`` (25-Δ
    risk reversal, IV decimal); ``funding`` (perpetual funding per 8 h, fraction); ``mids``: the
    recent mid prices, oldest first (quote units). Unknown values are 0 / empty (neutral)."""

    obi: float = 0.0
    ti: float = 0.0
    micro_dev_bps: float = 0.0
    spread_bps: float = 0.0
    sigma_garch: float = 0.0
    sigma_har: float = 0.0
    rr25: float = 0.0
    funding: float = 0.0
    mids: tuple[float, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Alpha:
    """One registered alpha."""

    id: str
    desc: str
    transform: Callable[[AlphaInputs], float]
    weight_init: float


def _clip(x: float) -> float:
    return float(min(1.0, max(-1.0, x))) if math.isfinite(x) else 0.0


def _obi(x: AlphaInputs) -> float:
    return _clip(x.obi)


def _ti(x: AlphaInputs) -> float:
    return _clip(x.ti)


def _micro_dev(x: AlphaInputs) -> float:
    half_spread = max(x.spread_bps / 2.0, 1e-3)
    return _clip(math.tanh(x.micro_dev_bps / half_spread))


def _sma_trend(x: AlphaInputs, fast: int = 3, slow: int = 10) -> float:
    m = x.mids
    if len(m) < slow or m[-1] <= 0:
        return 0.0
    f, s = sum(m[-fast:]) / fast, sum(m[-slow:]) / slow
    r = np.diff(np.log(np.asarray(m[-slow:], dtype=float)))
    sd = float(np.std(r)) * math.sqrt(slow)
    return _clip(math.tanh((f / s - 1.0) / sd)) if sd > 0 else 0.0


def _breakout(x: AlphaInputs, n: int = 9) -> float:
    m = x.mids
    if len(m) < n + 1:
        return 0.0
    hi, lo = max(m[-n - 1 : -1]), min(m[-n - 1 : -1])
    if m[-1] > hi:
        return 1.0
    if m[-1] < lo:
        return -1.0
    return 0.0


def _vol_regime(x: AlphaInputs) -> float:
    if x.sigma_garch <= 0 or x.sigma_har <= 0:
        return 0.0
    # short-term vol above the long-run level: lean against the book's momentum (de-risk)
    return _clip(-math.tanh(math.log(x.sigma_garch / x.sigma_har)) * (1.0 if x.obi >= 0 else -1.0))


def _rr25_skew(x: AlphaInputs) -> float:
    return _clip(math.tanh(x.rr25 / 0.05))


def _funding_carry(x: AlphaInputs) -> float:
    return _clip(-math.tanh(x.funding / 1e-4))


DEFAULT_ALPHAS: tuple[Alpha, ...] = (
    Alpha("a_obi", "order-book imbalance over the top 5 levels (Cont, Kukanov & Stoikov 2014)", _obi, 0.30),
    Alpha("a_ti", "trade imbalance of the recent tape", _ti, 0.20),
    Alpha("a_micro_dev", "micro-price deviation from the mid, in half-spreads (Stoikov 2018)", _micro_dev, 0.20),
    Alpha("a_sma_trend", "fast/slow SMA of the recent mids (3/10), per σ of the window", _sma_trend, 0.10),
    Alpha("a_breakout", "Donchian breakout of the last mid vs the prior 9 mids", _breakout, 0.05),
    Alpha("a_vol_regime", "GARCH σ above HAR σ: fade the book's direction (de-risk)", _vol_regime, 0.05),
    Alpha("a_rr25_skew", "25-delta risk reversal: calls over puts is bullish", _rr25_skew, 0.05),
    Alpha("a_funding_carry", "perpetual funding carry: short when longs pay", _funding_carry, 0.05),
)


class AlphaRegistry:
    """The registered alphas (ids unique, at most ``MAX_SHAPLEY_PLAYERS`` so attribution stays
    exact) and their current weights."""

    def __init__(self, alphas: Sequence[Alpha] = DEFAULT_ALPHAS) -> None:
        self._alphas: list[Alpha] = []
        self.weights: dict[str, float] = {}
        for a in alphas:
            self.register(a)

    def register(self, a: Alpha) -> None:
        """Add ``a``. Raises QuantInputError on a duplicate id, a bad weight or too many alphas."""
        if a.id in self.weights:
            raise QuantInputError(f"alpha {a.id!r} is already registered")
        if not math.isfinite(a.weight_init):
            raise QuantInputError(f"weight_init of {a.id!r} must be finite")
        if len(self._alphas) >= MAX_SHAPLEY_PLAYERS:
            raise QuantInputError(f"at most {MAX_SHAPLEY_PLAYERS} alphas (exact Shapley enumeration)")
        self._alphas.append(a)
        self.weights[a.id] = float(a.weight_init)

    @property
    def alphas(self) -> list[Alpha]:
        return list(self._alphas)

    def signals(self, x: AlphaInputs) -> list[float]:
        """Every alpha's signal ∈ [−1, 1] in registration order (a non-finite output is 0)."""
        return [_clip(float(a.transform(x))) for a in self._alphas]

    def weight_list(self) -> list[float]:
        return [self.weights[a.id] for a in self._alphas]


def blend(signals: Sequence[float], weights: Sequence[float]) -> float:
    """b = Σ wᵢ sᵢ."""
    if len(signals) != len(weights):
        raise QuantInputError(f"{len(signals)} signals but {len(weights)} weights")
    return float(sum(w * s for w, s in zip(weights, signals, strict=True)))


def position(b: float) -> float:
    """g(b) = clip(b, −1, 1): the blend's position as a fraction of the sized notional."""
    return _clip(b)


def blend_game(
    signals: Sequence[float], weights: Sequence[float], pnl_per_unit: float, g: Callable[[float], float] = position
) -> Game:
    """v(S) = pnl_per_unit · g(Σ_{i∈S} wᵢsᵢ) for a bitmask S."""
    contrib = [w * s for w, s in zip(weights, signals, strict=True)]
    if len(contrib) != len(signals) or len(weights) != len(signals):
        raise QuantInputError(f"{len(signals)} signals but {len(weights)} weights")

    def v(mask: int) -> float:
        return pnl_per_unit * g(sum(c for i, c in enumerate(contrib) if mask >> i & 1))

    return v


def _as_game(values: Mapping[int, float] | Mapping[frozenset[int], float] | Game, n: int) -> Game:
    if callable(values):
        return values
    table: dict[int, float] = {}
    for k, val in values.items():
        mask = k if isinstance(k, int) else sum(1 << i for i in k)
        table[mask] = float(val)
    missing = [m for m in range(1 << n) if m not in table]
    if missing:
        raise QuantInputError(
            f"values_by_coalition lacks {len(missing)} of the {1 << n} coalitions (e.g. {missing[0]})"
        )
    return table.__getitem__


def _check_n(n: int) -> None:
    if not 1 <= n <= MAX_SHAPLEY_PLAYERS:
        raise QuantInputError(f"n must be in [1, {MAX_SHAPLEY_PLAYERS}] for exact enumeration, got {n}")


def shapley(values: Mapping[int, float] | Mapping[frozenset[int], float] | Game, n: int) -> list[float]:
    """Exact Shapley values of the n-player game ``values``: a mapping from every coalition
    (bitmask int, or frozenset of player indices) to its value, or a function bitmask → value
    (evaluated once per coalition, 2ⁿ calls). Returns φ, length n; Σφ = v(N) − v(∅).
    Raises QuantInputError for n outside [1, 12] or a mapping missing coalitions."""
    _check_n(n)
    v = _as_game(values, n)
    vals = np.array([float(v(m)) for m in range(1 << n)])
    if not np.all(np.isfinite(vals)):
        raise QuantInputError("the game has non-finite values")
    sizes = np.array([bin(m).count("1") for m in range(1 << n)])
    fact = [math.factorial(k) for k in range(n + 1)]
    weight_by_size = np.array([fact[s] * fact[n - s - 1] / fact[n] for s in range(n)])
    out = []
    masks = np.arange(1 << n)
    for i in range(n):
        without = masks[(masks >> i & 1) == 0]
        out.append(float(np.sum(weight_by_size[sizes[without]] * (vals[without | (1 << i)] - vals[without]))))
    return out


def leave_one_out(values: Mapping[int, float] | Mapping[frozenset[int], float] | Game, n: int) -> list[float]:
    """LOOᵢ = v(N) − v(N ∖ {i}), length n (same ``values`` forms as ``shapley``)."""
    _check_n(n)
    v = _as_game(values, n)
    full = (1 << n) - 1
    vn = float(v(full))
    return [vn - float(v(full & ~(1 << i))) for i in range(n)]


def shapley_matrix(n: int) -> np.ndarray:
    """M, shape (2ⁿ, n), with φ = v @ M for a row v of the 2ⁿ coalition values (index =
    bitmask): M[S, i] = w(|S| − 1) when i ∈ S and −w(|S|) when i ∉ S, w(s) = s!(n − s − 1)!/n!
    (the Shapley sum regrouped by coalition)."""
    _check_n(n)
    fact = [math.factorial(k) for k in range(n + 1)]
    w = [fact[s] * fact[n - s - 1] / fact[n] for s in range(n)] + [0.0]
    masks = np.arange(1 << n)
    member = (masks[:, None] >> np.arange(n)[None, :]) & 1
    size = member.sum(axis=1)
    wt = np.asarray(w)
    return np.where(member == 1, wt[np.maximum(size - 1, 0)][:, None], -wt[size][:, None])


def blend_shapley_batch(contrib: object, pnl_per_unit: object) -> tuple[np.ndarray, np.ndarray]:
    """Shapley and leave-one-out values of many blend games at once: ``contrib`` shape (T, n)
    with rows wᵢsᵢ, ``pnl_per_unit`` shape (T,); v_t(S) = u_t·clip(Σ_{i∈S} c_ti, −1, 1).
    Returns (φ, LOO), each (T, n). Same values as ``shapley``/``leave_one_out`` per row."""
    c = np.asarray(contrib, dtype=float)
    u = np.asarray(pnl_per_unit, dtype=float)
    if c.ndim != 2 or u.shape != (c.shape[0],):
        raise QuantInputError(f"contrib must be (T, n) and pnl_per_unit (T,), got {c.shape} and {u.shape}")
    n = c.shape[1]
    _check_n(n)
    masks = np.arange(1 << n)
    member = ((masks[:, None] >> np.arange(n)[None, :]) & 1).astype(float)
    values = u[:, None] * np.clip(c @ member.T, -1.0, 1.0)  # (T, 2ⁿ)
    full = (1 << n) - 1
    loo = values[:, [full]] - values[:, [full & ~(1 << i) for i in range(n)]]
    return values @ shapley_matrix(n), loo


@dataclass(frozen=True)
class AlphaAttribution:
    """One alpha's share of one trade: its ``signal``, ``weight``, Shapley value and
    leave-one-out value (quote units)."""

    id: str
    signal: float
    weight: float
    shapley: float
    loo: float


def attribute_trade(
    ids: Sequence[str], signals: Sequence[float], weights: Sequence[float], pnl_per_unit: float
) -> list[AlphaAttribution]:
    """Shapley and leave-one-out attribution of the blend game v(S) = u·clip(Σ_{S} wᵢsᵢ, −1, 1)
    with u = ``pnl_per_unit``. Σ shapley = u·clip(b, −1, 1) (the blend's PnL)."""
    n = len(ids)
    if not (len(signals) == len(weights) == n):
        raise QuantInputError("ids, signals and weights must have the same length")
    if not math.isfinite(pnl_per_unit):
        raise QuantInputError("pnl_per_unit must be finite")
    game = blend_game(signals, weights, pnl_per_unit)
    phi, loo = shapley(game, n), leave_one_out(game, n)
    return [
        AlphaAttribution(a, float(s), float(w), p, lo)
        for a, s, w, p, lo in zip(ids, signals, weights, phi, loo, strict=True)
    ]
