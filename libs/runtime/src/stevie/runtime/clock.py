"""Clocks. Decisions use event time; the wall clock is for latency metrics only.

Cores never read time themselves: they take ``now_ns`` or a ``Clock``.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ns(self) -> int: ...


class LiveClock:
    """Wall clock, ns since the Unix epoch."""

    def now_ns(self) -> int:
        return time.time_ns()


class ReplayClock:
    """Maps recorded event time to wall time at a speed factor.

    ``now_ns()`` = ``origin_event_ns + (wall_now - wall_start) * speed`` — the event time the
    replay has reached. ``wall_at(event_ns)`` is when (wall, monotonic ns) that event is due.
    Raises ValueError for a non-positive speed.
    """

    def __init__(self, origin_event_ns: int, speed: float = 1.0, start_mono_ns: int | None = None) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.origin_event_ns = origin_event_ns
        self.speed = speed
        self.start_mono_ns = time.monotonic_ns() if start_mono_ns is None else start_mono_ns

    def now_ns(self) -> int:
        return self.origin_event_ns + int((time.monotonic_ns() - self.start_mono_ns) * self.speed)

    def mono_due_ns(self, event_ns: int) -> int:
        """Monotonic time (ns) at which the event at ``event_ns`` is due."""
        return self.start_mono_ns + int((event_ns - self.origin_event_ns) / self.speed)
