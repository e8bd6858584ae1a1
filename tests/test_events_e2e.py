"""Events through the whole stack: ingest via the gateway, real 384-dim vectors back, bad
input answered 4xx, and the event dims in the router's feature vector."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.helpers.stack import wait_for

pytestmark = pytest.mark.e2e


def _raw_post(url: str, data: bytes, token: str) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=data, method="POST")
    req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_events_routes_and_router_context(e2e_stack):
    s = e2e_stack

    def replay_ms() -> int | None:
        st, body = s.get("/api/l2/binance/BTCUSDT")
        return body["ts"] if st == 200 and body.get("state") == "LIVE" and body["ts"] > 0 else None

    now_ms = wait_for(replay_ms, 120, "a LIVE BTCUSDT book (the replay clock)")
    ev = {
        "ts": now_ms - 120_000,
        "title": "Federal Reserve holds rates steady (written for the e2e test)",
        "source": "e2e",
        "body": "The Committee decided to maintain the target range. More text.",
        "symbols": ["BTCUSDT", "ETHUSDT"],
        "kind": "test",
    }
    st, out = s.post("/api/events/ingest", {"events": [ev]})
    assert st == 401  # operator route

    def ingested() -> tuple[int, dict] | None:  # events is up (heartbeat) before its model is built
        st, out = s.post("/api/events/ingest", {"events": [ev]}, token=s.token)
        return None if st == 503 else (st, out)

    st, out = wait_for(ingested, 60, "events answering ingest")
    assert st == 200, out
    assert out["dim"] == 384 and len(out["ids"]) == 1
    st, arr = s.get("/api/events/embeddings?symbol=BTCUSDT&full=1")
    assert st == 200 and isinstance(arr, list) and arr[0]["id"] == out["ids"][0]
    assert arr[0]["dim"] == 384 and len(arr[0]["vector"]) == 384 and isinstance(arr[0]["nearest"], list)
    st, arr = s.get("/api/events/embeddings?limit=1")
    assert st == 200 and len(arr) == 1 and len(arr[0]["vector"]) == 8

    # bad input: 4xx with a clear detail, never 5xx
    bad = [
        ({"events": [{**ev, "title": "  "}]}, 400, "title is empty"),
        ({"events": [{**ev, "ts": now_ms + 3_600_000 * 24 * 365}]}, 400, "future"),
        # 10,000 small events reach the service, which bounds a request at 500
        ({"events": [{"ts": now_ms, "title": f"t{i}", "source": "x"} for i in range(10_000)]}, 413, "at most 500"),
        ({"events": [{"title": "no ts", "source": "x"}]}, 400, "ts"),
    ]
    for body, status, needle in bad:
        st, err = s.post("/api/events/ingest", body, token=s.token)
        assert st == status and needle in err["detail"], (st, err)
    big = {"events": [{**ev, "title": f"t{i}"} for i in range(10_000)]}  # > 1 MiB: the gateway's body cap
    st, err = s.post("/api/events/ingest", big, token=s.token)
    assert st == 413 and err["error"] in ("request_entity_too_large", "payload_too_large")
    st, err = _raw_post(s.url + "/api/events/ingest", b'{"events":[{"ts":1,"title":"caf\xe9","source":"x"}]}', s.token)
    assert st == 400 and "UTF-8" in err["detail"]
    st, err = s.get("/api/events/embeddings?limit=0")
    assert st == 400

    # the router's feature vector carries the event dims of the symbol it decides for
    def event_features() -> list[float] | None:
        s.post("/api/exec/plan-and-execute", {"symbol": "BTCUSDT"})
        st, snap = s.get("/api/router/snapshot")
        if st != 200 or not snap.get("lastChoice"):
            return None
        names, x = snap["featureNames"], snap["lastChoice"]["features"]
        vals = [v for n, v in zip(names, x, strict=True) if n.startswith("event_")]
        return vals if any(v != 0 for v in vals) else None

    vals = wait_for(event_features, 60, "event dims in the router's feature vector")
    assert len(vals) == 6


def test_event_context_flag_and_file_loader(e2e_stack, tmp_path):
    from typer.testing import CliRunner

    from stevie.runtime.cli import app

    s = e2e_stack
    st, book = s.get("/api/l2/binance/ETHUSDT")
    now_ms = book["ts"] if st == 200 and book.get("ts") else None
    assert now_ms, book
    f = tmp_path / "events.jsonl"
    lines = [
        {
            "ts": now_ms - 60_000 * (i + 1),
            "title": f"ETH headline {i} written for the loader test",
            "source": "e2e",
            "symbols": ["ETHUSDT"],
        }
        for i in range(5)
    ]
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    r = CliRunner().invoke(app, ["events", "load", str(f), "--url", s.url, "--token", s.token, "--chunk", "2"])
    assert r.exit_code == 0, r.output
    assert "5 events ingested" in r.output

    def event_vals(symbol: str) -> list[float] | None:
        s.post("/api/exec/plan-and-execute", {"symbol": symbol})
        st, snap = s.get("/api/router/snapshot")
        if st != 200 or not snap.get("lastChoice"):
            return None
        names, x = snap["featureNames"], snap["lastChoice"]["features"]
        return [v for n, v in zip(names, x, strict=True) if n.startswith("event_")]

    def all_zero(vals: list[float] | None, default: bool = False) -> bool | None:
        if vals is None:
            return default or None
        return all(x == 0 for x in vals) or None

    st, _ = s.post("/api/flags", {"EventContext": False}, token=s.token)
    assert st == 200
    try:
        wait_for(lambda: all_zero(event_vals("ETHUSDT")), 30, "event dims zero with the flag off")
    finally:
        st, _ = s.post("/api/flags", {"EventContext": True}, token=s.token)
        assert st == 200
    wait_for(lambda: not all_zero(event_vals("ETHUSDT"), default=True) or None, 30, "event dims back with the flag on")
