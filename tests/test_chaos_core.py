"""Chaos core (pure): validation, one-shot vs duration faults, the bogus levels of depth_spike."""

from __future__ import annotations

from decimal import Decimal

import pytest

from stevie.contracts.ops import ChaosRequest
from stevie.services.venue_replay.chaos import Chaos

S = 1_000_000_000
U = {"binance": ["BTCUSDT", "ETHUSDT"], "binance-usdm": ["BTCUSDT"]}


@pytest.mark.parametrize(
    "req",
    [
        ChaosRequest("meteor"),
        ChaosRequest("l2_gap", venue="kraken"),
        ChaosRequest("l2_gap", symbol="DOGEUSDT"),
        ChaosRequest("l2_gap", durationS=0),
        ChaosRequest("l2_gap", durationS=1e9),
        ChaosRequest("x" * 10_000),
    ],
)
def test_bad_requests_are_value_errors_without_echoing_megabytes(req):
    with pytest.raises(ValueError) as e:
        Chaos(U).inject(req, 0)
    assert len(str(e.value)) < 300


def test_one_shot_gap_drops_exactly_the_next_diff_of_each_symbol():
    c = Chaos(U)
    _, res = c.inject(ChaosRequest("l2_gap"), 10 * S)
    assert res.oneShot and res.endsAtMs is None and res.venues == ["binance", "binance-usdm"]
    drops = [c.drop_diff(v, s, 11 * S) for v, s in [("binance", "BTCUSDT")] * 3]
    assert drops == [True, False, False]
    assert c.drop_diff("binance", "ETHUSDT", 11 * S) and c.drop_diff("binance-usdm", "BTCUSDT", 11 * S)
    assert not any(c.drop_diff(v, s, 12 * S) for v in U for s in U[v])


def test_duration_fault_covers_its_window_only():
    c = Chaos(U)
    _, res = c.inject(ChaosRequest("l2_gap", venue="binance", symbol="btcusdt", durationS=2), 10 * S)
    assert (res.injectedAtMs, res.endsAtMs, res.symbols) == (10_000, 12_000, ["BTCUSDT"])
    assert c.drop_diff("binance", "BTCUSDT", 11 * S) and c.drop_diff("binance", "BTCUSDT", int(11.9 * S))
    assert not c.drop_diff("binance", "ETHUSDT", 11 * S) and not c.drop_diff("binance-usdm", "BTCUSDT", 11 * S)
    assert not c.drop_diff("binance", "BTCUSDT", 12 * S)
    c.inject(ChaosRequest("api_timeout", durationS=1), 20 * S)
    assert c.hang_rest("binance", int(20.5 * S)) and c.hang_rest("binance", int(20.6 * S))
    assert not c.hang_rest("binance", 21 * S)
    c.inject(ChaosRequest("ws_flap", venue="binance", durationS=3), 30 * S)
    assert c.refuse_ws("binance", 31 * S) and not c.refuse_ws("binance-usdm", 31 * S)
    assert not c.refuse_ws("binance", 33 * S)


def test_depth_spike_adds_a_huge_size_and_a_far_level_to_one_diff():
    c = Chaos(U)
    c.inject(ChaosRequest("depth_spike", venue="binance", symbol="BTCUSDT"), 0)
    bids = {"61000.01000000": "0.50000000", "60999.00000000": "2.00000000"}
    diff = {"e": "depthUpdate", "U": 1, "u": 2, "b": [["60999.00000000", "1.00000000"]], "a": []}
    out = c.spike_diff("binance", "BTCUSDT", diff, bids, 1)
    assert diff["b"] == [["60999.00000000", "1.00000000"]]  # the original is untouched
    best, far = out["b"][-2], out["b"][-1]
    assert best[0] == "61000.01000000" and Decimal(best[1]) == Decimal("50000")
    assert Decimal(far[0]) == Decimal("61.00001") and out["u"] == 2
    assert c.spike_diff("binance", "BTCUSDT", diff, bids, 2) is diff  # one shot
