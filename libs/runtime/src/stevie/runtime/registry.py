"""Which services exist, in start order, and how to find their ``ServiceSpec``."""

from __future__ import annotations

import importlib

from stevie.runtime.service import ServiceSpec

SERVICES: tuple[str, ...] = (
    "budgeter",
    "venue-replay",
    "book-maintainer",
    "features",
    "vol",
    "router",
    "green-router",
    "risk-guards",
    "execution",
    "reporter",
    "evidence",
    "adaptive",
    "events",
    "venues",
    "control",
    "gateway",
)


def load_spec(name: str) -> ServiceSpec:
    """The ``SPEC`` of ``stevie.services.<name>.shell``. Raises KeyError for an unknown name."""
    if name not in SERVICES:
        raise KeyError(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
    module = importlib.import_module(f"stevie.services.{name.replace('-', '_')}.shell")
    spec: ServiceSpec = module.SPEC
    return spec
