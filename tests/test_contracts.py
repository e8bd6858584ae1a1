"""Contracts: every Struct round-trips through JSON; subjects are sanitised."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stevie.contracts import (
    Bar,
    BookState,
    BookStatus,
    BookTopK,
    DepthDiff,
    DepthSnapshot,
    Heartbeat,
    StreamStatus,
    Trade,
    decoder_for,
    encode,
    subjects,
)

fin = st.floats(allow_nan=False, allow_infinity=False, width=64)
ids = st.integers(0, 2**62)
name = st.text(min_size=1, max_size=12)
levels = st.lists(st.tuples(fin, fin), max_size=5)

STRATEGIES = {
    DepthSnapshot: st.builds(
        DepthSnapshot,
        venue=name,
        symbol=name,
        last_update_id=ids,
        bids=levels,
        asks=levels,
        ts_event_ns=ids,
        ts_init_ns=ids,
    ),
    DepthDiff: st.builds(
        DepthDiff,
        venue=name,
        symbol=name,
        first_update_id=ids,
        final_update_id=ids,
        prev_final_update_id=st.none() | ids,
        bids=levels,
        asks=levels,
        ts_event_ns=ids,
        ts_init_ns=ids,
    ),
    BookTopK: st.builds(
        BookTopK,
        venue=name,
        symbol=name,
        seq=ids,
        state=st.sampled_from(BookState),
        bids=levels,
        asks=levels,
        ts_event_ns=ids,
        ts_init_ns=ids,
    ),
    BookStatus: st.builds(
        BookStatus,
        venue=name,
        symbol=name,
        state=st.sampled_from(BookState),
        reason=name,
        seq=ids,
        resyncs=ids,
        ts_event_ns=ids,
        ts_init_ns=ids,
    ),
    Trade: st.builds(
        Trade,
        venue=name,
        symbol=name,
        trade_id=ids,
        price=fin,
        size=fin,
        aggressor=st.sampled_from(["buy", "sell"]),
        ts_event_ns=ids,
        ts_init_ns=ids,
    ),
    Bar: st.builds(
        Bar,
        venue=name,
        symbol=name,
        interval_ns=ids,
        open_time_ns=ids,
        open=fin,
        high=fin,
        low=fin,
        close=fin,
        volume=fin,
        trades=ids,
        ts_event_ns=ids,
        ts_init_ns=ids,
    ),
    Heartbeat: st.builds(
        Heartbeat,
        service=name,
        instance=name,
        pid=ids,
        started_ns=ids,
        backend=name,
        streams=st.lists(
            st.builds(StreamStatus, venue=name, connected=st.booleans(), backlog_size=ids, last_beat_ns=ids), max_size=3
        ),
        metrics_text=st.text(max_size=50),
        ts_event_ns=ids,
        ts_init_ns=ids,
    ),
}


@pytest.mark.parametrize("tp", list(STRATEGIES), ids=lambda t: t.__name__)
def test_round_trip(tp):
    dec = decoder_for(tp)

    @given(STRATEGIES[tp])
    def check(msg):
        assert dec.decode(encode(msg)) == msg

    check()


def test_tagged_union_decodes_the_right_type():
    dec = decoder_for(BookTopK | BookStatus)
    st_ = BookStatus(
        venue="v", symbol="s", state=BookState.SYNCING, reason="gap", seq=1, resyncs=1, ts_event_ns=1, ts_init_ns=2
    )
    assert isinstance(dec.decode(encode(st_)), BookStatus)


def test_bad_payload_raises_validation_error():
    with pytest.raises(msgspec.ValidationError):
        decoder_for(Trade).decode(b'{"type":"Trade","venue":"v"}')


def test_subjects_are_sanitised_and_patterned():
    assert subjects.md_book("stevie", "binance", "BTCUSDT") == "stevie.md.book.binance.BTCUSDT"
    assert subjects.md_book("t1.x", "bin ance", "BTC.USDT") == "t1.x.md.book.bin_ance.BTC_USDT"
    assert subjects.md_status("stevie", "*", "*") == "stevie.md.status.*.*"
    with pytest.raises(ValueError):
        subjects.md_trade("stevie", "", "X")


def test_a_decide_request_carries_a_bounded_number_of_rewards():
    import msgspec

    from stevie.contracts import encode
    from stevie.contracts.rpc import MAX_CARRIED_REWARDS, DecideRequest, RouterContext, UpdateRequest

    ctx = RouterContext(symbol="BTCUSDT")
    ok = DecideRequest(ctx, [UpdateRequest("p_sma", 1.5, ctx)])
    assert msgspec.json.decode(encode(ok), type=DecideRequest) == ok
    assert msgspec.json.decode(encode(DecideRequest(ctx)), type=DecideRequest).rewards == []
    too_many = encode(DecideRequest(ctx, [UpdateRequest("p_sma", 1.0, ctx)] * MAX_CARRIED_REWARDS))
    too_many = too_many.replace(b'"rewards":[', b'"rewards":[' + encode(UpdateRequest("p_sma", 1.0, ctx)) + b",", 1)
    with pytest.raises(msgspec.ValidationError, match="at most"):
        msgspec.json.decode(too_many, type=DecideRequest)
