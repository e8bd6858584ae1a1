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

import csv
import functools
import gzip
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import overload

import msgspec
import numpy as np

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
from stevie.services.venue_replay.captures import VENUE_DIRS

MS = 1_000_000
TOLERANCE = 1e-9
COMPARED = (
    "per kernel epoch, its contiguous prefix of stored vectors (n = 0, 1, ...): on the looping replay the "
    "first pass (the store keeps the first write of each key); a later pass is compared only up to its first "
    "event time already stored"
)
_LEVELS = list[tuple[float, float]]
#: one depth update as the book applies it: (U, u, pu, bids, asks)
Diff = tuple[int, int, int | None, _LEVELS, _LEVELS]
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
    diffs: (U, u, pu, bids, asks) in replay order; trades: Trade in replay order;
    diff_ts_ns: each diff's event time (ns), for the L2 backtest's event stream."""

    venue: str
    symbol: str
    usdm: bool
    name: str
    snapshot: tuple[_LEVELS, _LEVELS, int]
    diffs: Sequence[Diff]
    trades: list[Trade]
    trade_index: dict[int, int] = field(default_factory=dict)
    diff_ts_ns: list[int] = field(default_factory=list)  # event time E of each diff (ns), same order


class _WireDiff(msgspec.Struct):
    """A recorded depthUpdate line, decoded as the book-maintainer decodes the wire message
    (msgspec, non-strict: Binance's decimal strings become correctly rounded floats)."""

    E: int
    U: int
    u: int
    b: _LEVELS
    a: _LEVELS
    pu: int | None = None
    seq: int = 0


class _WireSnapshot(msgspec.Struct):
    lastUpdateId: int
    bids: _LEVELS
    asks: _LEVELS


class _WireOrder(msgspec.Struct):
    """The two fields of a depthUpdate line that order the replay (the rest is skipped)."""

    E: int
    seq: int = 0


_diff_decoder = msgspec.json.Decoder(_WireDiff, strict=False)
_order_decoder = msgspec.json.Decoder(_WireOrder, strict=False)


class WireDiffs(Sequence[Diff]):
    """A capture's depth updates kept as their recorded JSON lines, in replay order, zlib-
    compressed in chunks of ``chunk`` lines, and decoded (``_WireDiff``, the book-maintainer's
    decoding) when read; the last chunk read stays decompressed (reads are mostly in order).
    ≈ 0.3 kB per update instead of ≈ 6–9 kB as Python tuples of floats (the features service
    keeps every capture it checks decoded: ≈ 10 MB for four instead of ≈ 200 MB); a read
    costs one msgspec decode (≈ 10 µs) plus, once per chunk, a decompression (≈ 1 ms).
    Read-only; safe to read from several threads. ``i`` out of range raises IndexError."""

    def __init__(self, lines: Sequence[bytes], usdm: bool, chunk: int = 256) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self._usdm, self._chunk, self._n = usdm, chunk, len(lines)
        lengths = np.fromiter((len(x) for x in lines), dtype=np.int64, count=len(lines))
        self._ends = np.empty(len(lines), dtype=np.int64)
        self._chunks: list[bytes] = []
        for c0 in range(0, len(lines), chunk):
            self._ends[c0 : c0 + chunk] = np.cumsum(lengths[c0 : c0 + chunk])
            self._chunks.append(zlib.compress(b"".join(lines[c0 : c0 + chunk]), 1))
        self._starts = self._ends - lengths
        self._last: tuple[int, bytes] = (-1, b"")  # replaced whole (one assignment): thread-safe

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        """Bytes held (compressed chunks and offsets)."""
        return sum(len(c) for c in self._chunks) + self._starts.nbytes + self._ends.nbytes

    def _one(self, i: int) -> Diff:
        c = i // self._chunk
        last = self._last
        if last[0] != c:
            last = self._last = (c, zlib.decompress(self._chunks[c]))
        d = _diff_decoder.decode(last[1][int(self._starts[i]) : int(self._ends[i])])
        return (d.U, d.u, d.pu if self._usdm else None, d.b, d.a)

    @overload
    def __getitem__(self, i: int) -> Diff: ...
    @overload
    def __getitem__(self, i: slice) -> list[Diff]: ...
    def __getitem__(self, i: int | slice) -> Diff | list[Diff]:
        if isinstance(i, slice):
            return [self._one(k) for k in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"diff {i} out of range (0..{n - 1})")
        return self._one(i % n)

    def __iter__(self) -> Iterator[Diff]:
        return (self._one(k) for k in range(len(self)))


_snapshot_decoder = msgspec.json.Decoder(_WireSnapshot, strict=False)


def load(venue: str, symbol: str, folder: Path) -> CaptureData:
    """Decode one capture folder (``data/samples/binance/<spot|usdm>/<symbol>/l2_*``, format
    ``data/samples/SOURCE_README.md`` §1). The depth updates stay compact (``WireDiffs``:
    each line's JSON is checked here, its levels decoded when read). Raises
    FileNotFoundError / ValueError / msgspec.DecodeError on a broken capture (a level of the
    wrong type: msgspec.ValidationError when that diff is read)."""
    usdm = venue == "binance-usdm"
    snap = _snapshot_decoder.decode((folder / "depth_snapshot.json").read_bytes())
    with gzip.open(folder / "depth_updates.jsonl.gz", "rb") as f:
        lines = [line.strip() for line in f]
    lines = [line for line in lines if line]
    order = [_order_decoder.decode(line) for line in lines]
    # the replay's order: event time, then the recorder's sequence
    idx = sorted(range(len(lines)), key=lambda k: (order[k].E, order[k].seq))
    diffs = WireDiffs([lines[k] for k in idx], usdm)
    rows: list[tuple[int, Trade]] = []
    with gzip.open(folder / "trades.csv.gz", "rt") as f:
        for r in csv.DictReader(f):
            ts = int(r["trade_time_ms"]) * MS
            rows.append(
                (
                    int(r["event_time_ms"]),
                    Trade(
                        venue=venue,
                        symbol=symbol,
                        trade_id=int(r["trade_id"]),
                        price=float(r["price"]),  # correctly rounded, as msgspec's parse
                        size=float(r["qty"]),
                        aggressor="sell" if r["is_buyer_maker"] == "1" else "buy",
                        ts_event_ns=ts,
                        ts_init_ns=ts,
                    ),
                )
            )
    rows.sort(key=lambda et: et[0])  # the replay's order: event time E, stable
    trades = [t for _, t in rows]
    data = CaptureData(venue, symbol, usdm, folder.name, (snap.bids, snap.asks, snap.lastUpdateId), diffs, trades)
    data.trade_index = {t.trade_id: i for i, t in enumerate(trades)}
    data.diff_ts_ns = [order[k].E * MS for k in idx]
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


class EpochEvents:
    """The message sequence of one kernel epoch, rebuilt from the capture and stored lineage:
    before each stored vector's book, the trades fed since the previous one. Stateful (book
    walker, trade cursor): successive ``events`` calls continue the epoch."""

    def __init__(self, cap: CaptureData, walker: BookWalker) -> None:
        self.cap, self.walker = cap, walker
        self.pos: int | None = None

    def events(self, samples: Sequence[FeatureSample]) -> Iterator[Event]:
        """Messages for ``samples`` (the epoch's next vectors, n in order). Raises KeyError
        when the lineage names a trade or an update id the capture does not have."""
        cap = self.cap
        for s in samples:
            if s.trade_last is not None:
                if s.trade_first is None or s.trade_first not in cap.trade_index:
                    raise KeyError(f"trade {s.trade_first} not in {cap.name}")
                if self.pos is None:
                    self.pos = cap.trade_index[s.trade_first]
                if s.trade_last not in cap.trade_index:
                    raise KeyError(f"trade {s.trade_last} not in {cap.name}")
                end = cap.trade_index[s.trade_last]
                yield from cap.trades[self.pos : end + 1]
                self.pos = max(self.pos, end + 1)
            bids, asks = self.walker.top(s.seq, s.levels)
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


def epoch_events(cap: CaptureData, samples: Sequence[FeatureSample], walker: BookWalker) -> Iterator[Event]:
    """The message sequence one kernel epoch saw (``samples``: its contiguous prefix,
    n = 0, 1, ...), rebuilt from the capture with ``walker`` (``EpochEvents``)."""
    return EpochEvents(cap, walker).events(samples)


class EpochReplay:
    """The offline side of one kernel epoch, kept between parity requests: a fresh core fed
    ``EpochEvents``. ``extend`` replays only the vectors not replayed yet (an epoch's stored
    lineage only grows: the first write of a key wins)."""

    def __init__(self, cap: CaptureData, core: Features, make_book: Callable[[], OrderBookLike]) -> None:
        self.cap, self.core = cap, core
        self.source = EpochEvents(cap, BookWalker(cap, make_book))
        self.done: list[FeatureSample] = []
        self.produced: dict[int, MicroFeatures] = {}

    def extends(self, prefix: Sequence[FeatureSample]) -> bool:
        """True when ``prefix`` continues what was replayed (same lineage so far)."""
        return len(prefix) >= len(self.done) and list(prefix[: len(self.done)]) == self.done

    def extend(self, prefix: Sequence[FeatureSample]) -> None:
        """Replay the vectors of ``prefix`` beyond ``done`` (``extends(prefix)`` must hold)."""
        new = list(prefix[len(self.done) :])
        for f, s in run_features(self.core, self.source.events(new)):
            self.produced[s.ts_event_ns] = f
        self.done.extend(new)


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
class KeyInput:
    """What the parity of one venue+symbol needs: its stored lineage and values."""

    venue: str
    symbol: str
    samples: list[FeatureSample]
    values: dict[int, dict[str, float]]


@dataclass
class KeyReplay:
    """The offline recomputation of one venue+symbol: ts → vector (None: the offline path
    produced none for a stored vector), and what could not be replayed."""

    produced: dict[int, MicroFeatures | None]
    captures: set[str]
    epochs_compared: int
    epochs_skipped: int
    rows_skipped: int
    reason: str


class Recomputer:
    """Offline recomputation with state kept between calls (captures decoded once, every epoch
    replayed incrementally), so a parity request costs the new vectors only. Not thread-safe:
    one caller at a time."""

    def __init__(
        self,
        data_dir: Path,
        make_core: Callable[[], Features],
        kernels: Kernels,
        load_capture_fn: Callable[[str, str, Path], CaptureData] = load,
    ) -> None:
        self.data_dir, self.make_core, self.kernels, self._load = data_dir, make_core, kernels, load_capture_fn
        self.captures: dict[Path, CaptureData] = {}
        self.epochs: dict[tuple[str, str, str, int], EpochReplay] = {}

    def capture(self, venue: str, symbol: str, ts_ns: int) -> CaptureData | None:
        """The decoded capture that recorded ``venue``/``symbol`` at ``ts_ns`` (decoded once;
        safe to call from another thread than ``replay``: the worst case decodes twice)."""
        folder = find_capture(self.data_dir, venue, symbol, ts_ns)
        if folder is None:
            return None
        if folder not in self.captures:
            self.captures[folder] = self._load(venue, symbol, folder)
        return self.captures[folder]

    def replay(self, venue: str, symbol: str, samples: Sequence[FeatureSample]) -> KeyReplay:
        """Recompute every comparable prefix of ``samples`` (one venue+symbol's lineage)."""
        prefixes, empty, left = comparable_prefixes(samples)
        out = KeyReplay({}, set(), 0, empty, left, "")
        for prefix in prefixes:
            cap = self.capture(venue, symbol, prefix[0].ts_event_ns)
            if cap is None:
                out.reason = f"no capture under {self.data_dir} for event time {prefix[0].ts_event_ns}"
                out.epochs_skipped, out.rows_skipped = out.epochs_skipped + 1, out.rows_skipped + len(prefix)
                continue
            key = (venue, symbol, prefix[0].run_id, prefix[0].epoch)
            ep = self.epochs.get(key)
            if ep is None or ep.cap is not cap or not ep.extends(prefix):
                ep = self.epochs[key] = EpochReplay(
                    cap, self.make_core(), functools.partial(self.kernels.OrderBook, usdm=cap.usdm)
                )
            try:
                ep.extend(prefix)
            except KeyError as exc:
                del self.epochs[key]
                out.reason = str(exc).strip("'\"")
                out.epochs_skipped, out.rows_skipped = out.epochs_skipped + 1, out.rows_skipped + len(prefix)
                continue
            out.captures.add(cap.name)
            out.epochs_compared += 1
            for s in prefix:
                out.produced[s.ts_event_ns] = ep.produced.get(s.ts_event_ns)
        return out


@dataclass
class _Acc:
    rows: int = 0
    max_abs: float = 0.0
    bad: int = 0


def parity(keys: Sequence[KeyInput], recomputer: Recomputer, tolerance: float = TOLERANCE) -> ParityReport:
    """Recompute every comparable stored vector from its capture and compare (module doc).
    Per feature: rows compared, max |online − offline|, rows with |Δ| > ``tolerance`` (a
    vector the offline path does not produce counts as a mismatch of every feature)."""
    acc = {f: _Acc() for f in FEATURES}
    out_keys: list[KeyParity] = []
    first: Mismatch | None = None
    unmatched = 0
    for key in keys:
        rep = recomputer.replay(key.venue, key.symbol, key.samples)
        for ts, off in sorted(rep.produced.items()):
            online = key.values.get(ts, {})
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
                        first = Mismatch(key.venue, key.symbol, name, ts, online[name], offline)
                a.max_abs = max(a.max_abs, delta) if delta == delta else float("inf")
        start, end = min(rep.produced, default=0), max(rep.produced, default=0)
        sampled = {s.ts_event_ns for s in key.samples}
        orphans = sum(1 for ts in key.values if start <= ts <= end and ts not in sampled) if rep.produced else 0
        unmatched += orphans
        out_keys.append(
            KeyParity(
                key.venue,
                key.symbol,
                ",".join(sorted(rep.captures)),
                rep.epochs_compared,
                rep.epochs_skipped,
                len(rep.produced),
                rep.rows_skipped,
                start,
                end,
                rep.reason,
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
