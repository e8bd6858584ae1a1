"""Adaptive-context sections of the backtest report (issue 12): per-alpha attribution of the
decisions and the regime labels over time, from the decisions table.

Attribution: each decision's alphas (``stevie.quant.alpha.AlphaRegistry`` on the decision's
context — σ GARCH/HAR, funding, and the symbol's last 10 decision prices as the recent mids,
all known at the decision) give the blend game v(S) = u·clip(Σ_{S} wᵢsᵢ, −1, 1) with
u = 1e4·(p_next − p)/p, p_next the symbol's next decision price (the horizon of a bar
backtest is one decision interval; the last decision of a symbol has u = 0). Exact Shapley
values (``blend_shapley_batch``) in bps of the blend notional; their sum over alphas is the
blend's own PnL in bps.

The alphas are evaluated for all decisions at once (``batch_signals``: the batch twins of the
default alphas, the same floating-point operations in the same order as the live transforms —
``tests/test_backtest_adaptive.py`` checks equality with ``AlphaRegistry.signals`` decision by
decision; any other alpha falls back to the live call per decision). Alphas that are zero at
every decision (the order-book and options alphas: a bar backtest has no book) are null
players, so the Shapley values are computed on the others only (the null-player and
dummy axioms: removing a null player changes no other player's value), in row blocks.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np

from stevie.quant.alpha import DEFAULT_ALPHAS, AlphaInputs, AlphaRegistry, blend_shapley_batch

REGIME_ORDER = ("bull", "bear", "chop", "high_vol", "unknown")


def _floats(cols: dict[str, list[object]], name: str, n: int) -> np.ndarray:
    return np.nan_to_num(np.asarray(cols[name], dtype=float)) if name in cols else np.zeros(n)


def _clip(v: float) -> float:
    return float(min(1.0, max(-1.0, v))) if math.isfinite(v) else 0.0


def _windows(sym: list[str], price: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, depth) the symbol's last ``depth`` decision prices up to each row (oldest first,
    NaN-padded on the left) and the count known (≤ depth)."""
    n = len(sym)
    win = np.full((n, depth), np.nan)
    seen = np.zeros(n, dtype=np.int64)
    rows: dict[str, list[int]] = {}
    for i, s in enumerate(sym):
        rows.setdefault(s, []).append(i)
    for r in rows.values():
        idx = np.asarray(r)
        p = price[idx]
        pad = np.concatenate([np.full(depth - 1, np.nan), p])
        win[idx] = np.lib.stride_tricks.sliding_window_view(pad, depth)
        seen[idx] = np.minimum(np.arange(1, idx.size + 1), depth)
    return win, seen


def _sma_trend(win: np.ndarray, seen: np.ndarray, fast: int = 3, slow: int = 10) -> np.ndarray:
    out = np.zeros(win.shape[0])
    ok = np.flatnonzero((seen >= slow) & (win[:, -1] > 0))
    w = win[ok][:, -slow:]
    f = w[:, -fast]
    for c in range(1 - fast, 0):  # Python's sum: left to right
        f = f + w[:, c]
    sl = w[:, 0]
    for c in range(1, slow):
        sl = sl + w[:, c]
    r = np.diff(np.log(np.ascontiguousarray(w)), axis=1)
    sd = np.std(r, axis=1) * math.sqrt(slow)
    ratio = (f / fast) / (sl / slow) - 1.0
    out[ok] = [_clip(math.tanh(q / d)) if d > 0 else 0.0 for q, d in zip(ratio.tolist(), sd.tolist(), strict=True)]
    return out


def _breakout(win: np.ndarray, seen: np.ndarray, n: int = 9) -> np.ndarray:
    out = np.zeros(win.shape[0])
    ok = seen >= n + 1
    prior = win[ok][:, -n - 1 : -1]
    last = win[ok][:, -1]
    out[ok] = np.where(last > prior.max(axis=1), 1.0, np.where(last < prior.min(axis=1), -1.0, 0.0))
    return out


def _vol_regime(sg: np.ndarray, sh: np.ndarray) -> np.ndarray:
    # obi is 0 in a bar backtest: the book's direction is +1 (the live ``obi >= 0``)
    pairs = zip(sg.tolist(), sh.tolist(), strict=True)
    return np.array([_clip(-math.tanh(math.log(g / h))) if g > 0 and h > 0 else 0.0 for g, h in pairs])


def _funding_carry(fu: np.ndarray) -> np.ndarray:
    return np.array([_clip(-math.tanh(f / 1e-4)) for f in fu.tolist()])


_BOOK_ONLY = ("a_obi", "a_ti", "a_micro_dev", "a_rr25_skew")
"""Default alphas that read only book/options inputs (0 in a bar backtest: constant)."""


def batch_signals(
    reg: AlphaRegistry, sym: list[str], price: np.ndarray, sg: np.ndarray, sh: np.ndarray, fu: np.ndarray
) -> np.ndarray:
    """(n, alphas) every alpha's signal at every decision, inputs as in ``attribution``."""
    n = len(sym)
    win, seen = _windows(sym, price, 10)
    neutral = AlphaInputs()
    cols = []
    for a in reg.alphas:
        if a in DEFAULT_ALPHAS and a.id in _BOOK_ONLY:
            cols.append(np.full(n, _clip(float(a.transform(neutral)))))
        elif a in DEFAULT_ALPHAS and a.id == "a_sma_trend":
            cols.append(_sma_trend(win, seen))
        elif a in DEFAULT_ALPHAS and a.id == "a_breakout":
            cols.append(_breakout(win, seen))
        elif a in DEFAULT_ALPHAS and a.id == "a_vol_regime":
            cols.append(_vol_regime(sg, sh))
        elif a in DEFAULT_ALPHAS and a.id == "a_funding_carry":
            cols.append(_funding_carry(fu))
        else:  # no twin: the live transform, decision by decision
            vals = []
            for i in range(n):
                past = tuple(float(v) for v in win[i, 10 - int(seen[i]) :])
                x = AlphaInputs(sigma_garch=float(sg[i]), sigma_har=float(sh[i]), funding=float(fu[i]), mids=past)
                vals.append(_clip(float(a.transform(x))))
            cols.append(np.asarray(vals))
    return np.column_stack(cols) if cols else np.zeros((n, 0))


def attribution(cols: dict[str, list[object]], registry: AlphaRegistry | None = None) -> tuple[list[str], np.ndarray]:
    """(alpha ids, Shapley values shape (decisions, alphas) in bps), decisions in table order."""
    reg = registry or AlphaRegistry()
    ids = [a.id for a in reg.alphas]
    sym = [str(s) for s in cols.get("symbol", [])]
    n = len(sym)
    if n == 0:
        return ids, np.zeros((0, len(ids)))
    price = _floats(cols, "price", n)
    sg, sh, fu = (_floats(cols, f"ctx_{c}", n) for c in ("sigmaGARCH", "sigmaHAR", "funding"))
    nxt = price.copy()
    last: dict[str, int] = {}
    for i, s in enumerate(sym):
        if s in last:
            nxt[last[s]] = price[i]
        last[s] = i
    contrib = np.asarray(reg.weight_list()) * batch_signals(reg, sym, price, sg, sh, fu)
    u = np.where(price > 0, 1e4 * (nxt - price) / np.where(price > 0, price, 1.0), 0.0)
    phi = np.zeros_like(contrib)
    live = np.flatnonzero((contrib != 0).any(axis=0))  # the others are null players everywhere
    if live.size:
        for lo in range(0, n, 16_384):  # row blocks: the game table is (rows, 2^players)
            phi[lo : lo + 16_384, live] = blend_shapley_batch(contrib[lo : lo + 16_384, live], u[lo : lo + 16_384])[0]
    phi[contrib == 0] = 0.0  # null players
    return ids, phi


def figures(cols: dict[str, list[object]], days: np.ndarray, png: Callable[[plt.Figure], str]) -> dict[str, str]:
    """``alpha_attribution`` (cumulative Shapley PnL per alpha, bps) and ``regime`` (share of
    the decisions in each regime label over time) as base64 PNGs."""
    out: dict[str, str] = {}
    ids, phi = attribution(cols)
    fig, ax = plt.subplots(figsize=(9, 3))
    if phi.size:
        for j, a in enumerate(ids):
            ax.plot(days, np.cumsum(phi[:, j]), lw=1, label=a)
        ax.legend(fontsize=7, ncol=2)
    ax.set(title="Cumulative Shapley PnL per alpha (bps of the blend notional)", xlabel="days since start")
    out["alpha_attribution"] = png(fig)
    labels = np.asarray([str(x) for x in cols.get("ctx_regime", [])], dtype=object)
    fig, ax = plt.subplots(figsize=(9, 2.5))
    if labels.size:
        bins = np.linspace(days.min(), days.max() + 1e-9, 41)
        which = np.digitize(days, bins) - 1
        shares = np.array(
            [[np.mean(labels[which == b] == r) if np.any(which == b) else 0 for b in range(40)] for r in REGIME_ORDER]
        )
        ax.stackplot(bins[:-1], shares, labels=REGIME_ORDER)
        ax.legend(fontsize=7, loc="upper right")
    ax.set(title="Regime label of the decisions over time (BOCPD)", xlabel="days since start", ylim=(0, 1))
    out["regime"] = png(fig)
    return out
