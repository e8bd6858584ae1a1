"""Test helpers: read the recorded captures in ``data/samples`` and rebuild books from them
independently of Stevie's code (exact ``Decimal`` arithmetic, plain dicts)."""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from stevie.contracts import DepthDiff, DepthSnapshot

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "data" / "samples"
CAPTURES = sorted(SAMPLES.glob("binance/*/*/l2_*"))


def capture_id(path: Path) -> str:
    return f"{path.parts[-3]}-{path.parts[-2]}-{path.name[3:13]}"


def is_usdm(path: Path) -> bool:
    return path.parts[-3] == "usdm"


@dataclass
class Raw:
    snapshot: dict
    diffs: list[dict]
    tickers: list[dict]


def load(path: Path) -> Raw:
    snapshot = json.loads((path / "depth_snapshot.json").read_text())
    with gzip.open(path / "depth_updates.jsonl.gz", "rt") as f:
        diffs = [json.loads(line) for line in f]
    with gzip.open(path / "book_ticker.csv.gz", "rt") as f:
        tickers = list(csv.DictReader(f))
    return Raw(snapshot, diffs, tickers)


def _levels(rows: list[list[str]]) -> list[tuple[float, float]]:
    return [(float(p), float(q)) for p, q in rows]


def to_snapshot(venue: str, symbol: str, snap: dict) -> DepthSnapshot:
    ts = int(snap.get("E", 0)) * 1_000_000 or int(snap["recv_ns"])
    return DepthSnapshot(
        venue=venue,
        symbol=symbol,
        last_update_id=snap["lastUpdateId"],
        bids=_levels(snap["bids"]),
        asks=_levels(snap["asks"]),
        ts_event_ns=ts,
        ts_init_ns=ts,
    )


def to_diff(venue: str, d: dict) -> DepthDiff:
    return DepthDiff(
        venue=venue,
        symbol=d["s"],
        first_update_id=d["U"],
        final_update_id=d["u"],
        prev_final_update_id=d.get("pu"),
        bids=_levels(d["b"]),
        asks=_levels(d["a"]),
        ts_event_ns=d["E"] * 1_000_000,
        ts_init_ns=d["E"] * 1_000_000,
    )


class DecimalBook:
    """The independent rebuild: Binance's documented procedure, Decimal sizes, dicts."""

    def __init__(self, snap: dict, usdm: bool) -> None:
        self.bids = {Decimal(p): Decimal(q) for p, q in snap["bids"] if Decimal(q)}
        self.asks = {Decimal(p): Decimal(q) for p, q in snap["asks"] if Decimal(q)}
        self.last = snap["lastUpdateId"]
        self.usdm = usdm
        self.started = False
        self.gaps = 0

    def apply(self, d: dict) -> bool:
        """Apply if it continues the book; True when applied. Counts gaps."""
        if not self.started:
            if (d["u"] < self.last) if self.usdm else (d["u"] <= self.last):
                return False
            ok = d["U"] <= self.last <= d["u"] if self.usdm else d["U"] <= self.last + 1 <= d["u"]
        else:
            ok = d["pu"] == self.last if self.usdm else d["U"] == self.last + 1
        if not ok:
            self.gaps += 1
            return False
        for side, book in (("b", self.bids), ("a", self.asks)):
            for p, q in d[side]:
                if Decimal(q) == 0:
                    book.pop(Decimal(p), None)
                else:
                    book[Decimal(p)] = Decimal(q)
        self.last, self.started = d["u"], True
        return True

    def top(self, k: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        bids = sorted(self.bids.items(), reverse=True)[:k]
        asks = sorted(self.asks.items())[:k]
        return [(float(p), float(q)) for p, q in bids], [(float(p), float(q)) for p, q in asks]


def rebuild_until(path: Path, seq: int) -> DecimalBook:
    """The book rebuilt from the capture's snapshot and diffs up to the diff whose ``u`` is
    ``seq``. Raises LookupError if no diff ends at ``seq``."""
    raw = load(path)
    book = DecimalBook(raw.snapshot, is_usdm(path))
    for d in raw.diffs:
        book.apply(d)
        if book.started and book.last == seq:
            return book
    raise LookupError(f"no diff with u == {seq} in {path}")


def arrival_order(raw: Raw) -> Iterator[tuple[str, dict]]:
    """('diff', d) and ('snapshot', s) in recorded arrival order (by the shared ``seq``)."""
    snap_seq = raw.snapshot["seq"]
    emitted = False
    for d in raw.diffs:
        if not emitted and d["seq"] > snap_seq:
            emitted = True
            yield "snapshot", raw.snapshot
        yield "diff", d
    if not emitted:
        yield "snapshot", raw.snapshot
