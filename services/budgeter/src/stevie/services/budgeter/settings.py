"""budgeter settings (``STEVIE_BUDGETER_*``)."""

from __future__ import annotations

import msgspec

from stevie.runtime.settings import CommonSettings, SettingsError


class BudgeterSettings(CommonSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """providers: ``name:weight_limit:window_s:cost_per_call`` entries. Defaults are Binance's
    published REST limits (spot 6000 weight/min, USD-M 2400 weight/min), no per-call cost."""

    providers: list[str] = msgspec.field(default_factory=lambda: ["binance:6000:60:0", "binance-usdm:2400:60:0"])
    reserve_fraction: float = 0.2

    def parsed(self) -> list[tuple[str, int, float, float]]:
        out = []
        for p in self.providers:
            try:
                name, limit, window, cost = p.split(":")
                out.append((name, int(limit), float(window), float(cost)))
            except ValueError as exc:
                raise SettingsError(f"STEVIE_BUDGETER_PROVIDERS entry {p!r}: want name:limit:window_s:cost") from exc
        return out

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.reserve_fraction < 1:
            raise SettingsError("reserve_fraction must be in [0, 1)")
        if any(limit < 1 or window <= 0 or cost < 0 for _, limit, window, cost in self.parsed()):
            raise SettingsError("provider limits and windows must be > 0, costs >= 0")
