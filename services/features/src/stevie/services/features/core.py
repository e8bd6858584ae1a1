"""features core (pure): one microstructure kernel (Rust or its Python twin, through
``stevie.quant.kernels``) per venue+symbol, reset on resync."""

from __future__ import annotations

from collections.abc import Callable

from stevie.contracts import BookState, BookStatus, BookTopK, MicroFeatures, Trade
from stevie.quant.kernels import Kernels, MicroKernelLike


class Features:
    """Feed books, trades and statuses; books return the feature vector to publish."""

    def __init__(self, k: int, window_ns: int, init_clock: Callable[[], int], kernels: Kernels) -> None:
        self.k, self.window_ns, self._clock, self.kernels = k, window_ns, init_clock, kernels
        self.states: dict[tuple[str, str], MicroKernelLike] = {}
        self.latest: dict[tuple[str, str], MicroFeatures] = {}
        self.rejected = 0

    def _state(self, venue: str, symbol: str) -> MicroKernelLike:
        key = (venue, symbol)
        if key not in self.states:
            self.states[key] = self.kernels.MicroKernel(self.k, self.window_ns)
        return self.states[key]

    def on_trade(self, t: Trade) -> None:
        try:
            self._state(t.venue, t.symbol).on_trade(t.price, t.size, t.aggressor == "buy", t.ts_event_ns)
        except ValueError:  # event time went back (venue session restart): start afresh
            self.rejected += 1
            self._state(t.venue, t.symbol).reset()

    def on_status(self, st: BookStatus) -> None:
        if st.state is not BookState.LIVE:
            self._state(st.venue, st.symbol).reset()
            self.latest.pop((st.venue, st.symbol), None)

    def on_book(self, b: BookTopK) -> MicroFeatures | None:
        if b.state is not BookState.LIVE:
            return None
        state = self._state(b.venue, b.symbol)
        try:
            f = state.on_book(b.bids, b.asks, b.ts_event_ns)
        except ValueError:  # crossed or non-positive quote
            self.rejected += 1
            state.reset()
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
            ts_init_ns=self._clock(),
        )
        self.latest[(b.venue, b.symbol)] = out
        return out
