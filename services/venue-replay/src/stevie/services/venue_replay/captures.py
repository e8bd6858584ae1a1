"""Loading the recorded captures of ``data/samples`` (format: data/samples/SOURCE_README.md §1).

These are raw exchange payloads (the venue simulator's own data, never passed to Stevie's
cores), hence plain dicts. Payloads are kept verbatim (Binance decimal strings); only the recorder's ``seq``/``recv_ns``
columns are dropped when serving.
"""

from __future__ import annotations

import csv
import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VENUE_DIRS = {"binance": "spot", "binance-usdm": "usdm"}


@dataclass
class Capture:
    """One venue+symbol L2 capture: snapshot, diffs, trades, in arrival order."""

    venue: str
    symbol: str
    usdm: bool
    snapshot: dict[str, Any]
    diffs: list[dict[str, Any]]
    trades: list[dict[str, Any]]
    extra_streams: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def capture_dirs(data_dir: Path, window: str) -> dict[tuple[str, str], Path]:
    """(venue, SYMBOL) → folder of every capture of ``window`` (e.g. ``2024-08-08``)."""
    out = {}
    for venue, sub in VENUE_DIRS.items():
        for d in sorted((data_dir / "binance" / sub).glob(f"*/l2_{window}T*")):
            out[(venue, d.parent.name.upper())] = d
    if not out:
        raise FileNotFoundError(f"no capture for window {window} under {data_dir}/binance")
    return out


def load_capture(venue: str, symbol: str, folder: Path) -> Capture:
    """Read one capture folder. Raises FileNotFoundError / ValueError on a broken capture."""
    usdm = venue == "binance-usdm"
    snapshot = json.loads((folder / "depth_snapshot.json").read_text())
    with gzip.open(folder / "depth_updates.jsonl.gz", "rt") as f:
        diffs = [json.loads(line) for line in f]
    trades = []
    with gzip.open(folder / "trades.csv.gz", "rt") as f:
        for row in csv.DictReader(f):
            t: dict[str, Any] = {"e": "trade", "E": int(row["event_time_ms"])}
            if usdm:
                t["T"] = int(row["trade_time_ms"])
            t.update(
                {
                    "s": symbol,
                    "t": int(row["trade_id"]),
                    "p": row["price"],
                    "q": row["qty"],
                    "m": row["is_buyer_maker"] == "1",
                }
            )
            if usdm:
                t["X"] = row.get("order_type") or "MARKET"
            else:
                t["T"] = int(row["trade_time_ms"])
                t["M"] = True
            trades.append(t)
    extra: dict[str, list[dict[str, Any]]] = {}
    mark = folder / "mark_price.csv.gz"
    if mark.exists():
        with gzip.open(mark, "rt") as f:
            extra["markPrice@1s"] = [
                {
                    "e": "markPriceUpdate",
                    "E": int(r["event_time_ms"]),
                    "s": symbol,
                    "p": r["mark_price"],
                    "i": r["index_price"],
                    "P": r["est_settle_price"],
                    "r": r["funding_rate"],
                    "T": int(r["next_funding_time_ms"]),
                }
                for r in csv.DictReader(f)
            ]
    return Capture(venue, symbol, usdm, snapshot, diffs, trades, extra)


HISTORY_SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "LTCUSDT")


def load_kline_history(data_dir: Path, symbols: tuple[str, ...] = HISTORY_SYMBOLS) -> dict[str, list[list[object]]]:
    """USD-M 1-minute kline history of ``symbols``, as Binance kline rows (strings kept verbatim):
    ``[openTime, open, high, low, close, volume, closeTime, "0", 0, "0", "0", "0"]``
    (the recorded files carry no quote volume or trade count). Only the six symbols the vol
    service loads by default: the folder holds 18 (for ``stevie backtest``), and all of them
    as rows would cost the replay ~6 s and ~400 MB at start."""
    out: dict[str, list[list[object]]] = {}
    folder = data_dir / "binance" / "usdm" / "klines_1m"
    for f in sorted(p for p in folder.glob("*.csv.gz") if p.name.split(".")[0] in symbols):
        with gzip.open(f, "rt") as fh:
            rows = [
                [
                    int(r["open_time_ms"]),
                    r["open"],
                    r["high"],
                    r["low"],
                    r["close"],
                    r["volume"],
                    int(r["open_time_ms"]) + 59_999,
                    "0",
                    0,
                    "0",
                    "0",
                    "0",
                ]
                for r in csv.DictReader(fh)
            ]
        out[f.name.split(".")[0]] = rows
    return out
