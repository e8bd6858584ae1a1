"""Gateway view: only LIVE, fresh books are served with levels; unknown books are 404."""

from __future__ import annotations

import msgspec
import pytest

from stevie.contracts import BookState, BookStatus, BookTopK, Heartbeat
from stevie.services.gateway.api import openapi
from stevie.services.gateway.core import NotFound, View

S = 1_000_000_000


def _top(seq, state=BookState.LIVE):
    return BookTopK(
        venue="binance",
        symbol="BTCUSDT",
        seq=seq,
        state=state,
        bids=[(10.0, 1.0), (9.0, 2.0)],
        asks=[(11.0, 1.0)],
        ts_event_ns=5 * S,
        ts_init_ns=5 * S,
    )


def view():
    return View({("binance", "BTCUSDT")}, stale_ns=5 * S, liveness_ns=3 * S)


def test_live_book_is_served_best_first_with_depth():
    v = view()
    v.on_book(_top(7), now_ns=100 * S)
    r = v.l2("binance", "BTCUSDT", 1, now_ns=101 * S)
    assert (r.state, r.seq, r.bids, r.asks, r.ts) == ("LIVE", 7, [(10.0, 1.0)], [(11.0, 1.0)], 5000)


def test_syncing_and_stale_books_withhold_levels():
    v = view()
    v.on_book(_top(7), now_ns=100 * S)
    assert v.l2("binance", "BTCUSDT", 20, now_ns=106 * S).state == "STALE"
    assert v.l2("binance", "BTCUSDT", 20, now_ns=106 * S).bids == []
    v.on_status(
        BookStatus(
            venue="binance",
            symbol="BTCUSDT",
            state=BookState.SYNCING,
            reason="gap",
            seq=7,
            resyncs=1,
            ts_event_ns=6 * S,
            ts_init_ns=0,
        ),
        now_ns=101 * S,
    )
    r = v.l2("binance", "BTCUSDT", 20, now_ns=101 * S)
    assert r.state == "SYNCING" and r.bids == [] and r.asks == []
    assert v.l2("binance", "BTCUSDT", 20, now_ns=101 * S).seq == 7


def test_unknown_book_raises_not_found():
    with pytest.raises(NotFound):
        view().l2("kraken", "BTCUSDT", 5, 0)


def test_service_liveness_from_heartbeats():
    v = view()
    v.on_heartbeat(
        Heartbeat(service="gateway", instance="h", pid=1, started_ns=0, ts_event_ns=0, ts_init_ns=0), now_ns=10 * S
    )
    h = v.service_health(["gateway", "book-maintainer"], now_ns=11 * S)
    assert h["gateway"].up and not h["book-maintainer"].up
    assert not v.service_health(["gateway"], now_ns=20 * S)["gateway"].up


def test_openapi_references_resolve():
    doc = openapi()
    schemas = doc["components"]["schemas"]
    for path in doc["paths"].values():
        for op in path.values():
            for resp in op["responses"].values():
                ref = resp.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
                if ref:
                    assert ref.rsplit("/", 1)[1] in schemas
    assert "L2Response" in schemas and "/api/l2/{venue}/{symbol}" in doc["paths"]


def test_bodies_carry_no_msgspec_type_tags_but_keep_real_type_fields():
    from stevie.contracts.rpc import ChainPoint, Choice, RouterSnapshot
    from stevie.services.gateway.api import untagged

    snap = RouterSnapshot(Choice("p_flat", 0.0, 0.0, 1.0, 0.0, {}, []), [], {}, 1, 1)
    doc = untagged(msgspec.json.decode(msgspec.json.encode(snap)))
    assert "type" not in doc and "type" not in doc["lastChoice"] and doc["lastChoice"]["policyId"] == "p_flat"
    point = untagged(msgspec.to_builtins(ChainPoint("call", 0.5, 1.0, "7d")))
    assert point["type"] == "call"


def test_unknown_context_field_names_the_accepted_ones():
    from stevie.contracts.rpc import ChooseRequest
    from stevie.services.gateway.api import explain

    try:
        msgspec.convert({"context": {"nope": 1}}, ChooseRequest)
    except msgspec.ValidationError as exc:
        detail = explain(str(exc), ChooseRequest)
    assert "unknown field `nope`" in detail and "accepted: symbol, regime, sigmaHAR" in detail
