"""Service-level contracts: heartbeats and stream status."""

from __future__ import annotations

import msgspec


class StreamStatus(msgspec.Struct, frozen=True, kw_only=True):
    """A venue WebSocket stream as seen by the book maintainer.

    ``backlog_size`` = messages queued and not yet processed; ``last_beat_ns`` = wall time
    of the last message received (0 if none yet)."""

    venue: str
    connected: bool
    backlog_size: int
    last_beat_ns: int


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Published by every service every ``heartbeat_interval_s``.

    ``metrics_text`` is the service's Prometheus exposition, so the gateway can serve one
    ``/metrics`` for the whole stack. ``backend`` names the kernel backend in use."""

    service: str
    instance: str
    pid: int
    started_ns: int
    backend: str = ""
    streams: list[StreamStatus] = []
    metrics_text: str = ""
    ts_event_ns: int
    ts_init_ns: int
