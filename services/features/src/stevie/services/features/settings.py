"""features settings (``STEVIE_FEATURES_*``)."""

from __future__ import annotations

from stevie.runtime.settings import CommonSettings, SettingsError


class FeaturesSettings(CommonSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """obi_levels: top-k depth for OBI. window_s: event-time window of TI, micro-vol and the
    cancel rate (1–5 s). store: write every published vector to the feature store (needs
    STEVIE_DATABASE_URL). store_queue_size: bounded queue between the bus handler and the
    store writer (a full queue drops the vector and counts it). store_batch_size: vectors
    per write. store_flush_s: longest wait before a partial batch is written. data_dir: the
    ``data/samples`` folder holding the captures ``/api/features/parity`` recomputes from.
    parity_warm_s: how often newly stored vectors are recomputed offline in the background
    (0 = only when asked), so a parity request pays only for what was stored since."""

    obi_levels: int = 5
    window_s: float = 5.0
    store: bool = True
    store_queue_size: int = 20_000
    store_batch_size: int = 500
    store_flush_s: float = 0.5
    data_dir: str = "data/samples"
    parity_warm_s: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.obi_levels <= 20 or not 1.0 <= self.window_s <= 5.0:
            raise SettingsError("obi_levels must be in [1, 20] and window_s in [1, 5] seconds")
        if self.store_queue_size < 1 or not 1 <= self.store_batch_size <= 10_000 or not 0 < self.store_flush_s <= 60:
            raise SettingsError("store_queue_size >= 1, store_batch_size in [1, 10000], store_flush_s in (0, 60]")
        if self.parity_warm_s < 0:
            raise SettingsError("parity_warm_s must be >= 0 (0 disables the background recomputation)")
