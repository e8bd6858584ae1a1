"""Chaos at the venue edge on a real stack (``stevie up``: NATS, PostgreSQL, every service, the
replay of the 2024-08-08 captures), one stack for the four fault types.

For each type (``ws_flap``, ``api_timeout`` — with a one-shot ``l2_gap`` so a snapshot is
needed while REST hangs —, ``l2_gap``, ``depth_spike``), while a sampler polls the served
books (spot and USD-M BTCUSDT) every ~0.1 s:

- no wrong book is ever served as LIVE: every LIVE sample equals the independent ``Decimal``
  rebuild of the capture at its ``seq`` (one pass over the capture per check; the final book
  also through ``rebuild_until``);
- the fault is seen: resyncs by reason in ``/api/data-quality/stats`` (and ``chaos_effects_total``
  in ``/metrics`` for ``api_timeout``; the L2 guard's quarantine count for ``depth_spike``);
- after the fault ends the book is LIVE and equal to the rebuild again.

Each type is bounded to 40 s. The ``ExecutionRouter`` flag in ``/api/health`` is checked on the
same stack (off within ~1 s, on again).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import stack as st
from tests.helpers.capture import SAMPLES, DecimalBook, Raw, load, rebuild_until

pytestmark = pytest.mark.e2e
BOOKS = [("binance", "BTCUSDT", "spot"), ("binance-usdm", "BTCUSDT", "usdm")]
PER_TYPE_S = 40.0


def folder(market: str, symbol: str) -> Path:
    return next((SAMPLES / "binance" / market / symbol.lower()).glob("l2_2024-08-08T*"))


@dataclass
class Sampler:
    """Polls ``/api/l2/{venue}/{symbol}`` of every book in a thread; keeps the LIVE samples."""

    s: st.Stack
    live: dict[tuple[str, str], list[tuple[int, list, list]]] = field(default_factory=dict)
    states: dict[tuple[str, str], list[tuple[float, str]]] = field(default_factory=dict)  # (monotonic s, state)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            for venue, symbol, _ in BOOKS:
                try:
                    status, body = self.s.request("GET", f"/api/l2/{venue}/{symbol}", timeout_s=5)
                except OSError:
                    continue
                if status != 200 or not isinstance(body, dict):
                    continue
                self.states.setdefault((venue, symbol), []).append((time.monotonic(), body["state"]))
                if body["state"] == "LIVE":
                    self.live.setdefault((venue, symbol), []).append(
                        (body["seq"], [tuple(x) for x in body["bids"]], [tuple(x) for x in body["asks"]])
                    )
            time.sleep(0.1)

    def take(self) -> tuple[dict, dict]:
        live, states = self.live, self.states
        self.live, self.states = {}, {}
        return live, states


@functools.cache
def capture(market: str, symbol: str) -> Raw:
    return load(folder(market, symbol))


def check_live_samples(samples: list[tuple[int, list, list]], market: str, symbol: str) -> int:
    """Every LIVE sample equals the rebuild at its seq (one pass over the capture's diffs; the
    replay loops the capture, so a seq is looked up in its first occurrence). Returns how many."""
    raw = capture(market, symbol)
    want = {seq for seq, _, _ in samples}
    tops: dict[int, tuple[list, list]] = {}
    book = DecimalBook(raw.snapshot, market == "usdm")
    for d in raw.diffs:
        if book.apply(d) and book.last in want and book.last not in tops:
            tops[book.last] = book.top(20)
    missing = want - set(tops)
    assert not missing, f"served seqs not in the capture: {sorted(missing)[:5]}"
    for seq, bids, asks in samples:
        assert (bids, asks) == tops[seq], f"{market}/{symbol}: a wrong book served as LIVE at seq {seq}"
    return len(samples)


def book_equals_rebuild(s: st.Stack, venue: str, symbol: str, market: str, final: bool = False) -> int | None:
    """The served book's seq when it is LIVE and equal to the rebuild at that seq (``final``:
    through ``rebuild_until``, else the same procedure on the cached capture); None when not
    LIVE; AssertionError when LIVE and wrong."""
    status, body = s.get(f"/api/l2/{venue}/{symbol}")
    if status != 200 or body.get("state") != "LIVE" or len(body["bids"]) != 20:
        return None
    if final:
        ref_bids, ref_asks = rebuild_until(folder(market, symbol), body["seq"]).top(20)
    else:
        check_live_samples(
            [(body["seq"], [tuple(x) for x in body["bids"]], [tuple(x) for x in body["asks"]])], market, symbol
        )
        return int(body["seq"])
    assert [tuple(x) for x in body["bids"]] == ref_bids and [tuple(x) for x in body["asks"]] == ref_asks
    return int(body["seq"])


def metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def chaos_stack(tmp_path_factory) -> Iterator[tuple[st.Stack, Sampler]]:
    s = st.start(tmp_path_factory.mktemp("chaos-stack"))
    sampler = Sampler(s)
    thread = threading.Thread(target=sampler.run, daemon=True)
    try:
        st.wait_healthy(s, 240)
        st.wait_for(lambda: all(book_equals_rebuild(s, v, sym, m) for v, sym, m in BOOKS), 90, "LIVE books")
        thread.start()
        yield s, sampler
    finally:
        sampler.stop.set()
        st.stop(s)


def _stats(s: st.Stack) -> dict:
    status, body = s.get("/api/data-quality/stats")
    assert status == 200, body
    return body


def _inject(s: st.Stack, body: dict) -> dict:
    status, res = s.post("/api/chaos/inject", body, token=s.token)
    assert status == 200, res
    return res


def _run_fault(s: st.Stack, sampler: Sampler, kind: str, seen) -> dict:
    """Inject ``kind`` (the body posts made by ``seen.inject``), wait until ``seen`` says the
    fault shows, then until every book is LIVE and equal to the rebuild past the fault; check
    every LIVE sample of the window. Returns timings."""
    t0 = time.monotonic()
    deadline = t0 + PER_TYPE_S
    sampler.take()
    before = (_stats(s), st.Stack.request(s, "GET", "/metrics")[1])
    seqs0 = {(v, sym): s.get(f"/api/l2/{v}/{sym}")[1]["seq"] for v, sym, _ in BOOKS}
    res = seen.inject(s)
    st.wait_for(lambda: seen.visible(s, before), max(1.0, deadline - time.monotonic()), f"{kind} visible")
    t_seen = time.monotonic()
    if res.get("endsAtMs"):
        time.sleep(max(0.0, (res["endsAtMs"] - res["injectedAtMs"]) / 1e3 - (time.monotonic() - t0)))
    t_end = time.monotonic()

    def recovered() -> bool:
        for v, sym, m in BOOKS:
            seq = book_equals_rebuild(s, v, sym, m)
            if seq is None or seq == seqs0[(v, sym)]:
                return False
        return True

    st.wait_for(recovered, max(1.0, deadline - time.monotonic()), f"LIVE and equal to the rebuild after {kind}")
    t_rec = time.monotonic()
    live, states = sampler.take()
    for v, sym, m in BOOKS:  # once more through the shared helper
        st.wait_for(lambda v=v, sym=sym, m=m: book_equals_rebuild(s, v, sym, m, final=True), 10, "final check")
    checked = sum(check_live_samples(live.get((v, sym), []), m, sym) for v, sym, m in BOOKS)
    return {
        "seen_s": round(t_seen - t0, 2),
        "outage_s": round(max(outage(v, t0) for v in states.values()), 2),
        "live_again_after_end_s": round(max(live_again(v, t_end) for v in states.values()), 2),
        "verified_after_s": round(t_rec - t_end, 2),
        "live_samples": checked,
        "non_live_samples": sum(x != "LIVE" for v in states.values() for _, x in v),
    }


def outage(samples: list[tuple[float, str]], t0: float) -> float:
    """Seconds between the first non-LIVE sample after ``t0`` and the next LIVE one (0 if none)."""
    start = next((t for t, x in samples if t >= t0 and x != "LIVE"), None)
    if start is None:
        return 0.0
    back = next((t for t, x in samples if t > start and x == "LIVE"), samples[-1][0])
    return back - start


def live_again(samples: list[tuple[float, str]], t_end: float) -> float:
    """Seconds from the fault's end (wall time) to the first LIVE sample that stays LIVE after it."""
    last_bad = max((t for t, x in samples if x != "LIVE"), default=t_end)
    back = next((t for t, x in samples if t > max(last_bad, t_end) and x == "LIVE"), None)
    return 0.0 if back is None else max(0.0, back - t_end)


class WsFlap:
    def inject(self, s):
        return _inject(s, {"type": "ws_flap", "durationS": 2})

    def visible(self, s, before):
        return _stats(s)["resyncs"].get("disconnect", 0) > before[0]["resyncs"].get("disconnect", 0)


class ApiTimeout:
    def inject(self, s):
        res = _inject(s, {"type": "api_timeout", "durationS": 3})
        _inject(s, {"type": "l2_gap"})  # a resync needs a REST snapshot while REST hangs
        return res

    def visible(self, s, before):
        text = st.Stack.request(s, "GET", "/metrics")[1]
        hung = metric_sum(text, "chaos_effects_total", type="api_timeout") > metric_sum(
            before[1], "chaos_effects_total", type="api_timeout"
        )
        return hung and _stats(s)["resyncs"].get("gap", 0) > before[0]["resyncs"].get("gap", 0)


class L2Gap:
    def inject(self, s):
        return _inject(s, {"type": "l2_gap"})

    def visible(self, s, before):
        return _stats(s)["resyncs"].get("gap", 0) > before[0]["resyncs"].get("gap", 0)


class DepthSpike:
    def inject(self, s):
        return _inject(s, {"type": "depth_spike"})

    def visible(self, s, before):
        def refused(stats: dict) -> float:
            reasons = stats["sources"].get("l2", {}).get("reasons", {})
            return sum(r["quarantined"] + r["counted"] for r in reasons.values())

        now = _stats(s)
        guard_resyncs = sum(
            now["resyncs"].get(r, 0) - before[0]["resyncs"].get(r, 0) for r in ("far_from_mid", "size_spike")
        )
        return refused(now) > refused(before[0]) and guard_resyncs > 0


@pytest.mark.parametrize("kind", ["ws_flap", "api_timeout", "l2_gap", "depth_spike"])
def test_fault_never_serves_a_wrong_live_book_and_recovers(chaos_stack, kind):
    s, sampler = chaos_stack
    st.wait_for(lambda: all(book_equals_rebuild(s, v, sym, m) for v, sym, m in BOOKS), 30, "LIVE books before")
    seen = {"ws_flap": WsFlap, "api_timeout": ApiTimeout, "l2_gap": L2Gap, "depth_spike": DepthSpike}[kind]()
    out = _run_fault(s, sampler, kind, seen)
    print(kind, out)
    assert out["live_samples"] > 0
    if kind == "depth_spike":
        ex = [e for e in _stats(s)["lastExamples"] if e["source"] == "l2"]
        assert ex and ex[0]["reason"] in ("far_from_mid", "size_spike") and "resynced" in ex[0]["detail"]


def test_execution_router_flag_shows_in_health(chaos_stack):
    s, _ = chaos_stack
    assert s.get("/api/health")[1]["exec"]["routerEnabled"] is True
    t0 = time.monotonic()
    assert s.post("/api/flags", {"ExecutionRouter": False}, token=s.token)[0] == 200
    try:
        st.wait_for(lambda: s.get("/api/health")[1]["exec"]["routerEnabled"] is False, 5, "routerEnabled false")
        assert time.monotonic() - t0 < 3
    finally:
        assert s.post("/api/flags", {"ExecutionRouter": None}, token=s.token)[0] == 200
    st.wait_for(lambda: s.get("/api/health")[1]["exec"]["routerEnabled"] is True, 5, "routerEnabled true")
