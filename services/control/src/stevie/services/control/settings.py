"""control settings (``STEVIE_CONTROL_*``)."""

from __future__ import annotations

from stevie.runtime.settings import CommonSettings, SettingsError


class ControlSettings(CommonSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """blue_model: the model id blue serves at start. cutover_window_s: healthy seconds before
    a cutover step advances; slo_*: the green stack's SLO thresholds. canary_*: the canary
    ladder's gates (fills since entering a step, PnL > threshold in quote units, CVaR cap in
    quote units, dwell seconds) and how often paper stats are polled."""

    blue_model: str = "router-v1"
    """Shown as blue until the blue stack announces the model it serves."""
    cutover_window_s: float = 300.0
    cutover_eval_s: float = 1.0
    """How often the green stack's SLO window is evaluated and the share published."""
    cutover_auto_start: bool = True
    """A candidate announced by the green stack starts its canary at once (actor ``auto``);
    False: it waits in ``candidate`` for an operator ``start`` (``deploy_action``)."""
    canary_share: float = 0.01
    partial_shares: tuple[float, ...] = (0.10, 0.25)
    stack_stale_s: float = 10.0
    """A stack silent this long is gone: a cutover in progress whose green is gone rolls back."""
    slo_max_p95_ms: float = 50.0
    slo_max_error_rate: float = 0.02
    slo_max_qos_gap: float = 10.0
    """bps: |mean predicted score − mean realised reward| of green's decisions in the window."""
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
        if self.cutover_eval_s <= 0 or self.stack_stale_s <= 0:
            raise SettingsError("cutover_eval_s and stack_stale_s must be > 0")
        if not 0 <= self.slo_max_error_rate <= 1 or self.slo_min_samples < 1:
            raise SettingsError("slo_max_error_rate must be in [0, 1] and slo_min_samples ≥ 1")
