"""adaptive settings (``STEVIE_ADAPTIVE_*``)."""

from __future__ import annotations

import msgspec

from stevie.runtime.settings import CommonSettings, SettingsError


class AdaptiveSettings(CommonSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """symbols / bar_venue: whose 1-minute bars drive the regime (seeded with ``seed_bars`` of
    kline history from ``rest_url``, the USD-M replay by default, through the budgeter).
    hazard: BOCPD constant hazard per bar; max_run: run-length cap (bars); change_window: the k
    of changeProb = P(run ≤ k bars). feature_venues: whose MicroFeatures are gated, sampled every
    sample_interval_s of event time against the forward mid return over horizon_s (the decision
    horizon); schedule_s: gating evaluation period (event time, a week by default);
    gating_window / gating_halflife / hsic_window / min_pairs: pairs kept, EW IC half-life (pairs),
    pairs in the HSIC, pairs before a feature is scored. attribution_keep: trades kept for
    ``/api/alpha/attribution``. report_max_rows: audits read per report."""

    symbols: list[str] = msgspec.field(
        default_factory=lambda: ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "LTCUSDT"]
    )
    bar_venue: str = "binance-usdm"
    rest_url: str = "http://127.0.0.1:5102"
    seed_bars: int = 4320
    hazard: float = 1.0 / 240.0
    max_run: int = 1440
    change_window: int = 5
    feature_venues: list[str] = msgspec.field(default_factory=lambda: ["binance", "binance-usdm"])
    sample_interval_s: float = 5.0
    horizon_s: float = 30.0
    schedule_s: float = 7 * 86_400.0
    gating_window: int = 5000
    gating_halflife: float = 1000.0
    hsic_window: int = 400
    min_pairs: int = 100
    attribution_keep: int = 2000
    report_max_rows: int = 200_000

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.hazard < 1 or self.max_run < 10 or self.change_window < 0:
            raise SettingsError("STEVIE_ADAPTIVE_HAZARD in (0, 1), MAX_RUN >= 10, CHANGE_WINDOW >= 0")
        if self.horizon_s <= 0 or self.sample_interval_s <= 0 or self.schedule_s <= 0:
            raise SettingsError("STEVIE_ADAPTIVE_HORIZON_S, SAMPLE_INTERVAL_S and SCHEDULE_S must be > 0")
        if self.min_pairs < 10 or self.gating_window < self.min_pairs or self.hsic_window < 10:
            raise SettingsError("STEVIE_ADAPTIVE_MIN_PAIRS >= 10, GATING_WINDOW >= MIN_PAIRS, HSIC_WINDOW >= 10")
        if self.seed_bars < 0 or self.attribution_keep < 1 or self.report_max_rows < 1:
            raise SettingsError("STEVIE_ADAPTIVE_SEED_BARS >= 0, ATTRIBUTION_KEEP >= 1, REPORT_MAX_ROWS >= 1")
