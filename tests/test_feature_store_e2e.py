"""End to end on the shared ``stevie up`` (``e2e_stack``): the features service stores every
vector it publishes; ``GET /api/features/parity`` recomputes them offline from the recorded
captures and finds them exactly equal once the replay has run a while; a wrong value and a
value without lineage written into the store are reported; ``GET /api/market/ohlcv`` answers
the book-maintainer's 1-minute bars from PostgreSQL as a top-level array, with 400s for bad
parameters."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.helpers.stack import Stack, wait_for

pytestmark = pytest.mark.e2e
FEATURES = ("obi", "ti", "spread_bps", "micro_vol_bps", "cancel_rate", "mid")


def parity(stack: Stack, query: str = "") -> dict | None:
    status, body = stack.get("/api/features/parity" + query)
    return body if status == 200 else None  # 503 while the captures are decoded after a start


def enough(stack: Stack) -> dict | None:
    r = parity(stack)
    if r is None or len(r["keys"]) < 2 or min(k["rowsCompared"] for k in r["keys"]) < 200:
        return None
    return r


async def _sql(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


def sql(stack: Stack, query: str, *args: object) -> list[asyncpg.Record]:
    return asyncio.run(_sql(stack.database_url(), query, *args))


def test_parity_is_exact_and_an_injected_difference_is_reported(e2e_stack):
    s = e2e_stack
    r = wait_for(lambda: enough(s), 240, "stored feature vectors for two books")
    assert r["verdict"] == "exact", r
    for name in FEATURES:
        f = r["features"][name]
        assert f["verdict"] == "exact" and f["mismatches"] == 0 and f["maxAbsDelta"] <= 1e-9
        assert f["rowsCompared"] >= 400
    assert r["unmatchedOnline"] == 0 and r["firstMismatch"] is None
    assert all(k["capture"].startswith("l2_2024-08-08") for k in r["keys"] if k["rowsCompared"])

    # a filter: one book only; an unknown one is a 404 naming what is stored
    one = parity(s, "?venue=binance&symbol=BTCUSDT")
    assert one is not None and [(k["venue"], k["symbol"]) for k in one["keys"]] == [("binance", "BTCUSDT")]
    status, body = s.get("/api/features/parity?venue=nowhere")
    assert status == 404 and body["error"] == "not_found" and "stored" in body["detail"]

    # inject: a wrong value at a compared vector (keep the original to put it back)
    (row,) = sql(
        s,
        """SELECT v.venue, v.symbol, v.ts_event_ns, v.value FROM feature_values v
           JOIN feature_samples p USING (venue, symbol, ts_event_ns)
           WHERE v.venue = 'binance' AND v.symbol = 'BTCUSDT' AND v.feature = 'spread_bps' AND p.n = 5
           ORDER BY p.run_id, p.epoch LIMIT 1""",
    )
    key = (row["venue"], row["symbol"], row["ts_event_ns"])
    try:
        sql(
            s,
            "UPDATE feature_values SET value = value + 0.25 WHERE venue=$1 AND symbol=$2 AND ts_event_ns=$3"
            " AND feature='spread_bps'",
            *key,
        )
        sql(
            s,
            "INSERT INTO feature_values VALUES ($1, $2, 'obi', $3, 0.5)",
            row["venue"],
            row["symbol"],
            row["ts_event_ns"] + 1,
        )
        bad = wait_for(lambda: parity(s), 30, "a parity answer")
        assert bad["verdict"] == "mismatch"
        assert bad["features"]["spread_bps"]["mismatches"] == 1
        assert bad["features"]["spread_bps"]["maxAbsDelta"] == pytest.approx(0.25, abs=1e-9)
        assert bad["features"]["obi"]["verdict"] == "exact" and bad["unmatchedOnline"] == 1
        m = bad["firstMismatch"]
        assert (m["venue"], m["symbol"], m["feature"], m["tsEventNs"]) == (*key[:2], "spread_bps", key[2])
        assert m["online"] - m["offline"] == pytest.approx(0.25, abs=1e-9)
    finally:
        sql(
            s,
            "UPDATE feature_values SET value = $4 WHERE venue=$1 AND symbol=$2 AND ts_event_ns=$3"
            " AND feature='spread_bps'",
            *key,
            row["value"],
        )
        sql(s, "DELETE FROM feature_values WHERE venue=$1 AND symbol=$2 AND ts_event_ns=$3", *key[:2], key[2] + 1)
    again = wait_for(lambda: parity(s), 30, "a parity answer")
    assert again["verdict"] == "exact"


def test_market_ohlcv_from_postgres(e2e_stack):
    s = e2e_stack

    def bars() -> list | None:
        status, body = s.get("/api/market/ohlcv?symbol=BTCUSDT&interval=1m&limit=5")
        assert status == 200 and isinstance(body, list), body
        return body or None

    got = wait_for(bars, 240, "a closed 1-minute bar")
    assert 1 <= len(got) <= 5
    for b in got:
        assert set(b) == {"ts", "open", "high", "low", "close", "volume"}
        assert b["low"] <= min(b["open"], b["close"]) <= max(b["open"], b["close"]) <= b["high"]
        assert b["ts"] % 60_000 == 0 and b["volume"] > 0
    assert [b["ts"] for b in got] == sorted(b["ts"] for b in got)
    stored = sql(
        s,
        "SELECT (extract(epoch FROM ts) * 1000)::bigint AS ts, close FROM bars"
        " WHERE venue='binance' AND symbol='BTCUSDT' AND timeframe='1m' ORDER BY ts DESC LIMIT 1",
    )
    assert stored and got[-1]["ts"] <= stored[0]["ts"]
    status, five = s.get("/api/market/ohlcv?symbol=BTCUSDT&interval=5m&limit=2")
    assert status == 200 and isinstance(five, list) and all(b["ts"] % 300_000 == 0 for b in five)
    for query, needle in (
        ("symbol=NOPEUSDT&interval=1m&limit=5", "unknown symbol"),
        ("symbol=BTCUSDT&interval=7m&limit=5", "unknown interval"),
        ("symbol=BTCUSDT&interval=1m&limit=0", "limit"),
        ("symbol=BTCUSDT&interval=1m&limit=5000", "limit"),
        ("symbol=BTCUSDT&interval=1m&limit=abc", ""),
        ("symbol=BTCUSDT&venue=nowhere", "unknown venue"),
        ("interval=1m", "unknown symbol"),
    ):
        status, body = s.get("/api/market/ohlcv?" + query)
        assert status == 400 and {"error", "detail"} <= set(body) and needle in body["detail"], (query, body)
