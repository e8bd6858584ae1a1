"""``stevie bench``: throughput ratios measured in one run, round-robin (best of ``rounds``),
on the real BTCUSDT spot capture of ``data/samples``.

Rows: the native book (bytes in: decode + apply + top-20 in Rust, one thread) vs the
sortedcontainers book (pre-decoded floats, apply + top-20); the native bytes-in replay rate on
one thread and with decoding on a second thread (``threads=2``); the native feature
kernel (batch) vs the numpy twin and vs a per-update Python loop, on ``events`` events built
by tiling the capture's books and trades in time.
"""

from __future__ import annotations

import csv
import gzip
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stevie.quant.book import OrderBookLike
from stevie.quant.kernels import Kernels, load

Level = tuple[float, float]


@dataclass
class Capture:
    snapshot: dict[str, object]
    raw: bytes  # newline-separated depthUpdate JSON, as recorded
    diffs: list[tuple[int, int, None, list[Level], list[Level]]]
    trades: list[tuple[int, float, float, bool]]

    @property
    def bids(self) -> list[Level]:
        return [(float(p), float(q)) for p, q in self.snapshot["bids"]]  # type: ignore[attr-defined]

    @property
    def asks(self) -> list[Level]:
        return [(float(p), float(q)) for p, q in self.snapshot["asks"]]  # type: ignore[attr-defined]

    @property
    def last_update_id(self) -> int:
        return int(str(self.snapshot["lastUpdateId"]))


def load_capture(folder: Path) -> Capture:
    """Snapshot, raw diff lines, pre-decoded diffs and trades of one spot capture folder."""
    snap = json.loads((folder / "depth_snapshot.json").read_text())
    with gzip.open(folder / "depth_updates.jsonl.gz", "rb") as f:
        raw = f.read()
    diffs = []
    for line in raw.splitlines():
        d = json.loads(line)
        diffs.append(
            (d["U"], d["u"], None, [(float(p), float(q)) for p, q in d["b"]], [(float(p), float(q)) for p, q in d["a"]])
        )
    with gzip.open(folder / "trades.csv.gz", "rt") as f:
        trades = [
            (int(r["trade_time_ms"]) * 1_000_000, float(r["price"]), float(r["qty"]), r["is_buyer_maker"] == "0")
            for r in csv.DictReader(f)
        ]
    return Capture(snap, raw, diffs, trades)


def python_book(cap: Capture) -> OrderBookLike:
    """sortedcontainers book: apply each pre-decoded diff, then take the top 20."""
    book = load("reference").OrderBook()
    book.apply_snapshot(cap.bids, cap.asks, cap.last_update_id)
    for d in cap.diffs:
        book.apply_diff(*d)
        book.top_k(20)
    return book


def native_replay(cap: Capture, kernels: Kernels, threads: int = 1) -> tuple[OrderBookLike, float]:
    """Bytes in: decode + apply + top-20 per message in Rust (``threads=2``: decoding on a
    second thread). Returns (book, seconds in replay)."""
    book = kernels.OrderBook()
    book.apply_snapshot(cap.bids, cap.asks, cap.last_update_id)
    t0 = time.perf_counter()
    book.replay_lines(cap.raw, 20, threads=threads)
    return book, time.perf_counter() - t0


def native_replay_best(cap: Capture, kernels: Kernels, threads: int, repeats: int = 5) -> float:
    """Best seconds of ``repeats`` replays: one replay takes milliseconds, so a short stall of
    a core (another process, a VM neighbour) would otherwise decide the figure."""
    return min(native_replay(cap, kernels, threads)[1] for _ in range(repeats))


@dataclass
class Events:
    book_ts: np.ndarray
    bid_px: np.ndarray
    bid_sz: np.ndarray
    ask_px: np.ndarray
    ask_sz: np.ndarray
    trade_ts: np.ndarray
    trade_px: np.ndarray
    trade_sz: np.ndarray
    trade_buy: np.ndarray

    @property
    def size(self) -> int:
        return int(self.book_ts.size + self.trade_ts.size)


def build_events(cap: Capture, n_events: int, levels: int = 20) -> Events:
    """Top-20 books after every diff plus the trades, tiled in time to ``n_events`` events."""
    book = load("reference").OrderBook()
    book.apply_snapshot(cap.bids, cap.asks, cap.last_update_id)
    rows = []
    for d, line in zip(cap.diffs, cap.raw.splitlines(), strict=True):
        if book.apply_diff(*d) == "ok":
            b, a = book.top_k_arrays(levels)
            ts = json.loads(line)["E"] * 1_000_000
            rows.append((ts, b, a))
    span = rows[-1][0] - rows[0][0] + 1_000_000_000
    reps = max(1, -(-n_events // (len(rows) + len(cap.trades))))
    n = len(rows) * reps
    out = {k: np.full((n, levels), np.nan) for k in ("bp", "bs", "ap", "az")}
    bts = np.empty(n, dtype=np.int64)
    for r in range(reps):
        for i, (ts, b, a) in enumerate(rows):
            j = r * len(rows) + i
            bts[j] = ts + r * span
            out["bp"][j, : len(b)], out["bs"][j, : len(b)] = b[:, 0], b[:, 1]
            out["ap"][j, : len(a)], out["az"][j, : len(a)] = a[:, 0], a[:, 1]
    t = np.array([x[0] for x in cap.trades], dtype=np.int64)
    keep = (t >= rows[0][0]) & (t <= rows[-1][0])
    tts = np.concatenate([t[keep] + r * span for r in range(reps)])
    tp = np.tile(np.array([x[1] for x in cap.trades])[keep], reps)
    tsz = np.tile(np.array([x[2] for x in cap.trades])[keep], reps)
    tb = np.tile(np.array([x[3] for x in cap.trades])[keep], reps)
    return Events(bts, out["bp"], out["bs"], out["ap"], out["az"], tts, tp, tsz, tb)


def batch(kernels: Kernels, ev: Events) -> np.ndarray:
    return kernels.batch_features(
        5,
        5_000_000_000,
        ev.book_ts,
        ev.bid_px,
        ev.bid_sz,
        ev.ask_px,
        ev.ask_sz,
        ev.trade_ts,
        ev.trade_px,
        ev.trade_sz,
        ev.trade_buy,
    )


def python_loop(ev: Events, limit: int) -> int:
    """The per-update Python kernel over the first ``limit`` events (books and trades merged)."""
    kern = load("reference").MicroKernel(5, 5_000_000_000)
    j, done = 0, 0
    for i in range(ev.book_ts.size):
        ts = int(ev.book_ts[i])
        while j < ev.trade_ts.size and ev.trade_ts[j] <= ts:
            kern.on_trade(float(ev.trade_px[j]), float(ev.trade_sz[j]), bool(ev.trade_buy[j]), int(ev.trade_ts[j]))
            j += 1
            done += 1
        ok = ~np.isnan(ev.bid_px[i])
        oka = ~np.isnan(ev.ask_px[i])
        kern.on_book(
            list(zip(ev.bid_px[i][ok].tolist(), ev.bid_sz[i][ok].tolist(), strict=True)),
            list(zip(ev.ask_px[i][oka].tolist(), ev.ask_sz[i][oka].tolist(), strict=True)),
            ts,
        )
        done += 1
        if done >= limit:
            break
    return done


def best_of(fns: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Each fn returns its own elapsed seconds; best per name over round-robin passes."""
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = min(best[name], fn())
    return best


def timed(fn: Callable[[], object]) -> Callable[[], float]:
    def run() -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    return run


@dataclass(frozen=True)
class BenchResult:
    book_ratio: float
    python_diffs_per_s: float
    native_msgs_per_s: float
    native_2thread_msgs_per_s: float
    features_vs_numpy: float
    features_vs_python_loop: float
    native_events_per_s: float
    events: int


def run(folder: Path, events: int = 1_000_000, rounds: int = 3, loop_events: int = 50_000) -> BenchResult:
    """Every ratio, measured round-robin in this one process."""
    nat = load("native")
    ref = load("reference")
    cap = load_capture(folder)
    n_msgs = len(cap.diffs)
    book = best_of(
        {
            "python": timed(lambda: python_book(cap)),
            "native": lambda: native_replay_best(cap, nat, threads=1),
            "native2": lambda: native_replay_best(cap, nat, threads=2),
        },
        rounds,
    )
    ev = build_events(cap, events)
    feats = best_of(
        {
            "native": timed(lambda: batch(nat, ev)),
            "numpy": timed(lambda: batch(ref, ev)),
            "loop": timed(lambda: python_loop(ev, loop_events)),
        },
        rounds,
    )
    per_event = {
        "native": feats["native"] / ev.size,
        "numpy": feats["numpy"] / ev.size,
        "loop": feats["loop"] / loop_events,
    }
    return BenchResult(
        book_ratio=book["python"] / book["native"],
        python_diffs_per_s=n_msgs / book["python"],
        native_msgs_per_s=n_msgs / book["native"],
        native_2thread_msgs_per_s=n_msgs / book["native2"],
        features_vs_numpy=per_event["numpy"] / per_event["native"],
        features_vs_python_loop=per_event["loop"] / per_event["native"],
        native_events_per_s=1 / per_event["native"],
        events=ev.size,
    )


def embedding_headlines_per_s(n: int = 240, rounds: int = 3, threads: int = 1) -> float:
    """Sentence-embedding throughput (headlines/s) of the events service's MiniLM embedder on
    one onnxruntime thread (its default): the shipped projection corpus (short headlines,
    ≈ 8–14 tokens) repeated to ``n`` texts, best of ``rounds``. Model loading is not timed."""
    from stevie.services.events.embedder import MiniLMEmbedder
    from stevie.services.events.projection import corpus

    train, test = corpus()
    base = train + test
    texts = [base[i % len(base)] for i in range(n)]
    emb = MiniLMEmbedder(threads=threads)
    emb.embed(texts[:8])  # warm-up (first run allocates)
    best = best_of({"embed": timed(lambda: emb.embed(texts))}, rounds)["embed"]
    return n / best


@dataclass(frozen=True)
class BacktestBench:
    """``stevie backtest`` end to end (load, walk-forward fits, decisions, no output files)."""

    bars: int
    decisions: int
    seconds: float

    @property
    def bars_per_s(self) -> float:
        return self.bars / self.seconds

    @property
    def decisions_per_s(self) -> float:
        return self.decisions / self.seconds


def bar_backtest(
    klines_dir: Path,
    funding: Path | None,
    symbols: list[str] | None = None,
    days: float | None = None,
    workers: int = 2,
) -> BacktestBench:
    """The bar backtest of ``symbols`` (default all 18) over their history (or the first
    ``days``), timed end to end; the decision path is the live cores."""
    from stevie.backtest.bars import BarSettings, run_bars
    from stevie.backtest.data import discover, load_funding, load_klines

    t0 = time.perf_counter()
    files = discover(klines_dir)
    syms = symbols or sorted(files)
    end = None
    k = load_klines(files, syms, None, None)
    if days is not None:
        end = min(int(x.open_time_ms[0]) for x in k.values()) + int(days * 86_400_000)
        k = load_klines(files, syms, None, end)
    res = run_bars(k, load_funding(funding), BarSettings(symbols=syms, end_ms=end), workers=workers)
    return BacktestBench(res.bars, len(res.decisions["symbol"]), time.perf_counter() - t0)
