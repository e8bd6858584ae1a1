"""Type stubs of the PyO3 module (checked by ``mypy.stubtest``)."""

from typing import final

import numpy as np
import numpy.typing as npt

__all__ = ["BACKEND", "BookSync", "L2Replay", "MicroFeatures", "MicroKernel", "OrderBook", "batch_features"]

_Level = tuple[float, float]
BACKEND: str
# ("book", state, seq, ts_event_ns, bids, asks) | ("status", state, seq, ts_event_ns, reason, resyncs)
_Out = tuple[str, str, int, int, list[_Level], list[_Level]] | tuple[str, str, int, int, str, int]
# (obi, ti, spread_bps, micro_vol_bps, cancel_rate, mid)
_Feat = tuple[float, float, float, float, float, float]
# (book key, usdm, snapshot bids, snapshot asks, lastUpdateId, raw depth lines,
#  trade times ns, trade prices, trade sizes, buyer-aggressor flags)
_Capture = tuple[
    str,
    bool,
    list[_Level],
    list[_Level],
    int,
    bytes,
    npt.NDArray[np.int64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.bool_],
]
_Rejected = tuple[int, int, int | None, list[_Level], list[_Level], int, str, float, float]

@final
class OrderBook:
    def __new__(cls, usdm: bool = False, decimals: int = 8) -> OrderBook: ...
    @property
    def usdm(self) -> bool: ...
    @property
    def last_update_id(self) -> int: ...
    @property
    def synced(self) -> bool: ...
    def clear(self) -> None: ...
    def apply_snapshot(self, bids: list[_Level], asks: list[_Level], last_update_id: int) -> None: ...
    def apply_diff(
        self,
        first_update_id: int,
        final_update_id: int,
        prev_final_update_id: int | None,
        bids: list[_Level],
        asks: list[_Level],
    ) -> str: ...
    def apply_depth_json(self, data: bytes) -> tuple[str, int, int]: ...
    def replay_lines(self, data: bytes, k: int = 20, threads: int = 1) -> tuple[int, int, int, int]: ...
    def best_bid(self) -> _Level | None: ...
    def best_ask(self) -> _Level | None: ...
    def top_k(self, k: int) -> tuple[list[_Level], list[_Level]]: ...
    def top_k_arrays(self, k: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
    def is_crossed(self) -> bool: ...
    def depth_within_bps(self, bps: float) -> tuple[float, float]: ...
    def levels(self) -> tuple[list[_Level], list[_Level]]: ...

@final
class MicroFeatures:
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

@final
class MicroKernel:
    def __new__(cls, k: int = 5, window_ns: int = 5_000_000_000) -> MicroKernel: ...
    @property
    def k(self) -> int: ...
    def on_trade(self, price: float, size: float, is_buy: bool, ts_ns: int) -> None: ...
    def on_book(self, bids: list[_Level], asks: list[_Level], ts_ns: int) -> MicroFeatures | None: ...
    def reset(self) -> None: ...

def batch_features(
    k: int,
    window_ns: int,
    book_ts: npt.NDArray[np.int64],
    bid_px: npt.NDArray[np.float64],
    bid_sz: npt.NDArray[np.float64],
    ask_px: npt.NDArray[np.float64],
    ask_sz: npt.NDArray[np.float64],
    trade_ts: npt.NDArray[np.int64],
    trade_px: npt.NDArray[np.float64],
    trade_sz: npt.NDArray[np.float64],
    trade_buy: npt.NDArray[np.bool_],
) -> npt.NDArray[np.float64]: ...

@final
class BookSync:
    def __new__(
        cls,
        usdm: bool,
        top_k: int = 20,
        coalesce_ns: int = 100_000_000,
        buffer_size: int = 5000,
        guard: bool = True,
        max_price_ratio: float = 400.0,
        size_spike_mult: float = 200.0,
        guard_depth: int = 20,
        decimals: int = 8,
    ) -> BookSync: ...
    @property
    def state(self) -> str: ...
    @property
    def wants_snapshot(self) -> bool: ...
    @property
    def last_event_ns(self) -> int: ...
    @property
    def last_update_id(self) -> int: ...
    @property
    def buffered(self) -> int: ...
    @property
    def counters(self) -> tuple[int, int, int, int, int, int, int]: ...
    def on_snapshot(self, bids: list[_Level], asks: list[_Level], last_update_id: int, ts_event_ns: int) -> list[_Out]: ...
    def on_diff(
        self,
        first_update_id: int,
        final_update_id: int,
        prev_final_update_id: int | None,
        bids: list[_Level],
        asks: list[_Level],
        ts_event_ns: int,
    ) -> list[_Out]: ...
    def resync(self, reason: str, now_ns: int) -> list[_Out]: ...
    def check_stale(self, idle_ns: int, stale_after_ns: int, now_ns: int) -> list[_Out]: ...
    def flush(self) -> list[_Out]: ...
    def take_rejected(self) -> list[_Rejected]: ...
    def replay_capture(
        self, bids: list[_Level], asks: list[_Level], last_update_id: int, data: bytes
    ) -> tuple[int, list[_Out]]: ...

@final
class L2Replay:
    def __new__(
        cls,
        k: int = 5,
        window_ns: int = 5_000_000_000,
        top_k: int = 20,
        coalesce_ns: int = 100_000_000,
        buffer_size: int = 5000,
        guard: bool = True,
        max_price_ratio: float = 400.0,
        size_spike_mult: float = 200.0,
        guard_depth: int = 20,
    ) -> L2Replay: ...
    def on_trade(self, key: str, price: float, size: float, is_buy: bool, ts_ns: int) -> None: ...
    def on_status(self, key: str, state: str) -> None: ...
    def on_book(self, key: str, state: str, bids: list[_Level], asks: list[_Level], ts_ns: int) -> _Feat | None: ...
    def run_group(self, captures: list[_Capture]) -> tuple[list[int], list[tuple[int, _Out, _Feat | None]]]: ...
