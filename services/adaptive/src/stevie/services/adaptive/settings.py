"""adaptive settings (``STEVIE_ADAPTIVE_*``)."""

from __future__ import annotations

from stevie.runtime.settings import CommonSettings


class AdaptiveSettings(CommonSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Shared settings only (for now)."""
