"""book-maintainer settings (``STEVIE_BOOK_MAINTAINER_*``)."""

from __future__ import annotations

import msgspec

from stevie.runtime.settings import CommonSettings, SettingsError


class BookMaintainerSettings(CommonSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """venues: which venues to maintain (``binance`` spot, ``binance-usdm`` perpetuals).
    symbols: symbols per venue. *_rest_url / *_ws_url: venue endpoints (default: the
    loopback replay venue). top_k: levels published per side. coalesce_ms: at most one
    book publication per this much event time. queue_size: bounded inbound queue per venue
    stream; on overflow every book of that stream resyncs (never silent loss).
    stale_after_s: a LIVE book with no update for this long (wall time) is STALE.
    snapshot_limit: REST depth levels requested. buffer_size: diffs buffered per book
    while waiting for a snapshot (overflow → the snapshot is re-requested).
    snapshot_timeout_s: one REST depth request gives up after this long and is retried (a
    hanging venue — chaos ``api_timeout`` — delays a resync by at most about this much)."""

    venues: list[str] = msgspec.field(default_factory=lambda: ["binance", "binance-usdm"])
    symbols: list[str] = msgspec.field(default_factory=lambda: ["BTCUSDT", "ETHUSDT"])
    binance_rest_url: str = "http://127.0.0.1:5101"
    binance_ws_url: str = "ws://127.0.0.1:5101"
    binance_usdm_rest_url: str = "http://127.0.0.1:5102"
    binance_usdm_ws_url: str = "ws://127.0.0.1:5102"
    top_k: int = 20
    coalesce_ms: int = 100
    queue_size: int = 10_000
    buffer_size: int = 5_000
    stale_after_s: float = 5.0
    snapshot_limit: int = 1000
    snapshot_timeout_s: float = 3.0

    def __post_init__(self) -> None:
        super().__post_init__()
        bad = [v for v in self.venues if v not in ("binance", "binance-usdm")]
        if bad:
            raise SettingsError(f"STEVIE_BOOK_MAINTAINER_VENUES: unknown venue(s) {bad}")
        if not 1 <= self.top_k <= 1000:
            raise SettingsError("STEVIE_BOOK_MAINTAINER_TOP_K must be in [1, 1000]")
        if not 0.1 <= self.snapshot_timeout_s <= 60:
            raise SettingsError("STEVIE_BOOK_MAINTAINER_SNAPSHOT_TIMEOUT_S must be in [0.1, 60]")
        if self.queue_size < 10 or self.buffer_size < 10:
            raise SettingsError("queue_size and buffer_size must be >= 10")

    def rest_url(self, venue: str) -> str:
        return self.binance_usdm_rest_url if venue == "binance-usdm" else self.binance_rest_url

    def ws_url(self, venue: str) -> str:
        return self.binance_usdm_ws_url if venue == "binance-usdm" else self.binance_ws_url
