"""The L2 order book with Binance diff-depth sequencing, on ``sortedcontainers``.

This is the reference (executable specification) book. The Rust kernel implements the same
``OrderBookLike`` protocol; parity tests run one body over both.

Sequencing source: Binance "How to manage a local order book correctly"
(spot: https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams ;
USD-M: https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams/How-to-manage-a-local-order-book-correctly).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from itertools import islice
from typing import Protocol

import msgspec
import numpy as np
from sortedcontainers import SortedDict

from stevie.quant.errors import QuantInputError

Level = tuple[float, float]


class Verdict(str, enum.Enum):
    """Outcome of applying one diff: OK (applied), STALE (already covered; dropped, book
    unchanged), GAP (does not continue the book; not applied — the caller must resync).
    A ``str`` enum, so it equals the native backend's ``"ok"``/``"stale"``/``"gap"``."""

    OK = "ok"
    STALE = "stale"
    GAP = "gap"


class OrderBookLike(Protocol):
    """What book-maintainer and features need from a book (Python or Rust)."""

    @property
    def usdm(self) -> bool: ...
    @property
    def last_update_id(self) -> int: ...
    @property
    def synced(self) -> bool: ...
    def apply_snapshot(self, bids: list[Level], asks: list[Level], last_update_id: int) -> None: ...
    def apply_diff(
        self,
        first_update_id: int,
        final_update_id: int,
        prev_final_update_id: int | None,
        bids: list[Level],
        asks: list[Level],
    ) -> str: ...
    def apply_depth_json(self, data: bytes) -> tuple[str, int, int]: ...
    def replay_lines(self, data: bytes, k: int = 20, threads: int = 1) -> tuple[int, int, int, int]: ...
    def best_bid(self) -> Level | None: ...
    def best_ask(self) -> Level | None: ...
    def top_k(self, k: int) -> tuple[list[Level], list[Level]]: ...
    def is_crossed(self) -> bool: ...
    def depth_within_bps(self, bps: float) -> tuple[float, float]: ...
    def clear(self) -> None: ...
    def levels(self) -> tuple[list[Level], list[Level]]: ...
    def top_k_arrays(self, k: int) -> tuple[np.ndarray, np.ndarray]: ...


class OrderBook:
    """One venue+symbol L2 book. ``usdm=False`` follows the spot rule, ``True`` the USD-M rule.

    After ``apply_snapshot(…, L)``:
    - spot: diffs with ``u <= L`` are STALE; the first applied needs ``U <= L+1 <= u``;
      later ones need ``U == prev_u + 1``.
    - USD-M: diffs with ``u < L`` are STALE; the first applied needs ``U <= L <= u`` (or
      ``pu == L``: the diff continues exactly from the snapshot); later ones ``pu == prev_u``.
    Any other diff is a GAP and is not applied. Sizes are absolute; size 0 removes the level.
    Prices in quote units, sizes in base units. ``decimals``: the price precision the bytes
    API accepts (a price with more non-zero decimals is an error, as in the native book).
    """

    __slots__ = ("_asks", "_bids", "_first_pending", "_last", "_synced", "decimals", "usdm")

    def __init__(self, usdm: bool = False, decimals: int = 8) -> None:
        self.usdm = usdm
        self.decimals = decimals
        self._bids: SortedDict = SortedDict()
        self._asks: SortedDict = SortedDict()
        self._last = 0
        self._synced = False
        self._first_pending = False

    @property
    def last_update_id(self) -> int:
        """Last applied update id (the snapshot's ``lastUpdateId`` before any diff)."""
        return self._last

    @property
    def synced(self) -> bool:
        """True once a snapshot was applied and the first continuing diff too."""
        return self._synced and not self._first_pending

    def clear(self) -> None:
        """Forget every level and the sequence state."""
        self._bids.clear()
        self._asks.clear()
        self._last = 0
        self._synced = False
        self._first_pending = False

    def apply_snapshot(self, bids: Iterable[Level], asks: Iterable[Level], last_update_id: int) -> None:
        """Replace the book with a REST snapshot whose ``lastUpdateId`` is ``last_update_id``."""
        self._bids = SortedDict((p, q) for p, q in bids if q > 0)
        self._asks = SortedDict((p, q) for p, q in asks if q > 0)
        self._last = last_update_id
        self._synced = True
        self._first_pending = True

    def _continues(self, first: int, final: int, prev: int | None) -> Verdict:
        last = self._last
        if self._first_pending:
            if self.usdm:
                if final < last:
                    return Verdict.STALE
                return Verdict.OK if first <= last <= final or prev == last else Verdict.GAP
            if final <= last:
                return Verdict.STALE
            return Verdict.OK if first <= last + 1 <= final else Verdict.GAP
        if final <= last:
            return Verdict.STALE
        if self.usdm:
            return Verdict.OK if prev == last else Verdict.GAP
        return Verdict.OK if first == last + 1 else Verdict.GAP

    def apply_diff(
        self,
        first_update_id: int,
        final_update_id: int,
        prev_final_update_id: int | None,
        bids: Iterable[Level],
        asks: Iterable[Level],
    ) -> Verdict:
        """Apply one diff (Binance ``U``, ``u``, ``pu``, ``b``, ``a``) if it continues the book.

        Returns the Verdict; never raises on sequencing. A book with no snapshot answers GAP.
        """
        if not self._synced:
            return Verdict.GAP
        verdict = self._continues(first_update_id, final_update_id, prev_final_update_id)
        if verdict is not Verdict.OK:
            return verdict
        _set_levels(self._bids, bids)
        _set_levels(self._asks, asks)
        self._last = final_update_id
        self._first_pending = False
        return Verdict.OK

    def best_bid(self) -> Level | None:
        """Highest bid (price, size) or None when the side is empty."""
        return self._bids.peekitem(-1) if self._bids else None

    def best_ask(self) -> Level | None:
        """Lowest ask (price, size) or None when the side is empty."""
        return self._asks.peekitem(0) if self._asks else None

    def top_k(self, k: int) -> tuple[list[Level], list[Level]]:
        """Best ``k`` levels per side, best first: (bids descending, asks ascending)."""
        bids = [(p, self._bids[p]) for p in islice(reversed(self._bids), k)]
        asks = [(p, self._asks[p]) for p in islice(self._asks, k)]
        return bids, asks

    def is_crossed(self) -> bool:
        """True when best bid >= best ask (a book that cannot be right)."""
        return bool(self._bids and self._asks and self._bids.peekitem(-1)[0] >= self._asks.peekitem(0)[0])

    def depth_within_bps(self, bps: float) -> tuple[float, float]:
        """Total (bid size, ask size) in base units within ``bps`` basis points of the mid.

        Returns (0, 0) when a side is empty."""
        bb, ba = self.best_bid(), self.best_ask()
        if bb is None or ba is None:
            return 0.0, 0.0
        mid = 0.5 * (bb[0] + ba[0])
        lo, hi = mid * (1 - bps * 1e-4), mid * (1 + bps * 1e-4)
        bid = sum(self._bids[p] for p in self._bids.irange(minimum=lo))
        ask = sum(self._asks[p] for p in self._asks.irange(maximum=hi))
        return float(bid), float(ask)

    def levels(self) -> tuple[list[Level], list[Level]]:
        """Every level, best first (for parity checks)."""
        return self.top_k(len(self._bids) + len(self._asks))

    def top_k_arrays(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Best ``k`` levels as two (n, 2) float64 arrays [price, size], best first."""
        bids, asks = self.top_k(k)
        return np.array(bids, dtype=float).reshape(-1, 2), np.array(asks, dtype=float).reshape(-1, 2)

    def apply_depth_json(self, data: bytes) -> tuple[str, int, int]:
        """One raw Binance depthUpdate (or combined-stream envelope) → (verdict, U, u).
        Raises QuantInputError on a malformed message (checked before its ids: a stale
        message with a bad number is an error too); the book is then unchanged."""
        try:
            msg = _depth_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise QuantInputError(f"bad depthUpdate: {exc}") from exc
        d = msg.data if msg.data is not None else msg
        if d.U is None or d.u is None or d.b is None or d.a is None or d.E is None:
            raise QuantInputError("bad depthUpdate: missing E, U, u, b or a")
        # every number is checked first: a malformed message is an error whatever its ids
        bids = [(_price(p, self.decimals), _qty(q)) for p, q in d.b]
        asks = [(_price(p, self.decimals), _qty(q)) for p, q in d.a]
        verdict = self._continues(d.U, d.u, d.pu) if self._synced else Verdict.GAP
        if verdict is Verdict.OK:
            self.apply_diff(d.U, d.u, d.pu, bids, asks)
        return verdict.value, d.U, d.u

    def replay_lines(self, data: bytes, k: int = 20, threads: int = 1) -> tuple[int, int, int, int]:
        """Apply newline-separated messages, top-k after each applied one:
        (ok, stale, gap, errors). ``threads`` (1 or 2) only changes how the native backend
        runs (2: decode on a second thread); this reference always uses one.

        Raises QuantInputError when ``threads`` is not 1 or 2."""
        if threads not in (1, 2):
            raise QuantInputError(f"threads must be 1 or 2, got {threads}")
        counts = {"ok": 0, "stale": 0, "gap": 0, "errors": 0}
        for line in data.split(b"\n"):
            if not line.strip():
                continue
            try:
                verdict, _, _ = self.apply_depth_json(line)
            except QuantInputError:
                counts["errors"] += 1
                continue
            counts[verdict] += 1
            if verdict == "ok":
                self.top_k(k)
        return counts["ok"], counts["stale"], counts["gap"], counts["errors"]


class _Depth(msgspec.Struct):
    U: int | None = None
    u: int | None = None
    b: list[tuple[str, str]] | None = None
    a: list[tuple[str, str]] | None = None
    E: int | None = None
    pu: int | None = None
    data: _Depth | None = None


_depth_decoder = msgspec.json.Decoder(_Depth)


def _price(s: str, decimals: int) -> float:
    whole, _, frac = s.partition(".")
    if not (whole.isdigit() and (frac == "" or frac.isdigit())) or frac[decimals:].strip("0"):
        raise QuantInputError(f"bad price {s!r} (at most {decimals} decimals)")
    return float(s)


def _qty(s: str) -> float:
    whole, _, frac = s.partition(".")
    if not (whole.isdigit() and (frac == "" or frac.isdigit())):
        raise QuantInputError(f"bad quantity {s!r}")
    return float(s)


def _set_levels(side: SortedDict, levels: Iterable[Level] | Sequence[Level]) -> None:
    for price, size in levels:
        if size > 0:
            side[price] = size
        else:
            side.pop(price, None)
