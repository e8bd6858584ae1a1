"""The L2 backtest: the recorded depth captures through the live cores, book → features →
router → execution, with paper fills walking the book.

Path (every step is the live service's own core or its tested Rust twin, in one process, on
event time):

1. **Read** each capture (``load_capture``): the REST snapshot, the raw depth lines (gunzipped,
   not decoded) and the trades as columns (event time = trade time ``T``, replay order ``E``).
2. **Book** (decision-free, per capture, the captures of a group in parallel): the Rust twin of
   the book-maintainer core (``stevie_fastpath.BookSync``: the depth lines decoded and ordered
   by event time ``E`` then the recorder's sequence, the snapshot at the first diff's event
   time, Binance sync procedure, L2 level guard, 100 ms event-time coalescing — tested to
   publish exactly what the Python ``BookSync`` publishes, ``tests/test_book_native_sync.py``).
   The live shell's wall-clock ``flush`` of a coalesced book is not replayed (there is no wall
   clock): a book is published by the first diff ≥ 100 ms after the last publication.
3. **Stream**: each capture's books and statuses merged with its trades in event time (a trade
   before a book at equal times, as the replay sends it first); captures recorded at the same
   time (the four of 2024-08-08) merged by event time; the groups run one after another (older
   first). The router and the risk guards carry on from group to group; the execution core
   starts each group flat with the equity the previous group ended with (its open positions
   marked at their last mid, no exit cost), and rewards still pending at a group's end are
   dropped (their horizon would span the gap).
4. **Features**: the features core's dispatch (``Features`` + ``step``: one kernel per book,
   reset by a non-LIVE status, a trade going back in time or a refused book) over the merged
   stream, in Rust (``FeatureBank`` in ``stevie_fastpath.L2Replay``, the same ``MicroKernel``
   the live service runs), so only the books, statuses and vectors come back to Python:
   ``native_items``. ``sync="python"`` runs it all through the Python cores instead
   (``BookSync`` → ``merge_streams`` → ``step``: ``python_items``); the two are tested to give
   the same vectors and decisions (``tests/test_backtest_l2.py``). The items come back in
   chunks of columns (``ItemChunk``); a run of a book's vectors that the execution core would
   only record (``ExecutionCore.quiet_count``: no decision, reward or session restart due)
   goes to ``ExecutionCore.on_features_batch`` (which builds only the last book and the
   vectors the slot keeps); every other item — the vector a decision or a reward is due at, a
   status — becomes its contracts and goes to ``ExecutionCore.on_book/on_features`` as live.
   Tested to decide exactly as item by item (``run_l2(batch=False)``).
5. **Decision** when ``on_features`` says one is due (every ``decision_interval_s`` of event
   time per book): rewards whose horizon passed (``due_rewards``) → ``Router.update``; then
   ``context`` → ``Router.choose`` (Thompson sampling over ``L2_POLICIES``) → ``size`` →
   order = target − position held on every venue of the symbol → ``order_check`` →
   ``RiskGuards.check`` → ``fill`` (walks the LIVE top-k book, taker fee) → ``record``.
   σ (HAR/GARCH) is 0 in the context: the vol service is not run on ten-minute captures, so
   sizing has no vol cap (``size_decision``: σ ≤ 0 → uncertainty size only). Orders fill on
   the decision's own book (no cross-venue routing).

Deterministic: no wall clock, no unseeded randomness (the router's RNG is seeded), inputs in a
fixed order. Nothing after a decision's event time can reach it: the stream is consumed in
order and each core only sees what came before (``tests/test_backtest_lookahead.py``).
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import hashlib
import heapq
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import numpy as np
import polars as pl
from rich.console import Console
from stevie_fastpath import L2Replay

from stevie.backtest.bars import Columns, backtest_guards
from stevie.backtest.data import BacktestInputError
from stevie.contracts import BookState, BookStatus, BookTopK, DepthDiff, DepthSnapshot, MicroFeatures, Trade
from stevie.contracts.rpc import GuardDecision
from stevie.quant.book import Level
from stevie.quant.kernels import Kernels
from stevie.quant.kernels import load as load_kernels
from stevie.quant.policies import L2_POLICIES
from stevie.services.book_maintainer.core import BookSync, message
from stevie.services.execution.core import ExecutionCore, NotTradable
from stevie.services.execution.settings import ExecutionSettings
from stevie.services.features.core import Event, Features, step
from stevie.services.features.offline import CaptureData, capture_start_ns, load
from stevie.services.risk_guards.core import RiskGuards
from stevie.services.risk_guards.settings import RiskGuardsSettings
from stevie.services.router.core import Router
from stevie.services.venue_replay.captures import VENUE_DIRS

if TYPE_CHECKING:
    from stevie_fastpath._native import L2Chunk, _Capture

MS = 1_000_000
L2_CTX_FIELDS = ("obi", "ti", "spread_bps", "micro_vol", "cancel_rate", "micro_dev_bps")
"""Context numbers the L2 mode fills (in the mission's units: spread and micro-vol in bps)."""


class L2Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Everything that decides an L2 backtest's result (hashed into the run id).
    decision_interval_s / horizon_s: event-time seconds between decisions per book and of the
    reward horizon (the live execution defaults). top_k, coalesce_ms: book-maintainer
    publication (levels per side, ms). obi_levels, window_s: features (OBI depth, event-time
    window of TI / micro-vol / cancel rate). mc_draws / prior_precision / exploration: router.
    capital_quote … min_order_quote: execution sizing (quote units); fee_bps: taker fee."""

    captures: list[str]
    seed: int = 0
    decision_interval_s: float = 10.0
    horizon_s: float = 30.0
    top_k: int = 20
    coalesce_ms: int = 100
    obi_levels: int = 5
    window_s: float = 5.0
    policies: list[str] = msgspec.field(default_factory=lambda: list(L2_POLICIES))
    mc_draws: int = 500
    prior_precision: float = 1.0
    exploration: float = 0.5
    capital_quote: float = 100_000.0
    s_max_quote: float = 20_000.0
    w_star: float = 0.5
    sigma_target_bps: float = 10.0
    fee_bps: float = 5.0
    min_order_quote: float = 10.0
    guards: RiskGuardsSettings = msgspec.field(default_factory=lambda: backtest_guards(stale_book_ms=2_000.0))

    def execution(self, books: list[str]) -> ExecutionSettings:
        return ExecutionSettings(
            books=books,
            decision_interval_s=self.decision_interval_s,
            horizon_s=self.horizon_s,
            s_max_quote=self.s_max_quote,
            w_star=self.w_star,
            sigma_target_bps=self.sigma_target_bps,
            capital_quote=self.capital_quote,
            fee_bps=self.fee_bps,
            min_order_quote=self.min_order_quote,
            venue_routing=False,
        )


@dataclass(frozen=True)
class CaptureRef:
    """One capture folder: venue (``binance`` spot / ``binance-usdm``), symbol, start (ns)."""

    venue: str
    symbol: str
    folder: Path
    start_ns: int

    @property
    def label(self) -> str:
        return f"{self.venue}:{self.symbol}:{self.folder.name}"


def discover_captures(
    data_dir: Path, symbols: list[str] | None = None, venues: list[str] | None = None
) -> list[CaptureRef]:
    """Every ``<data_dir>/binance/<spot|usdm>/<symbol>/l2_*`` capture, oldest first (then venue,
    symbol), optionally only the given symbols / venues. Raises BacktestInputError when none."""
    out = []
    for venue, sub in VENUE_DIRS.items():
        if venues and venue not in venues:
            continue
        for d in sorted((data_dir / "binance" / sub).glob("*/l2_*")):
            start = capture_start_ns(d)
            sym = d.parent.name.upper()
            if start is None or (symbols and sym not in symbols):
                continue
            out.append(CaptureRef(venue, sym, d, start))
    if not out:
        raise BacktestInputError(
            f"no L2 capture under {data_dir}/binance/{{spot,usdm}}/<symbol>/l2_*"
            + (f" for symbols {symbols}" if symbols else "")
            + (f" on venues {venues}" if venues else "")
        )
    return sorted(out, key=lambda c: (c.start_ns, c.venue, c.symbol))


@dataclass(frozen=True)
class TradeColumns:
    """A capture's trades as columns, in the replay's order: event time = trade time ``T``
    (ns, int64), price (quote units) and size (base units) as float64, ``is_buy`` (the taker
    bought: Binance ``is_buyer_maker`` false)."""

    ts_ns: np.ndarray
    price: np.ndarray
    size: np.ndarray
    is_buy: np.ndarray

    def __len__(self) -> int:
        return int(self.ts_ns.size)

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.ts_ns, self.price, self.size, self.is_buy


@dataclass(frozen=True)
class L2Capture:
    """One capture as the L2 backtest reads it (format ``data/samples/SOURCE_README.md`` §1):
    the REST snapshot (bids, asks, lastUpdateId; prices and sizes as floats, as msgspec
    decodes the venue's decimal strings), the raw ``depth_updates.jsonl`` lines as recorded
    (the Rust sync decodes and orders them), ``n_diffs`` (its non-blank lines) and the
    trades in the replay's order (event time ``E``, stable)."""

    venue: str
    symbol: str
    usdm: bool
    name: str
    snapshot: tuple[list[Level], list[Level], int]
    depth_lines: bytes
    n_diffs: int
    trades: TradeColumns

    @property
    def key(self) -> str:
        return f"{self.venue}:{self.symbol}"


class _WireSnapshot(msgspec.Struct):
    lastUpdateId: int
    bids: list[Level]
    asks: list[Level]


_snapshot = msgspec.json.Decoder(_WireSnapshot, strict=False)  # decimal strings → floats
_TRADE_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {"event_time_ms": pl.Int64, "trade_time_ms": pl.Int64}
_TRADE_SCHEMA |= {"trade_id": pl.Int64, "price": pl.Float64, "qty": pl.Float64, "is_buyer_maker": pl.Int8}


def load_capture(venue: str, symbol: str, folder: Path) -> L2Capture:
    """Read one capture folder (``L2Capture``). Raises FileNotFoundError, msgspec.DecodeError
    (snapshot), polars.exceptions.ComputeError / ValueError (trades) on a broken capture; the
    depth lines are checked when the sync decodes them (ValueError naming the line)."""
    snap = _snapshot.decode((folder / "depth_snapshot.json").read_bytes())
    with gzip.open(folder / "depth_updates.jsonl.gz", "rb") as f:
        lines = f.read()
    n_diffs = sum(1 for line in lines.split(b"\n") if line.strip())
    t = pl.read_csv(folder / "trades.csv.gz", schema_overrides=_TRADE_SCHEMA)
    t = t.sort("event_time_ms", maintain_order=True)  # the replay's order: E, stable
    trades = TradeColumns(
        np.ascontiguousarray(t["trade_time_ms"].to_numpy() * MS, dtype=np.int64),
        np.ascontiguousarray(t["price"].to_numpy(), dtype=np.float64),
        np.ascontiguousarray(t["qty"].to_numpy(), dtype=np.float64),
        np.ascontiguousarray((t["is_buyer_maker"] == 0).to_numpy(), dtype=np.bool_),
    )
    snapshot = (snap.bids, snap.asks, snap.lastUpdateId)
    return L2Capture(venue, symbol, venue == "binance-usdm", folder.name, snapshot, lines, n_diffs, trades)


Item = tuple[BookTopK | BookStatus, MicroFeatures | None]
"""A published book or status in stream order, a book with its feature vector (or None)."""


class ItemChunk:
    """A chunk of a capture group's items from the Rust stage (``L2Chunk``), as columns:
    per item the capture index (into the group's ``caps``), whether it is a book, whether it
    has a feature vector, its event time (ns) and the vector (obi, ti, spread_bps,
    micro_vol_bps, cancel_rate, mid; NaN without one); ``item(i)`` / ``book(i)`` /
    ``vector(i)`` build item i's contracts (``BookTopK``/``BookStatus``, ``MicroFeatures``)
    only when asked."""

    def __init__(self, raw: L2Chunk, caps: list[L2Capture]) -> None:
        self.raw, self.caps = raw, caps
        self.cap, self.is_book, self.has_vec, self.ts_ns, self.vectors = raw.columns()
        self._rows: list[list[float]] | None = None  # built on the first vector asked for

    def __len__(self) -> int:
        return len(self.raw)

    def book(self, i: int) -> BookTopK | BookStatus:
        c, msg = self.caps[int(self.cap[i])], self.raw.message(i)
        return message(c.venue, c.symbol, msg, msg[3])

    def top(self, i: int) -> BookTopK:
        """``book(i)`` of an item with a feature vector (always a LIVE book)."""
        m = self.book(i)
        assert isinstance(m, BookTopK), "an item with a vector is a book"
        return m

    def vector(self, i: int) -> MicroFeatures:
        if self._rows is None:
            self._rows, self._ts, self._cap = self.vectors.tolist(), self.ts_ns.tolist(), self.cap.tolist()
        c, ts = self.caps[self._cap[i]], self._ts[i]
        obi, ti, spread, vol, cancel, mid = self._rows[i]
        return MicroFeatures(
            venue=c.venue,
            symbol=c.symbol,
            obi=obi,
            ti=ti,
            spread_bps=spread,
            micro_vol_bps=vol,
            cancel_rate=cancel,
            mid=mid,
            ts_event_ns=ts,
            ts_init_ns=ts,
        )

    def run(self, rows: list[int]) -> tuple[Callable[[int], BookTopK], Callable[[int], MicroFeatures]]:
        """``top`` and ``vector`` of a run of items with vectors: the i-th is item ``rows[i]``."""
        return (lambda i: self.top(rows[i])), (lambda i: self.vector(rows[i]))

    def item(self, i: int) -> Item:
        return self.book(i), (self.vector(i) if self.has_vec[i] else None)

    def items(self) -> list[Item]:
        return [self.item(i) for i in range(len(self))]


def native_items(replay: L2Replay, caps: list[L2Capture]) -> list[Item]:
    """Books and statuses of a group of captures (recorded at the same time), merged in event
    time, each book with its feature vector: ``stevie_fastpath.L2Replay.run_group`` — per
    capture the Rust twin of ``BookSync`` (its depth lines decoded and ordered by ``E`` then
    the recorder's sequence, the snapshot at the first diff's event time), the messages merged
    with the trades as ``merge_streams(book_stream_python(...))`` merges them, the features
    core's dispatch (``Features`` + ``step``) over the same Rust kernel. Tested equal to
    ``python_items`` (``tests/test_backtest_l2.py``). ``replay`` keeps each book's kernel from
    group to group, as one ``Features`` core does. Raises ValueError naming a depth line that
    does not decode."""
    return ItemChunk(replay.run_group([_capture_arg(c) for c in caps])[1], caps).items()


def native_groups(replay: L2Replay, caps: list[L2Capture], groups: list[list[int]]) -> Iterator[Iterator[ItemChunk]]:
    """``native_items`` of each group in order as ``ItemChunk``s (each group's iterator must be
    consumed before the next is taken), computed on a Rust thread (``L2Replay.start``, the
    depth lines borrowed, not copied) and handed over in chunks as they are ready, so the
    caller decides on the first items while the rest are computed. Same items; a depth line
    that does not decode raises BacktestInputError naming the capture and the line."""
    replay.start([[_capture_arg(caps[i]) for i in idx] for idx in groups])
    for idx in groups:
        yield _chunks(replay, [caps[i] for i in idx])
    assert replay.next_chunk() is None  # every group ended: the kernels are back in ``replay``


def _chunks(replay: L2Replay, caps: list[L2Capture]) -> Iterator[ItemChunk]:
    while True:
        try:
            r = replay.next_chunk()
        except ValueError as exc:  # "capture <venue:symbol>: line <n>: bad depthUpdate: ..."
            raise BacktestInputError(f"broken depth update in {exc}") from None
        assert r is not None, "a started group ends with its end marker"
        end, raw = r
        if len(raw):
            yield ItemChunk(raw, caps)
        if end:
            return


def _capture_arg(c: L2Capture) -> _Capture:
    return (c.key, c.usdm, *c.snapshot, c.depth_lines, *c.trades.columns())


def python_items(feats: Features, streams: list[list[tuple[int, int, Event]]]) -> Iterator[Item]:
    """``native_items`` in Python: the streams of ``book_stream_python`` merged in event time
    (``merge_streams``) through the features service's ``step``."""
    for m in merge_streams(streams):
        out = step(feats, m)
        if not isinstance(m, Trade):
            yield m, (None if out is None else out[0])


def book_stream_python(cap: CaptureData, s: L2Settings, kernels: Kernels) -> list[tuple[int, int, Event]]:
    """What the Python ``BookSync`` (the live shell's core) publishes for ``cap`` (the features
    service's decoding of the capture, ``offline.load``: the snapshot at the first diff's event
    time, then every diff), merged with its trades in event time: (ts_event_ns, order key,
    message); trades sort before books at equal times. The reference the Rust path is tested
    against (``tests/test_book_native_sync.py``). Raises BacktestInputError for a capture
    without diffs."""
    sync = BookSync(
        cap.venue,
        cap.symbol,
        cap.usdm,
        book=kernels.OrderBook(usdm=cap.usdm),
        top_k=s.top_k,
        coalesce_ns=s.coalesce_ms * MS,
    )
    ts = cap.diff_ts_ns
    if not ts:
        raise BacktestInputError(f"capture {cap.name} of {cap.venue}/{cap.symbol} has no depth updates")
    out: list[tuple[int, int, Event]] = []
    bids, asks, last = cap.snapshot
    snap = DepthSnapshot(
        venue=cap.venue,
        symbol=cap.symbol,
        last_update_id=last,
        bids=bids,
        asks=asks,
        ts_event_ns=ts[0],
        ts_init_ns=ts[0],
    )
    for m in sync.on_snapshot(snap):
        out.append((m.ts_event_ns, 1, m))
    venue, sym = cap.venue, cap.symbol
    for (first, final, prev, b, a), t in zip(cap.diffs, ts, strict=True):
        d = DepthDiff(
            venue=venue,
            symbol=sym,
            first_update_id=first,
            final_update_id=final,
            prev_final_update_id=prev,
            bids=b,
            asks=a,
            ts_event_ns=t,
            ts_init_ns=t,
        )
        for m in sync.on_diff(d):
            out.append((m.ts_event_ns, 1, m))
    return _with_trades(cap.trades, out)


def _with_trades(trades: list[Trade], books: list[tuple[int, int, Event]]) -> list[tuple[int, int, Event]]:
    keyed: list[tuple[int, int, Event]] = [(tr.ts_event_ns, 0, tr) for tr in trades]
    return list(heapq.merge(keyed, books, key=lambda e: (e[0], e[1])))


def merge_streams(streams: list[list[tuple[int, int, Event]]]) -> Iterator[Event]:
    """Several captures' streams in event time (stable: capture order at equal keys)."""
    keyed = [[(t, k, i, n, m) for n, (t, k, m) in enumerate(st)] for i, st in enumerate(streams)]
    for _, _, _, _, m in heapq.merge(*keyed, key=lambda e: (e[0], e[1], e[2], e[3])):
        yield m


@dataclass
class L2Result:
    decisions: dict[str, list[object]]
    equity_ts_ns: list[int]
    equity_quote: list[float]
    depth_messages: int
    trades: int
    books_published: int
    feature_vectors: int
    updates: int
    run_s: float
    run_cpu_s: float
    blocked: dict[str, int] = field(default_factory=dict)


def columns(policies: list[str]) -> Columns:
    return Columns(
        [
            "ts_event_ns",
            "venue",
            "symbol",
            "policy_id",
            "propensity",
            "score",
            "width",
            "exploration_bonus",
            "signal",
            "target_size",
            "order_size",
            "fill_price",
            "filled_size",
            "cost_bps",
            "fee_quote",
            "funding_quote",
            "reward",
            "blocked",
            "reason",
            "position_after",
            "price",
            "book_best_bid",
            "book_best_ask",
            "book_last_level",
            "equity_quote",
            "ctx_regime",
            *[f"ctx_{c}" for c in L2_CTX_FIELDS],
            *[f"shadow_{pid}" for pid in policies],
        ]
    )


def run_l2(
    captures: list[CaptureRef],
    s: L2Settings,
    kernels: Kernels | None = None,
    progress: Callable[[int, int], None] | None = None,
    transform: Callable[[L2Capture], L2Capture] | None = None,
    sync: str = "native",
    on_vector: Callable[[MicroFeatures], None] | None = None,
    batch: bool = True,
) -> L2Result:
    """Run the L2 backtest over ``captures`` (module doc). ``transform`` edits a capture as
    read (``L2Capture``) before the run (the look-ahead test perturbs later inputs with it).
    ``sync``: ``native`` (``native_items``: the Rust twins of the book-maintainer core and the
    features core's dispatch over the raw depth lines, default) or ``python`` (``python_items``:
    the Python ``BookSync`` and ``Features`` over the features service's decoding — the
    reference the native path is tested against; ``transform`` must then be None; ``kernels``
    picks its backend). ``on_vector`` sees every feature vector in stream order. ``run_s``
    times everything after reading the files (gunzipped), the depth lines' JSON decoding
    included. ``progress(depth messages done, total)`` is called per capture group.
    ``batch`` (native only): the vectors that only get recorded go to the execution core in
    runs (``ExecutionCore.on_features_batch``), only the items a decision or a reward reads
    become contracts; False hands every item to the per-vector path (tested equal).
    Raises BacktestInputError for a capture without diffs; FileNotFoundError / ValueError /
    msgspec.DecodeError for a broken capture file; ValueError for an unknown ``sync``."""
    window_ns = int(s.window_s * 1e9)
    groups = capture_groups(captures)
    if sync == "native" and kernels is None:
        # gunzip (zlib) and the CSV reader (polars) release the GIL: the captures read in parallel
        with ThreadPoolExecutor(max(1, min(len(captures), os.cpu_count() or 1))) as pool:
            caps = list(pool.map(lambda c: load_capture(c.venue, c.symbol, c.folder), captures))
        if transform is not None:
            caps = [transform(d) for d in caps]
        for c in caps:
            if c.n_diffs == 0:
                raise BacktestInputError(f"capture {c.name} of {c.venue}/{c.symbol} has no depth updates")
        n_diffs, n_trades = [c.n_diffs for c in caps], sum(len(c.trades) for c in caps)
        replay = L2Replay(s.obi_levels, window_ns, top_k=s.top_k, coalesce_ns=s.coalesce_ms * MS)
        per_group: Iterator[Iterable[Item | ItemChunk]] = native_groups(replay, caps, groups)
    elif sync == "python" and transform is None:
        kern = kernels or load_kernels()
        decoded = [load(c.venue, c.symbol, c.folder) for c in captures]
        n_diffs, n_trades = [len(x.diffs) for x in decoded], sum(len(x.trades) for x in decoded)
        feats = Features(s.obi_levels, window_ns, lambda: 0, kern, run_id="backtest")
        per_group = (python_items(feats, [book_stream_python(decoded[i], s, kern) for i in idx]) for idx in groups)
    else:
        raise ValueError(f"sync must be 'native' (no kernels) or 'python' (no transform), got {sync!r}")
    total = sum(n_diffs)
    if progress is not None:
        progress(0, total)
    with _cyclic_gc_paused():
        t0, c0 = time.perf_counter(), time.process_time()
        res = _run(s, captures, groups, per_group, n_diffs, progress, on_vector, batch)
        res.run_s, res.run_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    res.trades = n_trades
    return res


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (restored after): the run allocates millions of
    short-lived, acyclic objects (book levels, messages) that ref-counting frees, and each
    collection would rescan every live object — measured 2026-12-01: ≈ 0.45 s of CPU on the
    default run, half of it. Cycles made meanwhile are collected once it is re-enabled."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def capture_groups(captures: list[CaptureRef]) -> list[list[int]]:
    """Indices of the captures recorded at the same time (same start), groups oldest first."""
    groups: dict[int, list[int]] = {}
    for i, ref in enumerate(captures):
        groups.setdefault(ref.start_ns, []).append(i)
    return [groups[start] for start in sorted(groups)]


def _run(
    s: L2Settings,
    captures: list[CaptureRef],
    groups: list[list[int]],
    per_group: Iterator[Iterable[Item | ItemChunk]],
    n_diffs: list[int],
    progress: Callable[[int, int], None] | None,
    on_vector: Callable[[MicroFeatures], None] | None,
    batch: bool = True,
) -> L2Result:
    """The decision loop of ``run_l2`` over each capture group's items or ``ItemChunk``s
    (module doc, 3–5): a chunk goes through ``_Loop.chunk`` (``batch``) or item by item."""
    total = sum(n_diffs)
    books = sorted({f"{c.venue}:{c.symbol}" for c in captures})
    loop = _Loop(s, on_vector)
    n_depth = 0
    for idx, items in zip(groups, per_group, strict=True):
        # each group starts flat with the equity the previous one ended with (its positions
        # marked at their last mid); rewards still pending at a group's end are dropped
        loop.start_group(ExecutionCore(msgspec.structs.replace(s.execution(books), capital_quote=loop.equity)))
        for it in items:
            if not isinstance(it, ItemChunk):
                loop.count(it)
                loop.item(*it)
            elif batch:
                loop.chunk(it)
            else:
                for i in range(len(it)):
                    loop.count(x := it.item(i))
                    loop.item(*x)
        loop.equity = loop.ex.equity()
        n_depth += sum(n_diffs[i] for i in idx)
        if progress is not None:
            progress(n_depth, total)
    return L2Result(
        loop.d,
        loop.eq_t,
        loop.eq_v,
        n_depth,
        0,
        loop.n_books,
        loop.n_vec,
        loop.n_updates,
        0.0,
        0.0,
        dict(sorted(loop.guards.blocked.items())),
    )


class _Loop:
    """The decision loop's state (router, guards, the decision columns, the group's execution
    core) and its two entries: ``item`` (one book or status with its vector: the execution
    core's per-vector path, rewards, decisions) and ``chunk`` (a Rust chunk: the runs of
    vectors that only get recorded go to ``ExecutionCore.on_features_batch``, every other item
    to ``item``; tested to decide exactly as item by item)."""

    def __init__(self, s: L2Settings, on_vector: Callable[[MicroFeatures], None] | None) -> None:
        self.router = Router(s.seed, s.prior_precision, s.exploration, s.mc_draws, arms=s.policies)
        self.guards = RiskGuards(s.guards)
        self.d = columns(s.policies).data
        self.eq_t: list[int] = []
        self.eq_v: list[float] = []
        self.rows: dict[tuple[str, str], deque[int]] = {}
        self.n_updates = self.n_books = self.n_vec = 0
        self.equity = s.capital_quote
        self.on_vector = on_vector

    def start_group(self, ex: ExecutionCore) -> None:
        self.ex = ex
        self.rows.clear()

    def count(self, it: Item) -> None:
        self.n_books += isinstance(it[0], BookTopK)
        if it[1] is not None:
            self.n_vec += 1
            if self.on_vector is not None:
                self.on_vector(it[1])

    def item(self, m: BookTopK | BookStatus, f: MicroFeatures | None) -> None:
        ex, d = self.ex, self.d
        if isinstance(m, BookTopK):
            ex.on_book(m)
        elif (m.venue, m.symbol) in ex.slots and m.state is not BookState.LIVE:
            ex.slots[(m.venue, m.symbol)].top = None  # as the live shell's status handler
        if f is None:
            return
        key = (f.venue, f.symbol)
        due = ex.on_features(f)
        pend = self.rows.setdefault(key, deque())
        slot = ex.slots[key]
        if pend and not slot.pending:  # session restart cleared the pending rewards
            pend.clear()
        for policy, reward, ctx in ex.due_rewards(key):
            d["reward"][pend.popleft()] = reward
            self.router.update(policy, reward, ctx)
            self.n_updates += 1
        if not due:
            return
        try:
            _decide(ex, self.router, self.guards, key, d, pend)
        except NotTradable:
            return
        self.eq_t.append(f.ts_event_ns)
        self.eq_v.append(ex.equity())

    def chunk(self, ch: ItemChunk) -> None:
        """``item`` for each of ``ch``'s items, in order, except that every run of a book's
        vectors that ``ExecutionCore.quiet_count`` calls quiet (only recorded: no decision,
        reward or session restart) goes to ``on_features_batch`` — before each other item
        every book's quiet vectors up to it are recorded, so that item sees each book's
        latest top as item by item. Items without a vector always go to ``item``."""
        ex, n = self.ex, len(ch)
        self.n_books += int(ch.is_book.sum())
        self.n_vec += int(ch.has_vec.sum())
        if self.on_vector is not None:
            for i in np.flatnonzero(ch.has_vec).tolist():
                self.on_vector(ch.vector(i))
        keys = [(c.venue, c.symbol) for c in ch.caps]
        runs = [np.flatnonzero(ch.has_vec & (ch.cap == ci)) for ci in range(len(keys))]
        done = [0] * len(keys)  # vectors of each run already handed to the core
        stop: list[int | None] = [None] * len(keys)  # each run's first vector that is not quiet (cached)
        singles = [*np.flatnonzero(~ch.has_vec).tolist(), n]
        s_at, pos = 0, 0
        while pos < n:
            while singles[s_at] < pos:
                s_at += 1
            e = singles[s_at]
            for ci, run in enumerate(runs):
                a = done[ci]
                if a == len(run) or run[a] >= e:
                    continue
                st = stop[ci]
                if st is None:
                    q = a + ex.quiet_count(keys[ci], ch.ts_ns[run[a:]])
                    st = stop[ci] = int(run[q]) if q < len(run) else n
                e = min(e, st)
            for ci, run in enumerate(runs):
                a, b = done[ci], int(np.searchsorted(run, e))
                if b > a:
                    got = ex.on_features_batch(keys[ci], ch.ts_ns[run[a:b]], *ch.run(run[a:b].tolist()))
                    assert got == b - a, "a run found quiet is recorded whole"
                    done[ci] = b
            if e < n:
                ci = int(ch.cap[e])
                if ch.has_vec[e]:
                    done[ci] += 1
                stop[ci] = None  # this book's state may change: its next quiet run is looked up again
                self.item(*ch.item(e))
            pos = e + 1


def _decide(
    ex: ExecutionCore,
    router: Router,
    guards: RiskGuards,
    key: tuple[str, str],
    d: dict[str, list[object]],
    pend: deque[int],
) -> None:
    """One decision, as the execution shell's ``decide``/``execute`` (no routing, σ = 0)."""
    slot = ex.slot(key)
    now = slot.features[-1].ts_event_ns
    ctx = ex.context(key, 0.0, 0.0)
    window = ex.feature_window(key)
    choice = router.choose(ctx, now)
    sizing = ex.size(key, choice, ctx, 0.0, "none (L2 backtest)", now)
    held = sum(p.size for k, p in ex.positions.items() if k[1] == key[1])
    order = sizing.target_size - held
    side, qty = (1 if order > 0 else -1), abs(order)
    mid = ex.mid(key)
    top = slot.top
    assert top is not None
    levels = top.asks if side > 0 else top.bids
    fill = None
    if qty * mid < ex.s.min_order_quote:
        guard = GuardDecision(False, "no_order")
    else:
        guard = guards.check(ex.order_check(key, side, qty, now))
        if not guard.blocked:
            fill = ex.fill(key, side, qty)
    audit, _rec = ex.record(key, ex.next_id(key, now), choice, sizing, guard, fill, ctx, window, now, now, side * qty)
    filled = fill is not None and fill.filled > 0
    if not guard.blocked:
        pend.append(len(d["ts_event_ns"]))
    row: dict[str, object] = {
        "ts_event_ns": now,
        "venue": key[0],
        "symbol": key[1],
        "policy_id": choice.policyId,
        "propensity": choice.propensity,
        "score": choice.score,
        "width": choice.width,
        "exploration_bonus": choice.explorationBonus,
        "signal": sizing.signal,
        "target_size": sizing.target_size,
        "order_size": (side * fill.filled) if fill is not None else 0.0,
        "fill_price": fill.avg_price if fill is not None and filled else float("nan"),
        "filled_size": fill.filled if fill is not None else 0.0,
        "cost_bps": (side * (fill.avg_price - mid) / mid * 1e4) if fill is not None and filled else float("nan"),
        "fee_quote": fill.fee_quote if fill is not None else 0.0,
        "funding_quote": 0.0,
        "reward": float("nan"),
        "blocked": guard.blocked,
        "reason": guard.reason,
        "position_after": audit.position_after,
        "price": mid,
        "book_best_bid": top.bids[0][0],
        "book_best_ask": top.asks[0][0],
        "book_last_level": levels[-1][0],
        "equity_quote": ex.equity(),
        "ctx_regime": ctx.regime,
    }
    for c in L2_CTX_FIELDS:
        row[f"ctx_{c}"] = ctx.value(c)
    for pid, sig in (audit.shadow or {}).items():
        name = f"shadow_{pid}"
        if name in d:
            row[name] = sig
    for name, col in d.items():
        col.append(row.get(name, 0))


@dataclass(frozen=True)
class L2Command:
    data_dir: Path
    symbols: list[str]
    venues: list[str]
    seed: int
    out: Path | None
    database_url: str
    decision_interval_s: float = 10.0


def run_l2_command(cmd: L2Command, console: Console) -> str:
    """Discover, run, write (``report.html``, ``decisions.parquet``, ``summary.json`` through
    ``stevie.backtest.run.finish``; the database when configured). Raises BacktestInputError."""
    from stevie.backtest import output, report
    from stevie.backtest.run import finish, progress_bar

    t0 = time.perf_counter()
    caps = discover_captures(cmd.data_dir, cmd.symbols or None, cmd.venues or None)
    settings = L2Settings(captures=[c.label for c in caps], seed=cmd.seed, decision_interval_s=cmd.decision_interval_s)
    data_desc: dict[str, object] = {
        "captures": {c.label: {"sha256": _capture_sha(c.folder)} for c in caps},
    }
    rid = output.run_id("l2", data_desc, settings)
    with progress_bar(console, "msgs") as bar:
        task = bar.add_task(f"backtest {rid}", total=0)
        res = run_l2(caps, settings, progress=lambda n, total: bar.update(task, completed=n, total=total))
    m = output.metrics(
        res.decisions,
        res.equity_ts_ns,
        res.equity_quote,
        settings.capital_quote,
        settings.decision_interval_s / 60.0,
        settings.policies,
        {
            "depth_messages": res.depth_messages,
            "trades": res.trades,
            "books_published": res.books_published,
            "feature_vectors": res.feature_vectors,
            "router_updates": res.updates,
        },
    )
    summary: dict[str, object] = {
        "runId": rid,
        "mode": "l2",
        "gitRevision": output.git_revision(),
        "seed": cmd.seed,
        "settings": msgspec.to_builtins(settings),
        "data": data_desc,
        "metrics": m,
    }
    figs = report.figures(res.decisions, res.equity_ts_ns, res.equity_quote, settings.policies)
    elapsed = time.perf_counter() - t0
    summary["timing"] = {
        "run_s": round(res.run_s, 3),
        "run_cpu_s": round(res.run_cpu_s, 3),
        "total_s": round(elapsed, 3),
        "depth_messages_per_s": round(res.depth_messages / res.run_s, 1) if res.run_s > 0 else None,
        "depth_messages_per_cpu_s": round(res.depth_messages / res.run_cpu_s, 1) if res.run_cpu_s > 0 else None,
        "depth_messages_per_s_with_decode": round(res.depth_messages / elapsed, 1),
    }
    out_dir = cmd.out or Path(".stevie/backtests") / rid
    if cmd.database_url:
        from stevie.backtest.store import save_run

        save_run(cmd.database_url, rid, summary, res.decisions)
    finish(out_dir, rid, summary, res.decisions, figs)
    return (
        f"run {rid}: {len(caps)} captures, {res.depth_messages:,} depth messages, {m['decisions']:,} decisions "
        f"in {elapsed:.1f} s ({res.depth_messages / res.run_s:,.0f} depth msgs/s after reading the files, "
        f"{res.depth_messages / res.run_cpu_s:,.0f} per CPU-second); "
        f"return {m['total_return']} → {out_dir}"
    )


def _capture_sha(folder: Path) -> str:
    h = hashlib.sha256()
    for name in ("depth_snapshot.json", "depth_updates.jsonl.gz", "trades.csv.gz"):
        h.update(name.encode())
        h.update(hashlib.sha256((folder / name).read_bytes()).digest())
    return h.hexdigest()


def bench(data_dir: Path, rounds: int = 1) -> tuple[int, float, float]:
    """(depth messages, best seconds of the run after decoding, best seconds with decoding) of
    the L2 backtest over every capture under ``data_dir`` (the ``stevie bench`` row)."""
    caps = discover_captures(data_dir)
    s = L2Settings(captures=[c.label for c in caps])
    best_run = best_total = float("inf")
    n = 0
    for _ in range(max(1, rounds)):
        t0 = time.perf_counter()
        r = run_l2(caps, s)
        best_total = min(best_total, time.perf_counter() - t0)
        best_run, n = min(best_run, r.run_s), r.depth_messages
    return n, best_run, best_total
