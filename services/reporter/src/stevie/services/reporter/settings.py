"""reporter settings (``STEVIE_REPORTER_*``)."""

from __future__ import annotations

import msgspec

from stevie.runtime.settings import CommonSettings, SettingsError


class ReporterSettings(CommonSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """durable: the JetStream consumer name (its position survives restarts).
    max_audit_limit: the largest ``limit`` of ``/api/audit/latest``. venues / symbols: what
    ``/api/market/ohlcv`` accepts (besides any symbol with stored bars)."""

    durable: str = "reporter"
    max_audit_limit: int = 100
    venues: list[str] = msgspec.field(default_factory=lambda: ["binance", "binance-usdm"])
    symbols: list[str] = msgspec.field(default_factory=lambda: ["BTCUSDT", "ETHUSDT"])

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.database_url:
            raise SettingsError("reporter needs STEVIE_DATABASE_URL")
