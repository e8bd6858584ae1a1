"""features core (pure): one microstructure kernel (Rust or its Python twin, through
``stevie.quant.kernels``) per venue+symbol, reset on resync.

Each output also carries its lineage (``FeatureSample``): the kernel epoch (resets so far),
its index in the epoch, the book's update id and depth, and the first and last trade the
kernel was fed in the epoch. From that and the recorded capture the same vector is recomputed
offline through this same class (``stevie.services.features.offline``)."""

from __future__ import annotations

from collections.abc import Callable

from stevie.contracts import BookState, BookStatus, BookTopK, MicroFeatures, Trade
from stevie.contracts.featstore import FeatureSample
from stevie.quant.kernels import Kernels, MicroKernelLike


class _Epoch:
    """Book-keeping of one kernel since its last reset (lineage of its outputs)."""

    __slots__ = ("n", "number", "trade_first", "trade_last")

    def __init__(self, number: int) -> None:
        self.number, self.n = number, 0
        self.trade_first: int | None = None
        self.trade_last: int | None = None


class Features:
    """Feed books, trades and statuses; books return the feature vector to publish."""

    def __init__(
        self, k: int, window_ns: int, init_clock: Callable[[], int], kernels: Kernels, run_id: str = ""
    ) -> None:
        self.k, self.window_ns, self._clock, self.kernels = k, window_ns, init_clock, kernels
        self.run_id = run_id
        self.states: dict[tuple[str, str], MicroKernelLike] = {}
        self.epochs: dict[tuple[str, str], _Epoch] = {}
        self.latest: dict[tuple[str, str], MicroFeatures] = {}
        self.rejected = 0

    def _state(self, venue: str, symbol: str) -> MicroKernelLike:
        key = (venue, symbol)
        if key not in self.states:
            self.states[key] = self.kernels.MicroKernel(self.k, self.window_ns)
            self.epochs[key] = _Epoch(0)
        return self.states[key]

    def _reset(self, venue: str, symbol: str) -> None:
        """Reset the kernel; its next outputs belong to a new epoch."""
        self._state(venue, symbol).reset()
        key = (venue, symbol)
        self.epochs[key] = _Epoch(self.epochs[key].number + 1)

    def on_trade(self, t: Trade) -> None:
        try:
            self._state(t.venue, t.symbol).on_trade(t.price, t.size, t.aggressor == "buy", t.ts_event_ns)
        except ValueError:  # event time went back (venue session restart): start afresh
            self.rejected += 1
            self._reset(t.venue, t.symbol)
            return
        ep = self.epochs[(t.venue, t.symbol)]
        if ep.trade_first is None:
            ep.trade_first = t.trade_id
        ep.trade_last = t.trade_id

    def on_status(self, st: BookStatus) -> None:
        if st.state is not BookState.LIVE:
            self._reset(st.venue, st.symbol)
            self.latest.pop((st.venue, st.symbol), None)

    def on_book(self, b: BookTopK) -> MicroFeatures | None:
        """The feature vector to publish for a LIVE book (None: not LIVE, a side empty, or a
        crossed/non-positive quote, which resets the kernel)."""
        out = self.on_book_traced(b)
        return None if out is None else out[0]

    def on_book_traced(self, b: BookTopK) -> tuple[MicroFeatures, FeatureSample] | None:
        """``on_book`` plus the lineage of the vector (see the module docstring)."""
        if b.state is not BookState.LIVE:
            return None
        state = self._state(b.venue, b.symbol)
        try:
            f = state.on_book(b.bids, b.asks, b.ts_event_ns)
        except ValueError:  # crossed or non-positive quote
            self.rejected += 1
            self._reset(b.venue, b.symbol)
            return None
        if f is None:
            return None
        out = MicroFeatures(
            venue=b.venue,
            symbol=b.symbol,
            obi=f.obi,
            ti=f.ti,
            spread_bps=f.spread_bps,
            micro_vol_bps=f.micro_vol_bps,
            cancel_rate=f.cancel_rate,
            mid=f.mid,
            ts_event_ns=b.ts_event_ns,
            # the edge time of the triggering book, carried on (tick → decision latency)
            ts_init_ns=b.ts_init_ns or self._clock(),
        )
        self.latest[(b.venue, b.symbol)] = out
        ep = self.epochs[(b.venue, b.symbol)]
        sample = FeatureSample(
            venue=b.venue,
            symbol=b.symbol,
            ts_event_ns=b.ts_event_ns,
            run_id=self.run_id,
            epoch=ep.number,
            n=ep.n,
            seq=b.seq,
            levels=max(len(b.bids), len(b.asks)),
            trade_first=ep.trade_first,
            trade_last=ep.trade_last,
        )
        ep.n += 1
        return out, sample


Event = BookTopK | Trade | BookStatus


def step(core: Features, event: Event) -> tuple[MicroFeatures, FeatureSample] | None:
    """Feed one bus message to the core, exactly as the live shell's handlers do; a book may
    return (vector, lineage). The live service, the offline recomputation and the backtest all
    go through this function."""
    if isinstance(event, BookTopK):
        return core.on_book_traced(event)
    if isinstance(event, Trade):
        core.on_trade(event)
    else:
        core.on_status(event)
    return None
