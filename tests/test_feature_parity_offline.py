"""Offline recomputation of stored feature vectors (``stevie.services.features.offline``),
without servers: a simulated live session — the replay venue's own timeline and book, the
book-maintainer's own core and wire decoders, the features core — is stored the way the
feature store stores it (first write of a key wins, two looping passes), then recomputed from
the capture and compared.

The simulated session has everything the live one has that the capture alone does not fix:
a REST snapshot taken late, wall-clock flushes of coalesced books at random moments, a
resync in the middle, trades delivered after books they precede (separate subscriptions), a
second pass (new session, same event times). Parity must still be exact, and a changed value,
a value written without lineage and a lost trade must each be reported.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest

from stevie.contracts import MicroFeatures, Trade
from stevie.contracts.featstore import FEATURES, FeatureSample
from stevie.quant.kernels import load as load_kernels
from stevie.services.book_maintainer import binance
from stevie.services.book_maintainer.core import BookSync
from stevie.services.features import offline
from stevie.services.features.core import Event, Features, step
from stevie.services.venue_replay.captures import load_capture
from stevie.services.venue_replay.core import ReplayBook, timeline, wire_payload

DATA = Path(__file__).resolve().parents[1] / "data" / "samples"
KERNELS = load_kernels("auto")
S = 1_000_000_000


def make_core(run_id: str = "") -> Features:
    return Features(5, 5 * S, lambda: 0, KERNELS, run_id=run_id)


def simulate_pass(
    raw, core: Features, rng: random.Random, n_diffs: int, snapshot_after: int, resync_at: int
) -> list[tuple[MicroFeatures, FeatureSample]]:
    """One replay session through the book-maintainer core into ``core`` (first ``n_diffs``
    diffs of the capture): snapshot after ``snapshot_after`` buffered diffs, a gap-resync at
    diff ``resync_at``, random flushes, trades sometimes held back past the next book."""
    venue, symbol, usdm = raw.venue, raw.symbol, raw.usdm
    sync = BookSync(venue, symbol, usdm, book=KERNELS.OrderBook(usdm=usdm), top_k=20, coalesce_ns=100_000_000)
    rb = ReplayBook(raw)
    out: list[tuple[MicroFeatures, FeatureSample]] = []
    held: list[Trade] = []
    waited = diffs = 0

    def deliver(ev: Event) -> None:
        r = step(core, ev)
        if r is not None:
            out.append(r)

    def publish(outs: list) -> None:
        for o in outs:
            deliver(o)
            if held and rng.random() < 0.7:  # the trade subscription catches up after the book
                for t in held:
                    deliver(t)
                held.clear()

    for e in timeline([raw]):
        if e.kind == "depth":
            diffs += 1
            if diffs > n_diffs:
                break
            rb.apply(e.payload)
            env = binance.envelope_decoder.decode(json.dumps({"stream": "s", "data": wire_payload(e)}))
            assert isinstance(env.data, binance.BnDepth)
            publish(sync.on_diff(binance.to_diff(venue, env.data, 0)))
            if diffs == resync_at:
                publish(sync.resync("gap", e.ts_ns))
            if sync.wants_snapshot and sync.buffer:
                waited += 1
                if waited >= snapshot_after:
                    body = rb.snapshot(1000)
                    if usdm:
                        body["E"], body["T"] = rb.last_event_ms, rb.last_trans_ms
                    snap = binance.to_snapshot(venue, symbol, binance.snapshot_decoder.decode(json.dumps(body)), 0)
                    publish(sync.on_snapshot(snap))
                    waited = 0
        elif e.kind == "trade":
            env = binance.envelope_decoder.decode(json.dumps({"stream": "s", "data": wire_payload(e)}))
            assert isinstance(env.data, binance.BnTrade)
            t = binance.to_trade(venue, env.data, 0)
            if held or rng.random() < 0.05:
                held.append(t)
            else:
                deliver(t)
        if rng.random() < 0.3:  # the wall-clock ticker
            publish(sync.flush())
    publish(sync.resync("disconnect", 0))  # the session ends: the socket closes
    for t in held:
        deliver(t)
    return out


class Store:
    """The feature store's semantics in memory: first write of each key wins."""

    def __init__(self) -> None:
        self.samples: dict[int, FeatureSample] = {}
        self.values: dict[int, dict[str, float]] = {}

    def put(self, rows: list[tuple[MicroFeatures, FeatureSample]]) -> None:
        for f, s in rows:
            self.samples.setdefault(s.ts_event_ns, s)
            vec = self.values.setdefault(f.ts_event_ns, {})
            for name in FEATURES:
                vec.setdefault(name, float(getattr(f, name)))

    def key_input(self, venue: str, symbol: str) -> offline.KeyInput:
        return offline.KeyInput(
            venue, symbol, list(self.samples.values()), {ts: dict(v) for ts, v in self.values.items()}
        )


FOLDER = next((DATA / "binance/spot/btcusdt").glob("l2_2024-08-08*"))


@pytest.fixture(scope="module")
def raw():
    """The BTCUSDT spot capture as the replay venue loads it (tests must not mutate it)."""
    return load_capture("binance", "BTCUSDT", FOLDER)


@pytest.fixture(scope="module")
def session(raw):
    """BTCUSDT spot, two passes of the first 1,500 diffs (~2.5 min of event time)."""
    core = make_core("run-a")
    store = Store()
    rng = random.Random(7)
    store.put(simulate_pass(raw, core, rng, 1500, snapshot_after=40, resync_at=700))
    store.put(simulate_pass(raw, core, rng, 1500, snapshot_after=3, resync_at=10_000))
    return store


RECOMPUTER = offline.Recomputer(DATA, make_core, KERNELS)  # shared: captures decoded once, epochs kept


def report(store: Store, recomputer: offline.Recomputer = RECOMPUTER) -> offline.ParityReport:
    return offline.parity([store.key_input("binance", "BTCUSDT")], recomputer)


def test_recomputed_features_equal_the_stored_ones(session):
    r = report(session)
    assert r.verdict == "exact", r
    assert r.unmatchedOnline == 0 and r.firstMismatch is None
    for name in FEATURES:
        f = r.features[name]
        assert f.verdict == "exact" and f.mismatches == 0 and f.maxAbsDelta <= 1e-9
        assert f.rowsCompared >= 1000
    (k,) = r.keys
    # pass 1 has two epochs (before and after the resync); pass 2's epoch starts at event times
    # pass 1 already stored (its snapshot came sooner), so it is cut there and skipped
    assert k.epochsCompared >= 2 and k.rowsSkipped > 0 and k.capture == "l2_2024-08-08T2354Z"
    # non-trivial features were compared (not all zeros)
    stored = list(session.values.values())
    assert sum(1 for v in stored if v["cancel_rate"] > 0) > 100 and sum(1 for v in stored if v["ti"] != 0) > 100


def test_a_changed_value_is_a_mismatch(session):
    ts = sorted(session.samples)[500]
    bad = Store()
    bad.samples = dict(session.samples)
    bad.values = {t: dict(v) for t, v in session.values.items()}
    bad.values[ts]["obi"] += 1e-6
    r = report(bad)
    assert r.verdict == "mismatch"
    assert r.features["obi"].mismatches == 1 and r.features["obi"].maxAbsDelta == pytest.approx(1e-6, rel=1e-3)
    assert r.features["ti"].verdict == "exact"
    assert r.firstMismatch is not None and r.firstMismatch.tsEventNs == ts and r.firstMismatch.feature == "obi"


def test_a_value_without_lineage_is_unmatched(session):
    ts = sorted(session.samples)[500] + 1
    bad = Store()
    bad.samples = dict(session.samples)
    bad.values = {t: dict(v) for t, v in session.values.items()}
    bad.values[ts] = {"obi": 0.5}
    r = report(bad)
    assert r.verdict == "mismatch" and r.unmatchedOnline == 1


def test_a_lost_trade_is_a_mismatch(raw):
    """The lineage says trades first..last were fed; if the online kernel missed one in
    between (a message lost on the bus) the offline recomputation differs."""
    lost = {int(t["t"]) for t in raw.trades[200:260]}
    lossy = dataclasses.replace(raw, trades=[t for t in raw.trades if int(t["t"]) not in lost])
    core = make_core("run-b")
    store = Store()
    store.put(simulate_pass(lossy, core, random.Random(3), 600, snapshot_after=2, resync_at=10_000))
    r = report(store)
    assert r.verdict == "mismatch" and r.features["ti"].mismatches > 0


def test_run_features_is_the_live_dispatch(raw):
    """``run_features`` yields exactly what the live handlers produce, message by message."""
    cap = offline.load("binance", "BTCUSDT", FOLDER)
    walker = offline.BookWalker(cap, lambda: KERNELS.OrderBook(usdm=False))
    live = simulate_pass(raw, make_core(), random.Random(1), 300, snapshot_after=1, resync_at=10_000)
    samples = [s for _, s in live if s.epoch == live[0][1].epoch]
    events = list(offline.epoch_events(cap, samples, walker))
    again = [f for f, _ in offline.run_features(make_core(), events)]
    assert again == [f for f, s in live if s.epoch == live[0][1].epoch]


def test_incremental_recomputation_equals_one_shot(session):
    """The service keeps each epoch's offline replay between requests and feeds only new
    vectors: growing the stored lineage in three steps gives the one-shot result."""
    inc = offline.Recomputer(DATA, make_core, KERNELS)
    full = sorted(session.samples.values(), key=lambda s: s.ts_event_ns)
    for cut in (len(full) // 3, 2 * len(full) // 3):
        part = Store()
        part.samples = {s.ts_event_ns: s for s in full[:cut]}
        part.values = {ts: v for ts, v in session.values.items() if ts in part.samples}
        assert report(part, inc).verdict == "exact"
    assert report(session, inc) == report(session, offline.Recomputer(DATA, make_core, KERNELS))
