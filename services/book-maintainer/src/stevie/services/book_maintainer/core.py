"""book-maintainer core (pure): the Binance book synchronisation state machine.

Procedure (Binance "How to manage a local order book correctly", spot and USD-M):
buffer diffs → fetch a REST snapshot → drop stale diffs → the first applied diff must
straddle the snapshot id → every later diff must continue the previous one (spot
``U == u+1``, USD-M ``pu == u``). Any gap, a crossed book, a run of stale diffs, a
buffer overflow or a disconnect → SYNCING, forget the book, re-snapshot. Only a LIVE book
is ever published as a book.

L2 level guard (data quality): every diff that would be applied to a snapshotted book is
first checked with ``stevie.quant.quality.l2_levels`` against the book's mid and its visible
size (top ``guard_depth`` levels of both sides, base units). A diff with a level far from
the mid or a size spike is never applied: the book resyncs (reason ``far_from_mid`` /
``size_spike`` / ``non_finite``) and the diff is kept in ``rejected`` for the shell (counters,
quarantine row). The venue's snapshot does not carry a bogus stream level, so the resync
recovers the right book.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from stevie.contracts import BookState, BookStatus, BookTopK, DepthDiff, DepthSnapshot
from stevie.quant.book import Level, OrderBook, OrderBookLike, Verdict
from stevie.quant.quality import L2Limits, l2_levels

Out = BookTopK | BookStatus
MAX_STALE_RUN = 100
DEFAULT_L2_LIMITS = L2Limits()  # None in BookSync(l2_limits=...) turns the guard off


@dataclass
class SyncCounters:
    applied: int = 0
    stale: int = 0
    gaps: int = 0
    crossed: int = 0
    resyncs: int = 0
    l2_checked: int = 0
    l2_rejected: int = 0


@dataclass(frozen=True)
class RejectedDiff:
    """A diff the L2 guard refused: ``reason`` from ``l2_levels``, the book's ``mid`` (quote
    units) and ``visible_size`` (base units, top ``guard_depth`` levels of both sides) it was
    judged against."""

    diff: DepthDiff
    reason: str
    mid: float
    visible_size: float


class BookSync:
    """One venue+symbol. Feed it diffs, snapshots and ticks; it returns messages to publish.

    ``init_clock`` (injected, e.g. the shell's wall clock) stamps ``ts_init_ns``.
    ``wants_snapshot`` tells the shell to fetch a REST snapshot (then call ``on_snapshot``).
    Times: ``now_ns`` is the event time of the input being handled (ns since epoch).
    """

    def __init__(
        self,
        venue: str,
        symbol: str,
        usdm: bool,
        *,
        top_k: int = 20,
        coalesce_ns: int = 100_000_000,
        buffer_size: int = 5000,
        book: OrderBookLike | None = None,
        init_clock: Callable[[], int] | None = None,
        l2_limits: L2Limits | None = DEFAULT_L2_LIMITS,
        guard_depth: int = 20,
    ) -> None:
        self.venue, self.symbol = venue, symbol
        self.book: OrderBookLike = book if book is not None else OrderBook(usdm=usdm)
        self.top_k, self.coalesce_ns = top_k, coalesce_ns
        self.state = BookState.SYNCING
        self.wants_snapshot = True
        self.buffer: deque[DepthDiff] = deque()
        self.buffer_size = buffer_size
        self.counters = SyncCounters()
        self._stale_run = 0
        self._last_pub_ns = 0
        self._dirty = False
        self.last_event_ns = 0
        self._init_clock = init_clock
        self.l2_limits, self.guard_depth = l2_limits, guard_depth
        self.rejected: list[RejectedDiff] = []  # drained by the shell (take_rejected)

    # -- inputs -------------------------------------------------------------------------
    def on_diff(self, diff: DepthDiff) -> list[Out]:
        """Handle one diff-depth event."""
        self.last_event_ns = max(self.last_event_ns, diff.ts_event_ns)
        if self.state is not BookState.SYNCING:
            return self._apply(diff)
        if self.wants_snapshot:
            if len(self.buffer) >= self.buffer_size:
                self.buffer.clear()
            self.buffer.append(diff)
            return []
        # Snapshot applied, waiting for the first diff that continues it.
        return self._replay([diff], diff.ts_event_ns)

    def on_snapshot(self, snap: DepthSnapshot) -> list[Out]:
        """Apply a REST snapshot, then the buffered diffs; LIVE once one diff continues it."""
        self.wants_snapshot = False
        self.book.apply_snapshot(snap.bids, snap.asks, snap.last_update_id)
        pending, self.buffer = list(self.buffer), deque()
        return self._replay(pending, snap.ts_event_ns)

    def _replay(self, pending: list[DepthDiff], now_ns: int) -> list[Out]:
        """Apply diffs to a freshly snapshotted book; LIVE once one continues it."""
        for i, diff in enumerate(pending):
            reason = self._bad_levels(diff)
            if reason:
                out = self.resync(reason, now_ns)
                self.buffer.extend(pending[i + 1 :])  # newer diffs wait for the next snapshot
                return out
            verdict = self.book.apply_diff(
                diff.first_update_id, diff.final_update_id, diff.prev_final_update_id, diff.bids, diff.asks
            )
            if verdict == Verdict.STALE:
                continue
            if verdict == Verdict.GAP:
                # The snapshot is older than the buffered stream (or the stream jumped):
                # keep what follows and fetch a newer snapshot.
                self.counters.gaps += 1
                self.buffer.extend(pending[i:])
                self.book.clear()
                self.wants_snapshot = True
                return []
            self.counters.applied += 1
        return self._go_live(now_ns) if self.book.synced else []

    def resync(self, reason: str, now_ns: int) -> list[Out]:
        """Drop to SYNCING (disconnect, overflow, gap, crossed, ...). Idempotent while SYNCING."""
        if self.state is BookState.SYNCING and self.wants_snapshot and not self.buffer:
            return []
        seq = self.book.last_update_id
        self.state = BookState.SYNCING
        self.book.clear()
        self.buffer.clear()
        self.wants_snapshot = True
        self._dirty = False
        self.counters.resyncs += 1
        return [self._status(reason, now_ns, seq)]

    def take_rejected(self) -> list[RejectedDiff]:
        """The diffs the L2 guard refused since the last call (then forgotten)."""
        out, self.rejected = self.rejected, []
        return out

    def check_stale(self, idle_ns: int, stale_after_ns: int, now_ns: int) -> list[Out]:
        """LIVE with no update for ``idle_ns >= stale_after_ns`` → STALE (not served as LIVE)."""
        if self.state is BookState.LIVE and idle_ns >= stale_after_ns:
            self.state = BookState.STALE
            return [self._status("no_updates", now_ns, self.book.last_update_id)]
        return []

    def flush(self) -> list[Out]:
        """Publish the coalesced book if an applied diff has not been published yet."""
        if self._dirty and self.state is BookState.LIVE:
            return [self._top(self.last_event_ns)]
        return []

    # -- internals ----------------------------------------------------------------------
    def _bad_levels(self, diff: DepthDiff) -> str:
        """'' or the L2 guard's reason for a diff that would change the book (a stale diff,
        ``u`` not beyond the book's update id, is never applied and not judged)."""
        if self.l2_limits is None or diff.final_update_id <= self.book.last_update_id:
            return ""
        bb, ba = self.book.best_bid(), self.book.best_ask()
        if bb is None or ba is None:
            return ""
        mid = 0.5 * (bb[0] + ba[0])
        bids, asks = self.book.top_k(self.guard_depth)
        visible = sum(q for _, q in bids) + sum(q for _, q in asks)
        self.counters.l2_checked += 1
        reason = l2_levels(diff.bids, mid, visible, self.l2_limits) or l2_levels(
            diff.asks, mid, visible, self.l2_limits
        )
        if reason:
            self.counters.l2_rejected += 1
            self.rejected.append(RejectedDiff(diff, reason, mid, visible))
        return reason

    def _apply(self, diff: DepthDiff) -> list[Out]:
        reason = self._bad_levels(diff)
        if reason:
            return self.resync(reason, diff.ts_event_ns)
        verdict = self.book.apply_diff(
            diff.first_update_id, diff.final_update_id, diff.prev_final_update_id, diff.bids, diff.asks
        )
        if verdict == Verdict.STALE:
            self.counters.stale += 1
            self._stale_run += 1
            return self.resync("stale_run", diff.ts_event_ns) if self._stale_run > MAX_STALE_RUN else []
        if verdict == Verdict.GAP:
            self.counters.gaps += 1
            return self.resync("gap", diff.ts_event_ns)
        self._stale_run = 0
        self.counters.applied += 1
        if self.book.is_crossed():
            self.counters.crossed += 1
            return self.resync("crossed", diff.ts_event_ns)
        out: list[Out] = []
        if self.state is BookState.STALE:
            out += self._go_live(diff.ts_event_ns)
            return out
        self._dirty = True
        if diff.ts_event_ns - self._last_pub_ns >= self.coalesce_ns:
            out.append(self._top(diff.ts_event_ns))
        return out

    def _go_live(self, now_ns: int) -> list[Out]:
        if self.book.is_crossed():
            self.counters.crossed += 1
            return self.resync("crossed", now_ns)
        self.state = BookState.LIVE
        self._stale_run = 0
        return [self._status("live", now_ns, self.book.last_update_id), self._top(max(now_ns, self.last_event_ns))]

    def _top(self, ts_ns: int) -> BookTopK:
        self._dirty = False
        self._last_pub_ns = ts_ns
        bids, asks = self.book.top_k(self.top_k)
        return BookTopK(
            venue=self.venue,
            symbol=self.symbol,
            seq=self.book.last_update_id,
            state=self.state,
            bids=bids,
            asks=asks,
            ts_event_ns=ts_ns,
            ts_init_ns=self._init_ns(ts_ns),
        )

    def _status(self, reason: str, now_ns: int, seq: int) -> BookStatus:
        return BookStatus(
            venue=self.venue,
            symbol=self.symbol,
            state=self.state,
            reason=reason,
            seq=seq,
            resyncs=self.counters.resyncs,
            ts_event_ns=now_ns,
            ts_init_ns=self._init_ns(now_ns),
        )

    def _init_ns(self, event_ns: int) -> int:
        """``ts_init_ns``: the injected clock (the shell's wall clock), else the event time."""
        return self._init_clock() if self._init_clock else event_ns


_STATES = {s.value: s for s in BookState}
_RawOut = tuple[str, str, int, int, object, object]


class NativeBookSync:
    """``BookSync`` on its Rust twin (``stevie_fastpath.BookSync``: the same procedure, guard
    and coalescing, step for step): same inputs, same ``BookTopK``/``BookStatus`` outputs
    (``tests/test_book_native_sync.py`` compares both on every capture and on generated
    sequences). The book lives in Rust (``book`` is not exposed); ``replay_capture`` takes a
    recorded capture's raw depth lines and runs the whole sync without returning to Python
    per diff (the L2 backtest's book stage)."""

    def __init__(
        self,
        venue: str,
        symbol: str,
        usdm: bool,
        *,
        top_k: int = 20,
        coalesce_ns: int = 100_000_000,
        buffer_size: int = 5000,
        init_clock: Callable[[], int] | None = None,
        l2_limits: L2Limits | None = DEFAULT_L2_LIMITS,
        guard_depth: int = 20,
    ) -> None:
        from stevie_fastpath import BookSync as _Native

        lim = l2_limits or DEFAULT_L2_LIMITS
        self.venue, self.symbol = venue, symbol
        self._init_clock = init_clock
        self._s = _Native(
            usdm,
            top_k=top_k,
            coalesce_ns=coalesce_ns,
            buffer_size=buffer_size,
            guard=l2_limits is not None,
            max_price_ratio=lim.max_price_ratio,
            size_spike_mult=lim.size_spike_mult,
            guard_depth=guard_depth,
        )

    @property
    def state(self) -> BookState:
        return _STATES[self._s.state]

    @property
    def wants_snapshot(self) -> bool:
        return self._s.wants_snapshot

    @property
    def last_event_ns(self) -> int:
        return self._s.last_event_ns

    @property
    def counters(self) -> SyncCounters:
        return SyncCounters(*self._s.counters)

    def on_diff(self, diff: DepthDiff) -> list[Out]:
        """Handle one diff-depth event (``BookSync.on_diff``)."""
        return self._msgs(
            self._s.on_diff(
                diff.first_update_id,
                diff.final_update_id,
                diff.prev_final_update_id,
                diff.bids,
                diff.asks,
                diff.ts_event_ns,
            )
        )

    def on_snapshot(self, snap: DepthSnapshot) -> list[Out]:
        """Apply a REST snapshot, then the buffered diffs (``BookSync.on_snapshot``)."""
        return self._msgs(self._s.on_snapshot(snap.bids, snap.asks, snap.last_update_id, snap.ts_event_ns))

    def resync(self, reason: str, now_ns: int) -> list[Out]:
        """Drop to SYNCING (``BookSync.resync``)."""
        return self._msgs(self._s.resync(reason, now_ns))

    def check_stale(self, idle_ns: int, stale_after_ns: int, now_ns: int) -> list[Out]:
        """LIVE with no update for ``idle_ns >= stale_after_ns`` → STALE."""
        return self._msgs(self._s.check_stale(idle_ns, stale_after_ns, now_ns))

    def flush(self) -> list[Out]:
        """Publish the coalesced book if an applied diff has not been published yet."""
        return self._msgs(self._s.flush())

    def take_rejected(self) -> list[RejectedDiff]:
        """The diffs the L2 guard refused since the last call (then forgotten)."""
        out = []
        for first, final, prev, bids, asks, ts, reason, mid, visible in self._s.take_rejected():
            d = DepthDiff(
                venue=self.venue,
                symbol=self.symbol,
                first_update_id=first,
                final_update_id=final,
                prev_final_update_id=prev,
                bids=bids,
                asks=asks,
                ts_event_ns=ts,
                ts_init_ns=ts,
            )
            out.append(RejectedDiff(d, reason, mid, visible))
        return out

    def replay_capture(
        self, snapshot: tuple[list[Level], list[Level], int], depth_lines: bytes
    ) -> tuple[int, list[Out]]:
        """A recorded capture through the sync: ``depth_lines`` = the raw ``depthUpdate`` JSON
        lines (``depth_updates.jsonl``, format ``data/samples/SOURCE_README.md`` §1) ordered by
        (``E``, ``seq``) as the replay sends them; ``snapshot`` = (bids, asks, lastUpdateId),
        applied at the first diff's event time. Returns (diffs, everything published).
        Raises ValueError naming the first line that does not decode (nothing applied)."""
        bids, asks, last = snapshot
        n, raw = self._s.replay_capture(bids, asks, last, depth_lines)
        return n, self._msgs(raw)

    def _msgs(self, raw: Sequence[_RawOut]) -> list[Out]:
        clock = self._init_clock
        return [message(self.venue, self.symbol, r, clock() if clock else r[3]) for r in raw]


def message(venue: str, symbol: str, raw: _RawOut, init_ns: int) -> Out:
    """A message of the Rust sync as a contract: ``("book", state, seq, ts_event_ns, bids,
    asks)`` → ``BookTopK``, ``("status", state, seq, ts_event_ns, reason, resyncs)`` →
    ``BookStatus``; ``init_ns`` stamps ``ts_init_ns``."""
    kind, state, seq, ts, a, b = raw
    if kind == "book":
        return BookTopK(
            venue=venue,
            symbol=symbol,
            seq=seq,
            state=_STATES[state],
            bids=a,  # type: ignore[arg-type]
            asks=b,  # type: ignore[arg-type]
            ts_event_ns=ts,
            ts_init_ns=init_ns,
        )
    return BookStatus(
        venue=venue,
        symbol=symbol,
        state=_STATES[state],
        reason=a,  # type: ignore[arg-type]
        seq=seq,
        resyncs=b,  # type: ignore[arg-type]
        ts_event_ns=ts,
        ts_init_ns=init_ns,
    )
