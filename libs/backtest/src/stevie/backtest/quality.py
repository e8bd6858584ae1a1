"""Data quality of the bar backtest's klines: the pure OHLCV guards of ``stevie.quant.quality``.

Every candle of every loaded file (after the loader's structural checks: parseable rows, open
times on the minute and strictly increasing — a file that fails those is an input error, exit
2) goes through

- the schema guard (``ohlcv_schema``: finite numbers, prices > 0, volume ≥ 0,
  low ≤ min(open, close), max(open, close) ≤ high), then
- the two-sided spike guard on the closes of the schema-clean candles (``spike_guard``: the
  robust z of the return in and of the return out against the trailing ``spike_window``
  returns' MAD both beyond ``spike_z_cap`` with opposite signs, the way out undoing ≥ 80 %).

``strict`` (the default) quarantines a bad candle: it is kept with its reason (the
``QualityReport``: summary.json's ``quality`` block and, with a database, rows of the
``quarantine`` table with source ``backtest``) and **replaced**. Offline there is no venue REST
to re-fetch it from (the live vol service re-fetches through the budgeter), so the replacement
is stated plainly: a flat candle at the previous good close (open = high = low = close; the
first good close for candles before it), the candle's own volume when that is finite and ≥ 0,
else 0. The quarantine row says so (``replaced``: true, ``replacement``: the candle used).
``relaxed`` only counts: the candle is used as is — except one with a non-finite or
non-positive price, which no core can use: that stays an input error naming the row.
No candle is ever dropped (the bar grid of the decisions stays the file's).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from stevie.backtest.data import BacktestInputError, Klines
from stevie.quant import quality
from stevie.store.ops import QuarantineRow

MODES = ("strict", "relaxed")
EXAMPLES = 5
"""Examples kept per reason in the summary (every quarantined candle goes to the database)."""


@dataclass
class QualityReport:
    """What the guards saw: candles ``checked``, flagged per reason (``quarantined`` in strict
    mode, ``counted`` in relaxed), the first ``EXAMPLES`` per reason, and every quarantine row."""

    mode: str
    spike_window: int
    spike_z_cap: float
    checked: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    counted: dict[str, int] = field(default_factory=dict)
    examples: list[dict[str, object]] = field(default_factory=list)
    rows: list[QuarantineRow] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        """The ``quality`` block of summary.json."""
        return {
            "mode": self.mode,
            "guards": {"spike_window": self.spike_window, "spike_z_cap": self.spike_z_cap, "min_revert": 0.8},
            "checked": self.checked,
            "quarantined": dict(sorted(self.quarantined.items())),
            "counted": dict(sorted(self.counted.items())),
            "replacement": "flat candle at the previous good close (offline: no venue REST to re-fetch from)",
            "examples": self.examples,
        }


def _candle(k: Klines, i: int) -> dict[str, float | int]:
    return {
        "open_ms": int(k.open_time_ms[i]),
        "open": float(k.open[i]),
        "high": float(k.high[i]),
        "low": float(k.low[i]),
        "close": float(k.close[i]),
        "volume": float(k.volume[i]),
    }


def _spike_detail(c: np.ndarray, j: int, z_in: float, window: int, z_cap: float) -> str:
    """The numbers behind a spike verdict at close j of the clean closes ``c``."""
    r = np.diff(np.log(c))
    w = r[j - 1 - window : j - 1]
    med = float(np.median(w))
    mad = float(np.median(np.abs(w - med))) * quality.MAD_TO_SIGMA
    z_out = (float(r[j]) - med) / mad if mad > 0 else float("nan")
    return (
        f"spike: close {c[j]:.8g} after {c[j - 1]:.8g} and before {c[j + 1]:.8g}; robust z of the return in "
        f"{z_in:+.1f}, out {z_out:+.1f} (trailing {window}-return MAD, cap {z_cap:g})"
    )


def screen(
    klines: dict[str, Klines], mode: str, venue: str, spike_window: int = 240, spike_z_cap: float = 25.0
) -> tuple[dict[str, Klines], QualityReport]:
    """The klines with every bad candle replaced (strict) or as loaded (relaxed), and the
    report. Raises BacktestInputError for an unknown mode, and in relaxed mode for a candle
    with a non-finite or non-positive price (naming the file and row)."""
    if mode not in MODES:
        raise BacktestInputError(f"--data-quality {mode!r}: want one of {', '.join(MODES)}")
    rep = QualityReport(mode, spike_window, spike_z_cap)
    out: dict[str, Klines] = {}
    for sym in sorted(klines):
        k = klines[sym]
        rep.checked += k.n
        reasons = quality.ohlcv_schema(k.open_time_ms, k.open, k.high, k.low, k.close, k.volume)
        bad = {i: why for i, why in enumerate(reasons) if why}
        detail = {i: f"ohlcv schema: {why}" for i, why in bad.items()}
        clean = np.array([i for i in range(k.n) if i not in bad], dtype=np.int64) if bad else np.arange(k.n)
        if clean.size > spike_window + 2:
            c = k.close[clean]
            v = quality.spike_guard(c, spike_window, spike_z_cap)
            for j in np.flatnonzero(v.spike).tolist():
                i = int(clean[j])
                bad[i] = "spike"
                detail[i] = _spike_detail(c, j, float(v.z_in[j]), spike_window, spike_z_cap)
        if not bad:
            out[sym] = k
            continue
        if mode == "relaxed":
            for i, why in sorted(bad.items()):
                if why in ("non_finite", "non_positive_price"):
                    raise BacktestInputError(
                        f"{k.path}:{i + 2}: kline row with a {why.replace('_', ' ')} price cannot be used "
                        "(--data-quality relaxed uses flagged candles as they are; strict replaces them)"
                    )
                rep.counted[why] = rep.counted.get(why, 0) + 1
                _example(rep, sym, k, i, why, detail[i], None)
            out[sym] = k
            continue
        out[sym] = _replace(k, sym, bad, detail, rep, venue)
    return out, rep


def _replace(
    k: Klines, sym: str, bad: dict[int, str], detail: dict[int, str], rep: QualityReport, venue: str
) -> Klines:
    o, h, lo, c, v = (a.copy() for a in (k.open, k.high, k.low, k.close, k.volume))
    good = [i for i in range(k.n) if i not in bad]
    if not good:
        raise BacktestInputError(f"{k.path}: every candle fails the data-quality guards")
    prev = float(k.close[good[0]])  # for bad candles before the first good one
    for i in range(k.n):
        if i not in bad:
            prev = float(k.close[i])
            continue
        vol = float(k.volume[i]) if np.isfinite(k.volume[i]) and k.volume[i] >= 0 else 0.0
        o[i] = h[i] = lo[i] = c[i] = prev
        v[i] = vol
        why = bad[i]
        rep.quarantined[why] = rep.quarantined.get(why, 0) + 1
        used = {
            "open_ms": int(k.open_time_ms[i]),
            "open": prev,
            "high": prev,
            "low": prev,
            "close": prev,
            "volume": vol,
        }
        text = f"{detail[i]}; replaced by a flat candle at the previous close {prev:.8g} (offline: no venue REST)"
        rep.rows.append(
            QuarantineRow("backtest", venue, sym, int(k.open_time_ms[i]), why, text, _candle(k, i), True, used)
        )
        _example(rep, sym, k, i, why, text, used)
    return dataclasses.replace(k, open=o, high=h, low=lo, close=c, volume=v)


def _example(
    rep: QualityReport, sym: str, k: Klines, i: int, why: str, text: str, used: Mapping[str, object] | None
) -> None:
    if sum(1 for e in rep.examples if e["reason"] == why) < EXAMPLES:
        replacement = None if used is None else dict(used)
        rep.examples.append(
            {
                "symbol": sym,
                "row": i + 2,
                "reason": why,
                "detail": text,
                "candle": _candle(k, i),
                "replacement": replacement,
            }
        )
