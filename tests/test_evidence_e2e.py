"""Evidence routes on the shared running stack: off-policy estimates, promotion, calibration and
the model registry answer numbers computed from the stack's own audits; the router's
checkpoint is the current model; promote → rollback show in /api/models and the router's
snapshot; bad input answers 4xx, never 5xx."""

from __future__ import annotations

import pytest

from tests.helpers.stack import wait_for

pytestmark = pytest.mark.e2e


def test_evidence_routes_answer_from_live_audits(e2e_stack):
    s = e2e_stack

    def summary():
        code, body = s.get("/api/cf/summary")
        return body if code == 200 and body["n"] >= 3 else None

    cf = wait_for(summary, 240, "decisions with a reward in /api/cf/summary")
    assert cf["source"] == "live" and cf["rewardUnit"] == "bps"
    rows = {(r["policyId"], r["regime"]): r for r in cf["rows"]}
    assert ("p_flat", "all") in rows and ("p_obi_momentum", "all") in rows
    assert rows[("p_flat", "all")]["n"] >= 3
    for r in rows.values():  # a single regime's cell may hold only one or two rewarded decisions yet
        assert r["ess"] >= 0
        if r["n"] > 0:
            assert r["ips"] is not None and r["ips"]["low"] <= r["ips"]["value"] <= r["ips"]["high"]
        if r["n"] < 30:
            assert "too few" in r["warning"]  # thin evidence says so, with n
    assert rows[("p_flat", "all")]["replay"] == 0.0  # the do-nothing policy earns exactly 0

    def promotion():
        code, body = s.get("/api/promotion/status")  # served from a cache refreshed every 15 s
        return body if code == 200 and body["n"] >= 3 else None

    promo = wait_for(promotion, 60, "promotion status over the same decisions")
    assert promo["champion"] == "router"
    assert {c["id"] for c in promo["challengers"]} >= {"p_flat", "p_obi_momentum"}
    assert promo["decision"] in ("keep champion",) or promo["decision"].startswith("promote ")
    assert promo["reason"]

    code, bt = s.get("/api/cf/summary?source=backtest")
    assert code == 200 and (bt["n"] > 0 or bt["warnings"])  # no stored backtest yet: n = 0 and why
    assert s.get("/api/cf/summary?source=bogus")[0] == 400
    code, pbt_ = s.get("/api/promotion/status?source=backtest")
    assert code == 200 and (pbt_["n"] > 0 or pbt_["warnings"])
    assert s.get("/api/promotion/status?source=backtest:nope")[0] in (200, 404)  # 200 while no run is stored

    code, meta = s.get("/api/meta/quality")
    assert code == 200 and {"brier", "ece", "reliability", "routerPriorDelta", "sizingCapDelta"} <= set(meta)
    assert meta["source"] == "live"
    code, bmeta = s.get("/api/meta/quality?source=backtest")
    assert code == 200 and bmeta["source"].startswith("backtest") and (bmeta["n"] > 0 or bmeta["warnings"])
    assert s.get("/api/meta/quality?source=bogus")[0] == 400
    code, lineage = s.get("/api/pbt/lineage")
    assert code == 200 and isinstance(lineage, list)


def test_checkpoint_promote_rollback_and_bad_input(e2e_stack):
    s = e2e_stack

    def current():
        code, models = s.get("/api/models")
        cur = [m for m in models if m["current"]] if code == 200 else []
        return cur[0] if cur else None

    ckpt = wait_for(current, 300, "the router's first checkpoint as the current model")
    assert ckpt["kind"] == "checkpoint" and sum(ckpt["updates"].values()) >= 10
    _, snap = s.get("/api/router/snapshot")
    assert snap["modelId"] in (ckpt["id"], "")  # the running session's own row (or not yet reloaded)
    assert all(snap["updates"][p] >= n for p, n in ckpt["updates"].items())

    # bad input: 404 unknown, 400 malformed, 401 without the token — never a 5xx
    assert s.post("/api/models/promote", {"id": "nope"}, token=s.token)[0] == 404
    assert s.post("/api/models/rollback", {"id": "nope"}, token=s.token)[0] == 404
    assert s.post("/api/models/promote", {"idx": 1}, token=s.token)[0] == 400
    assert s.post("/api/meta/apply-nudges", {"routerPriorDelta": "x"}, token=s.token)[0] == 400
    assert s.post("/api/meta/apply-nudges", {"sizingCapDelta": 5}, token=s.token)[0] == 400
    assert s.post("/api/meta/apply-nudges", {})[0] == 401
    code, nudged = s.post("/api/meta/apply-nudges", {}, token=s.token)
    assert code == 200 and {"routerPriorDelta", "sizingCapDelta", "applied"} <= set(nudged)

    # promote the checkpoint (the router reloads it live), then roll back to it: both audited
    code, change = s.post("/api/models/promote", {"id": ckpt["id"]}, token=s.token)
    assert code == 200 and change["action"] == "promote" and change["model"]["current"]

    def reloaded():
        _, snap = s.get("/api/router/snapshot")
        if snap["modelId"] == ckpt["id"]:
            return True
        _, models = s.get("/api/models")
        follow = {m["id"] for m in models if m["parent"] == ckpt["id"]}  # its next checkpoint
        return snap["modelId"] in follow

    wait_for(reloaded, 30, "the router to follow the promoted model")
    _, models = s.get("/api/models")
    before = {m["id"] for m in models}  # the session following the promoted model among them
    code, back = s.post("/api/models/rollback", {"id": ckpt["id"]}, token=s.token)
    assert code == 200 and back["action"] == "rollback" and back["model"]["id"] == ckpt["id"]
    _, models = s.get("/api/models")
    # current: the rolled-back model — or already a checkpoint of the session the router starts
    # from it; never a late checkpoint of the session that was running before the rollback
    cur = [m for m in models if m["current"]]
    assert len(cur) == 1, cur
    assert cur[0]["id"] == ckpt["id"] or (cur[0]["parent"] == ckpt["id"] and cur[0]["id"] not in before), cur
