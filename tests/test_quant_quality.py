"""Data-quality guards: robust z equals scipy's MAD definition; a 40-sigma spike candle is
flagged, a genuine level shift is not; the schema reasons; no false positives on real data;
the L2 guard catches the chaos depth_spike levels and passes real diffs."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import median_abs_deviation

from stevie.quant.quality import L2Limits, l2_levels, ohlcv_schema, robust_z, spike_guard

DATA = Path("data/samples/binance/usdm/klines_1m")


def _walk(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    return 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))


def test_robust_z_equals_the_scipy_definition():
    r = np.random.default_rng(1).standard_t(3, 600) * 1e-3
    z = robust_z(r, 240)
    for t in (240, 333, 599):
        w = r[t - 240 : t]
        ref = (r[t] - np.median(w)) / median_abs_deviation(w, scale="normal")
        assert z[t] == pytest.approx(ref, rel=1e-12)
    assert np.isnan(z[:240]).all()


def test_a_40_sigma_spike_candle_is_flagged_and_a_level_shift_is_not():
    c = _walk()
    sigma = np.std(np.diff(np.log(c)))
    spiked = c.copy()
    spiked[1500] *= np.exp(40 * sigma)  # up 40 σ, back down at the next close
    v = spike_guard(spiked)
    assert np.flatnonzero(v.spike).tolist() == [1500] and v.z_in[1500] > 25
    shifted = c.copy()
    shifted[1500:] *= np.exp(40 * sigma)  # a real jump that stays
    assert not spike_guard(shifted).spike.any()
    assert not spike_guard(c).spike.any()


@pytest.mark.parametrize("symbol", ["BTCUSDT", "BNBUSDT"])
def test_no_spike_flagged_on_real_history(symbol):
    """BNBUSDT holds the largest real one-sided z (52.8): a real move, not flagged."""
    import polars as pl

    with gzip.open(DATA / f"{symbol}.csv.gz", "rb") as f:
        rows = pl.read_csv(f.read()).to_numpy()
    assert all(r == "" for r in ohlcv_schema(rows[:5000, 0].astype(np.int64), *rows[:5000, 1:6].T))
    assert spike_guard(rows[:, 4]).spike.sum() == 0


def test_schema_reasons():
    t = [0, 60, 60, 180, 240, 300, 360]
    o = [1, 1, 1, 1, 1, 1, 1]
    h = [2, 2, 2, 2, 2, 0.5, 2]
    lo = [0.5, 0.5, 0.5, np.nan, 0.5, 0.5, 0.5]
    c = [1, 1, 1, 1, 1, 1, -1]
    v = [1, -1, 1, 1, 1, 1, 1]
    assert ohlcv_schema(t, o, h, lo, c, v) == [
        "",
        "negative_volume",
        "non_increasing_time",
        "non_finite",
        "",
        "ohlc_inconsistent",
        "non_positive_price",
    ]


def test_l2_guard_catches_the_injected_levels():
    mid, visible = 61000.0, 40.0
    assert l2_levels([(61000.01, 0.5), (60990.0, 0.0)], mid, visible) == ""
    assert l2_levels([(61.0, 0.5)], mid, visible) == "far_from_mid"
    assert l2_levels([(61000.01, 0.5 * 100_000)], mid, visible) == "size_spike"
    assert l2_levels([(61000.01, 0.5 * 100_000)], mid, visible, L2Limits(size_spike_mult=1e6)) == ""


def test_l2_guard_passes_real_diffs():
    from stevie.services.venue_replay.captures import load_capture
    from stevie.services.venue_replay.core import ReplayBook, first_live_index

    d = next(Path("data/samples/binance/spot/btcusdt").glob("l2_*"))
    cap = load_capture("binance", "BTCUSDT", d)
    book = ReplayBook(cap)
    i0 = first_live_index(cap)
    for diff in cap.diffs[i0 : i0 + 300]:
        bids = sorted(((float(p), float(q)) for p, q in book.bids.items()), reverse=True)[:20]
        asks = sorted((float(p), float(q)) for p, q in book.asks.items())[:20]
        mid = (bids[0][0] + asks[0][0]) / 2
        vis = sum(q for _, q in bids + asks)
        levels = [(float(p), float(q)) for p, q in diff["b"] + diff["a"]]
        assert l2_levels(levels, mid, vis) == "", diff["u"]
        book.apply(diff)
