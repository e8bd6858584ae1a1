"""Data-quality bookkeeping for service shells: counters and the quarantine table.

Counters (per service registry, merged into ``/metrics`` and read by ``/api/data-quality/stats``):

- ``data_quality_checked_total{source}`` — items checked by a guard;
- ``data_quality_flagged_total{source,reason,action}`` — items a guard rejected, ``action`` =
  ``quarantined`` (``DataQuality=strict``: kept in the ``quarantine`` table, not used) or
  ``counted`` (``relaxed``: only counted, still used);
- ``data_quality_replaced_total{source,reason}`` — quarantined items replaced by a re-fetch.

Sources: ``vol_history`` (kline history load), ``live_bars`` (1-minute bars on the bus), ``l2``
(depth diffs at the book maintainer), ``backtest``.
"""

from __future__ import annotations

import asyncpg
from prometheus_client import CollectorRegistry, Counter

from stevie.runtime.flags import FlagsClient
from stevie.store.ops import QuarantineRow, insert_quarantine

SOURCES = ("vol_history", "live_bars", "l2", "backtest")


class DqRecorder:
    """``flags`` (optional) decides strict vs relaxed; without one the mode is ``strict``."""

    def __init__(
        self, registry: CollectorRegistry, pool: asyncpg.Pool | None, flags: FlagsClient | None, log: object = None
    ) -> None:
        self.pool, self.flags, self.log = pool, flags, log
        self.checked_c = Counter(
            "data_quality_checked_total", "Items checked by a guard", ["source"], registry=registry
        )
        self.flagged_c = Counter(
            "data_quality_flagged_total",
            "Items a data-quality guard rejected (action: quarantined or counted)",
            ["source", "reason", "action"],
            registry=registry,
        )
        self.replaced_c = Counter(
            "data_quality_replaced_total",
            "Quarantined items replaced by a re-fetch",
            ["source", "reason"],
            registry=registry,
        )

    @property
    def strict(self) -> bool:
        return self.flags is None or self.flags.get("DataQuality") == "strict"

    def checked(self, source: str, n: int = 1) -> None:
        self.checked_c.labels(source).inc(n)

    def counted(self, source: str, reason: str) -> None:
        """A rejected item that is used anyway (relaxed mode)."""
        self.flagged_c.labels(source, reason, "counted").inc()

    async def quarantine(self, row: QuarantineRow) -> None:
        """Count and keep a rejected item (strict mode); a database error is logged, never raised."""
        self.flagged_c.labels(row.source, row.reason, "quarantined").inc()
        if row.replaced:
            self.replaced_c.labels(row.source, row.reason).inc()
        if self.pool is None:
            return
        try:
            await insert_quarantine(self.pool, row)
        except (OSError, asyncpg.PostgresError) as exc:
            if self.log is not None:
                self.log.warning("quarantine_not_written", error=str(exc)[:200])  # type: ignore[attr-defined]
