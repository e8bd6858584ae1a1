"""Stevie's message bus: a ``Bus`` protocol, ``NatsBus`` (nats-py) and ``InMemoryBus``."""

from stevie.bus.core import Bus, Handler, Msg, Subscription, subject_matches
from stevie.bus.memory import InMemoryBus
from stevie.bus.nats_bus import NatsBus

__all__ = ["Bus", "Handler", "InMemoryBus", "Msg", "NatsBus", "Subscription", "subject_matches"]
