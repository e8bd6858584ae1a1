"""Errors raised by ``stevie.quant``: every bad input is a ``QuantInputError`` (a ValueError)
whose message names the argument and what was wrong."""

from __future__ import annotations

import numpy as np


class QuantInputError(ValueError):
    """An argument is empty, too short, non-finite, out of range or of the wrong shape."""


class NotFitted(RuntimeError):
    """A model was asked for a forecast before it was fitted (e.g. history still loading)."""


def finite_1d(name: str, x: object, min_len: int = 1) -> np.ndarray:
    """``x`` as a finite float64 1-d array of at least ``min_len`` items, else QuantInputError."""
    try:
        a = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise QuantInputError(f"{name} must be numeric: {exc}") from exc
    if a.ndim != 1:
        raise QuantInputError(f"{name} must be 1-d, got shape {a.shape}")
    if a.size < min_len:
        raise QuantInputError(f"{name} needs at least {min_len} values, got {a.size}")
    if not np.isfinite(a).all():
        raise QuantInputError(f"{name} contains NaN or infinite values")
    return a
