"""events settings (``STEVIE_EVENTS_*``)."""

from __future__ import annotations

from stevie.runtime.settings import CommonSettings


class EventsSettings(CommonSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Shared settings only (for now)."""
