"""Property tests: gaps, duplicates and reorderings never make a LIVE book wrong.

A random "true" book evolves by diffs; the stream the maintainer sees has faults injected;
snapshots come from the truth at the last update id the venue has emitted (as the real
venue and our replay do). Invariant: whenever ``BookSync`` is LIVE its every level equals
the true book at its ``last_update_id``; after a clean tail it is LIVE again.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stevie.contracts import BookState, DepthDiff, DepthSnapshot
from stevie.services.book_maintainer.core import BookSync

PRICES_BID = [100.0 - i * 0.5 for i in range(8)]
PRICES_ASK = [100.5 + i * 0.5 for i in range(8)]

level_updates = st.lists(st.tuples(st.integers(0, 7), st.sampled_from([0.0, 1.0, 2.5, 3.0])), max_size=4)


@st.composite
def scenario(draw):
    usdm = draw(st.booleans())
    n = draw(st.integers(5, 60))
    steps = [
        (draw(level_updates), draw(level_updates), draw(st.integers(1, 5) if usdm else st.just(1))) for _ in range(n)
    ]
    faults = draw(st.lists(st.tuples(st.integers(0, n - 1), st.sampled_from(["drop", "dup", "swap"])), max_size=6))
    snap_at = draw(st.integers(0, n - 1))
    return usdm, steps, faults, snap_at


def _truth(steps, usdm):
    bids = {p: 1.0 for p in PRICES_BID}
    asks = {p: 1.0 for p in PRICES_ASK}
    states = {1000: (dict(bids), dict(asks))}
    diffs = []
    last = 1000
    for b, a, jump in steps:
        first = last + 1
        final = last + jump
        bl = [(PRICES_BID[i], q) for i, q in b]
        al = [(PRICES_ASK[i], q) for i, q in a]
        for p, q in bl:
            bids.pop(p, None) if q == 0 else bids.__setitem__(p, q)
        for p, q in al:
            asks.pop(p, None) if q == 0 else asks.__setitem__(p, q)
        diffs.append(
            DepthDiff(
                venue="v",
                symbol="S",
                first_update_id=first,
                final_update_id=final,
                prev_final_update_id=last if usdm else None,
                bids=bl,
                asks=al,
                ts_event_ns=final * 1_000_000,
                ts_init_ns=0,
            )
        )
        states[final] = (dict(bids), dict(asks))
        last = final
    return diffs, states


def _top(state):
    bids, asks = state
    return sorted(bids.items(), reverse=True), sorted(asks.items())


def _check(sync: BookSync, states) -> None:
    if sync.state is BookState.LIVE:
        want_b, want_a = _top(states[sync.book.last_update_id])
        got_b, got_a = sync.book.top_k(100)
        assert (got_b, got_a) == (want_b, want_a)
        assert not sync.book.is_crossed()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_live_book_is_never_wrong(sc):
    usdm, steps, faults, snap_at = sc
    diffs, states = _truth(steps, usdm)
    stream = list(diffs)
    for idx, kind in faults:
        if idx >= len(stream) - 1:
            continue
        if kind == "drop":
            del stream[idx]
        elif kind == "dup":
            stream.insert(idx, stream[idx])
        else:
            stream[idx], stream[idx + 1] = stream[idx + 1], stream[idx]
    clean_tail = diffs[-1:]  # the venue keeps going after the faults
    sync = BookSync("v", "S", usdm, top_k=100)
    emitted_last = 1000
    for n, diff in enumerate(stream + clean_tail):
        emitted_last = max(emitted_last, diff.final_update_id)
        sync.on_diff(diff)
        _check(sync, states)
        if sync.wants_snapshot and sync.buffer and n >= snap_at:
            b, a = _top(states[emitted_last])
            sync.on_snapshot(
                DepthSnapshot(
                    venue="v", symbol="S", last_update_id=emitted_last, bids=b, asks=a, ts_event_ns=0, ts_init_ns=0
                )
            )
            _check(sync, states)


@settings(max_examples=150, deadline=None)
@given(scenario())
def test_recovers_to_live_after_faults(sc):
    usdm, steps, _, _ = sc
    diffs, states = _truth(steps, usdm)
    sync = BookSync("v", "S", usdm, top_k=100)
    # a gap right away (diffs before any snapshot are buffered, then a newer snapshot)
    for d in diffs[:2]:
        sync.on_diff(d)
    last = diffs[min(2, len(diffs) - 1)].final_update_id
    b, a = _top(states[last])
    sync.on_snapshot(
        DepthSnapshot(venue="v", symbol="S", last_update_id=last, bids=b, asks=a, ts_event_ns=0, ts_init_ns=0)
    )
    for d in diffs[2:]:
        sync.on_diff(d)
        _check(sync, states)
    if len(diffs) > 3:
        assert sync.state is BookState.LIVE
        assert sync.book.last_update_id == diffs[-1].final_update_id
