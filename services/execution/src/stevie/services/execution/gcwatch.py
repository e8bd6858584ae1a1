"""Garbage-collector pauses on the decision path: measured, and kept short.

CPython's cyclic collector stops the event loop while it runs. A full (generation 2)
collection walks every tracked container object of the process: ≈ 15 ms of CPU for the
≈ 50k objects a service holds after importing nats-py, aiohttp, asyncpg, numpy and structlog
(measured on this 2-core VM; more wall time on a busy machine), which is a whole tick →
decision budget. ``gc.freeze()`` (Python ≥ 3.7) moves every object alive at the end of the
start-up into a permanent generation that collections skip, so a full collection only walks
what was allocated since (the objects of the running service).
"""

from __future__ import annotations

import gc
import time

from prometheus_client import CollectorRegistry, Histogram

from stevie.runtime.service import LATENCY_BUCKETS_S


def watch(registry: CollectorRegistry, name: str) -> Histogram:
    """Time every collection into ``{name}_gc_pause_seconds{generation}`` (wall seconds,
    from the collector's ``start`` to its ``stop`` callback, ``gc.callbacks``)."""
    hist = Histogram(
        f"{name}_gc_pause_seconds",
        "Wall time the cyclic garbage collector held the process, by generation",
        ["generation"],
        registry=registry,
        buckets=LATENCY_BUCKETS_S,
    )
    children = [hist.labels(str(g)) for g in range(3)]
    started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        elif 0 <= info.get("generation", -1) <= 2:
            children[info["generation"]].observe(time.perf_counter() - started[0])

    gc.callbacks.append(on_gc)
    return hist


def freeze_startup() -> int:
    """Collect once, then freeze every surviving object (start-up state: modules, settings,
    restored positions) out of future collections. Returns the number frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
