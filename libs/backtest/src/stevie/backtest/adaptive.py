"""Adaptive-context sections of the backtest report (issue 12): per-alpha attribution of the
decisions and the regime labels over time, from the decisions table.

Attribution: each decision's alphas (``stevie.quant.alpha.AlphaRegistry`` on the decision's
context — σ GARCH/HAR, funding, and the symbol's last 10 decision prices as the recent mids,
all known at the decision) give the blend game v(S) = u·clip(Σ_{S} wᵢsᵢ, −1, 1) with
u = 1e4·(p_next − p)/p, p_next the symbol's next decision price (the horizon of a bar
backtest is one decision interval; the last decision of a symbol has u = 0). Exact Shapley
values (``blend_shapley_batch``) in bps of the blend notional; their sum over alphas is the
blend's own PnL in bps.
"""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np

from stevie.quant.alpha import AlphaInputs, AlphaRegistry, blend_shapley_batch

REGIME_ORDER = ("bull", "bear", "chop", "high_vol", "unknown")


def _floats(cols: dict[str, list[object]], name: str, n: int) -> np.ndarray:
    return np.nan_to_num(np.asarray(cols[name], dtype=float)) if name in cols else np.zeros(n)


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
    recent: dict[str, list[float]] = {}
    contrib = np.zeros((n, len(ids)))
    w = np.asarray(reg.weight_list())
    for i, s in enumerate(sym):
        if s in last:
            nxt[last[s]] = price[i]
        last[s] = i
        past = recent.setdefault(s, [])
        past.append(float(price[i]))
        del past[:-10]
        x = AlphaInputs(sigma_garch=float(sg[i]), sigma_har=float(sh[i]), funding=float(fu[i]), mids=tuple(past))
        contrib[i] = w * np.asarray(reg.signals(x))
    u = np.where(price > 0, 1e4 * (nxt - price) / np.where(price > 0, price, 1.0), 0.0)
    phi, _ = blend_shapley_batch(contrib, u)
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
