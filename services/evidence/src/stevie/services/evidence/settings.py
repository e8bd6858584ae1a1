"""evidence settings (``STEVIE_EVIDENCE_*``)."""

from __future__ import annotations

from stevie.runtime.settings import CommonSettings


class EvidenceSettings(CommonSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Shared settings only (for now)."""
