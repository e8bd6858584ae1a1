"""reporter core (pure): which event a durable message is, decoded at the edge."""

from __future__ import annotations

import msgspec

from stevie.contracts.rpc import Audit, ExecutionRecord

Event = Audit | ExecutionRecord
_decoder = msgspec.json.Decoder(Event)


def decode_event(data: bytes) -> Event:
    """Raises msgspec.DecodeError / ValidationError for anything else."""
    return _decoder.decode(data)
