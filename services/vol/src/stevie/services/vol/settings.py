"""vol settings (``STEVIE_VOL_*``)."""

from __future__ import annotations

import msgspec

from stevie.runtime.settings import CommonSettings, SettingsError


class VolSettings(CommonSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """symbols: whose 1-minute history is loaded. venue / rest_url: where the klines come
    from (the USD-M replay by default). minutes_per_period: the HAR period (1440 = daily RV).
    garch_window: returns the GARCH fit uses. refit_every_bars: refit after this many new bars
    (the GARCH state is updated online in between). history_bars: bars loaded at start.
    spike_window / spike_z_cap: the data-quality spike rule (trailing returns, robust-z cap;
    ``stevie.quant.quality.spike_guard``)."""

    symbols: list[str] = msgspec.field(
        default_factory=lambda: ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "LTCUSDT"]
    )
    venue: str = "binance-usdm"
    rest_url: str = "http://127.0.0.1:5102"
    minutes_per_period: int = 1440
    garch_window: int = 20_000
    refit_every_bars: int = 60
    history_bars: int = 100_000
    max_horizon_mins: int = 10_080
    spike_window: int = 240
    spike_z_cap: float = 25.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.minutes_per_period < 1 or self.garch_window < 100 or self.refit_every_bars < 1:
            raise SettingsError("minutes_per_period >= 1, garch_window >= 100, refit_every_bars >= 1")
        if self.spike_window < 10 or not self.spike_z_cap > 0:
            raise SettingsError("spike_window >= 10 and spike_z_cap > 0")
