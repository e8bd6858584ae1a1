"""The reference kernels: the pure Python/numpy twin of the Rust fast path (``stevie_fastpath``).

Same API as the native module, and the executable specification it is tested against:
``OrderBook`` (sortedcontainers), ``MicroKernel`` (incremental, event time) and
``batch_features`` (vectorised numpy over recorded arrays).
"""

from __future__ import annotations

import numpy as np

from stevie.quant.book import OrderBook
from stevie.quant.errors import QuantInputError
from stevie.quant.micro import MicroFeatures
from stevie.quant.micro import MicrostructureState as MicroKernel

BACKEND = "reference"

__all__ = ["BACKEND", "MicroFeatures", "MicroKernel", "OrderBook", "batch_features"]


def _window_sums(ts: np.ndarray, values: np.ndarray, window_ns: int) -> np.ndarray:
    """Σ values over [ts_i − window, ts_i] for each i (values at ts, sorted), in extended
    precision so the differences of cumulative sums stay exact far below 1e-9."""
    c = np.concatenate([[0.0], np.cumsum(values.astype(np.longdouble))])
    lo = np.searchsorted(ts, ts - window_ns, side="left")
    return np.asarray(c[np.arange(1, ts.size + 1)] - c[lo], dtype=float)


def _size_now(prev_px: np.ndarray, cur_px: np.ndarray, cur_sz: np.ndarray) -> np.ndarray:
    """Size in the current book at each previous level's price, same side (0 when gone):
    (m, L) previous prices × (m, L) current levels → (m, L)."""
    same = prev_px[:, :, None] == cur_px[:, None, :]
    return np.asarray(np.where(same, cur_sz[:, None, :], 0.0).sum(axis=2))


def batch_features(
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
) -> np.ndarray:
    """Features at every book of a recording, vectorised.

    book_ts (n,) int64 ns, non-decreasing; bid_px/bid_sz/ask_px/ask_sz (n, L) float64, best
    first, NaN-padded at the end for missing levels; trade_ts (m,) int64 ns non-decreasing,
    trade_px/trade_sz (m,) float64, trade_buy (m,) bool (aggressor bought). A trade at the
    same timestamp as a book counts before it. Returns (n, 6) float64 rows
    [obi, ti, spread_bps, micro_vol_bps, cancel_rate, mid]; NaN rows where a side is empty.
    Definitions: ``stevie.quant.micro``. Raises QuantInputError on unsorted times, mismatched
    shapes or a crossed/non-positive quote.
    """
    bts = np.asarray(book_ts, dtype=np.int64)
    bp, bs, ap, az = (np.asarray(a, dtype=float) for a in (bid_px, bid_sz, ask_px, ask_sz))
    tts = np.asarray(trade_ts, dtype=np.int64)
    tp, tsz = np.asarray(trade_px, dtype=float), np.asarray(trade_sz, dtype=float)
    tb = np.asarray(trade_buy, dtype=bool)
    n = bts.size
    if any(a.shape != bp.shape for a in (bs, ap, az)) or bp.ndim != 2 or bp.shape[0] != n:
        raise QuantInputError("book arrays must all be (n, levels) with n = len(book_ts)")
    if not (tp.size == tsz.size == tb.size == tts.size):
        raise QuantInputError("trade arrays must have the same length")
    if np.any(np.diff(bts) < 0) or np.any(np.diff(tts) < 0):
        raise QuantInputError("event time went backwards")
    out = np.full((n, 6), np.nan)
    valid = ~np.isnan(bp[:, 0]) & ~np.isnan(ap[:, 0])
    idx = np.flatnonzero(valid)
    if idx.size == 0:
        return out
    vts = bts[idx]
    b0, a0 = bp[idx, 0], ap[idx, 0]
    mid = 0.5 * (b0 + a0)
    if np.any(~(mid > 0)) or np.any(~((b0 > 0) & (a0 > 0))) or np.any(a0 < b0):
        raise QuantInputError("invalid quote (non-positive or crossed)")

    # OBI over the top k (levels are packed at the front)
    bsum = np.nansum(bs[idx, :k], axis=1)
    asum = np.nansum(az[idx, :k], axis=1)
    tot = bsum + asum
    obi = np.where(tot > 0, (bsum - asum) / np.where(tot > 0, tot, 1.0), 0.0)

    # TI: trades with ts in [t − W, t], processed before the book (ties first)
    cb = np.concatenate([[0.0], np.cumsum(np.where(tb, tsz, 0.0).astype(np.longdouble))])
    cs = np.concatenate([[0.0], np.cumsum(np.where(tb, 0.0, tsz).astype(np.longdouble))])
    hi = np.searchsorted(tts, vts, side="right")
    lo = np.searchsorted(tts, vts - window_ns, side="left")
    lo = np.minimum(lo, hi)
    buy = np.asarray(cb[hi] - cb[lo], dtype=float)
    sell = np.asarray(cs[hi] - cs[lo], dtype=float)
    ti = np.where(buy + sell > 0, (buy - sell) / np.where(buy + sell > 0, buy + sell, 1.0), 0.0)

    # micro-vol: squared log mid changes between consecutive valid books, windowed
    r2 = np.zeros(idx.size)
    r2[1:] = np.log(mid[1:] / mid[:-1]) ** 2
    has = np.zeros(idx.size, dtype=bool)
    has[1:] = True
    sums = _window_sums(vts[has], r2[has], window_ns)
    vol = np.zeros(idx.size)
    vol[has] = np.sqrt(np.maximum(sums, 0.0)) * 1e4

    # cancel rate: previous visible levels removed, net of trades at that price since then
    removed = np.zeros(idx.size)
    if idx.size > 1:
        both = np.concatenate([bp[idx], ap[idx]], axis=1)  # (v, 2L): bid columns then ask columns
        both_sz = np.concatenate([bs[idx], az[idx]], axis=1)
        prev, prev_sz = both[:-1], both_sz[:-1]

        L = bp.shape[1]
        new = np.concatenate(
            [_size_now(prev[:, :L], bp[idx][1:], bs[idx][1:]), _size_now(prev[:, L:], ap[idx][1:], az[idx][1:])], axis=1
        )
        # traded size per previous level: trades after book j−1 and up to book j (ties first)
        traded = np.zeros_like(prev_sz)
        row = np.searchsorted(vts, tts, side="left") - 1  # index into prev rows (book j−1)
        ok = (row >= 0) & (row < idx.size - 1)
        rr, pp, ss = row[ok], tp[ok], tsz[ok]
        if rr.size:
            match = prev[rr] == pp[:, None]
            r_i, c_i = np.nonzero(match)
            np.add.at(traded, (rr[r_i], c_i), ss[r_i])
        rows = np.arange(idx.size - 1)
        lo_px = bp[idx][1:][rows, (~np.isnan(bp[idx][1:])).sum(axis=1) - 1]  # deepest visible bid
        hi_px = ap[idx][1:][rows, (~np.isnan(ap[idx][1:])).sum(axis=1) - 1]  # deepest visible ask
        inside = (prev >= lo_px[:, None]) & (prev <= hi_px[:, None]) & ~np.isnan(prev)
        drop = np.where(inside, np.maximum(np.nan_to_num(prev_sz) - new - traded, 0.0), 0.0)
        removed[1:] = drop.sum(axis=1)
    has_c = np.zeros(idx.size, dtype=bool)
    has_c[1:] = True
    csum = _window_sums(vts[has_c], removed[has_c], window_ns)
    cancel = np.zeros(idx.size)
    cancel[has_c] = csum / (window_ns / 1e9)

    spread = (a0 - b0) / (0.5 * (b0 + a0)) * 1e4
    out[idx] = np.column_stack([obi, ti, spread, vol, cancel, mid])
    return out
