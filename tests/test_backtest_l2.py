"""``stevie backtest --l2`` on one capture (spot BTCUSDT, 2024-08-08): the live cores from the
book to the fill produce decisions, every fill lies inside the book it walked, and two runs
write byte-identical ``decisions.parquet`` (and identical summary metrics)."""

from __future__ import annotations

import hashlib
import json
import math

import pyarrow.parquet as pq
import pytest
from rich.console import Console

from stevie.backtest.l2 import L2Command, run_l2_command
from tests.helpers.capture import SAMPLES


def _run(tmp, name: str) -> tuple[str, dict]:
    cmd = L2Command(SAMPLES, ["BTCUSDT"], ["binance"], 7, tmp / name, "", decision_interval_s=5.0)
    run_l2_command(cmd, Console(quiet=True))
    out = tmp / name
    assert {p.name for p in out.iterdir()} == {"decisions.parquet", "summary.json", "report.html"}
    return hashlib.sha256((out / "decisions.parquet").read_bytes()).hexdigest(), json.loads(
        (out / "summary.json").read_text()
    )


def test_l2_one_capture_decides_fills_in_the_book_and_is_deterministic(tmp_path):
    h1, s1 = _run(tmp_path, "a")
    h2, s2 = _run(tmp_path, "b")
    assert h1 == h2 and s1["metrics"] == s2["metrics"] and s1["runId"] == s2["runId"]
    assert s1["mode"] == "l2" and list(s1["data"]["captures"]) == ["binance:BTCUSDT:l2_2024-08-08T2354Z"]
    t = pq.read_table(tmp_path / "a" / "decisions.parquet").to_pydict()
    n = len(t["ts_event_ns"])
    assert n > 50 and s1["metrics"]["decisions"] == n
    for c in ("ts_event_ns", "symbol", "policy_id", "propensity", "signal", "target_size", "fill_price", "cost_bps"):
        assert c in t
    assert {"ctx_obi", "ctx_ti", "ctx_spread_bps", "ctx_micro_vol"} <= set(t)
    assert {"shadow_p_flat", "shadow_p_obi_momentum", "shadow_p_micro_reversion"} <= set(t)
    assert t["ts_event_ns"] == sorted(t["ts_event_ns"])
    # decisions every 5 s of event time at least (the clock is the features' event time)
    gaps = [b - a for a, b in zip(t["ts_event_ns"], t["ts_event_ns"][1:], strict=False)]
    assert min(gaps) >= 5e9
    fills = [i for i in range(n) if t["fill_price"][i] is not None and math.isfinite(t["fill_price"][i])]
    assert len(fills) >= 5
    for i in fills:
        px, best_bid, best_ask, last = (
            t["fill_price"][i],
            t["book_best_bid"][i],
            t["book_best_ask"][i],
            t["book_last_level"][i],
        )
        assert best_bid < best_ask
        if t["order_size"][i] > 0:  # a buy walks the asks: best ask ≤ average price ≤ deepest ask walked
            assert best_ask - 1e-9 <= px <= last + 1e-9
        else:
            assert last - 1e-9 <= px <= best_bid + 1e-9
        assert t["cost_bps"][i] >= -1e-9  # a taker fill never beats the mid
    # rewards were fed back to the router (the bandit learned from the run)
    assert s1["metrics"]["router_updates"] > 0
    assert sum(1 for r in t["reward"] if r is not None and math.isfinite(r)) == s1["metrics"]["router_updates"]


def test_l2_cli_bad_selection_is_one_line_exit_2(tmp_path):
    from typer.testing import CliRunner

    from stevie.runtime.cli import app

    r = CliRunner().invoke(app, ["backtest", "--l2", "--symbols", "NOPEUSDT", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2, r.output
    assert "no L2 capture" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x").exists()


# -- the Rust stage equals the Python cores ------------------------------------------------------


def test_trade_columns_equal_the_features_service_decoding():
    """The backtest's trades (polars columns) are the features service's ``Trade`` messages
    (``offline.load``, as the book-maintainer decodes them), value for value, in order."""
    from stevie.backtest.l2 import discover_captures, load_capture
    from stevie.services.features.offline import load

    for ref in discover_captures(SAMPLES):
        cols = load_capture(ref.venue, ref.symbol, ref.folder).trades
        trades = load(ref.venue, ref.symbol, ref.folder).trades
        assert len(cols) == len(trades) > 1000
        assert cols.ts_ns.tolist() == [t.ts_event_ns for t in trades]
        assert cols.price.tolist() == [t.price for t in trades]
        assert cols.size.tolist() == [t.size for t in trades]
        assert cols.is_buy.tolist() == [t.aggressor == "buy" for t in trades]


def test_native_stage_equals_the_python_cores_on_all_six_captures():
    """The whole default run (six captures, three groups, the BTCUSDT USD-M kernel carried
    from group to group): the Rust stage (sync, merge, features dispatch) and the Python cores
    (``BookSync`` + ``Features``.``step`` over the features service's decoding) give the same
    feature vectors (every field, exactly), the same counts and the same decisions."""
    from stevie.backtest.l2 import L2Settings, discover_captures, run_l2

    caps = discover_captures(SAMPLES)
    s = L2Settings(captures=[c.label for c in caps], mc_draws=100)
    vecs: dict[str, list] = {"native": [], "python": []}
    res = {k: run_l2(caps, s, sync=k, on_vector=vecs[k].append) for k in vecs}
    a, b = res["native"], res["python"]
    assert len(vecs["native"]) == a.feature_vectors > 20_000
    assert vecs["native"] == vecs["python"]  # MicroFeatures structs: venue, symbol, values, times
    assert (a.depth_messages, a.trades, a.books_published, a.updates) == (
        b.depth_messages,
        b.trades,
        b.books_published,
        b.updates,
    )
    assert a.depth_messages == 51_234 and a.trades == 93_444
    assert {k: [repr(x) for x in v] for k, v in a.decisions.items()} == {
        k: [repr(x) for x in v] for k, v in b.decisions.items()
    }
    assert len(a.decisions["ts_event_ns"]) > 100


def test_batch_loop_decides_exactly_as_item_by_item():
    """``run_l2``'s batch loop (quiet runs of vectors to ``ExecutionCore.on_features_batch``,
    contracts built only for the items a decision or a reward reads) against the same Rust
    items handed one by one to the per-vector path, on all six captures with a decision every
    2 s (≈ 5× the default's decisions and rewards, the four 2024-08-08 books interleaved):
    the same decisions (every column, exactly), equity curve and counts; every vector seen.
    Checked to fail (2026-12-01) when only the deciding book's quiet vectors are recorded
    before an item (the other books' tops lag)."""
    from stevie.backtest.l2 import L2Settings, discover_captures, run_l2

    caps = discover_captures(SAMPLES)
    s = L2Settings(captures=[c.label for c in caps], mc_draws=100, decision_interval_s=2.0, horizon_s=5.0)
    vecs: dict[bool, list] = {True: [], False: []}
    a, b = (run_l2(caps, s, batch=k, on_vector=vecs[k].append) for k in (True, False))
    assert len(a.decisions["ts_event_ns"]) > 1000 and a.updates > 1000
    assert {k: [repr(x) for x in v] for k, v in a.decisions.items()} == {
        k: [repr(x) for x in v] for k, v in b.decisions.items()
    }
    assert (a.equity_ts_ns, a.equity_quote) == (b.equity_ts_ns, b.equity_quote)
    assert (a.books_published, a.feature_vectors, a.updates, a.blocked) == (
        b.books_published,
        b.feature_vectors,
        b.updates,
        b.blocked,
    )
    assert vecs[True] == vecs[False] and len(vecs[True]) == a.feature_vectors


def _features_events():
    from hypothesis import strategies as st

    px = st.sampled_from([99.0, 99.5, 100.0, 100.5, 101.0])
    lv = st.lists(st.tuples(px, st.sampled_from([0.5, 1.0, 2.0])), min_size=0, max_size=3)
    key = st.sampled_from(["a", "b"])
    trade = st.tuples(st.just("trade"), key, px, st.sampled_from([0.1, 1.0]), st.booleans(), st.integers(-3, 6))
    book = st.tuples(
        st.just("book"), key, st.sampled_from(["LIVE"] * 4 + ["SYNCING", "STALE"]), lv, lv, st.integers(-2, 6)
    )
    status = st.tuples(st.just("status"), key, st.sampled_from(["LIVE", "SYNCING", "STALE"]))
    return st.lists(st.one_of(trade, book, status), max_size=60)


@pytest.mark.parametrize("window_s", [0.5, 5.0])
def test_rust_features_dispatch_equals_the_features_core(window_s):
    """``L2Replay.on_trade/on_status/on_book`` (the Rust twin of ``Features`` + ``step``) on
    generated events — two books, event time going back (a trade or a book: the kernel
    resets), crossed and one-sided books, non-LIVE books and statuses — gives exactly the
    vectors of the features core (native kernels) or None where it gives none."""
    from hypothesis import given, settings
    from stevie_fastpath import L2Replay

    from stevie.contracts import BookState, BookStatus, BookTopK, Trade
    from stevie.quant.kernels import load as load_kernels
    from stevie.services.features.core import Features, step

    window_ns = int(window_s * 1e9)

    @settings(max_examples=300, deadline=None)
    @given(_features_events())
    def check(events):
        core = Features(5, window_ns, lambda: 0, load_kernels("native"))
        twin = L2Replay(5, window_ns)
        ts = 10_000_000_000
        for ev in events:
            kind, k = ev[0], ev[1]
            if kind == "trade":
                _, _, price, size, buy, dt = ev
                ts += dt * 400_000_000
                aggressor = "buy" if buy else "sell"
                t = Trade(
                    venue=k,
                    symbol="S",
                    trade_id=1,
                    price=price,
                    size=size,
                    aggressor=aggressor,
                    ts_event_ns=ts,
                    ts_init_ns=ts,
                )
                assert step(core, t) is None
                twin.on_trade(f"{k}:S", price, size, buy, ts)
            elif kind == "book":
                _, _, state, bids, asks, dt = ev
                ts += dt * 400_000_000
                bids, asks = sorted(bids, reverse=True), sorted(asks)
                b = BookTopK(
                    venue=k,
                    symbol="S",
                    seq=1,
                    state=BookState(state),
                    bids=bids,
                    asks=asks,
                    ts_event_ns=ts,
                    ts_init_ns=ts,
                )
                got = step(core, b)
                want = twin.on_book(f"{k}:S", state, bids, asks, ts)
                if got is None:
                    assert want is None
                else:
                    f = got[0]
                    assert want == (f.obi, f.ti, f.spread_bps, f.micro_vol_bps, f.cancel_rate, f.mid)
            else:
                st_ = BookStatus(
                    venue=k,
                    symbol="S",
                    state=BookState(ev[2]),
                    reason="r",
                    seq=1,
                    resyncs=0,
                    ts_event_ns=ts,
                    ts_init_ns=ts,
                )
                step(core, st_)
                twin.on_status(f"{k}:S", ev[2])

    check()


def test_l2_broken_depth_line_is_a_clear_input_error():
    """A depth line that does not decode (here the last line of a later capture group's file)
    stops the run with BacktestInputError naming the capture and the line (the CLI prints it
    as one line, exit 2)."""
    import dataclasses

    from stevie.backtest.data import BacktestInputError
    from stevie.backtest.l2 import L2Settings, discover_captures, run_l2

    caps = discover_captures(SAMPLES, ["BTCUSDT"], ["binance-usdm"])

    def corrupt(cap):
        if cap.name != "l2_2024-07-18T2357Z":
            return cap
        lines = cap.depth_lines.rstrip(b"\n") + b'\n{"E":1,"U":2,"u":3,"b":[["x","1"]],"a":[]}\n'
        return dataclasses.replace(cap, depth_lines=lines, n_diffs=cap.n_diffs + 1)

    with pytest.raises(BacktestInputError, match=r"binance-usdm:BTCUSDT: line 9023: bad depthUpdate"):
        run_l2(caps, L2Settings(captures=[c.label for c in caps]), transform=corrupt)


def test_replay_dropped_while_running_stops_its_thread():
    """``L2Replay.start`` borrows the depth lines (no copy): a replay dropped after its first
    chunk joins its thread before releasing them (no crash, no read of freed bytes); a fresh
    replay on the same captures still gives every item."""
    import gc

    from stevie_fastpath import L2Replay

    from stevie.backtest.l2 import _capture_arg, discover_captures, load_capture

    caps = [load_capture(c.venue, c.symbol, c.folder) for c in discover_captures(SAMPLES, ["ETHUSDT"])]
    groups = [[_capture_arg(c) for c in caps]]
    r = L2Replay()
    r.start(groups)
    first = r.next_chunk()
    assert first is not None and len(first[1]) > 0
    del r, groups
    gc.collect()
    r = L2Replay()
    r.start([[_capture_arg(c) for c in caps]])
    n = 0
    while (x := r.next_chunk()) is not None:
        n += len(x[1])
    assert n == len(r.run_group([_capture_arg(c) for c in caps])[1]) > 5_000
