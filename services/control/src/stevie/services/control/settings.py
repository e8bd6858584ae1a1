"""control settings (``STEVIE_CONTROL_*``)."""

from __future__ import annotations

from stevie.runtime.settings import CommonSettings, SettingsError


class ControlSettings(CommonSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """blue_model: the model id blue serves at start. cutover_window_s: healthy seconds before
    a cutover step advances; slo_*: the green stack's SLO thresholds. canary_*: the canary
    ladder's gates (fills since entering a step, PnL > threshold in quote units, CVaR cap in
    quote units, dwell seconds) and how often paper stats are polled."""

    blue_model: str = "router-v1"
    cutover_window_s: float = 300.0
    slo_max_p95_ms: float = 50.0
    slo_max_error_rate: float = 0.02
    slo_max_qos_gap: float = 0.05
    slo_min_samples: int = 20
    canary_min_fills: int = 20
    canary_min_pnl_quote: float = 0.0
    canary_max_cvar_quote: float = 50.0
    canary_min_dwell_s: float = 600.0
    canary_poll_s: float = 5.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cutover_window_s <= 0 or self.canary_poll_s <= 0 or self.canary_min_dwell_s < 0:
            raise SettingsError("cutover_window_s and canary_poll_s must be > 0, canary_min_dwell_s ≥ 0")
        if not 0 <= self.slo_max_error_rate <= 1 or self.slo_min_samples < 1:
            raise SettingsError("slo_max_error_rate must be in [0, 1] and slo_min_samples ≥ 1")
