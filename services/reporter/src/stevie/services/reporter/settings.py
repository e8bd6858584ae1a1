"""reporter settings (``STEVIE_REPORTER_*``)."""

from __future__ import annotations

from stevie.runtime.settings import CommonSettings, SettingsError


class ReporterSettings(CommonSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """durable: the JetStream consumer name (its position survives restarts).
    max_audit_limit: the largest ``limit`` of ``/api/audit/latest``."""

    durable: str = "reporter"
    max_audit_limit: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.database_url:
            raise SettingsError("reporter needs STEVIE_DATABASE_URL")
