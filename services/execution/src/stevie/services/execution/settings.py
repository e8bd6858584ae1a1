"""execution settings (``STEVIE_EXECUTION_*``). Notionals in quote units (USDT)."""

from __future__ import annotations

import msgspec

from stevie.contracts.rpc import MAX_CLOSES
from stevie.runtime.settings import CommonSettings, SettingsError


class ExecutionSettings(CommonSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """books: ``venue:SYMBOL`` pairs the decision clock trades. decision_interval_s: event time
    between decisions per book. horizon_s: a decision's reward horizon (event time).
    s_max_quote: largest decision notional; w_star: uncertainty scale of the sizing sigmoid;
    sigma_target_bps: target σ of the position over the horizon (vol targeting);
    capital_quote: starting paper cash; fee_bps: taker fee; min_order_quote: smaller
    rebalances are skipped; feature_window: feature vectors kept for the audit.
    venue_routing: every order asks the venues service for the cheapest LIVE venue and fills
    there; route_venues: the venues whose books execution tracks for those fills (the
    decision clock stays on ``books``). local_venue_scoring: score the route in-process with
    the venues service's pure core, on the books execution sees and the venue health the
    service publishes every tick (``VenueScoring``), instead of a ``venues.score`` round trip;
    without a publication of the last 3 ticks the RPC answers. bar_history: 1-minute closes
    asked of the vol service per symbol for the bar policies (``p_sma``, ``p_breakout``,
    ``p_mean_reversion``: ≥ the longest lookback a tuned member may use; 0 = none, they stay flat).
    local_features: the clock books' features are computed here, with the features service's
    core and settings (``STEVIE_FEATURES_*``), from the books, trades and statuses execution
    receives — the same vectors, one process hop less between a book and its decision; the
    features service still computes, stores and serves them (off: its vectors drive the clock)."""

    books: list[str] = msgspec.field(default_factory=lambda: ["binance:BTCUSDT", "binance:ETHUSDT"])
    decision_interval_s: float = 10.0
    horizon_s: float = 30.0
    s_max_quote: float = 2_000.0
    w_star: float = 0.5
    sigma_target_bps: float = 10.0
    capital_quote: float = 10_000.0
    fee_bps: float = 10.0
    min_order_quote: float = 10.0
    feature_window: int = 10
    rpc_timeout_s: float = 3.0
    venue_routing: bool = True
    local_venue_scoring: bool = True
    route_venues: list[str] = msgspec.field(default_factory=lambda: ["binance", "binance-usdm"])
    bar_history: int = 512
    local_features: bool = True

    def route_pairs(self) -> list[tuple[str, str]]:
        """Every route venue × traded symbol."""
        return [(v, sym) for v in self.route_venues for sym in dict.fromkeys(s for _, s in self.pairs())]

    def pairs(self) -> list[tuple[str, str]]:
        out = []
        for b in self.books:
            venue, _, sym = b.partition(":")
            if not venue or not sym:
                raise SettingsError(f"STEVIE_EXECUTION_BOOKS entry {b!r}: want venue:SYMBOL")
            out.append((venue, sym.upper()))
        return out

    def __post_init__(self) -> None:
        super().__post_init__()
        self.pairs()
        if (
            min(
                self.decision_interval_s,
                self.horizon_s,
                self.s_max_quote,
                self.w_star,
                self.sigma_target_bps,
                self.capital_quote,
            )
            <= 0
            or self.fee_bps < 0
        ):
            raise SettingsError("intervals, sizes and targets must be > 0, fee_bps >= 0")
        if not 0 <= self.bar_history <= MAX_CLOSES:
            raise SettingsError(f"STEVIE_EXECUTION_BAR_HISTORY must be within 0..{MAX_CLOSES}, got {self.bar_history}")
