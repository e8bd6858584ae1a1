"""``report.html``: one self-contained page, every plot rendered server-side by matplotlib
(Agg) as a base64 PNG ``<img>`` — no script, no network needed to view it.

Plots (each an ``<img class="plot" id=...>``): equity curve, drawdown, per-policy PnL,
router choice shares over time, propensity histogram, turnover, costs, per-alpha Shapley
attribution and the regime timeline (``stevie.backtest.adaptive``).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from stevie.backtest import adaptive
from stevie.backtest.output import attributed_pnl

PLOTS = (
    "equity",
    "drawdown",
    "policy_pnl",
    "choice_shares",
    "propensity",
    "turnover",
    "costs",
    "alpha_attribution",
    "regime",
)


def _png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _days(ts_ns: np.ndarray) -> np.ndarray:
    return (ts_ns - ts_ns[0]) / 86_400e9 if ts_ns.size else ts_ns.astype(float)


def figures(
    cols: dict[str, list[object]], eq_ts: list[int], equity: list[float], policies: list[str]
) -> dict[str, str]:
    """Every plot as base64 PNG, by id."""
    out: dict[str, str] = {}
    t = np.asarray(eq_ts, dtype=np.int64)
    eq = np.asarray(equity, dtype=float)
    x = _days(t)
    fig, ax = plt.subplots(figsize=(9, 3))
    ax.plot(x, eq, lw=1)
    ax.set(title="Equity (quote units)", xlabel="days since start", ylabel="USDT")
    out["equity"] = _png(fig)
    fig, ax = plt.subplots(figsize=(9, 2.5))
    peak = np.maximum.accumulate(eq) if eq.size else eq
    ax.fill_between(x, -(peak - eq), 0, color="tab:red", alpha=0.5)
    ax.set(title="Drawdown (quote units)", xlabel="days since start")
    out["drawdown"] = _png(fig)
    ts = np.asarray(cols["ts_event_ns"], dtype=np.int64)
    dx = _days(ts) if ts.size else ts.astype(float)
    pid = np.asarray(cols["policy_id"], dtype=object)
    pnl = attributed_pnl(cols) if ts.size else np.zeros(0)
    fig, ax = plt.subplots(figsize=(9, 3))
    for p in policies:
        m = pid == p
        ax.plot(dx[m], np.cumsum(pnl[m]), lw=1, label=p)
    ax.legend(fontsize=7)
    ax.set(title="Cumulative PnL by chosen policy (quote units)", xlabel="days since start")
    out["policy_pnl"] = _png(fig)
    fig, ax = plt.subplots(figsize=(9, 3))
    if ts.size:
        bins = np.linspace(dx.min(), dx.max() + 1e-9, 41)
        which = np.digitize(dx, bins) - 1
        shares = np.array(
            [[np.mean(pid[which == b] == p) if np.any(which == b) else 0 for b in range(40)] for p in policies]
        )
        ax.stackplot(bins[:-1], shares, labels=policies)
        ax.legend(fontsize=7, loc="upper right")
    ax.set(title="Router choice shares over time", xlabel="days since start", ylim=(0, 1))
    out["choice_shares"] = _png(fig)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(np.asarray(cols["propensity"], dtype=float), bins=40, range=(0, 1))
    ax.set(title="Propensity of the chosen policy", xlabel="P(choice | context)")
    out["propensity"] = _png(fig)
    fill = np.asarray(cols["fill_price"], dtype=float)
    traded = np.nan_to_num(np.abs(np.asarray(cols["order_size"], dtype=float)) * fill)
    fig, ax = plt.subplots(figsize=(9, 2.5))
    ax.plot(dx, np.cumsum(traded), lw=1)
    ax.set(title="Cumulative traded notional (turnover, quote units)", xlabel="days since start")
    out["turnover"] = _png(fig)
    cost = traded * np.nan_to_num(np.asarray(cols["cost_bps"], dtype=float)) / 1e4
    fig, ax = plt.subplots(figsize=(9, 2.5))
    ax.plot(dx, np.cumsum(cost), lw=1, label="impact + spread")
    ax.plot(dx, np.cumsum(np.asarray(cols["fee_quote"], dtype=float)), lw=1, label="fees")
    ax.plot(dx, np.cumsum(np.asarray(cols["funding_quote"], dtype=float)), lw=1, label="funding paid")
    ax.legend(fontsize=7)
    ax.set(title="Cumulative costs (quote units)", xlabel="days since start")
    out["costs"] = _png(fig)
    out.update(adaptive.figures(cols, dx, _png))  # alpha attribution, regime timeline (issue 12)
    return out


def write_report(path: Path, summary: dict[str, object], figs: dict[str, str]) -> None:
    """The HTML page: run header, metrics table, every plot inline. Written atomically."""
    m = summary.get("metrics", {})
    assert isinstance(m, dict)
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(json.dumps(v))}</td></tr>"
        for k, v in m.items()
        if k != "policies"
    )
    pol = m.get("policies", {})
    assert isinstance(pol, dict)
    prow = "".join(
        f"<tr><th>{html.escape(p)}</th>"
        + "".join(f"<td>{html.escape(json.dumps(v))}</td>" for v in d.values())
        + "</tr>"
        for p, d in pol.items()
    )
    phead = "".join(f"<th>{html.escape(k)}</th>" for k in next(iter(pol.values()), {}))
    imgs = "".join(
        f'<figure><img class="plot" id="{k}" alt="{k}" src="data:image/png;base64,{v}"></figure>'
        for k, v in figs.items()
    )
    title = f"Stevie backtest {summary.get('runId')}"
    head = f"mode {summary.get('mode')} · git {summary.get('gitRevision')} · seed {summary.get('seed')}"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em;max-width:1000px}}
td,th{{padding:2px 8px;text-align:left;font-size:13px}}
img.plot{{max-width:100%;display:block}}figure{{margin:1em 0}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{html.escape(head)}</p>
<h2>Metrics</h2><table>{rows}</table>
<h2>Policies</h2><table><tr><th>policy</th>{phead}</tr>{prow}</table>
<h2>Plots</h2>{imgs}
</body></html>
"""
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page)
    os.replace(tmp, path)
