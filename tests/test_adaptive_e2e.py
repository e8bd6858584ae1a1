"""Adaptive context on the running stack: regime per symbol (seeded from the replay's kline
history), the label in every decision's audit context, alpha attribution, feature ranking,
the reports from PostgreSQL, the BOCPD flag, and the 4xx answers."""

from __future__ import annotations

import math
from typing import Any

import pytest

from stevie.contracts.rpc import REGIMES
from tests.helpers.stack import Stack, wait_for

pytestmark = pytest.mark.e2e


def _regimes(s: Stack) -> dict[str, Any] | None:
    code, body = s.get("/api/regime/state")
    return body if code == 200 and body.get("symbols", {}).get("BTCUSDT") else None


def test_regime_state_and_label_in_every_audit(e2e_stack: Stack) -> None:
    body = wait_for(lambda: _regimes(e2e_stack), 240, "a seeded BTCUSDT regime")
    assert body["enabled"] is True and 0 < body["hazard"] < 1
    for sym, v in body["symbols"].items():
        assert v["label"] in REGIMES, sym
        assert v["runLength"] >= 0 and 0 <= v["changeProb"] <= 1 and v["since"] <= v["ts"]
        assert v["bars"] >= 1000  # seeded with the kline history, not only the live bars

    def labelled() -> list[dict[str, Any]] | None:
        code, audits = e2e_stack.get("/api/audit/latest?limit=6")
        btc = [a for a in audits if a["symbol"] == "BTCUSDT"] if code == 200 else []
        return btc if btc and all(a["context"]["regime"] != "unknown" for a in btc) else None

    audits = wait_for(labelled, 120, "BTCUSDT decisions carrying the regime label")
    for a in audits:
        assert a["context"]["regime"] in REGIMES
        assert {x["id"] for x in a["alphas"]} >= {"a_obi", "a_ti", "a_micro_dev"}
        assert all(-1 <= x["signal"] <= 1 for x in a["alphas"])


def test_alpha_registry_and_attribution(e2e_stack: Stack) -> None:
    code, reg = e2e_stack.get("/api/alpha/registry")
    assert code == 200 and isinstance(reg, list) and {"id", "desc", "weight"} <= set(reg[0])

    def latest() -> dict[str, Any] | None:
        code, body = e2e_stack.get("/api/alpha/attribution?tradeId=latest")
        return body if code == 200 else None

    att = wait_for(latest, 240, "a decision attributed after its horizon")
    assert math.isclose(sum(a["shapley"] for a in att["alphas"]), att["blendPnl"], rel_tol=1e-9, abs_tol=1e-9)
    assert {"signal", "weight", "shapley", "loo"} <= set(att["alphas"][0])
    code, same = e2e_stack.get(f"/api/alpha/attribution?tradeId={att['tradeId']}")
    assert code == 200 and same["tradeId"] == att["tradeId"]
    code, err = e2e_stack.get("/api/alpha/attribution?tradeId=no-such-trade")
    assert code == 404 and err["error"] == "not_found"


def test_feature_ranking_scores(e2e_stack: Stack) -> None:
    def scored() -> list[dict[str, Any]] | None:
        code, body = e2e_stack.get("/api/features/ranking")
        return body if code == 200 and body and all(f["score"] is not None for f in body) else None

    ranking = wait_for(scored, 300, "every gated feature scored")
    assert {f["feature"] for f in ranking} == {"obi", "ti", "spread_bps", "micro_vol", "cancel_rate"}
    scores = [f["score"] for f in ranking]
    assert scores == sorted(scores, reverse=True)
    for f in ranking:
        assert -1 <= f["ic"] <= 1 and 0 <= f["hsic"] <= 1 and 0 <= f["drift"] <= 1 and f["pairs"] >= 100
        assert f["disabled"] is False  # the first weekly evaluation is a week of event time away


def test_reports_from_postgres_and_bad_input(e2e_stack: Stack) -> None:
    def alpha_pnl() -> dict[str, Any] | None:
        code, body = e2e_stack.get("/api/report/alpha-pnl?window=7d")
        return body if code == 200 and body["trades"] > 0 else None

    rep = wait_for(alpha_pnl, 240, "decisions in PostgreSQL with closed horizons")
    assert math.isclose(sum(a["shapleyPnl"] for a in rep["alphas"]), rep["blendPnl"], rel_tol=1e-6, abs_tol=1e-9)
    code, risk = e2e_stack.get("/api/report/risk?window=7d&source=live")
    assert code == 200 and risk["trades"] > 0 and risk["turnoverQuote"] >= 0 and risk["feesQuote"] >= 0
    for path, status in (
        ("/api/report/risk?window=7x", 400),
        ("/api/report/alpha-pnl?window=0d", 400),
        ("/api/report/risk?source=paper", 400),
        ("/api/report/risk?source=backtest:no-such-run", 404),
    ):
        code, body = e2e_stack.get(path)
        assert code == status, (path, body)
        assert {"error", "detail"} <= set(body)


def test_bocpd_flag_off_leaves_the_label_unknown(e2e_stack: Stack) -> None:
    wait_for(lambda: _regimes(e2e_stack), 240, "a seeded BTCUSDT regime")
    code, _ = e2e_stack.post("/api/flags", {"BOCPD": False}, token=e2e_stack.token)
    assert code == 200
    try:

        def off() -> dict[str, Any] | None:
            body = _regimes(e2e_stack)
            ok = body and not body["enabled"] and all(v["label"] == "unknown" for v in body["symbols"].values())
            return body if ok else None

        wait_for(off, 20, "every label unknown with BOCPD off")
    finally:
        code, _ = e2e_stack.post("/api/flags", {"BOCPD": True}, token=e2e_stack.token)
        assert code == 200
    wait_for(lambda: (b := _regimes(e2e_stack)) and b["enabled"], 20, "BOCPD back on")
