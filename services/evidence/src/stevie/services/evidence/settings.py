"""evidence settings (``STEVIE_EVIDENCE_*``)."""

from __future__ import annotations

from stevie.runtime.settings import CommonSettings, SettingsError


class EvidenceSettings(CommonSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """horizon_s: reward horizon (must equal execution's). max_audits: most recent audits read
    per computation; max_backtest_decisions: latest decisions of a backtest run read.
    cache_s: seconds a computed answer is reused.
    OPE: n_boot bootstrap resamples, alpha (1 − α intervals), min_n / min_ess below which a row
    carries a warning, ridge_alpha of the reward model.
    Promotion: spa_reps, spa_block_size (mean block length, decisions), p_max (SPA), dsr_min.
    Calibration: window_s, n_bins, nudge_prior_bound / nudge_sizing_bound (absolute bounds of
    the relative nudges), ece_target, sizing_gain, min_forecasts.
    Baseline-challenger: baseline_guard on/off, guard_interval_s between two publications (the
    guard needs min_n decisions and min_ess effective samples before it blocks a policy)."""

    horizon_s: float = 30.0
    max_audits: int = 5000
    max_backtest_decisions: int = 20000
    cache_s: float = 15.0
    n_boot: int = 300
    alpha: float = 0.05
    min_n: int = 30
    min_ess: float = 20.0
    ridge_alpha: float = 1.0
    spa_reps: int = 500
    spa_block_size: int = 10
    p_max: float = 0.05
    dsr_min: float = 0.95
    window_s: float = 3600.0
    n_bins: int = 10
    nudge_prior_bound: float = 0.5
    nudge_sizing_bound: float = 0.25
    ece_target: float = 0.05
    sizing_gain: float = 1.0
    min_forecasts: int = 30
    baseline_guard: bool = True
    guard_interval_s: float = 30.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.horizon_s <= 0 or self.max_audits < 10 or self.n_boot < 10 or not 0 < self.alpha < 1:
            raise SettingsError("need horizon_s > 0, max_audits >= 10, n_boot >= 10, 0 < alpha < 1")
        if self.spa_reps < 100 or self.spa_block_size < 1 or not 0 < self.p_max < 1 or not 0 < self.dsr_min < 1:
            raise SettingsError("need spa_reps >= 100, spa_block_size >= 1, p_max and dsr_min in (0, 1)")
        if not (0 <= self.nudge_prior_bound < 1 and 0 <= self.nudge_sizing_bound < 1):
            raise SettingsError("nudge bounds must lie in [0, 1)")
        if self.window_s <= 0 or self.n_bins < 1 or self.min_forecasts < 1 or self.guard_interval_s < 1:
            raise SettingsError("need window_s > 0, n_bins >= 1, min_forecasts >= 1, guard_interval_s >= 1")
