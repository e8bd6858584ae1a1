"""Backtest report sections of the adaptive context (stevie.backtest.adaptive): per-decision
Shapley attribution sums to the blend's PnL, uses only what was known at the decision, and the
figures render."""

from __future__ import annotations

import numpy as np

from stevie.backtest import adaptive
from stevie.backtest.report import _png
from stevie.quant.alpha import AlphaRegistry


def _cols(prices_a: list[float], prices_b: list[float]) -> dict[str, list[object]]:
    cols: dict[str, list[object]] = {
        k: [] for k in ("symbol", "price", "ctx_sigmaGARCH", "ctx_sigmaHAR", "ctx_funding")
    }
    cols["ctx_regime"] = []
    for k, (pa, pb) in enumerate(zip(prices_a, prices_b, strict=True)):
        for sym, p in (("AUSDT", pa), ("BUSDT", pb)):
            cols["symbol"].append(sym)
            cols["price"].append(p)
            cols["ctx_sigmaGARCH"].append(0.004 if k % 3 else 0.001)
            cols["ctx_sigmaHAR"].append(0.002)
            cols["ctx_funding"].append(1e-4 * (k % 5 - 2))
            cols["ctx_regime"].append("chop" if k < 10 else "high_vol")
    return cols


def test_attribution_sums_to_the_blend_and_is_causal() -> None:
    a = [100 * 1.001**k for k in range(30)]
    b = [50 * 0.999**k + (k % 2) * 0.05 for k in range(30)]
    cols = _cols(a, b)
    ids, phi = adaptive.attribution(cols)
    assert phi.shape == (60, len(AlphaRegistry().alphas)) and ids[0] == "a_obi"
    # row sums = u·clip(blend) with u the next same-symbol price move in bps (last one 0)
    assert np.all(phi[-2:] == 0)
    u0 = 1e4 * (a[1] - a[0]) / a[0]
    assert abs(phi[0].sum()) <= abs(u0) + 1e-12
    assert np.all(phi[:, ids.index("a_obi")] == 0)  # no order-book context in a bar backtest: null alpha
    # causal: changing the last prices changes no signal of the earlier decisions — only the
    # outcome (u) of the decision right before each change
    a2 = [*a[:-1], a[-1] * 1.5]
    _, phi2 = adaptive.attribution(_cols(a2, b))
    np.testing.assert_array_equal(phi2[:56], phi[:56])


def test_figures_render() -> None:
    cols = _cols([100 + k for k in range(30)], [50 - 0.1 * k for k in range(30)])
    days = np.arange(60) / 1440
    figs = adaptive.figures(cols, days, _png)
    assert set(figs) == {"alpha_attribution", "regime"} and all(len(v) > 1000 for v in figs.values())
    empty = adaptive.figures({k: [] for k in cols}, np.zeros(0), _png)
    assert set(empty) == {"alpha_attribution", "regime"}
