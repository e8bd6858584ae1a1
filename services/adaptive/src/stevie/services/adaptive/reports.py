"""Alpha-PnL and risk reports (pure, polars) over the decisions of a window.

Input: ``TradeRow``s (one per decision, read from PostgreSQL ``audits``, or from
``backtest_decisions`` for ``source=backtest:<run-id>``) and ``MidRow``s (every (time, mid)
the decisions saw: feature windows live, decision prices in a backtest). Each decision's
horizon mid is the first recorded mid of the same venue+symbol at or after t + horizon (a
forward as-of join); a decision whose horizon has not closed inside the data is
left out (no look-ahead, no guess).

Per decision:
- u = s_max·(mid(t+h) − mid(t))/mid(t) (quote): the PnL of one unit of blend position;
  per-alpha Shapley / leave-one-out values of v(S) = u·clip(Σ_{S} wᵢsᵢ, −1, 1)
  (``stevie.quant.alpha.blend_shapley_batch``); blend PnL = u·clip(b, −1, 1) = Σ Shapley.
- a filled decision (side ±1, qty, price, fee): trade PnL = side·qty·(mid(t+h) − price) − fee,
  its return in bps of the fill notional, slippage vs the arrival mid
  side·(price − mid(t))/mid(t), fill notional = qty·price.

Risk: realised vol = sample σ (ddof 1) of the trade returns (bps); VaR/CVaR 95 % = historical
(Rockafellar–Uryasev, ``stevie.quant.portfolio.var_cvar``) of the trade returns (≥ 10 trades);
turnover = Σ fill notional, per day over the window length; slippage = notional-weighted mean
(bps, + = paid vs the arrival mid); fees = Σ fee.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from stevie.contracts.adaptive import AlphaPnl, AlphaPnlReport, RiskReport
from stevie.contracts.rpc import Audit
from stevie.quant.alpha import AlphaInputs, AlphaRegistry, blend_shapley_batch
from stevie.quant.errors import QuantInputError
from stevie.quant.portfolio import var_cvar
from stevie.services.adaptive.core import MID_COLUMN, audit_alphas

_WINDOW = re.compile(r"^([1-9][0-9]{0,5})([smhdw])$")
_UNIT_NS = {"s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86_400 * 10**9, "w": 7 * 86_400 * 10**9}
DAY_NS = 86_400 * 10**9


def parse_window(window: str) -> int:
    """'7d' → ns. Units s, m, h, d, w; a positive integer count. QuantInputError otherwise."""
    m = _WINDOW.match(window.strip())
    if not m:
        raise QuantInputError(f"window must be a positive count and a unit s|m|h|d|w (e.g. 7d, 24h), got {window!r}")
    return int(m.group(1)) * _UNIT_NS[m.group(2)]


def parse_source(source: str) -> tuple[str, str]:
    """'live' → ('live', ''); 'backtest:<run-id>' → ('backtest', run-id). QuantInputError otherwise."""
    if source == "live":
        return "live", ""
    kind, _, run = source.partition(":")
    if kind == "backtest" and re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", run):
        return "backtest", run
    raise QuantInputError(f"source must be 'live' or 'backtest:<run-id>', got {source!r}")


@dataclass(frozen=True)
class TradeRow:
    """One decision: ``mid`` at decision (quote), ``s_max_quote`` (the sizing cap, quote),
    the alphas' ids / signals / weights, and the fill (side 0 and qty 0 when not filled)."""

    event_id: str
    venue: str
    symbol: str
    ts_ns: int
    mid: float
    s_max_quote: float
    alpha_ids: tuple[str, ...]
    signals: tuple[float, ...]
    weights: tuple[float, ...]
    side: int = 0
    qty: float = 0.0
    price: float = 0.0
    fee_quote: float = 0.0


@dataclass(frozen=True)
class MidRow:
    venue: str
    symbol: str
    ts_ns: int
    mid: float


def rows_from_audits(
    audits: Sequence[Audit], window_ns: int, registry: AlphaRegistry
) -> tuple[list[TradeRow], list[MidRow]]:
    """Decisions of the last ``window_ns`` of event time (ending at the newest audit) as
    TradeRows, and every (time, mid) of every audit's feature window as MidRows (the later
    mids resolve the horizons; they may lie after the window's decisions)."""
    if not audits:
        return [], []
    end = max(a.ts_event_ns for a in audits)
    trades, mids = [], []
    for a in audits:
        for row in a.feature_window:
            if len(row) > MID_COLUMN and row[MID_COLUMN] > 0:
                mids.append(MidRow(a.venue, a.symbol, round(row[0] * 1e9), row[MID_COLUMN]))
        if a.ts_event_ns < end - window_ns or not a.feature_window or len(a.feature_window[-1]) <= MID_COLUMN:
            continue
        al = audit_alphas(a, registry)
        f = a.fill if a.fill is not None and a.fill.filled > 0 else None
        trades.append(
            TradeRow(
                a.event_id,
                a.venue,
                a.symbol,
                a.ts_event_ns,
                a.feature_window[-1][MID_COLUMN],
                a.sizing.s_max_quote,
                tuple(x.id for x in al),
                tuple(x.signal for x in al),
                tuple(x.weight for x in al),
                f.side if f is not None else 0,
                f.filled if f is not None else 0.0,
                f.avg_price if f is not None else 0.0,
                f.fee_quote if f is not None else 0.0,
            )
        )
    return trades, mids


@dataclass(frozen=True)
class BacktestDecision:
    """One row of ``backtest_decisions`` (a ``stevie backtest`` run): ``price`` = last close at
    the decision (quote), ``order_size`` signed base units filled (0: nothing traded),
    ``context`` the router context's numeric fields (``ctx_`` prefix removed), ``venue`` the
    decision's book ('' for a bar run: one venue)."""

    seq: int
    ts_ns: int
    symbol: str
    price: float
    order_size: float
    fill_price: float | None
    fee_quote: float
    context: dict[str, float]
    venue: str = ""


def rows_from_backtest(
    decisions: Sequence[BacktestDecision],
    window_ns: int,
    registry: AlphaRegistry,
    s_max_quote: float,
    run_id: str,
    mids_kept: int = 10,
) -> tuple[list[TradeRow], list[MidRow]]:
    """A backtest run's decisions (ordered by ``seq``) in the last ``window_ns`` of its event
    time as TradeRows: the mid is the decision's price, the alphas' signals are those of the
    registry on the decision's context with the book's (venue and symbol) previous ``mids_kept``
    decision prices as the recent mids (causal), ``s_max_quote`` the run's sizing cap. Every decision's price is
    a MidRow (the later ones close the horizons)."""
    if not decisions:
        return [], []
    end = max(d.ts_ns for d in decisions)
    recent: dict[tuple[str, str], list[float]] = {}
    trades, mids = [], []
    for d in decisions:
        venue = d.venue or "backtest"  # an L2 run's spot and USD-M books of a symbol stay apart
        mids.append(MidRow(venue, d.symbol, d.ts_ns, d.price))
        past = recent.setdefault((venue, d.symbol), [])
        past.append(d.price)
        del past[:-mids_kept]
        if d.ts_ns < end - window_ns:
            continue
        c = d.context
        x = AlphaInputs(
            obi=c.get("obi", 0.0),
            ti=c.get("ti", 0.0),
            micro_dev_bps=c.get("micro_dev_bps", 0.0),
            spread_bps=c.get("spread_bps", 0.0),
            sigma_garch=c.get("sigmaGARCH", 0.0),
            sigma_har=c.get("sigmaHAR", 0.0),
            rr25=c.get("rr25", 0.0),
            funding=c.get("funding", 0.0),
            mids=tuple(past),
        )
        sig = registry.signals(x)
        filled = d.order_size != 0 and d.fill_price is not None
        trades.append(
            TradeRow(
                f"{run_id}:{d.seq}",
                venue,
                d.symbol,
                d.ts_ns,
                d.price,
                s_max_quote,
                tuple(a.id for a in registry.alphas),
                tuple(sig),
                tuple(registry.weights[a.id] for a in registry.alphas),
                (1 if d.order_size > 0 else -1) if filled else 0,
                abs(d.order_size) if filled else 0.0,
                float(d.fill_price) if filled and d.fill_price is not None else 0.0,
                d.fee_quote if filled else 0.0,
            )
        )
    return trades, mids


def resolve(trades: Sequence[TradeRow], mids: Sequence[MidRow], horizon_ns: int) -> pl.DataFrame:
    """The decisions whose horizon closed, with ``mid_h`` (columns of TradeRow minus the alpha
    lists, plus ``row`` = index into ``trades``)."""
    if not trades:
        return pl.DataFrame()
    t = pl.DataFrame(
        {
            "row": list(range(len(trades))),
            "venue": [r.venue for r in trades],
            "symbol": [r.symbol for r in trades],
            "ts_ns": [r.ts_ns for r in trades],
            "due_ns": [r.ts_ns + horizon_ns for r in trades],
            "mid": [r.mid for r in trades],
            "s_max_quote": [r.s_max_quote for r in trades],
            "side": [r.side for r in trades],
            "qty": [r.qty for r in trades],
            "price": [r.price for r in trades],
            "fee_quote": [r.fee_quote for r in trades],
        },
        schema_overrides={"ts_ns": pl.Int64, "due_ns": pl.Int64},
    )
    m = (
        pl.DataFrame(
            {
                "venue": [r.venue for r in mids],
                "symbol": [r.symbol for r in mids],
                "mid_ts_ns": [r.ts_ns for r in mids],
                "mid_h": [r.mid for r in mids],
            },
            schema={"venue": pl.String, "symbol": pl.String, "mid_ts_ns": pl.Int64, "mid_h": pl.Float64},
        )
        .unique(["venue", "symbol", "mid_ts_ns"])
        .sort("mid_ts_ns")
    )
    joined = t.sort("due_ns").join_asof(
        m,
        left_on="due_ns",
        right_on="mid_ts_ns",
        by=["venue", "symbol"],
        strategy="forward",
        check_sortedness=False,  # both sides are sorted by time above (hence within every group)
    )
    return joined.filter(pl.col("mid_h").is_not_null()).sort("row")


def _span(df: pl.DataFrame) -> tuple[int | None, int | None]:
    if df.is_empty():
        return None, None
    return int(df["ts_ns"].min()) // 1_000_000, int(df["ts_ns"].max()) // 1_000_000  # type: ignore[arg-type]


def alpha_pnl_report(
    trades: Sequence[TradeRow], mids: Sequence[MidRow], horizon_ns: int, window: str, source: str
) -> AlphaPnlReport:
    df = resolve(trades, mids, horizon_ns)
    if df.is_empty():
        return AlphaPnlReport(window, source, None, None, 0, 0.0, 0.0, [])
    ids: list[str] = []
    for r in trades:
        ids += [a for a in r.alpha_ids if a not in ids]
    rows = df["row"].to_list()
    col = {a: i for i, a in enumerate(ids)}
    sig = np.zeros((len(rows), len(ids)))
    wts = np.zeros((len(rows), len(ids)))
    for k, ri in enumerate(rows):
        r = trades[ri]
        for a, s, w in zip(r.alpha_ids, r.signals, r.weights, strict=True):
            sig[k, col[a]], wts[k, col[a]] = s, w
    u = (df["s_max_quote"] * (df["mid_h"] - df["mid"]) / df["mid"]).to_numpy()
    if ids:
        phi, loo = blend_shapley_batch(sig * wts, u)
        null = sig * wts == 0  # null players get exactly 0 (the matrix sum leaves ~1e-17 of rounding)
        phi[null], loo[null] = 0.0, 0.0
        blend_pnl = float(u @ np.clip((sig * wts).sum(axis=1), -1.0, 1.0))
    else:
        phi = loo = np.zeros((len(rows), 0))
        blend_pnl = 0.0
    filled = df.filter(pl.col("qty") > 0)
    trade_pnl = float(
        (filled["side"] * filled["qty"] * (filled["mid_h"] - filled["price"]) - filled["fee_quote"]).sum()
    )
    present = wts != 0
    alphas = [
        AlphaPnl(
            a,
            float(phi[:, j].sum()),
            float(loo[:, j].sum()),
            float(sig[present[:, j], j].mean()) if present[:, j].any() else 0.0,
            float(wts[present[:, j], j].mean()) if present[:, j].any() else 0.0,
            int(present[:, j].sum()),
        )
        for j, a in enumerate(ids)
    ]
    alphas.sort(key=lambda x: -x.shapleyPnl)
    lo, hi = _span(df)
    return AlphaPnlReport(window, source, lo, hi, len(rows), blend_pnl, trade_pnl, alphas)


def risk_report(
    trades: Sequence[TradeRow], mids: Sequence[MidRow], horizon_ns: int, window: str, source: str
) -> RiskReport:
    window_ns = parse_window(window)
    df = resolve(trades, mids, horizon_ns)
    fills = df.filter(pl.col("qty") > 0) if not df.is_empty() else df
    lo, hi = _span(df)
    if fills.is_empty():
        return RiskReport(window, source, lo, hi, df.height, 0, 0.0, None, None, None, 0.0, 0.0, None, 0.0, {})
    f = fills.with_columns(
        notional=pl.col("qty") * pl.col("price"),
        pnl=pl.col("side") * pl.col("qty") * (pl.col("mid_h") - pl.col("price")) - pl.col("fee_quote"),
        slip_quote=pl.col("side") * pl.col("qty") * (pl.col("price") - pl.col("mid")),
        arrival_notional=pl.col("qty") * pl.col("mid"),
    ).with_columns(ret_bps=pl.col("pnl") / pl.col("notional") * 1e4)
    rets = f["ret_bps"].to_numpy()
    vol = float(np.std(rets, ddof=1)) if rets.size >= 2 else None
    var = cvar = None
    if rets.size >= 10:
        v, c = var_cvar(rets, 0.95)
        var, cvar = float(v[0]), float(c[0])
    turnover = float(f["notional"].sum())
    slip = float(f["slip_quote"].sum()) / float(f["arrival_notional"].sum()) * 1e4
    by = (
        f.group_by("symbol")
        .agg(
            trades=pl.len(),
            pnlQuote=pl.col("pnl").sum(),
            turnoverQuote=pl.col("notional").sum(),
            feesQuote=pl.col("fee_quote").sum(),
        )
        .sort("symbol")
    )
    by_symbol = {
        r["symbol"]: {k: float(r[k]) for k in ("trades", "pnlQuote", "turnoverQuote", "feesQuote")}
        for r in by.iter_rows(named=True)
    }
    return RiskReport(
        window,
        source,
        lo,
        hi,
        df.height,
        f.height,
        float(f["pnl"].sum()),
        vol,
        cvar,
        var,
        turnover,
        turnover / (window_ns / DAY_NS),
        slip,
        float(f["fee_quote"].sum()),
        by_symbol,
    )
