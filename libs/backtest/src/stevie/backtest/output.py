"""Run id, metrics, ``decisions.parquet`` and ``summary.json`` of a backtest run.

Determinism: the parquet file is written by pyarrow with fixed options (zstd, no timestamps
in the file), the summary's ``metrics`` and ``settings`` hold only what the inputs decide;
wall-clock figures live under ``timing``. The run id is the first 16 hex digits of the
SHA-256 of the canonical JSON of (mode, data hashes, settings, seed).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
from pathlib import Path

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

_canonical = msgspec.json.Encoder(order="sorted")


def run_id(mode: str, data: dict[str, object], settings: msgspec.Struct) -> str:
    """Hash of the inputs (file digests and windows), the settings and the seed (in settings)."""
    blob = _canonical.encode({"mode": mode, "data": data, "settings": settings})
    return hashlib.sha256(blob).hexdigest()[:16]


def git_revision(cwd: Path | None = None) -> str:
    """``git rev-parse HEAD`` (+ ``-dirty`` with uncommitted changes), or ``unknown``."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=cwd, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=cwd,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + ("-dirty" if dirty else "")


def table(columns: dict[str, list[object]]) -> pa.Table:
    """The decisions as an Arrow table with stable types (float64, int64, bool, string)."""
    arrays = {}
    for name, values in columns.items():
        if name == "ts_event_ns":
            arrays[name] = pa.array(values, type=pa.int64())
        elif name in ("symbol", "venue", "policy_id", "reason", "ctx_regime"):
            arrays[name] = pa.array(values, type=pa.string())
        elif name == "blocked":
            arrays[name] = pa.array(values, type=pa.bool_())
        elif name == "signal" or name.startswith("shadow_"):
            arrays[name] = pa.array(values, type=pa.int8())
        else:
            arrays[name] = pa.array(values, type=pa.float64())
    return pa.table(arrays)


def write_parquet(t: pa.Table, path: Path) -> None:
    """Byte-stable parquet: one row group, zstd, dictionary off, written atomically."""
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(
        t, tmp, compression="zstd", use_dictionary=False, row_group_size=max(1, t.num_rows), write_statistics=True
    )
    os.replace(tmp, path)


def write_json(obj: object, path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")
    os.replace(tmp, path)


def _f(x: float) -> float | None:
    return None if not math.isfinite(x) else float(round(x, 12))


def max_drawdown(equity: np.ndarray) -> tuple[float, float]:
    """(largest fall below the running peak in quote units, as a fraction of that peak)."""
    if equity.size == 0:
        return 0.0, 0.0
    peak = np.maximum.accumulate(equity)
    dd = peak - equity
    i = int(np.argmax(dd))
    return float(dd[i]), float(dd[i] / peak[i]) if peak[i] > 0 else 0.0


def metrics(
    cols: dict[str, list[object]],
    equity_ts_ns: list[int],
    equity: list[float],
    capital: float,
    step_minutes: float,
    policies: list[str],
    extra: dict[str, object],
) -> dict[str, object]:
    """Headline figures: return, max drawdown, Sharpe (annualised from per-step equity returns,
    365-day year), turnover (traded notional / capital), fees, costs, funding, and per policy
    the share of choices, decisions that traded, PnL attributed by mark-to-market to the
    next decision of the same symbol, and mean reward (bps)."""
    eq = np.asarray(equity, dtype=float)
    n = len(cols["symbol"])
    out: dict[str, object] = {"decisions": n, **extra}
    out["final_equity_quote"] = _f(float(eq[-1])) if eq.size else capital
    out["total_return"] = _f(float(eq[-1] / capital - 1)) if eq.size else 0.0
    dd, ddf = max_drawdown(eq)
    out["max_drawdown_quote"], out["max_drawdown_fraction"] = _f(dd), _f(ddf)
    if eq.size > 2:
        r = np.diff(eq) / eq[:-1]
        sd = float(r.std())
        out["sharpe_annualised"] = _f(float(r.mean()) / sd * math.sqrt(365 * 1440 / step_minutes)) if sd > 0 else None
    else:
        out["sharpe_annualised"] = None
    fill = np.asarray(cols["fill_price"], dtype=float)
    order = np.asarray(cols["order_size"], dtype=float)
    traded = np.nan_to_num(np.abs(order) * fill)
    out["fills"] = int(np.isfinite(fill).sum())
    out["turnover"] = _f(float(traded.sum() / capital))
    out["fees_quote"] = _f(float(np.asarray(cols["fee_quote"], dtype=float).sum()))
    cost = np.nan_to_num(np.asarray(cols["cost_bps"], dtype=float))
    out["cost_quote"] = _f(float(np.sum(traded * cost / 1e4)))
    out["funding_paid_quote"] = _f(float(np.asarray(cols["funding_quote"], dtype=float).sum()))
    blocked = np.asarray(cols["blocked"], dtype=bool)
    reasons: dict[str, int] = {}
    for b, why in zip(blocked.tolist(), cols["reason"], strict=True):
        if b:
            key = str(why).split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
    out["blocked"] = dict(sorted(reasons.items()))
    pnl = attributed_pnl(cols)
    pid = np.asarray(cols["policy_id"], dtype=object)
    reward = np.asarray(cols["reward"], dtype=float)
    per: dict[str, dict[str, object]] = {}
    for p in policies:
        m = pid == p
        k = int(m.sum())
        rw = reward[m & np.isfinite(reward)]
        per[p] = {
            "choices": k,
            "share": _f(k / n) if n else 0.0,
            "fills": int((m & np.isfinite(fill)).sum()),
            "pnl_quote": _f(float(pnl[m].sum())),
            "mean_reward_bps": _f(float(rw.mean())) if rw.size else None,
        }
    out["policies"] = per
    return out


def attributed_pnl(cols: dict[str, list[object]]) -> np.ndarray:
    """Per decision: position after it × (price at the symbol's next decision − fill or price)
    − fee − funding paid before the next decision — the PnL of the position it set, in quote."""
    sym = np.asarray(cols["symbol"], dtype=object)
    price = np.asarray(cols["price"], dtype=float)
    pos = np.asarray(cols["position_after"], dtype=float)
    fill = np.asarray(cols["fill_price"], dtype=float)
    order = np.asarray(cols["order_size"], dtype=float)
    fee = np.asarray(cols["fee_quote"], dtype=float)
    fund = np.asarray(cols["funding_quote"], dtype=float)
    out = np.zeros(sym.size)
    for s in np.unique(sym):
        idx = np.flatnonzero(sym == s)
        p = price[idx]
        nxt = np.append(p[1:], p[-1])
        f = np.where(np.isfinite(fill[idx]), fill[idx], p)
        # the traded part starts at the fill price, the part carried over at the price
        carried = pos[idx] - order[idx]
        pnl = carried * (nxt - p) + order[idx] * (nxt - f) - fee[idx]
        pnl -= np.append(fund[idx][1:], 0.0)
        out[idx] = pnl
    return out
