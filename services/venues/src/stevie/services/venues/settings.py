"""venues settings (``STEVIE_VENUES_*``)."""

from __future__ import annotations

from stevie.runtime.settings import CommonSettings


class VenuesSettings(CommonSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Shared settings only (for now)."""
