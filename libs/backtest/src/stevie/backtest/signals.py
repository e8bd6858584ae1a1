"""The bar policies evaluated at many decisions at once (the batch twins of ``stevie.quant.policies``).

A policy's signal is decision-free: it reads only the closes up to the decision and the last
settled funding rate, never the router's choice or the positions. So the backtest evaluates
every policy at all decisions of a symbol in one go instead of calling the live function once
per decision. Each twin gives *the same integer signal* as the live function on the same
``PolicyInputs`` (``tests/test_backtest_bars.py::test_batch_signals_equal_the_live_policies``
checks every decision of a symbol); sums are taken with numpy's pairwise summation over
contiguous rows, exactly as ``ndarray.sum`` on the live slice (the z-score's sum of squares is
an einsum where the live code takes a BLAS dot: they can differ in the last bit, which changes a
signal only if |z| is within ~1e-15 of the entry threshold — never on the recorded data). A policy id without a twin (or
with non-default hyper-parameters) falls back to the live function, decision by decision.

Shapes: ``closes`` (n,) float64 quote units; ``upto`` (d,) int64 — decision k sees
``closes[max(0, upto[k] − lookback) : upto[k]]``; ``funding`` (d,) fraction per 8 h. Output (d,) int8.
"""

from __future__ import annotations

import msgspec
import numpy as np

from stevie.quant import policies as P


def _rows(closes: np.ndarray, upto: np.ndarray, width: int) -> np.ndarray:
    """(d, width) C-contiguous: row k = closes[upto[k] − width : upto[k]] (caller ensures upto ≥ width)."""
    return np.ascontiguousarray(closes[upto[:, None] - width + np.arange(width)[None, :]])


def _sma(closes: np.ndarray, upto: np.ndarray, seen: np.ndarray, p: P.SmaParams) -> np.ndarray:
    out = np.zeros(upto.size, dtype=np.int8)
    ok = seen >= p.slow
    if not (1 <= p.fast < p.slow) or not ok.any():
        return out
    u = upto[ok]
    d = _rows(closes, u, p.fast).sum(axis=1) / p.fast - _rows(closes, u, p.slow).sum(axis=1) / p.slow
    out[ok] = np.sign(d).astype(np.int8)
    return out


def _breakout(closes: np.ndarray, upto: np.ndarray, seen: np.ndarray, p: P.BreakoutParams) -> np.ndarray:
    out = np.zeros(upto.size, dtype=np.int8)
    n = p.window + p.hold
    ok = seen >= n
    if p.window < 1 or p.hold < 1 or not ok.any():
        return out
    # per bar b ≥ window: +1 when closes[b] > max(closes[b−window : b]), −1 when below the min
    win = np.lib.stride_tricks.sliding_window_view(closes[:-1], p.window)
    now = closes[p.window :]
    brk = np.zeros(closes.size, dtype=np.int8)
    brk[p.window :] = np.where(now > win.max(axis=1), 1, np.where(now < win.min(axis=1), -1, 0))
    # the most recent break among bars upto−hold .. upto−1
    recent = _rows(brk, upto[ok], p.hold)[:, ::-1]
    hit = recent != 0
    first = np.argmax(hit, axis=1)
    out[ok] = np.where(hit.any(axis=1), recent[np.arange(first.size), first], 0)
    return out


def _mean_reversion(closes: np.ndarray, upto: np.ndarray, seen: np.ndarray, p: P.MeanReversionParams) -> np.ndarray:
    out = np.zeros(upto.size, dtype=np.int8)
    ok = seen >= p.window
    if p.window < 2 or not ok.any():
        return out
    w = _rows(closes, upto[ok], p.window)
    dev = w - (w.sum(axis=1) / p.window)[:, None]
    sd = np.sqrt(np.einsum("ij,ij->i", dev, dev) / p.window)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, dev[:, -1] / np.where(sd > 0, sd, 1.0), 0.0)
    out[ok] = np.where(sd > 0, np.where(z >= p.entry_z, -1, np.where(z <= -p.entry_z, 1, 0)), 0)
    return out


def _funding_carry(funding: np.ndarray, p: P.FundingCarryParams) -> np.ndarray:
    on = (np.abs(funding) >= p.threshold) & (funding != 0)
    return np.where(on, np.where(funding > 0, -1, 1), 0).astype(np.int8)


def batch_signals(
    policy_id: str,
    closes: np.ndarray,
    upto: np.ndarray,
    funding: np.ndarray,
    lookback: int,
    params: msgspec.Struct | None = None,
) -> np.ndarray:
    """The live policy ``policy_id`` at every decision, with hyper-parameters ``params`` (its
    own Struct, ``stevie.quant.policies.with_params``; None = the defaults, ``POLICIES``).
    Raises KeyError for an unknown policy id, TypeError for params of another policy."""
    fn = P.POLICIES[policy_id] if params is None else P.with_params(policy_id, params)
    c = np.asarray(closes, dtype=np.float64)
    u = np.asarray(upto, dtype=np.int64)
    f = np.asarray(funding, dtype=np.float64)
    seen = np.minimum(u, lookback)
    params = P.PARAMS.get(policy_id) if params is None else params
    if policy_id == "p_flat":
        return np.zeros(u.size, dtype=np.int8)
    if policy_id == "p_sma" and isinstance(params, P.SmaParams):
        return _sma(c, u, seen, params)
    if policy_id == "p_breakout" and isinstance(params, P.BreakoutParams):
        return _breakout(c, u, seen, params)
    if policy_id == "p_mean_reversion" and isinstance(params, P.MeanReversionParams):
        return _mean_reversion(c, u, seen, params)
    if policy_id == "p_funding_carry" and isinstance(params, P.FundingCarryParams):
        return _funding_carry(f, params)
    out = np.empty(u.size, dtype=np.int8)
    for k in range(u.size):
        x = P.PolicyInputs(closes=c[max(0, int(u[k]) - lookback) : int(u[k])], funding=float(f[k]))
        out[k] = fn(x)
    return out
