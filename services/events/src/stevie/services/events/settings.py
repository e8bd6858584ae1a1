"""events settings (``STEVIE_EVENTS_*``)."""

from __future__ import annotations

from stevie.runtime.settings import CommonSettings, SettingsError


class EventsSettings(CommonSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """max_batch: events accepted in one ingest request (more → 413). max_limit: most events
    one embeddings read returns. preview_dims: dims shown without ``full=1``. k_nearest:
    nearest earlier events listed per event. context_keep: events per symbol carried in the
    router context message. republish_s: how often the context is re-published. threads:
    onnxruntime intra-op threads (1 keeps vectors and the shared CPU predictable).
    model_idle_s: seconds without an embedding after which the model (≈ 150 MB) is dropped;
    the next ingest builds it again (≈ 0.3 s)."""

    max_batch: int = 500
    max_limit: int = 500
    preview_dims: int = 8
    k_nearest: int = 3
    context_keep: int = 8
    republish_s: float = 5.0
    threads: int = 1
    model_idle_s: float = 60.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_batch < 1 or self.max_limit < 1 or not 1 <= self.preview_dims <= 384:
            raise SettingsError("max_batch >= 1, max_limit >= 1, 1 <= preview_dims <= 384")
        if self.k_nearest < 0 or self.context_keep < 1 or self.republish_s <= 0 or self.threads < 1:
            raise SettingsError("k_nearest >= 0, context_keep >= 1, republish_s > 0, threads >= 1")
        if not self.model_idle_s > 0:
            raise SettingsError("model_idle_s must be > 0")
