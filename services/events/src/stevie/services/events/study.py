"""``stevie events study``: the placebo-controlled event study on the shipped macro events and
the recorded 1-minute history, as a table and a self-contained HTML report (the placebo
distributions are drawn server-side by matplotlib and embedded as inline SVG: the report needs
no network to view)."""

from __future__ import annotations

import html
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from stevie.contracts.events import EventIn
from stevie.quant.errors import QuantInputError
from stevie.quant.events import Match, MinuteReturns, StudyResult, Windows, event_study
from stevie.services.events.core import parse_ts

DEFAULT_EVENTS = Path("data/samples/events/us_macro_2025-05_06.csv")
DEFAULT_KLINES = Path("data/samples/binance/usdm/klines_1m/BTCUSDT.csv.gz")


@dataclass(frozen=True)
class StudyInput:
    events: list[EventIn]
    skipped: list[str]  # events outside the history or with missing bars, with the reason


def usable(events: list[EventIn], mr: MinuteReturns, w: Windows) -> StudyInput:
    """Drop events whose window leaves the history or has a missing bar (named in ``skipped``)."""
    keep, skipped = [], []
    lo = (mr.start + w.pre + w.est) * 60_000_000_000
    hi = (mr.start + mr.r.size - w.post) * 60_000_000_000
    for e in events:
        t = parse_ts(e.ts)
        if not lo <= t <= hi:
            skipped.append(f"{e.ts} {e.kind or e.title}: outside the history")
            continue
        k = t // 60_000_000_000 - mr.start
        if not np.all(np.isfinite(mr.r[k - w.pre - w.est : k + w.post])):
            skipped.append(f"{e.ts} {e.kind or e.title}: a bar is missing in its window")
            continue
        keep.append(e)
    return StudyInput(keep, skipped)


def run(
    events: list[EventIn], mr: MinuteReturns, w: Windows, n_placebo: int, match: Match, seed: int
) -> tuple[StudyResult, list[str]]:
    inp = usable(events, mr, w)
    if not inp.events:
        raise QuantInputError("no event lies inside the history with a complete window")
    res = event_study(
        mr,
        [parse_ts(e.ts) for e in inp.events],
        [e.kind or "event" for e in inp.events],
        [_iso(parse_ts(e.ts)) for e in inp.events],
        w,
        n_placebo=n_placebo,
        match=match,
        seed=seed,
    )
    return res, inp.skipped


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M")


def _p(p: float) -> str:
    return f"{p:.4f}"


def event_rows(res: StudyResult) -> list[list[str]]:
    """The per-event table: time (UTC), kind, CAR pre/post (bps), J1, AV (× expected RV),
    placebo p-values, placebo pool size."""
    return [
        [
            e.label,
            e.kind,
            f"{e.car_pre * 1e4:+.1f}",
            f"{e.car_post * 1e4:+.1f}",
            f"{e.car_z:+.2f}",
            f"×{np.exp(e.av_pre):.2f}",
            f"×{np.exp(e.av_post):.2f}",
            _p(e.p_car),
            _p(e.p_av),
            _p(e.p_av_day),
            f"{e.pool} / {e.days}",
        ]
        for e in res.events
    ]


EVENT_HEADER = [
    "event (UTC)",
    "kind",
    "CAR pre (bp)",
    "CAR post (bp)",
    "J1",
    "RV pre ×",
    "RV post ×",
    "p CAR",
    "p RV↑",
    "p RV↑ day",
    "pool min / days",
]
GROUP_HEADER = ["kind", "events", "mean CAR post (bp)", "p CAR", "mean RV post ×", "p RV↑", "p RV↑ day"]


def group_rows(res: StudyResult) -> list[list[str]]:
    return [
        [
            g.kind,
            str(g.n_events),
            f"{g.mean_car_post * 1e4:+.1f}",
            _p(g.p_car),
            f"×{np.exp(g.mean_av_post):.2f}",
            _p(g.p_av),
            _p(g.p_av_day),
        ]
        for g in res.groups
    ]


def verdict(res: StudyResult, kind: str = "FOMC") -> str:
    """One honest sentence on whether realised vol rises after ``kind`` relative to placebos."""
    g = next((g for g in res.groups if g.kind == kind), None)
    if g is None:
        return f"No {kind} event in the window."
    members = [e for e in res.events if e.kind == kind]
    pool, days = min(e.pool for e in members), min(e.days for e in members)
    rises = g.p_av < 0.05 and g.p_av_day < 0.05
    return (
        f"{kind}: realised volatility of the {res.windows.post} min after the release is "
        f"×{np.exp(g.mean_av_post):.2f} the estimation window's on average over {g.n_events} event(s); "
        f"{'higher than' if rises else 'not distinguishable from'} calendar-matched placebos "
        f"(one-sided p = {g.p_av:.4f} over {res.n_placebo} draws from ≥ {pool} matched minutes; "
        f"p = {g.p_av_day:.4f} against the same clock minute on ≥ {days} matched days each, every combination; "
        f"match = {res.match}). With {g.n_events} events this is evidence about these events, not an edge."
    )


def _plot_svg(res: StudyResult) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(res.groups)
    fig, axes = plt.subplots(2, n, figsize=(3.2 * n, 5.2), squeeze=False)
    for j, g in enumerate(res.groups):
        for i, (vals, obs, name, f) in enumerate(
            (
                (g.placebo_av, g.mean_av_post, "ln(RV post / expected)", 1.0),
                (g.placebo_car, g.mean_car_post, "CAR post (bp)", 1e4),
            )
        ):
            ax = axes[i][j]
            ax.hist(vals * f, bins=40, color="#9db4d6", edgecolor="white")
            ax.axvline(obs * f, color="#c0392b", lw=2)
            ax.set_title(f"{g.kind} (n={g.n_events})  p={g.p_av if i == 0 else g.p_car:.4f}", fontsize=9)
            ax.set_xlabel(name, fontsize=8)
            ax.tick_params(labelsize=7)
    fig.suptitle(f"placebo distributions ({res.n_placebo} draws each, match={res.match}); red = observed", fontsize=10)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg") :]


def _table(header: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


_CSS = (
    "body{font:14px system-ui,sans-serif;margin:2em;max-width:1200px}"
    "table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}"
    "td:first-child,td:nth-child(2){text-align:left}.note{color:#555}"
)


def render_html(res: StudyResult, symbol: str, skipped: list[str], sources: dict[str, str]) -> str:
    """A self-contained report (inline CSS and SVG)."""
    w = res.windows
    skipped_html = "".join(f"<li>{html.escape(s)}</li>" for s in skipped) or "<li>none</li>"
    src = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in sources.items())
    title = f"Stevie event study — {html.escape(symbol)}"
    matched = "weekday" if res.match == "weekday" else "Monday–Friday"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title><style>{_CSS}</style></head><body>
<h1>Event study: {html.escape(symbol)} 1-minute returns</h1>
<p><b>{html.escape(verdict(res))}</b></p>
<p class="note">Windows: estimation [τ−{w.pre + w.est}, τ−{w.pre}) min, pre [τ−{w.pre}, τ), post [τ, τ+{w.post}).
Constant-mean model (MacKinlay 1997). CAR in bp; J1 = CAR/√(L·σ̂²). RV × = realised vol over the window divided by
√(L · mean r²) of the estimation window. Placebos: same UTC hour and {matched},
no overlap with any real event window; p RV↑ one-sided, p CAR two-sided; p = (1+#≥)/(1+n).
Neighbouring placebo minutes share most of their window, so the independent placebos are the matched days:
"p RV↑ day" compares with the same clock minute on each matched day (smallest possible value 1/(1+days)).</p>
<h2>Per kind</h2>{_table(GROUP_HEADER, group_rows(res))}
<h2>Per event</h2>{_table(EVENT_HEADER, event_rows(res))}
<h2>Placebo distributions</h2>{_plot_svg(res)}
<h2>Inputs</h2><ul>{src}</ul><p>Skipped events:</p><ul>{skipped_html}</ul>
</body></html>"""
