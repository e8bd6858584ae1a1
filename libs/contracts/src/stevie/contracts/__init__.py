"""Stevie's wire contracts: every bus message Struct and every subject name.

Every message is a frozen, tagged ``msgspec.Struct`` carrying two integer-nanosecond
timestamps: ``ts_event_ns`` (venue/event time) and ``ts_init_ns`` (when Stevie created it).
Wire Structs only grow by appending defaulted fields.
"""

from stevie.contracts.codec import decoder_for, encode
from stevie.contracts.market import (
    Bar,
    BookState,
    BookStatus,
    BookTopK,
    DepthDiff,
    DepthSnapshot,
    Level,
    MarketKind,
    MicroFeatures,
    Trade,
)
from stevie.contracts.service import Heartbeat, StreamStatus

__all__ = [
    "Bar",
    "BookState",
    "BookStatus",
    "BookTopK",
    "DepthDiff",
    "DepthSnapshot",
    "Heartbeat",
    "Level",
    "MarketKind",
    "MicroFeatures",
    "StreamStatus",
    "Trade",
    "decoder_for",
    "encode",
]
