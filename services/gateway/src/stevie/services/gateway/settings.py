"""gateway settings (``STEVIE_GATEWAY_*``)."""

from __future__ import annotations

import msgspec

from stevie.runtime.settings import CommonSettings, SettingsError


class GatewaySettings(CommonSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """host/port: where the HTTP API listens (loopback by default). venues/symbols: the books
    the API knows (others answer 404). services: expected services for ``/api/health``.
    liveness_s: a service without a heartbeat for this long is down. book_stale_s: a book
    without an update for this long is served as STALE, levels withheld."""

    host: str = "127.0.0.1"
    port: int = 5000
    venues: list[str] = msgspec.field(default_factory=lambda: ["binance", "binance-usdm"])
    symbols: list[str] = msgspec.field(default_factory=lambda: ["BTCUSDT", "ETHUSDT"])
    services: list[str] = msgspec.field(
        default_factory=lambda: ["venue-replay", "book-maintainer", "features", "vol", "gateway"]
    )
    liveness_s: float = 5.0
    book_stale_s: float = 5.0
    max_depth: int = 20
    rpc_timeout_s: float = 10.0
    # security (see security.py): auth = "operator" (operator routes need the token) or "all"
    # (every mutating route does); allowed_hosts: extra Host names; max_body_bytes: body cap.
    auth: str = "operator"
    allowed_hosts: list[str] = msgspec.field(default_factory=list)
    max_body_bytes: int = 1_048_576

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.port < 65536:
            raise SettingsError("STEVIE_GATEWAY_PORT must be a TCP port")
        if self.liveness_s <= 0 or self.book_stale_s <= 0:
            raise SettingsError("liveness_s and book_stale_s must be > 0")
        if self.auth not in ("operator", "all"):
            raise SettingsError(f"STEVIE_GATEWAY_AUTH must be 'operator' or 'all', got {self.auth!r}")
        if self.max_body_bytes <= 0:
            raise SettingsError("STEVIE_GATEWAY_MAX_BODY_BYTES must be > 0")
