"""features settings (``STEVIE_FEATURES_*``)."""

from __future__ import annotations

from stevie.runtime.settings import CommonSettings, SettingsError


class FeaturesSettings(CommonSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """obi_levels: top-k depth for OBI. window_s: event-time window of TI, micro-vol and the
    cancel rate (1–5 s)."""

    obi_levels: int = 5
    window_s: float = 5.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.obi_levels <= 20 or not 1.0 <= self.window_s <= 5.0:
            raise SettingsError("obi_levels must be in [1, 20] and window_s in [1, 5] seconds")
