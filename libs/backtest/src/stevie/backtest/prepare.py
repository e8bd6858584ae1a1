"""Everything decision-free of one symbol, computed ahead of the replay in a worker process.

Per symbol, from its closes alone (no decision, position or other symbol enters):

- the walk-forward refits of HAR-RV and GARCH(1,1) (``stevie.backtest.fits``);
- the live vol core (``SymbolVol``) fed the bars closed by each decision time, cut at the fold
  starts exactly as a live feed would be, and its forecast (σ HAR, σ GARCH over the decision
  horizon) at every decision — the same calls, in the same order, as in the live service;
- every bar policy's signal at every decision (``stevie.backtest.signals``, the batch twins of
  the live functions, proven equal);
- the regime label at every decision (``stevie.quant.regime.RegimeDetector``, BOCPD, fed the
  symbol's decision-grid closes in event order: the label at T uses closes ≤ T only);
- the last settled funding rate at every decision.

The replay (``stevie.backtest.bars``) then only runs what depends on decisions: router, sizing,
guards, fills, funding payments. Symbols are independent, and within a symbol the work is done
in event-time order, so the preparation is **streamed** to the replay (``PreparedStream``):
``workers`` spawned processes each own some symbols and advance all of them one chunk of event
time (``CHUNK_MS``, a day) after the other, sending each chunk as soon as it is done; the replay
waits only when it reaches a decision not prepared yet. A walk-forward fit is computed when its
fold is reached (``stevie.backtest.fits.ScheduledFits``; a fold whose GARCH fit fails reuses the
previous fold's parameters, which the symbol's own worker holds). Chunking changes nothing: the
vol core, the regime detector and the signals see the same calls in the same order, so the
result does not depend on the number of workers or on timing (tested, 1 vs 2 workers).
This module imports no polars (workers are spawned, not forked).
"""

from __future__ import annotations

import queue as queue_mod
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.process import BaseProcess
from typing import Any

import msgspec
import numpy as np

from stevie.backtest.fits import PrecomputedFitter, ScheduledFits, min_train_bars, schedule
from stevie.backtest.signals import batch_signals
from stevie.quant.regime import RegimeDetector
from stevie.services.vol.core import SymbolVol

MINUTE_MS = 60_000


@dataclass(frozen=True)
class PrepareJob:
    """Inputs of one symbol (arrays shape (n,) of its bars; funding (m,) settlements)."""

    symbol: str
    open_time_ms: np.ndarray
    close: np.ndarray
    funding_t: np.ndarray
    funding_r: np.ndarray
    decisions: np.ndarray  # bar indices of the decisions, ascending
    minutes_per_period: int
    garch_window: int
    refit_every_bars: int
    horizon_min: int
    lookback_bars: int
    policies: tuple[str, ...]
    regime_max_run: int
    params: dict[str, msgspec.Struct] = field(default_factory=dict)  # policy id → tuned hyper-parameters


CHUNK_MS = 86_400_000
"""Event time per streamed chunk (one day: 288 decisions per symbol at 5-minute decisions)."""


@dataclass
class Prepared:
    """Per decision k of a symbol (lists of length d, growing as chunks arrive): ``ready`` (the
    vol models are fitted), ``sigma_har`` / ``sigma_garch`` (return units over the horizon, NaN
    when not ready), ``regime`` (label); known in full from the start: ``funding`` (fraction per
    8 h) and ``shadows`` (d rows of int signals, one per policy). ``fits``: walk-forward fits
    computed; ``garch_failures``: folds whose GARCH did not converge (previous one kept)."""

    symbol: str
    funding: list[float]
    shadows: list[list[int]]
    ready: list[bool] = field(default_factory=list)
    sigma_har: list[float] = field(default_factory=list)
    sigma_garch: list[float] = field(default_factory=list)
    regime: list[str] = field(default_factory=list)
    fits: int = 0
    garch_failures: int = 0


@dataclass(frozen=True)
class Chunk:
    """Decisions ``start`` … ``start + len(ready) − 1`` of ``symbol`` (see ``Prepared``)."""

    symbol: str
    start: int
    ready: list[bool]
    sigma_har: list[float]
    sigma_garch: list[float]
    regime: list[str]
    fits: int
    garch_failures: int


class SymbolPreparer:
    """The decision-free state of one symbol (vol core, fits, regime detector), advanced in
    event time by ``advance``. Raises QuantInputError (from the splitter) when the symbol has
    too few bars to fit once."""

    def __init__(self, job: PrepareJob) -> None:
        self.job = job
        t, c, idx = job.open_time_ms, job.close, job.decisions
        self.first = min_train_bars(job.minutes_per_period)
        self.points = schedule(t, job.minutes_per_period, job.refit_every_bars)
        self.fits = ScheduledFits(job.symbol, c, self.points, job.minutes_per_period, job.garch_window)
        self.fitter = PrecomputedFitter(job.symbol, self.fits, self.first)
        self.sv = SymbolVol(
            job.symbol, job.minutes_per_period, job.garch_window, job.refit_every_bars, fitter=self.fitter
        )
        self.close_ms = t[idx] + MINUTE_MS
        self.close_ms_l: list[int] = self.close_ms.tolist()
        self.idx_l: list[int] = idx.tolist()
        self.t_l: list[int] = t.tolist()
        self.c_l: list[float] = c.tolist()
        self.det = RegimeDetector(max_run=job.regime_max_run)
        self.k = self.fed = self.bi = 0
        self.prev_t: int | None = None

    def static(self) -> Prepared:
        """Funding and every policy's signal at every decision (vectorised, decision-free)."""
        job = self.job
        fi = np.searchsorted(job.funding_t, self.close_ms, side="right") - 1
        fund = np.where(fi >= 0, job.funding_r[np.maximum(fi, 0)] if job.funding_r.size else 0.0, 0.0)
        upto = job.decisions.astype(np.int64) + 1
        cols = [batch_signals(p, job.close, upto, fund, job.lookback_bars, job.params.get(p)) for p in job.policies]
        shadows = np.column_stack(cols).astype(np.int8) if cols else np.zeros((upto.size, 0), np.int8)
        return Prepared(job.symbol, fund.tolist(), shadows.tolist())

    def advance(self, until_ms: int) -> Chunk:
        """Prepare the decisions whose close time is < ``until_ms`` (from the first not done)."""
        job, sv, points, first = self.job, self.sv, self.points, self.first
        start = self.k
        ready: list[bool] = []
        s_har: list[float] = []
        s_garch: list[float] = []
        regime: list[str] = []
        nan = float("nan")
        step_ms = job.horizon_min * MINUTE_MS
        d = len(self.idx_l)
        while self.k < d and self.close_ms_l[self.k] < until_ms:
            k = self.k
            upto = self.idx_l[k] + 1
            # feed the bars closed by the decision, cut at the walk-forward fold starts
            while self.fed < upto:
                while self.bi < len(points) and points[self.bi] <= self.fed:
                    self.bi += 1
                nxt = points[self.bi] if self.bi < len(points) and points[self.bi] <= upto else upto
                if sv.garch is None and nxt < first:
                    break  # still warming up: fed in one piece at the first fit
                lo = 0 if sv.garch is None else self.fed
                sv.add_bars(self.t_l[lo:nxt], self.c_l[lo:nxt])
                self.fed = nxt
            if sv.garch is None:
                ready.append(False)
                s_har.append(nan)
                s_garch.append(nan)
            else:
                fc = sv.forecast(job.horizon_min)
                ready.append(True)
                s_har.append(fc.sigmaHAR)
                s_garch.append(fc.sigmaGARCH)
            tk = self.close_ms_l[k]
            if self.prev_t is not None and tk - self.prev_t != step_ms:
                self.det.break_chain()  # a gap in the decision grid: no return across it
            self.prev_t = tk
            v = self.det.update(self.c_l[upto - 1], tk * 1_000_000)
            regime.append(v.label if v is not None else "unknown")
            self.k += 1
        return Chunk(job.symbol, start, ready, s_har, s_garch, regime, self.fits.computed, self.fitter.garch_failures)


def prepare(job: PrepareJob) -> Prepared:
    """Everything decision-free of one symbol at all its decisions, in this process."""
    p = SymbolPreparer(job)
    out = p.static()
    _extend(out, p.advance(2**62))
    return out


def _extend(p: Prepared, c: Chunk) -> None:
    if c.start != len(p.ready):
        raise RuntimeError(f"{c.symbol}: chunk starts at decision {c.start}, have {len(p.ready)}")
    p.ready += c.ready
    p.sigma_har += c.sigma_har
    p.sigma_garch += c.sigma_garch
    p.regime += c.regime
    p.fits, p.garch_failures = c.fits, c.garch_failures


def chunk_edges(jobs: list[PrepareJob]) -> list[int]:
    """Chunk ends (close times, ms): every ``CHUNK_MS`` from the first decision, then the end."""
    firsts = [int(j.open_time_ms[j.decisions[0]]) for j in jobs if j.decisions.size]
    lasts = [int(j.open_time_ms[j.decisions[-1]]) + MINUTE_MS for j in jobs if j.decisions.size]
    if not firsts:
        return [2**62]
    return [*range(min(firsts) + CHUNK_MS, max(lasts) + 1, CHUNK_MS), 2**62]


def _worker(inbox: Any, edges: list[int], out: Any) -> None:
    """A worker process: its jobs arrive on ``inbox`` (not as process arguments, so a worker
    that dies while starting cannot block the parent); then its symbols' statics, then every
    chunk of all of them, edge by edge."""
    try:
        jobs: list[PrepareJob] = inbox.get()
        preps = [SymbolPreparer(j) for j in jobs]
        out.put(("static", [p.static() for p in preps]))
        for e in edges:
            out.put(("chunks", [p.advance(e) for p in preps]))
        out.put(("done", None))
    except Exception as exc:  # sent to the parent, which re-raises it
        out.put(("error", exc))


class PreparedStream:
    """The prepared values of every symbol, filled as the workers (or this process, with
    ``workers`` ≤ 1) produce them. ``need(symbol, k)`` returns that symbol's ``Prepared`` once
    decision k is in it. A worker's error is re-raised here; a worker that dies raises
    RuntimeError. Use as a context manager (the workers are joined or ended on exit)."""

    def __init__(self, jobs: list[PrepareJob], workers: int) -> None:
        self.edges = chunk_edges(jobs)
        self.prepared: dict[str, Prepared] = {}
        self.local: dict[str, SymbolPreparer] = {}
        self.procs: list[BaseProcess] = []
        self.open = 0
        if workers <= 1 or len(jobs) < 2:
            for j in jobs:
                p = self.local[j.symbol] = SymbolPreparer(j)
                self.prepared[j.symbol] = p.static()
            return
        ctx = get_context("spawn")
        self.q: Any = ctx.Queue()
        loads = [0] * min(workers, len(jobs))
        share: list[list[PrepareJob]] = [[] for _ in loads]
        for j in sorted(jobs, key=lambda j: (-j.close.size, j.symbol)):
            w = loads.index(min(loads))
            share[w].append(j)
            loads[w] += j.close.size
        self.inboxes: list[Any] = []  # held until the workers are joined (a queue's semaphore
        for part in share:  # must outlive the child's unpickling)
            inbox = ctx.Queue()
            proc = ctx.Process(target=_worker, args=(inbox, self.edges, self.q), daemon=True)
            proc.start()
            inbox.put(part)
            self.inboxes.append(inbox)
            self.procs.append(proc)
        self.open = len(self.procs)
        while len(self.prepared) < len(jobs):
            self._receive()

    def _receive(self) -> None:
        while True:
            try:
                kind, body = self.q.get(timeout=5.0)
                break
            except queue_mod.Empty:
                dead = [p for p in self.procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"a preparation worker died (exit code {dead[0].exitcode})") from None
        if kind == "error":
            raise body
        if kind == "static":
            for p in body:
                self.prepared[p.symbol] = p
        elif kind == "chunks":
            for c in body:
                _extend(self.prepared[c.symbol], c)
        else:
            self.open -= 1

    def need(self, symbol: str, k: int) -> Prepared:
        p = self.prepared[symbol]
        while len(p.ready) <= k:
            loc = self.local.get(symbol)
            if loc is not None:
                _extend(p, loc.advance(self._next_edge(loc)))
            elif self.open == 0:
                raise RuntimeError(f"{symbol}: decision {k} was never prepared")
            else:
                self._receive()
        return p

    def _next_edge(self, loc: SymbolPreparer) -> int:
        t = loc.close_ms_l[loc.k] if loc.k < len(loc.close_ms_l) else 2**62
        return next(e for e in self.edges if e > t)

    def finish(self) -> dict[str, Prepared]:
        """Every symbol complete (drains the workers)."""
        for sym, loc in self.local.items():
            if loc.idx_l:
                self.need(sym, len(loc.idx_l) - 1)
        while self.open:
            self._receive()
        return self.prepared

    def __enter__(self) -> PreparedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            if exc[0] is not None and p.is_alive():
                p.terminate()
            p.join(timeout=10)
