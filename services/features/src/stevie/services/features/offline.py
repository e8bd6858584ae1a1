"""Offline recomputation of stored feature vectors from the recorded L2 capture, and the
online-vs-offline parity report (pure: no I/O but reading the capture files).

One code path. The live service feeds bus messages to ``Features`` through ``core.step``;
this module rebuilds the *same message sequence* from the capture and feeds it through the
same ``step`` of a fresh ``Features`` (same kernels backend, same k and window):

- books: the capture's snapshot plus its diffs, in the replay venue's order (event time ``E``,
  then the recorder's sequence), applied by the same ``kernels.OrderBook`` the book-maintainer
  uses (float API, stale diffs skipped by the Binance rule); the book published online at
  update id ``seq`` is this book's top ``levels`` when its last applied id is ``seq``;
- trades: the capture's trades in the replay's order (``E``, stable), decoded as the
  book-maintainer decodes them (msgspec, non-strict decimal strings; event time = trade time
  ``T``; ``m`` → seller aggressor);
- the sampling plan comes from the stored lineage (``FeatureSample``): which books the
  book-maintainer published (its 100 ms coalescing and wall-clock flush decide that), which
  trades the kernel had been fed before each (``trade_first``..``trade_last``, in arrival
  order) and where the kernel was reset (a new ``epoch``: resync, stale book, session restart,
  event time going back). Every input *value* comes from the capture, none from the store.

Which rows are compared (the replay loops, each pass a new session whose event times repeat
the first's): the store keeps the first write of every (venue, symbol, feature, ts) key, so it
holds the first pass. Each kernel epoch is compared over its contiguous prefix of stored
vectors (index ``n`` = 0, 1, 2, …): all of the first pass's epochs, and the leading vectors of a
later pass's epoch up to its first event time the first pass had already stored (there the
later pass's write was dropped, so the rest of that epoch cannot be replayed and is skipped,
counted in ``rowsSkipped``). A stored value with no lineage inside a compared window (a row
the features service did not write) is counted in ``unmatchedOnline`` and fails the verdict.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from stevie.contracts import BookState, BookTopK, MicroFeatures, Trade
from stevie.contracts.featstore import (
    FEATURES,
    FeatureParity,
    FeatureSample,
    KeyParity,
    Mismatch,
    ParityReport,
)
from stevie.quant.book import Level, OrderBookLike, Verdict
from stevie.quant.kernels import Kernels
from stevie.services.features.core import Event, Features, step
from stevie.services.venue_replay.captures import VENUE_DIRS, load_capture

MS = 1_000_000
TOLERANCE = 1e-9
COMPARED = (
    "per kernel epoch, its contiguous prefix of stored vectors (n = 0, 1, ...): on the looping replay the "
    "first pass (the store keeps the first write of each key); a later pass is compared only up to its first "
    "event time already stored"
)
_LEVELS = list[tuple[float, float]]
_CAPTURE_NAME = re.compile(r"^l2_(\d{4}-\d{2}-\d{2}T\d{4})Z$")


def run_features(core: Features, events: Iterable[Event]) -> Iterator[tuple[MicroFeatures, FeatureSample]]:
    """Feed ``events`` (books, trades, statuses, in arrival order) to ``core`` through
    ``step`` — the live service's own dispatch — and yield every (vector, lineage) it
    produces. The backtest's L2 mode calls this over the messages its book-maintainer core
    publishes."""
    for ev in events:
        out = step(core, ev)
        if out is not None:
            yield out


@dataclass
class CaptureData:
    """One capture decoded as the book-maintainer decodes the replay's wire messages.
    diffs: (U, u, pu, bids, asks) in replay order; trades: Trade in replay order."""

    venue: str
    symbol: str
    usdm: bool
    name: str
    snapshot: tuple[_LEVELS, _LEVELS, int]
    diffs: list[tuple[int, int, int | None, _LEVELS, _LEVELS]]
    trades: list[Trade]
    trade_index: dict[int, int] = field(default_factory=dict)


def load(venue: str, symbol: str, folder: Path) -> CaptureData:
    """Decode one capture folder (``data/samples/binance/<spot|usdm>/<symbol>/l2_*``).
    Raises FileNotFoundError / ValueError on a broken capture."""
    cap = load_capture(venue, symbol, folder)

    def lv(raw: object) -> _LEVELS:
        return msgspec.convert(raw, _LEVELS, strict=False)

    snap = cap.snapshot
    diffs_raw = sorted(cap.diffs, key=lambda d: (int(d["E"]), int(d.get("seq", 0))))
    diffs = [
        (int(d["U"]), int(d["u"]), (int(d["pu"]) if cap.usdm else None), lv(d["b"]), lv(d["a"])) for d in diffs_raw
    ]
    trades = [
        Trade(
            venue=venue,
            symbol=symbol,
            trade_id=int(t["t"]),
            price=msgspec.convert(t["p"], float, strict=False),
            size=msgspec.convert(t["q"], float, strict=False),
            aggressor="sell" if t["m"] else "buy",
            ts_event_ns=int(t["T"]) * MS,
            ts_init_ns=int(t["T"]) * MS,
        )
        for t in sorted(cap.trades, key=lambda t: int(t["E"]))
    ]
    data = CaptureData(
        venue,
        symbol,
        cap.usdm,
        folder.name,
        (lv(snap["bids"]), lv(snap["asks"]), int(snap["lastUpdateId"])),
        diffs,
        trades,
    )
    data.trade_index = {t.trade_id: i for i, t in enumerate(trades)}
    return data


def capture_start_ns(folder: Path) -> int | None:
    """Start time of a capture from its folder name (``l2_2024-08-08T2354Z`` → ns), else None."""
    m = _CAPTURE_NAME.match(folder.name)
    if not m:
        return None
    return int(datetime.strptime(m.group(1), "%Y-%m-%dT%H%M").replace(tzinfo=UTC).timestamp()) * 1_000_000_000


def find_capture(data_dir: Path, venue: str, symbol: str, ts_ns: int) -> Path | None:
    """The capture of ``venue``/``symbol`` that recorded event time ``ts_ns``: the latest one
    starting at or before it (within 6 hours), else None."""
    sub = VENUE_DIRS.get(venue)
    if sub is None:
        return None
    best: tuple[int, Path] | None = None
    for d in (data_dir / "binance" / sub / symbol.lower()).glob("l2_*"):
        start = capture_start_ns(d)
        recorded = start is not None and start <= ts_ns < start + 6 * 3600 * 1_000_000_000
        if start is not None and recorded and (best is None or start > best[0]):
            best = (start, d)
    return None if best is None else best[1]


class BookWalker:
    """The capture's book walked forward diff by diff (restarting from the snapshot when asked
    for an earlier update id)."""

    def __init__(self, cap: CaptureData, make_book: Callable[[], OrderBookLike]) -> None:
        self.cap, self._make = cap, make_book
        self._restart()

    def _restart(self) -> None:
        self.book = self._make()
        bids, asks, last = self.cap.snapshot
        self.book.apply_snapshot(bids, asks, last)
        self.i = 0

    def top(self, seq: int, levels: int) -> tuple[list[Level], list[Level]]:
        """Top ``levels`` per side of the book whose last applied update id is ``seq``.
        Raises KeyError when no diff of the capture ends at ``seq``."""
        if seq < self.book.last_update_id:
            self._restart()
        diffs = self.cap.diffs
        while self.book.last_update_id < seq and self.i < len(diffs):
            first, final, prev, bids, asks = diffs[self.i]
            self.i += 1
            if self.book.apply_diff(first, final, prev, bids, asks) == Verdict.GAP:
                raise KeyError(f"capture {self.cap.name} has a gap before update id {final}")
        if self.book.last_update_id != seq:
            raise KeyError(f"no diff of {self.cap.name} ends at update id {seq}")
        return self.book.top_k(levels)


def epoch_events(cap: CaptureData, samples: Sequence[FeatureSample], walker: BookWalker) -> Iterator[Event]:
    """The message sequence one kernel epoch saw, rebuilt from the capture: before the i-th
    stored vector's book, the trades fed since the previous one. ``samples``: one epoch's
    contiguous prefix (n = 0, 1, ...). Raises KeyError when the lineage names a trade or an
    update id the capture does not have."""
    pos = None
    for s in samples:
        if s.trade_last is not None:
            if s.trade_first is None or s.trade_first not in cap.trade_index:
                raise KeyError(f"trade {s.trade_first} not in {cap.name}")
            if pos is None:
                pos = cap.trade_index[s.trade_first]
            if s.trade_last not in cap.trade_index:
                raise KeyError(f"trade {s.trade_last} not in {cap.name}")
            end = cap.trade_index[s.trade_last]
            yield from cap.trades[pos : end + 1]
            pos = max(pos, end + 1)
        bids, asks = walker.top(s.seq, s.levels)
        yield BookTopK(
            venue=s.venue,
            symbol=s.symbol,
            seq=s.seq,
            state=BookState.LIVE,
            bids=bids,
            asks=asks,
            ts_event_ns=s.ts_event_ns,
            ts_init_ns=s.ts_event_ns,
        )


def comparable_prefixes(samples: Sequence[FeatureSample]) -> tuple[list[list[FeatureSample]], int, int]:
    """Split lineage into epochs (run_id, epoch) and keep each one's contiguous prefix
    n = 0, 1, 2, ...; returns (prefixes, epochs with no prefix, samples left out)."""
    epochs: dict[tuple[str, int], list[FeatureSample]] = {}
    for s in samples:
        epochs.setdefault((s.run_id, s.epoch), []).append(s)
    prefixes, empty, left = [], 0, 0
    for key in sorted(epochs):
        rows = sorted(epochs[key], key=lambda s: s.n)
        k = 0
        while k < len(rows) and rows[k].n == k:
            k += 1
        left += len(rows) - k
        if k:
            prefixes.append(rows[:k])
        else:
            empty += 1
    return prefixes, empty, left


@dataclass
class _Acc:
    rows: int = 0
    max_abs: float = 0.0
    bad: int = 0


@dataclass
class KeyInput:
    """What the parity of one venue+symbol needs: its stored lineage and values."""

    venue: str
    symbol: str
    samples: list[FeatureSample]
    values: dict[int, dict[str, float]]


def parity(
    keys: Sequence[KeyInput],
    data_dir: Path,
    make_core: Callable[[], Features],
    kernels: Kernels,
    load_capture_fn: Callable[[str, str, Path], CaptureData] = load,
    tolerance: float = TOLERANCE,
) -> ParityReport:
    """Recompute every comparable stored vector from its capture and compare (module doc).
    Per feature: rows compared, max |online − offline|, rows with |Δ| > ``tolerance`` (a
    vector the offline path does not produce counts as a mismatch of every feature)."""
    acc = {f: _Acc() for f in FEATURES}
    out_keys: list[KeyParity] = []
    first: Mismatch | None = None
    unmatched = 0
    for key in keys:
        prefixes, empty, left = comparable_prefixes(key.samples)
        compared_ts: set[int] = set()
        captures: set[str] = set()
        reason = ""
        walkers: dict[Path, BookWalker] = {}
        epochs_done = 0
        for prefix in prefixes:
            folder = find_capture(data_dir, key.venue, key.symbol, prefix[0].ts_event_ns)
            if folder is None:
                reason, left = f"no capture under {data_dir} for {prefix[0].ts_event_ns}", left + len(prefix)
                continue
            if folder not in walkers:
                cap = load_capture_fn(key.venue, key.symbol, folder)
                walkers[folder] = BookWalker(cap, functools.partial(kernels.OrderBook, usdm=cap.usdm))
            walker = walkers[folder]
            captures.add(folder.name)
            core = make_core()
            try:
                events = list(epoch_events(walker.cap, prefix, walker))
            except KeyError as exc:
                reason, left = str(exc).strip("'\""), left + len(prefix)
                continue
            epochs_done += 1
            produced = {s.ts_event_ns: f for f, s in run_features(core, events)}
            for s in prefix:
                online = key.values.get(s.ts_event_ns, {})
                off = produced.get(s.ts_event_ns)
                compared_ts.add(s.ts_event_ns)
                for name in FEATURES:
                    if name not in online:
                        continue
                    a = acc[name]
                    a.rows += 1
                    offline = float(getattr(off, name)) if off is not None else float("nan")
                    delta = abs(online[name] - offline)
                    if not delta <= tolerance:  # NaN counts as a mismatch
                        a.bad += 1
                        if first is None:
                            first = Mismatch(key.venue, key.symbol, name, s.ts_event_ns, online[name], offline)
                    if delta == delta:
                        a.max_abs = max(a.max_abs, delta)
                    else:
                        a.max_abs = float("inf")
        start = min(compared_ts, default=0)
        end = max(compared_ts, default=0)
        sampled = {s.ts_event_ns for s in key.samples}
        orphans = sum(1 for ts in key.values if start <= ts <= end and ts not in sampled) if compared_ts else 0
        unmatched += orphans
        out_keys.append(
            KeyParity(
                key.venue,
                key.symbol,
                ",".join(sorted(captures)),
                epochs_done,
                empty + len(prefixes) - epochs_done,
                len(compared_ts),
                left,
                start,
                end,
                reason,
            )
        )
    features = {
        name: FeatureParity(
            a.rows, a.max_abs, a.bad, "no_data" if a.rows == 0 else ("exact" if a.bad == 0 else "mismatch")
        )
        for name, a in acc.items()
    }
    verdicts = {f.verdict for f in features.values()}
    if "mismatch" in verdicts or unmatched:
        verdict = "mismatch"
    elif verdicts == {"no_data"}:
        verdict = "no_data"
    else:
        verdict = "exact"
    return ParityReport(verdict, tolerance, features, out_keys, COMPARED, unmatched, first)
