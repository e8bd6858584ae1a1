"""Venue registry and smart order routing on the running e2e stack: the registry is a top-level
array with the mission's fields and measured round trips, the score picks a LIVE venue with
reasons, a paper order is routed through it and its audit records the route, the venue report
counts the fill, and ``venue_score`` is exported."""

from __future__ import annotations

import pytest

from tests.helpers.stack import wait_for

pytestmark = pytest.mark.e2e

FIELDS = {"venue", "latencyMs", "spread_bps", "topDepth", "feeBps", "reliabilityScore", "rateRemaining"}


def test_registry_score_routing_audit_report_and_metric(e2e_stack):
    s = e2e_stack

    def measured():
        status, rows = s.get("/api/venues/registry")
        ok = status == 200 and isinstance(rows, list) and len(rows) == 4
        live = ok and {r["symbol"] for r in rows if r["state"] == "LIVE"} == {"BTCUSDT", "ETHUSDT"}
        return rows if live and all(r["latencyMs"] is not None for r in rows) else None

    # (the recorded USD-M captures end before the spot ones: late in each replay pass the perp
    # books are STALE, so only one LIVE venue per symbol is required)
    rows = wait_for(measured, 90, "a LIVE venue per symbol and a measured round trip to every venue")
    assert all(set(r) >= FIELDS for r in rows) and {r["venue"] for r in rows} == {"binance", "binance-usdm"}
    assert {r["feeBps"] for r in rows} == {10.0, 5.0}  # Binance VIP 0 taker: spot 0.10 %, USD-M 0.05 %
    assert all(0 <= r["reliabilityScore"] <= 1 and r["rateRemaining"] > 0 for r in rows)
    assert all(r["topDepth"] > 0 and r["spread_bps"] >= 0 for r in rows if r["state"] == "LIVE")
    assert all(r["topDepth"] is None and r["spread_bps"] is None for r in rows if r["state"] != "LIVE")
    assert all(0 < r["latencyMs"] < 1000 for r in rows)  # loopback round trips
    status, one = s.get("/api/venues/registry?symbol=ETHUSDT")
    assert status == 200 and {r["symbol"] for r in one} == {"ETHUSDT"}

    status, sc = s.post("/api/venues/score", {"symbol": "BTCUSDT", "size": 0.02})
    assert status == 200, sc
    assert sc["venue"] in {"binance", "binance-usdm"} and sc["score"] > 0 and sc["reasons"]
    assert sc["score"] == min(a["score"] for a in sc["alternatives"] if a["eligible"])
    live = {a["venue"] for a in sc["alternatives"] if a["eligible"]}
    assert all(a["score"] is None for a in sc["alternatives"] if not a["eligible"])
    if live == {"binance", "binance-usdm"}:
        assert any("basis binance-usdm" in r for r in sc["reasons"])
    for body, code in (({"symbol": "DOGEUSDT", "size": 1}, 404), ({"symbol": "BTCUSDT", "size": -1}, 400)):
        assert s.post("/api/venues/score", body)[0] == code

    status, rec = s.post("/api/trading/paper/order", {"symbol": "BTCUSDT", "side": "buy", "size": 0.001})
    assert status == 200 and not rec["blocked"], rec

    def audited():
        _, audits = s.get("/api/audit/latest?limit=50")
        return next((a for a in audits if a["event_id"] == rec["eventId"]), None) if isinstance(audits, list) else None

    audit = wait_for(audited, 30, "the paper order's audit in PostgreSQL")
    route = audit["route"]
    assert route["filled"] == rec["venue"] == audit["venue"] and route["reasons"] and route["arrivalMid"] > 0
    assert route["scoreBps"] == pytest.approx(route["alternatives"][route["filled"]])

    def reported():
        _, rep = s.get("/api/report/venue?window=1d")
        row = next((v for v in rep["venues"] if v["venue"] == rec["venue"]), None) if isinstance(rep, dict) else None
        return rep if row and row["fills"] >= 1 and row["slippageBps"] is not None else None

    rep = wait_for(reported, 30, "the fill in the venue report")
    assert rep["windowS"] == 86400 and {v["venue"] for v in rep["venues"]} >= {"binance", "binance-usdm"}
    assert s.get("/api/report/venue?window=7x")[0] == 400

    _, text = s.get("/metrics")
    assert 'venue_score{symbol="BTCUSDT",venue="binance"}' in text
