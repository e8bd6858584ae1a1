"""``ExecutionCore.on_features_batch`` (the L2 backtest's batch entry) equals the per-vector
path: on generated runs of a book's vectors — event time going back (session restarts),
equal times, decisions due, rewards due, blocked decisions — driving the core through
``quiet_count`` / ``on_features_batch`` and the per-vector calls for each vector they stop at
leaves exactly the state and gives exactly the answers of ``on_book`` + ``on_features`` +
``due_rewards`` for every vector. Checked to fail (2026-12-01): with ``quiet_count`` ignoring
the pending rewards the generated test fails; with ``on_features_batch`` keeping 63 of the
slot's 64 vectors the long-run test fails."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stevie.contracts import BookState, BookTopK, MicroFeatures
from stevie.contracts.rpc import Choice, GuardDecision
from stevie.services.execution.core import ExecutionCore
from stevie.services.execution.settings import ExecutionSettings

S = 1_000_000_000
KEY = ("binance", "BTCUSDT")


def _book(ts: int, mid: float) -> BookTopK:
    return BookTopK(
        venue=KEY[0],
        symbol=KEY[1],
        seq=1,
        state=BookState.LIVE,
        bids=[(mid - 0.05, 1.0)],
        asks=[(mid + 0.05, 1.0)],
        ts_event_ns=ts,
        ts_init_ns=ts,
    )


def _vector(ts: int, mid: float, obi: float) -> MicroFeatures:
    return MicroFeatures(
        venue=KEY[0],
        symbol=KEY[1],
        obi=obi,
        ti=0.0,
        spread_bps=1.0,
        micro_vol_bps=1.0,
        cancel_rate=0.0,
        mid=mid,
        ts_event_ns=ts,
        ts_init_ns=ts,
    )


def _act(c: ExecutionCore, due: bool, blocked: bool) -> list[tuple[str, float]]:
    """What the backtest does after ``on_features``: due rewards, then a decision if due."""
    out = [(p, r) for p, r, _ in c.due_rewards(KEY)]
    if due:
        now = c.slots[KEY].features[-1].ts_event_ns
        ctx = c.context(KEY, 0.0, 0.0)
        ch = Choice("p_obi_momentum", 1.0, 0.0, 0.9, 0.0, {}, [])
        sizing = c.size(KEY, ch, ctx, 0.0, "none", now)
        guard = GuardDecision(blocked, "test" if blocked else "")
        c.record(KEY, c.next_id(KEY, now), ch, sizing, guard, None, ctx, c.feature_window(KEY), now, now, 0.0)
        out.append(("decided", float(now)))
    return out


def _state(c: ExecutionCore) -> tuple[object, ...]:
    slot = c.slots[KEY]
    pend = [(p.due_ns, p.policy, p.signal, p.mid) for p in slot.pending]
    return slot.top, list(slot.features), slot.last_decision_ns, pend, c.seq


steps = st.lists(
    st.tuples(st.sampled_from([0, 0, 1, 2, 3, 7, 15, -40]), st.sampled_from([99.0, 100.0, 101.0]), st.booleans()),
    min_size=1,
    max_size=400,
)


@settings(max_examples=150, deadline=None)
@given(steps, st.sampled_from([1.0, 2.5, 10.0]), st.sampled_from([0.5, 3.0, 30.0]))
def test_batch_entry_equals_the_per_vector_path(raw, interval_s, horizon_s):
    s = ExecutionSettings(books=["binance:BTCUSDT"], decision_interval_s=interval_s, horizon_s=horizon_s)
    ts, t = [], 100 * S
    for dt, _, _ in raw:
        t = max(0, t + dt * S // 4)
        ts.append(t)
    books = [_book(t, mid) for t, (_, mid, _) in zip(ts, raw, strict=True)]
    vecs = [_vector(t, mid, 0.9 if b else -0.9) for t, (_, mid, b) in zip(ts, raw, strict=True)]
    blocked = [b for _, _, b in raw]

    ref, got = ExecutionCore(s), ExecutionCore(s)
    ref_out: list[list[tuple[str, float]]] = []
    states = []
    for i in range(len(ts)):
        ref.on_book(books[i])
        ref_out.append(_act(ref, ref.on_features(vecs[i]), blocked[i]))
        states.append(_state(ref))

    arr = np.array(ts, dtype=np.int64)
    i, batched = 0, 0
    while i < len(ts):
        n = got.on_features_batch(KEY, arr[i:], lambda k, i=i: books[i + k], lambda k, i=i: vecs[i + k])
        for k in range(i, i + n):
            assert ref_out[k] == []  # a quiet vector: no reward, no decision in the per-vector path
        batched += n
        i += n
        if n:
            assert _state(got) == states[i - 1]
        if i == len(ts):
            break
        assert ref_out[i] or (i > 0 and ts[i] < ts[i - 1])  # the batch stops only where the per-vector path acts
        got.on_book(books[i])
        assert _act(got, got.on_features(vecs[i]), blocked[i]) == ref_out[i]
        assert _state(got) == states[i]
        i += 1
    assert batched + sum(1 for o in ref_out if o) <= len(ts)


def test_quiet_count_stops_at_a_due_decision_a_due_reward_and_time_going_back():
    s = ExecutionSettings(books=["binance:BTCUSDT"], decision_interval_s=10.0, horizon_s=3.0)
    c = ExecutionCore(s)
    c.on_book(_book(50 * S, 100.0))
    assert c.on_features(_vector(50 * S, 100.0, 0.9))  # first vector: a decision is due
    _act(c, True, False)  # decided at 50 s: next due at 60 s, its reward at 53 s
    run = np.array([51 * S, 52 * S, 53 * S, 54 * S], dtype=np.int64)
    assert c.quiet_count(KEY, run) == 2  # the reward is due at 53 s
    c.due_rewards(KEY, 53 * S)
    assert c.quiet_count(KEY, run) == 4
    assert c.quiet_count(KEY, np.array([55 * S, 60 * S - 1, 60 * S], dtype=np.int64)) == 2  # due at 60 s
    assert c.quiet_count(KEY, np.array([55 * S, 54 * S], dtype=np.int64)) == 1  # time went back
    assert c.quiet_count(KEY, np.array([49 * S], dtype=np.int64)) == 0  # before the last vector
    assert c.quiet_count(("x", "Y"), run) == 4  # an untracked book: nothing happens
    n = c.on_features_batch(KEY, run[3:], lambda k: _book(54 * S, 101.0), lambda k: _vector(54 * S, 101.0, 0.1))
    assert n == 1 and c.slots[KEY].top == _book(54 * S, 101.0) and c.slots[KEY].features[-1].obi == 0.1


def test_a_long_quiet_run_keeps_the_last_vectors_the_slot_keeps():
    """200 quiet vectors (more than the slot's 64): the same deque, top and answers as one by one."""
    s = ExecutionSettings(books=["binance:BTCUSDT"], decision_interval_s=10.0)
    ref, got = ExecutionCore(s), ExecutionCore(s)
    ts = [50 * S + k * 10_000_000 for k in range(201)]  # 2 s of vectors after a decision at 50 s
    books = [_book(t, 100.0 + k) for k, t in enumerate(ts)]
    vecs = [_vector(t, 100.0 + k, k / 1000) for k, t in enumerate(ts)]
    for c in (ref, got):
        c.on_book(books[0])
        _act(c, c.on_features(vecs[0]), False)
    for k in range(1, 201):
        ref.on_book(books[k])
        assert _act(ref, ref.on_features(vecs[k]), False) == []
    arr = np.array(ts[1:], dtype=np.int64)
    assert got.on_features_batch(KEY, arr, lambda k: books[k + 1], lambda k: vecs[k + 1]) == 200
    assert _state(got) == _state(ref) and len(got.slots[KEY].features) == 64
