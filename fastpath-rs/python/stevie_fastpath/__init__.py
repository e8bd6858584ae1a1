"""Stevie's Rust fast path. Import through ``stevie.quant.kernels`` (which picks the backend)."""

from stevie_fastpath._native import (
    BACKEND,
    BookSync,
    L2Chunk,
    L2Replay,
    MicroFeatures,
    MicroKernel,
    OrderBook,
    batch_features,
)

__all__ = ["BACKEND", "BookSync", "L2Chunk", "L2Replay", "MicroFeatures", "MicroKernel", "OrderBook", "batch_features"]
