"""Options maths: BS identities, IV inversion, and smile metrics vs Deribit's own deltas."""

from __future__ import annotations

import csv
import gzip
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stevie.quant import options as o
from stevie.quant.errors import QuantInputError
from tests.helpers.capture import SAMPLES


@settings(max_examples=300, deadline=None)
@given(st.floats(0.5, 2.0), st.floats(0.01, 3.0), st.floats(0.05, 2.5), st.booleans())
def test_implied_vol_inverts_black_to_1e_8(k, T, sigma, is_call):
    price = o.black_price(1.0, k, T, sigma, is_call)
    if o.vega(1.0, k, T, sigma) < 1e-6:  # price carries no information about sigma at 1e-8
        return
    assert o.implied_vol(price, 1.0, k, T, is_call) == pytest.approx(sigma, abs=1e-8)


def test_put_call_parity_and_spot_forward_consistency():
    S, K, T, s, r, q = 100.0, 95.0, 0.5, 0.4, 0.03, 0.01
    c, p = o.bs_price(S, K, T, s, True, r, q), o.bs_price(S, K, T, s, False, r, q)
    assert c - p == pytest.approx(S * math.exp(-q * T) - K * math.exp(-r * T), abs=1e-12)
    assert o.spot_delta(S, K, T, s, True, r, q) - o.spot_delta(S, K, T, s, False, r, q) == pytest.approx(
        math.exp(-q * T)
    )
    h = 1e-4  # delta and vega against finite differences
    fd = (o.bs_price(S + h, K, T, s, True, r, q) - o.bs_price(S - h, K, T, s, True, r, q)) / (2 * h)
    assert o.spot_delta(S, K, T, s, True, r, q) == pytest.approx(fd, rel=1e-6)
    F = S * math.exp((r - q) * T)
    fdv = (o.black_price(F, K, T, s + h, True) - o.black_price(F, K, T, s - h, True)) / (2 * h)
    assert o.vega(F, K, T, s) == pytest.approx(fdv, rel=1e-6)


def test_two_point_chain_defines_rr_and_fly_but_not_term_slope():
    chain = [o.quote(0.9, "7d", "call", 0.6), o.quote(1.1, "7d", "put", 0.7)]
    m = o.smile_metrics(chain)
    assert m.rr25 is not None and m.fly25 is not None and m.atm_iv is not None
    # call deltas by hand: N(d1) with d1 = (−ln k + σ²T/2)/(σ√T), T = 7/365
    T = 7 / 365
    x = [
        0.5 * math.erfc(-((-math.log(k) + s * s * T / 2) / (s * math.sqrt(T))) / math.sqrt(2))
        for k, s in ((1.1, 0.7), (0.9, 0.6))
    ]
    slope = (0.6 - 0.7) / (x[1] - x[0])
    assert m.rr25 == pytest.approx(slope * (0.25 - 0.75), abs=1e-12)  # upside (high strike) richer: rr25 > 0
    assert m.fly25 == pytest.approx(0.0, abs=1e-12)  # two points: the smile is a line
    assert m.iv_term_slope is None and "2 tenors" in m.reasons["iv_term_slope"]
    assert m.skew_z is None and "skew_z" in m.reasons


@pytest.mark.parametrize(
    "bad",
    [
        lambda: o.quote(0.9, "7x", "call", 0.6),
        lambda: o.quote(0.9, "7d", "call", -0.1),
        lambda: o.quote(float("nan"), "7d", "put", 0.6),
        lambda: o.quote(1.0, "7d", "straddle", 0.6),
        lambda: o.smile_metrics([]),
        lambda: o.implied_vol(2.0, 1.0, 1.0, 1.0, True),
    ],
)
def test_bad_inputs_raise_documented_error(bad):
    with pytest.raises(QuantInputError):
        bad()


def _chain_rows(rows):
    return [
        o.ChainRow(
            float(r["strike"]),
            int(r["expiration_timestamp_ms"]),
            int(r["timestamp_ms"]),
            r["option_type"],
            float(r["mark_iv"]),
            float(r["underlying_price"]),
        )
        for r in rows
    ]


def _deribit_rows(name):
    with gzip.open(SAMPLES / "deribit/options" / name, "rt") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("name", ["btc_chain_2020-05-14.csv.gz", "btc_chain_2020-05-21.csv.gz"])
def test_smile_matches_deribit_published_deltas(name):
    rows = _deribit_rows(name)
    by_exp: dict[int, list[dict]] = {}
    for r in rows:
        by_exp.setdefault(int(r["expiration_timestamp_ms"]), []).append(r)
    compared = 0
    for _exp, rs in sorted(by_exp.items()):
        fwd = float(np.median([float(r["underlying_price"]) for r in rs]))
        quotes = o.chain_quotes(_chain_rows(rs))
        if quotes[0].tenor_years < 3 / 365:
            continue
        ours = o.tenor_smile(quotes)
        # reference: Deribit's own deltas, OTM option per strike, linear in call delta
        pts = {}
        for r in rs:
            k = float(r["strike"]) / fwd
            if (r["option_type"] == "call") == (k >= 1.0):
                d = float(r["delta"])
                pts[float(r["strike"])] = (d if r["option_type"] == "call" else d + 1.0, float(r["mark_iv"]) / 100)
        x, y = np.array(sorted(pts.values())).T
        ref = {d: float(np.interp(d, x, y)) for d in (0.25, 0.5, 0.75)}
        rr_ref, fly_ref = ref[0.25] - ref[0.75], 0.5 * (ref[0.25] + ref[0.75]) - ref[0.5]
        assert ours.rr25 is not None and ours.fly25 is not None
        print(
            f"{name} T={ours.tenor_years:.3f}y rr25 {ours.rr25:+.4f} ref {rr_ref:+.4f} "
            f"fly25 {ours.fly25:+.4f} ref {fly_ref:+.4f}"
        )
        assert ours.rr25 == pytest.approx(rr_ref, abs=0.002)  # 0.2 vol points
        assert ours.fly25 == pytest.approx(fly_ref, abs=0.002)
        compared += 1
    assert compared >= 4
    m = o.smile_metrics(o.chain_quotes(_chain_rows(rows)), rr25_history=[-0.02, -0.01, 0.0, 0.01, 0.015])
    assert m.iv_term_slope is not None and m.skew_z is not None
