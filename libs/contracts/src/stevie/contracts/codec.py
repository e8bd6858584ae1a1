"""Encoding helpers. Decode at the edge with a reused typed decoder, never a dict."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

T = TypeVar("T")

_encoder = msgspec.json.Encoder()


def encode(msg: msgspec.Struct) -> bytes:
    """Encode a contract Struct to JSON bytes (msgspec JSON, tag included)."""
    return _encoder.encode(msg)


def decoder_for(tp: type[T] | Any) -> msgspec.json.Decoder[T]:
    """A reusable typed JSON decoder for ``tp`` (a Struct or a Union of tagged Structs).

    Raises ``msgspec.ValidationError`` / ``msgspec.DecodeError`` on bad input when used.
    """
    return msgspec.json.Decoder(tp)
