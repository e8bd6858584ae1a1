"""risk-guards settings (``STEVIE_RISK_GUARDS_*``). Notionals in quote units (USDT)."""

from __future__ import annotations

from stevie.runtime.settings import CommonSettings, SettingsError


class RiskGuardsSettings(CommonSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Limits: an order is allowed exactly up to each limit and blocked beyond it."""

    global_notional_cap_quote: float = 50_000.0
    symbol_notional_cap_quote: float = 20_000.0
    max_order_notional_quote: float = 10_000.0
    orders_per_min: int = 30
    collar_bps: float = 50.0
    max_drawdown_quote: float = 1_000.0
    breaker_reset_s: float = 300.0
    stale_book_ms: float = 2_000.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if (
            min(
                self.global_notional_cap_quote,
                self.symbol_notional_cap_quote,
                self.max_order_notional_quote,
                self.collar_bps,
                self.max_drawdown_quote,
                self.breaker_reset_s,
                self.stale_book_ms,
            )
            <= 0
        ):
            raise SettingsError("every risk limit must be > 0")
        if self.orders_per_min < 1:
            raise SettingsError("orders_per_min must be >= 1")
