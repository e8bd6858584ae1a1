"""Recorded inputs of the bar backtest: 1-minute klines and perpetual funding, validated.

Kline files: ``<SYMBOL>.csv.gz`` or ``<SYMBOL>.csv``, header exactly
``open_time_ms,open,high,low,close,volume`` (ms since the epoch, UTC; prices in quote units;
volume in base units), one row per minute (gaps allowed, never duplicates or reorderings).
Funding file: header ``symbol,funding_time_ms,funding_rate`` (fraction per 8 h interval).
A structural problem (header, unparseable or empty field, open time not on the minute, not
strictly increasing) raises ``BacktestInputError`` with a one-line message naming the file and
line; a parseable but bad candle is left to the data-quality guards (``stevie.backtest.quality``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

KLINE_HEADER = ("open_time_ms", "open", "high", "low", "close", "volume")
FUNDING_HEADER = ("symbol", "funding_time_ms", "funding_rate")
MINUTE_MS = 60_000
_KLINE_SCHEMA = {
    "open_time_ms": pl.Int64,
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
    "volume": pl.Float64,
}


class BacktestInputError(ValueError):
    """Bad backtest input (unknown symbol, empty window, corrupt row, ...): one line, exit 2."""


@dataclass(frozen=True)
class Klines:
    """One symbol's bars in the window, oldest first. Arrays of shape (n,): ``open_time_ms``
    int64, prices and volume float64. ``sha256`` of the whole file as stored."""

    symbol: str
    path: Path
    sha256: str
    open_time_ms: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    @property
    def n(self) -> int:
        return int(self.open_time_ms.size)


@dataclass(frozen=True)
class Funding:
    """Funding settlements per symbol: times (ms, floored to the minute) and rates (fraction per 8 h)."""

    path: Path | None
    sha256: str
    times_ms: dict[str, np.ndarray]
    rates: dict[str, np.ndarray]

    def of(self, symbol: str) -> tuple[np.ndarray, np.ndarray]:
        empty = np.empty(0, dtype=np.int64)
        return self.times_ms.get(symbol, empty), self.rates.get(symbol, np.empty(0))


def discover(data_dir: Path) -> dict[str, Path]:
    """SYMBOL → kline file in ``data_dir`` (``.csv.gz`` preferred over ``.csv``).
    Raises BacktestInputError when the folder is missing or holds no kline file."""
    if not data_dir.is_dir():
        raise BacktestInputError(f"--data {data_dir}: not a folder")
    out: dict[str, Path] = {}
    for p in sorted(data_dir.iterdir()):
        for ext in (".csv.gz", ".csv"):
            if p.name.endswith(ext) and p.is_file():
                out.setdefault(p.name[: -len(ext)].upper(), p)
    if not out:
        raise BacktestInputError(f"--data {data_dir}: no <SYMBOL>.csv.gz or <SYMBOL>.csv kline file")
    return out


def _read(path: Path) -> tuple[bytes, str]:
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if path.name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise BacktestInputError(f"{path}: not a valid gzip file ({exc})") from exc
    return raw, digest


def _first_bad_line(text: bytes, path: Path) -> str:
    """The first row that is not 6 finite numbers (slow path, only after a parse failure)."""
    for no, line in enumerate(io.BytesIO(text), start=1):
        if no == 1:
            continue
        cells = line.strip().split(b",")
        try:
            if len(cells) != 6:
                raise ValueError(f"{len(cells)} fields, want 6")
            int(cells[0])
            [float(c) for c in cells[1:]]
        except ValueError as exc:
            return f"{path}:{no}: corrupt kline row {line.strip()[:80].decode(errors='replace')!r} ({exc})"
    return f"{path}: unreadable kline file"


def parse_klines(symbol: str, path: Path, raw: bytes, digest: str, start_ms: int | None, end_ms: int | None) -> Klines:
    """Validate a whole kline file, then keep the bars with start ≤ open_time < end."""
    header = raw.split(b"\n", 1)[0].strip().decode(errors="replace")
    if tuple(h.strip() for h in header.split(",")) != KLINE_HEADER:
        raise BacktestInputError(f"{path}:1: header {header!r}, want {','.join(KLINE_HEADER)}")
    try:
        df = pl.read_csv(raw, schema=_KLINE_SCHEMA, has_header=True)
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError, pl.exceptions.ShapeError) as exc:
        raise BacktestInputError(_first_bad_line(raw, path)) from exc
    cols = {c: df[c].to_numpy() for c in KLINE_HEADER}
    t = cols["open_time_ms"].astype(np.int64)
    o, h, lo, c, v = (np.asarray(cols[k], dtype=np.float64) for k in KLINE_HEADER[1:])

    def fail(mask: np.ndarray, what: str) -> None:
        if mask.any():
            i = int(np.argmax(mask))
            raise BacktestInputError(f"{path}:{i + 2}: corrupt kline row ({what})")

    fail(df.select(pl.any_horizontal(pl.all().is_null())).to_series().to_numpy(), "empty field")
    # candle-level faults (non-finite or non-positive prices, negative volume, OHLC out of
    # order, spikes) are the data-quality guards' (stevie.backtest.quality): quarantined, not fatal
    fail(t % MINUTE_MS != 0, "open_time_ms not on a minute")
    if t.size > 1:
        bad = np.concatenate([[False], np.diff(t) <= 0])
        fail(bad, "open_time_ms not strictly increasing")
    keep = np.ones(t.size, dtype=bool)
    if start_ms is not None:
        keep &= t >= start_ms
    if end_ms is not None:
        keep &= t < end_ms
    return Klines(symbol, path, digest, t[keep], o[keep], h[keep], lo[keep], c[keep], v[keep])


def load_klines(
    files: dict[str, Path], symbols: list[str], start_ms: int | None, end_ms: int | None, threads: int = 2
) -> dict[str, Klines]:
    """Read and validate the klines of ``symbols`` (decompression on ``threads`` threads).
    Raises BacktestInputError for an unknown symbol or any bad file/row."""
    unknown = [s for s in symbols if s not in files]
    if unknown:
        raise BacktestInputError(f"unknown symbol(s) {', '.join(unknown)}; available: {', '.join(files)}")
    with ThreadPoolExecutor(max(1, threads)) as pool:
        raws = list(pool.map(lambda s: _read(files[s]), symbols))
    return {s: parse_klines(s, files[s], raw, d, start_ms, end_ms) for s, (raw, d) in zip(symbols, raws, strict=True)}


def load_funding(path: Path | None) -> Funding:
    """Funding settlements by symbol, times floored to the minute (Binance stamps some a few
    ms late). ``None`` → no funding. Raises BacktestInputError on a bad file."""
    if path is None:
        return Funding(None, "", {}, {})
    if not path.is_file():
        raise BacktestInputError(f"--funding {path}: no such file")
    raw, digest = _read(path)
    header = raw.split(b"\n", 1)[0].strip().decode(errors="replace")
    if tuple(h.strip() for h in header.split(",")) != FUNDING_HEADER:
        raise BacktestInputError(f"{path}:1: header {header!r}, want {','.join(FUNDING_HEADER)}")
    try:
        df = pl.read_csv(raw, schema={"symbol": pl.Utf8, "funding_time_ms": pl.Int64, "funding_rate": pl.Float64})
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as exc:
        raise BacktestInputError(f"{path}: corrupt funding row ({str(exc).splitlines()[0]})") from exc
    if df.null_count().sum_horizontal().item() or not np.isfinite(df["funding_rate"].to_numpy()).all():
        raise BacktestInputError(f"{path}: empty or non-finite funding field")
    df = df.with_columns((pl.col("funding_time_ms") // MINUTE_MS * MINUTE_MS).alias("funding_time_ms"))
    df = df.sort(["symbol", "funding_time_ms"]).unique(["symbol", "funding_time_ms"], keep="last", maintain_order=True)
    times, rates = {}, {}
    for (sym,), part in df.group_by(["symbol"], maintain_order=True):
        times[str(sym)] = part["funding_time_ms"].to_numpy().astype(np.int64)
        rates[str(sym)] = part["funding_rate"].to_numpy().astype(np.float64)
    return Funding(path, digest, times, rates)
