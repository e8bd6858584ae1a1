"""Kernel dispatch: the Rust fast path (``stevie_fastpath``) or its Python/numpy twin
(``stevie.quant.reference``), behind one protocol that mypy checks both against.

``load("native" | "reference" | "auto")``: ``auto`` (the default of the ``STEVIE_KERNELS``
setting) picks native when the extension is importable. book-maintainer and features build
their books and kernels only through this.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Protocol, cast

import numpy as np

from stevie.quant.book import Level, OrderBookLike


class MicroFeaturesLike(Protocol):
    @property
    def obi(self) -> float: ...
    @property
    def ti(self) -> float: ...
    @property
    def spread_bps(self) -> float: ...
    @property
    def micro_vol_bps(self) -> float: ...
    @property
    def cancel_rate(self) -> float: ...
    @property
    def mid(self) -> float: ...
    @property
    def ts_ns(self) -> int: ...


class MicroKernelLike(Protocol):
    def on_trade(self, price: float, size: float, is_buy: bool, ts_ns: int) -> None: ...
    def on_book(self, bids: list[Level], asks: list[Level], ts_ns: int) -> MicroFeaturesLike | None: ...
    def reset(self) -> None: ...


class Kernels(Protocol):
    """What a backend module provides."""

    BACKEND: str

    @property
    def OrderBook(self) -> Callable[..., OrderBookLike]: ...

    @property
    def MicroKernel(self) -> Callable[..., MicroKernelLike]: ...

    def batch_features(
        self,
        k: int,
        window_ns: int,
        book_ts: np.ndarray,
        bid_px: np.ndarray,
        bid_sz: np.ndarray,
        ask_px: np.ndarray,
        ask_sz: np.ndarray,
        trade_ts: np.ndarray,
        trade_px: np.ndarray,
        trade_sz: np.ndarray,
        trade_buy: np.ndarray,
    ) -> np.ndarray: ...


BACKENDS = ("auto", "native", "reference")


def native_available() -> bool:
    try:
        import stevie_fastpath  # noqa: F401
    except ImportError:
        return False
    return True


def load(name: str = "auto") -> Kernels:
    """The backend module for ``name``. Raises ValueError for an unknown name and
    ImportError when ``native`` is asked for but the extension is not installed."""
    if name not in BACKENDS:
        raise ValueError(f"kernels must be one of {BACKENDS}, got {name!r}")
    module: ModuleType
    if name == "reference" or (name == "auto" and not native_available()):
        from stevie.quant import reference as module
    else:
        import stevie_fastpath as module
    return cast(Kernels, module)


if TYPE_CHECKING:  # mypy checks both modules against the protocol
    import stevie_fastpath as _native_module

    from stevie.quant import reference as _reference_module

    _n: Kernels = _native_module
    _r: Kernels = _reference_module
