//! PyO3 layer: converts types, releases the GIL around batch work, maps errors to
//! `ValueError`. No logic lives here.

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::book;
use crate::decode;
use crate::l2;
use crate::micro;
use crate::replay;
use crate::sync;

type Level = (f64, f64);

#[pyclass(module = "stevie_fastpath._native", name = "OrderBook")]
pub struct PyOrderBook {
    inner: book::OrderBook,
}

#[pymethods]
impl PyOrderBook {
    #[new]
    #[pyo3(signature = (usdm = false, decimals = 8))]
    fn new(usdm: bool, decimals: u32) -> PyResult<Self> {
        if decimals > 12 {
            return Err(PyValueError::new_err("decimals must be <= 12"));
        }
        Ok(PyOrderBook { inner: book::OrderBook::new(usdm, decimals) })
    }

    #[getter]
    fn usdm(&self) -> bool {
        self.inner.usdm
    }

    #[getter]
    fn last_update_id(&self) -> u64 {
        self.inner.last_update_id()
    }

    #[getter]
    fn synced(&self) -> bool {
        self.inner.synced()
    }

    fn clear(&mut self) {
        self.inner.clear();
    }

    fn apply_snapshot(&mut self, bids: Vec<Level>, asks: Vec<Level>, last_update_id: u64) {
        self.inner.apply_snapshot(&bids, &asks, last_update_id);
    }

    #[pyo3(signature = (first_update_id, final_update_id, prev_final_update_id, bids, asks))]
    fn apply_diff(
        &mut self,
        first_update_id: u64,
        final_update_id: u64,
        prev_final_update_id: Option<u64>,
        bids: Vec<Level>,
        asks: Vec<Level>,
    ) -> &'static str {
        self.inner.apply_diff(first_update_id, final_update_id, prev_final_update_id, &bids, &asks).as_str()
    }

    /// One raw depthUpdate (or combined-stream envelope): (verdict, U, u).
    fn apply_depth_json(&mut self, py: Python<'_>, data: &Bound<'_, PyBytes>) -> PyResult<(&'static str, u64, u64)> {
        let buf = data.as_bytes();
        let inner = &mut self.inner;
        let out = py.detach(|| decode::apply_depth_json(inner, buf));
        out.map(|(v, h)| (v.as_str(), h.first, h.last)).map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Newline-separated messages, top-k after every applied one: (ok, stale, gap, errors).
    /// `threads=2` decodes on a second thread while this one applies (same result).
    #[pyo3(signature = (data, k = 20, threads = 1))]
    fn replay_lines(
        &mut self,
        py: Python<'_>,
        data: &Bound<'_, PyBytes>,
        k: usize,
        threads: usize,
    ) -> PyResult<(u64, u64, u64, u64)> {
        let buf = data.as_bytes();
        let inner = &mut self.inner;
        let st = match threads {
            1 => py.detach(|| replay::replay_lines(inner, buf, k)),
            2 => py.detach(|| replay::replay_lines_pipelined(inner, buf, k)),
            _ => return Err(PyValueError::new_err(format!("threads must be 1 or 2, got {threads}"))),
        };
        Ok((st.ok, st.stale, st.gap, st.errors))
    }

    fn best_bid(&self) -> Option<Level> {
        self.inner.best_bid()
    }

    fn best_ask(&self) -> Option<Level> {
        self.inner.best_ask()
    }

    fn top_k(&self, k: usize) -> (Vec<Level>, Vec<Level>) {
        self.inner.top_k(k)
    }

    /// Best k levels as two (n, 2) float64 arrays [price, size], best first.
    fn top_k_arrays<'py>(&self, py: Python<'py>, k: usize) -> (Bound<'py, PyArray2<f64>>, Bound<'py, PyArray2<f64>>) {
        let (b, a) = self.inner.top_k(k);
        let to = |v: Vec<Level>| Array2::from_shape_fn((v.len(), 2), |(i, j)| if j == 0 { v[i].0 } else { v[i].1 });
        (to(b).into_pyarray(py), to(a).into_pyarray(py))
    }

    fn is_crossed(&self) -> bool {
        self.inner.is_crossed()
    }

    fn depth_within_bps(&self, bps: f64) -> (f64, f64) {
        self.inner.depth_within_bps(bps)
    }

    /// Every level, best first.
    fn levels(&self) -> (Vec<Level>, Vec<Level>) {
        self.inner.top_k(self.inner.bids.len() + self.inner.asks.len())
    }
}

#[pyclass(module = "stevie_fastpath._native", name = "MicroFeatures", frozen, get_all)]
#[derive(Clone)]
pub struct PyMicroFeatures {
    obi: f64,
    ti: f64,
    spread_bps: f64,
    micro_vol_bps: f64,
    cancel_rate: f64,
    mid: f64,
    ts_ns: i64,
}

#[pymethods]
impl PyMicroFeatures {
    fn __repr__(&self) -> String {
        format!(
            "MicroFeatures(obi={}, ti={}, spread_bps={}, micro_vol_bps={}, cancel_rate={}, mid={}, ts_ns={})",
            self.obi, self.ti, self.spread_bps, self.micro_vol_bps, self.cancel_rate, self.mid, self.ts_ns
        )
    }
}

fn err(e: micro::MicroError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

#[pyclass(module = "stevie_fastpath._native", name = "MicroKernel")]
pub struct PyMicroKernel {
    inner: micro::MicroKernel,
}

#[pymethods]
impl PyMicroKernel {
    #[new]
    #[pyo3(signature = (k = 5, window_ns = 5_000_000_000))]
    fn new(k: usize, window_ns: i64) -> PyResult<Self> {
        if window_ns <= 0 {
            return Err(PyValueError::new_err("window_ns must be > 0"));
        }
        Ok(PyMicroKernel { inner: micro::MicroKernel::new(k, window_ns) })
    }

    #[getter]
    fn k(&self) -> usize {
        self.inner.k
    }

    fn on_trade(&mut self, price: f64, size: f64, is_buy: bool, ts_ns: i64) -> PyResult<()> {
        self.inner.on_trade(price, size, is_buy, ts_ns).map_err(err)
    }

    fn on_book(&mut self, bids: Vec<Level>, asks: Vec<Level>, ts_ns: i64) -> PyResult<Option<PyMicroFeatures>> {
        let f = self.inner.on_book(&bids, &asks, ts_ns).map_err(err)?;
        Ok(f.map(|f| PyMicroFeatures {
            obi: f.obi,
            ti: f.ti,
            spread_bps: f.spread_bps,
            micro_vol_bps: f.micro_vol_bps,
            cancel_rate: f.cancel_rate,
            mid: f.mid,
            ts_ns: f.ts_ns,
        }))
    }

    fn reset(&mut self) {
        self.inner.reset();
    }
}

/// Batch features: see `stevie.quant.kernels.batch_features` for shapes and units.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn batch_features<'py>(
    py: Python<'py>,
    k: usize,
    window_ns: i64,
    book_ts: PyReadonlyArray1<'py, i64>,
    bid_px: PyReadonlyArray2<'py, f64>,
    bid_sz: PyReadonlyArray2<'py, f64>,
    ask_px: PyReadonlyArray2<'py, f64>,
    ask_sz: PyReadonlyArray2<'py, f64>,
    trade_ts: PyReadonlyArray1<'py, i64>,
    trade_px: PyReadonlyArray1<'py, f64>,
    trade_sz: PyReadonlyArray1<'py, f64>,
    trade_buy: PyReadonlyArray1<'py, bool>,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let n = book_ts.len();
    let shape = bid_px.shape().to_vec();
    for a in [&bid_sz, &ask_px, &ask_sz] {
        if a.shape() != shape.as_slice() {
            return Err(PyValueError::new_err("bid/ask arrays must all have shape (n, levels)"));
        }
    }
    if shape.len() != 2 || shape[0] != n {
        return Err(PyValueError::new_err("book arrays must be (n, levels) with n = len(book_ts)"));
    }
    let m = trade_ts.len();
    if trade_px.len() != m || trade_sz.len() != m || trade_buy.len() != m {
        return Err(PyValueError::new_err("trade arrays must have the same length"));
    }
    let (bts, bp, bs, ap, az) = (book_ts.as_slice()?, bid_px.as_slice()?, bid_sz.as_slice()?, ask_px.as_slice()?, ask_sz.as_slice()?);
    let (tts, tp, tsz, tb) = (trade_ts.as_slice()?, trade_px.as_slice()?, trade_sz.as_slice()?, trade_buy.as_slice()?);
    let levels = shape[1];
    let rows = py
        .detach(|| micro::batch(k, window_ns, bts, bp, bs, ap, az, levels, tts, tp, tsz, tb))
        .map_err(err)?;
    let arr = Array2::from_shape_fn((rows.len(), 6), |(i, j)| rows[i][j]);
    Ok(arr.into_pyarray(py))
}

type OutPy<'py> = Vec<Bound<'py, PyAny>>;

/// A published message as a tuple: ("book", state, seq, ts_event_ns, bids, asks) or
/// ("status", state, seq, ts_event_ns, reason, resyncs).
fn outs<'py>(py: Python<'py>, v: Vec<sync::Out>) -> PyResult<OutPy<'py>> {
    v.into_iter()
        .map(|o| match o {
            sync::Out::Book { state, seq, ts_ns, bids, asks } => {
                Ok(("book", state.as_str(), seq, ts_ns, bids, asks).into_pyobject(py)?.into_any())
            }
            sync::Out::Status { state, reason, seq, resyncs, ts_ns } => {
                Ok(("status", state.as_str(), seq, ts_ns, reason, resyncs).into_pyobject(py)?.into_any())
            }
        })
        .collect()
}

type RejectedPy = (u64, u64, Option<u64>, Vec<Level>, Vec<Level>, i64, &'static str, f64, f64);

#[pyclass(module = "stevie_fastpath._native", name = "BookSync")]
pub struct PyBookSync {
    inner: sync::BookSync,
}

#[pymethods]
impl PyBookSync {
    #[new]
    #[pyo3(signature = (usdm, top_k = 20, coalesce_ns = 100_000_000, buffer_size = 5000, guard = true,
        max_price_ratio = 400.0, size_spike_mult = 200.0, guard_depth = 20, decimals = 8))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        usdm: bool,
        top_k: usize,
        coalesce_ns: i64,
        buffer_size: usize,
        guard: bool,
        max_price_ratio: f64,
        size_spike_mult: f64,
        guard_depth: usize,
        decimals: u32,
    ) -> PyResult<Self> {
        if decimals > 12 {
            return Err(PyValueError::new_err("decimals must be <= 12"));
        }
        let limits = guard.then_some(sync::Limits { max_price_ratio, size_spike_mult });
        let s = sync::Settings { top_k, coalesce_ns, buffer_size, limits, guard_depth };
        Ok(PyBookSync { inner: sync::BookSync::new(book::OrderBook::new(usdm, decimals), s) })
    }

    #[getter]
    fn state(&self) -> &'static str {
        self.inner.state.as_str()
    }

    #[getter]
    fn wants_snapshot(&self) -> bool {
        self.inner.wants_snapshot
    }

    #[getter]
    fn last_event_ns(&self) -> i64 {
        self.inner.last_event_ns
    }

    #[getter]
    fn last_update_id(&self) -> u64 {
        self.inner.book.last_update_id()
    }

    #[getter]
    fn buffered(&self) -> usize {
        self.inner.buffer.len()
    }

    /// (applied, stale, gaps, crossed, resyncs, l2_checked, l2_rejected).
    #[getter]
    fn counters(&self) -> (u64, u64, u64, u64, u64, u64, u64) {
        let c = self.inner.counters;
        (c.applied, c.stale, c.gaps, c.crossed, c.resyncs, c.l2_checked, c.l2_rejected)
    }

    fn on_snapshot<'py>(
        &mut self,
        py: Python<'py>,
        bids: Vec<Level>,
        asks: Vec<Level>,
        last_update_id: u64,
        ts_event_ns: i64,
    ) -> PyResult<OutPy<'py>> {
        outs(py, self.inner.on_snapshot(&bids, &asks, last_update_id, ts_event_ns))
    }

    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (first_update_id, final_update_id, prev_final_update_id, bids, asks, ts_event_ns))]
    fn on_diff<'py>(
        &mut self,
        py: Python<'py>,
        first_update_id: u64,
        final_update_id: u64,
        prev_final_update_id: Option<u64>,
        bids: Vec<Level>,
        asks: Vec<Level>,
        ts_event_ns: i64,
    ) -> PyResult<OutPy<'py>> {
        let d = sync::Diff {
            first: first_update_id,
            last: final_update_id,
            prev: prev_final_update_id,
            bids,
            asks,
            ts_ns: ts_event_ns,
        };
        outs(py, self.inner.on_diff(d))
    }

    fn resync<'py>(&mut self, py: Python<'py>, reason: &str, now_ns: i64) -> PyResult<OutPy<'py>> {
        outs(py, self.inner.resync(reason, now_ns))
    }

    fn check_stale<'py>(&mut self, py: Python<'py>, idle_ns: i64, stale_after_ns: i64, now_ns: i64) -> PyResult<OutPy<'py>> {
        outs(py, self.inner.check_stale(idle_ns, stale_after_ns, now_ns))
    }

    fn flush<'py>(&mut self, py: Python<'py>) -> PyResult<OutPy<'py>> {
        outs(py, self.inner.flush())
    }

    /// The diffs the guard refused since the last call: (U, u, pu, bids, asks, ts_event_ns,
    /// reason, mid, visible_size).
    fn take_rejected(&mut self) -> Vec<RejectedPy> {
        std::mem::take(&mut self.inner.rejected)
            .into_iter()
            .map(|r| (r.diff.first, r.diff.last, r.diff.prev, r.diff.bids, r.diff.asks, r.diff.ts_ns, r.reason, r.mid, r.visible))
            .collect()
    }

    /// A recorded capture's raw depth lines through the sync (see `sync::BookSync::replay_capture`):
    /// (diffs, published messages). ValueError names the first line that does not decode.
    fn replay_capture<'py>(
        &mut self,
        py: Python<'py>,
        bids: Vec<Level>,
        asks: Vec<Level>,
        last_update_id: u64,
        data: &Bound<'py, PyBytes>,
    ) -> PyResult<(usize, OutPy<'py>)> {
        let buf = data.as_bytes();
        let inner = &mut self.inner;
        let (n, out) = py
            .detach(|| inner.replay_capture(&bids, &asks, last_update_id, buf))
            .map_err(|(line, e)| PyValueError::new_err(format!("line {line}: {e}")))?;
        Ok((n, outs(py, out)?))
    }
}

type FeatTuple = (f64, f64, f64, f64, f64, f64);

fn feat(f: micro::Features) -> FeatTuple {
    (f.obi, f.ti, f.spread_bps, f.micro_vol_bps, f.cancel_rate, f.mid)
}

fn state_of(s: &str) -> PyResult<sync::State> {
    match s {
        "LIVE" => Ok(sync::State::Live),
        "SYNCING" => Ok(sync::State::Syncing),
        "STALE" => Ok(sync::State::Stale),
        _ => Err(PyValueError::new_err(format!("state must be LIVE, SYNCING or STALE, got {s:?}"))),
    }
}

/// One capture for `L2Replay.run_group`: (book key, usdm, snapshot bids, asks, lastUpdateId,
/// raw depth lines, trade times ns, prices, sizes, buyer-aggressor flags).
type CaptureArg<'py> = (
    String,
    bool,
    Vec<Level>,
    Vec<Level>,
    u64,
    Bound<'py, PyBytes>,
    PyReadonlyArray1<'py, i64>,
    PyReadonlyArray1<'py, f64>,
    PyReadonlyArray1<'py, f64>,
    PyReadonlyArray1<'py, bool>,
);

/// The level tuples of a side's previous book, reused for equal (price, size) levels of the
/// next one (tuples are immutable, so sharing them is invisible; most diffs change a few of
/// the top levels, so this saves most of the allocations of a book's lists).
#[derive(Default)]
struct LevelCache(Vec<(u64, u64, Py<PyAny>)>);

impl LevelCache {
    fn list<'py>(&mut self, py: Python<'py>, levels: &[Level]) -> PyResult<Bound<'py, PyList>> {
        let mut next = Vec::with_capacity(levels.len());
        for &(p, q) in levels {
            let (pb, qb) = (p.to_bits(), q.to_bits());
            let obj = match self.0.iter().find(|c| c.0 == pb && c.1 == qb) {
                Some(c) => c.2.clone_ref(py),
                None => (p, q).into_pyobject(py)?.into_any().unbind(),
            };
            next.push((pb, qb, obj));
        }
        let list = PyList::new(py, next.iter().map(|c| c.2.bind(py)))?;
        self.0 = next;
        Ok(list)
    }
}

#[pyclass(module = "stevie_fastpath._native", name = "L2Replay")]
pub struct PyL2Replay {
    bank: l2::FeatureBank,
    sync: sync::Settings,
    running: Option<Running>,
}

#[pymethods]
impl PyL2Replay {
    #[new]
    #[pyo3(signature = (k = 5, window_ns = 5_000_000_000, top_k = 20, coalesce_ns = 100_000_000, buffer_size = 5000,
        guard = true, max_price_ratio = 400.0, size_spike_mult = 200.0, guard_depth = 20))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        k: usize,
        window_ns: i64,
        top_k: usize,
        coalesce_ns: i64,
        buffer_size: usize,
        guard: bool,
        max_price_ratio: f64,
        size_spike_mult: f64,
        guard_depth: usize,
    ) -> PyResult<Self> {
        if window_ns <= 0 {
            return Err(PyValueError::new_err("window_ns must be > 0"));
        }
        let limits = guard.then_some(sync::Limits { max_price_ratio, size_spike_mult });
        let sync = sync::Settings { top_k, coalesce_ns, buffer_size, limits, guard_depth };
        Ok(PyL2Replay { bank: l2::FeatureBank::new(k, window_ns), sync, running: None })
    }

    fn on_trade(&mut self, key: &str, price: f64, size: f64, is_buy: bool, ts_ns: i64) {
        self.bank.on_trade(key, price, size, is_buy, ts_ns);
    }

    fn on_status(&mut self, key: &str, state: &str) -> PyResult<()> {
        self.bank.on_status(key, state_of(state)?);
        Ok(())
    }

    fn on_book(&mut self, key: &str, state: &str, bids: Vec<Level>, asks: Vec<Level>, ts_ns: i64) -> PyResult<Option<FeatTuple>> {
        Ok(self.bank.on_book(key, state_of(state)?, &bids, &asks, ts_ns).map(feat))
    }

    /// Sync every capture (in parallel), merge, features: (diffs per capture, items in stream
    /// order as (capture index, published message tuple, vector tuple or None)).
    fn run_group<'py>(&mut self, py: Python<'py>, captures: Vec<CaptureArg<'py>>) -> PyResult<(Vec<usize>, OutPy<'py>)> {
        for c in &captures {
            let m = c.6.len();
            if c.7.len() != m || c.8.len() != m || c.9.len() != m {
                return Err(PyValueError::new_err(format!("capture {}: trade arrays must have one length", c.0)));
            }
        }
        let mut caps = Vec::with_capacity(captures.len());
        for c in &captures {
            caps.push(l2::Capture {
                key: c.0.clone(),
                sync: sync::BookSync::new(book::OrderBook::new(c.1, 8), self.sync),
                snapshot: (&c.2, &c.3, c.4),
                lines: c.5.as_bytes(),
                trades: l2::Trades { ts_ns: c.6.as_slice()?, price: c.7.as_slice()?, size: c.8.as_slice()?, is_buy: c.9.as_slice()? },
            });
        }
        let bank = &mut self.bank;
        let keys: Vec<String> = captures.iter().map(|c| c.0.clone()).collect();
        let (n, items) = py
            .detach(|| l2::run_group(bank, caps))
            .map_err(|(i, line, e)| PyValueError::new_err(format!("capture {}: line {line}: {e}", keys[i])))?;
        Ok((n, items_py(py, &keys, &mut Vec::new(), items)?))
    }

    /// `run_group` for every group (each a list of captures, as `run_group` takes them) on a
    /// background thread; `next_chunk` returns their items in order while the rest are
    /// computed. The data are copied, the kernels move to that thread until the last
    /// group is taken. ValueError when groups are already running or arrays disagree.
    fn start(&mut self, groups: Vec<Vec<CaptureArg<'_>>>) -> PyResult<()> {
        if self.running.is_some() {
            return Err(PyValueError::new_err("groups are already running: take them with next_chunk"));
        }
        let mut owned = Vec::with_capacity(groups.len());
        let mut keys = Vec::with_capacity(groups.len());
        for g in &groups {
            let mut caps = Vec::with_capacity(g.len());
            for c in g {
                let m = c.6.len();
                if c.7.len() != m || c.8.len() != m || c.9.len() != m {
                    return Err(PyValueError::new_err(format!("capture {}: trade arrays must have one length", c.0)));
                }
                caps.push(l2::OwnedCapture {
                    key: c.0.clone(),
                    usdm: c.1,
                    settings: self.sync,
                    bids: c.2.clone(),
                    asks: c.3.clone(),
                    last_update_id: c.4,
                    lines: c.5.as_bytes().to_vec(),
                    ts_ns: c.6.as_slice()?.to_vec(),
                    price: c.7.as_slice()?.to_vec(),
                    size: c.8.as_slice()?.to_vec(),
                    is_buy: c.9.as_slice()?.to_vec(),
                });
            }
            keys.push(g.iter().map(|c| c.0.clone()).collect::<Vec<_>>());
            owned.push(caps);
        }
        let fresh = l2::FeatureBank::new(self.bank.k, self.bank.window_ns);
        let bank = std::mem::replace(&mut self.bank, fresh);
        let (rx, handle) = l2::spawn_groups(bank, owned);
        keys.reverse();
        self.running = Some(Running { rx: std::sync::Mutex::new(rx), handle, keys, cache: Vec::new() });
        Ok(())
    }

    /// The next chunk of the started groups' items, in order: (True when it ends its group,
    /// [(capture index, message tuple, vector tuple or None)]); None once every group has
    /// ended (the kernels are then back here). Waits without the GIL. ValueError for a depth
    /// line that does not decode (the remaining groups are dropped).
    fn next_chunk<'py>(&mut self, py: Python<'py>) -> PyResult<Option<(bool, OutPy<'py>)>> {
        let Some(run) = self.running.as_mut() else {
            return Ok(None);
        };
        let rx = &run.rx;
        let ev = py
            .detach(|| rx.lock().map_err(|_| ()).and_then(|rx| rx.recv().map_err(|_| ())))
            .map_err(|()| PyValueError::new_err("the replay thread stopped"))?;
        let keys = run.keys.last().cloned().unwrap_or_default();
        match ev {
            l2::Event::Items(items) => Ok(Some((false, items_py(py, &keys, &mut run.cache, items)?))),
            l2::Event::GroupEnd(_) => {
                run.keys.pop();
                run.cache.clear();
                if run.keys.is_empty() {
                    let run = self.running.take().expect("running");
                    self.bank =
                        py.detach(|| run.handle.join()).map_err(|_| PyValueError::new_err("the replay thread panicked"))?;
                }
                Ok(Some((true, Vec::new())))
            }
            l2::Event::Failed((i, line, e)) => {
                self.running = None; // the thread has stopped; its kernels are dropped with it
                let key = keys.get(i).map_or("?", |k| k.as_str());
                Err(PyValueError::new_err(format!("capture {key}: line {line}: {e}")))
            }
        }
    }
}

/// A background replay started by `L2Replay.start`: its events, thread, each group's keys
/// (last group first) and the current group's level caches.
struct Running {
    rx: std::sync::Mutex<std::sync::mpsc::Receiver<l2::Event>>, // Mutex: a pyclass is Sync
    handle: std::thread::JoinHandle<l2::FeatureBank>,
    keys: Vec<Vec<String>>,
    cache: Vec<[LevelCache; 2]>,
}

/// Items as Python objects: [(capture index, message tuple, vector tuple or None)]. Book
/// levels are tuples shared with the capture's previous book where equal (`cache`, per
/// capture index, kept from chunk to chunk of a group).
fn items_py<'py>(
    py: Python<'py>,
    keys: &[String],
    cache: &mut Vec<[LevelCache; 2]>,
    items: Vec<l2::Item>,
) -> PyResult<OutPy<'py>> {
    if cache.len() < keys.len() {
        cache.resize_with(keys.len(), Default::default);
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, m, f) in items {
        let msg = match m {
            sync::Out::Book { state, seq, ts_ns, bids, asks } => {
                let [cb, ca] = &mut cache[i];
                let (b, a) = (cb.list(py, &bids)?, ca.list(py, &asks)?);
                ("book", state.as_str(), seq, ts_ns, b, a).into_pyobject(py)?.into_any()
            }
            status => outs(py, vec![status])?.pop().expect("one message"),
        };
        out.push((i, msg, f.map(feat)).into_pyobject(py)?.into_any());
    }
    Ok(out)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyOrderBook>()?;
    m.add_class::<PyMicroKernel>()?;
    m.add_class::<PyBookSync>()?;
    m.add_class::<PyL2Replay>()?;
    m.add_class::<PyMicroFeatures>()?;
    m.add_function(wrap_pyfunction!(batch_features, m)?)?;
    m.add("BACKEND", "native")?;
    Ok(())
}
