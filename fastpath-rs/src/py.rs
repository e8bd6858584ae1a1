//! PyO3 layer: converts types, releases the GIL around batch work, maps errors to
//! `ValueError`. No logic lives here.

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

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

/// Published messages as tuples (`out_py`).
fn outs<'py>(py: Python<'py>, v: Vec<sync::Out>) -> PyResult<OutPy<'py>> {
    v.iter().map(|o| out_py(py, o)).collect()
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

/// Raw depth lines borrowed from an immutable Python `bytes` for the replay thread: the
/// owning `Running` keeps the object alive and joins the thread before letting it go (its
/// `Drop`), so the slice outlives every read; `bytes` cannot change after creation.
struct BorrowedBytes {
    ptr: *const u8,
    len: usize,
}

// SAFETY: the buffer is immutable and outlives the thread (see `BorrowedBytes`, `Running`).
unsafe impl Send for BorrowedBytes {}

impl AsRef<[u8]> for BorrowedBytes {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: ptr/len come from a live `bytes` object kept alive by `Running`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// A chunk of a capture group's items (stream order), kept in Rust: `columns` gives every
/// item's capture index, kind, event time and feature vector as arrays; `message(i)` builds
/// one item's published message as a tuple, only for the items the caller reads.
#[pyclass(module = "stevie_fastpath._native", name = "L2Chunk", frozen)]
pub struct PyL2Chunk {
    items: Vec<l2::Item>,
}

type Columns<'py> =
    (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<bool>>, Bound<'py, PyArray1<bool>>, Bound<'py, PyArray1<i64>>, Bound<'py, PyArray2<f64>>);

#[pymethods]
impl PyL2Chunk {
    fn __len__(&self) -> usize {
        self.items.len()
    }

    /// (capture index, is a book, has a feature vector, event time ns, vectors (n, 6): obi,
    /// ti, spread_bps, micro_vol_bps, cancel_rate, mid; NaN rows where there is none).
    fn columns<'py>(&self, py: Python<'py>) -> Columns<'py> {
        let n = self.items.len();
        let (mut cap, mut book, mut has) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let mut ts = Vec::with_capacity(n);
        let mut fv = Array2::from_elem((n, 6), f64::NAN);
        for (r, (i, m, f)) in self.items.iter().enumerate() {
            cap.push(*i as i64);
            book.push(matches!(m, sync::Out::Book { .. }));
            has.push(f.is_some());
            ts.push(match m {
                sync::Out::Book { ts_ns, .. } | sync::Out::Status { ts_ns, .. } => *ts_ns,
            });
            if let Some(f) = f {
                let v = feat(*f);
                for (j, x) in [v.0, v.1, v.2, v.3, v.4, v.5].into_iter().enumerate() {
                    fv[(r, j)] = x;
                }
            }
        }
        (cap.into_pyarray(py), book.into_pyarray(py), has.into_pyarray(py), ts.into_pyarray(py), fv.into_pyarray(py))
    }

    /// Item `i`'s published message tuple (as `BookSync.on_diff` gives it). IndexError when out of range.
    fn message<'py>(&self, py: Python<'py>, i: usize) -> PyResult<Bound<'py, PyAny>> {
        let (_, m, _) = self.items.get(i).ok_or_else(|| PyIndexError::new_err(format!("item {i} of {}", self.items.len())))?;
        out_py(py, m)
    }

    /// Every item as (capture index, message tuple, vector tuple or None).
    fn items<'py>(&self, py: Python<'py>) -> PyResult<OutPy<'py>> {
        self.items.iter().map(|(i, m, f)| (*i, out_py(py, m)?, f.map(feat)).into_pyobject(py).map(|t| t.into_any())).collect()
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

    /// Sync every capture (in parallel), merge, features: (diffs per capture, the items in
    /// stream order as one `L2Chunk`).
    fn run_group<'py>(&mut self, py: Python<'py>, captures: Vec<CaptureArg<'py>>) -> PyResult<(Vec<usize>, PyL2Chunk)> {
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
        Ok((n, PyL2Chunk { items }))
    }

    /// `run_group` for every group (each a list of captures, as `run_group` takes them) on a
    /// background thread; `next_chunk` returns their items in order while the rest are
    /// computed. The depth lines are borrowed (the `bytes` objects are kept alive until the
    /// thread has ended), the snapshots and trades copied; the kernels move to that thread
    /// until the last group is taken. ValueError when groups are already running or arrays disagree.
    fn start(&mut self, groups: Vec<Vec<CaptureArg<'_>>>) -> PyResult<()> {
        if self.running.is_some() {
            return Err(PyValueError::new_err("groups are already running: take them with next_chunk"));
        }
        let mut owned = Vec::with_capacity(groups.len());
        let mut keys = Vec::with_capacity(groups.len());
        let mut held = Vec::new();
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
                    lines: BorrowedBytes { ptr: c.5.as_bytes().as_ptr(), len: c.5.as_bytes().len() },
                    ts_ns: c.6.as_slice()?.to_vec(),
                    price: c.7.as_slice()?.to_vec(),
                    size: c.8.as_slice()?.to_vec(),
                    is_buy: c.9.as_slice()?.to_vec(),
                });
            }
            held.extend(g.iter().map(|c| c.5.clone().unbind()));
            keys.push(g.iter().map(|c| c.0.clone()).collect::<Vec<_>>());
            owned.push(caps);
        }
        let fresh = l2::FeatureBank::new(self.bank.k, self.bank.window_ns);
        let bank = std::mem::replace(&mut self.bank, fresh);
        let (rx, handle) = l2::spawn_groups(bank, owned);
        keys.reverse();
        self.running = Some(Running { rx: std::sync::Mutex::new(Some(rx)), handle: Some(handle), keys, _lines: held });
        Ok(())
    }

    /// The next chunk of the started groups' items, in order: (True when it ends its group —
    /// then with no items —, the items as an `L2Chunk`); None once every group has
    /// ended (the kernels are then back here). Waits without the GIL. ValueError for a depth
    /// line that does not decode (the remaining groups are dropped).
    fn next_chunk(&mut self, py: Python<'_>) -> PyResult<Option<(bool, PyL2Chunk)>> {
        let Some(run) = self.running.as_mut() else {
            return Ok(None);
        };
        let rx = &run.rx;
        let ev = py
            .detach(|| rx.lock().map_err(|_| ()).and_then(|rx| rx.as_ref().ok_or(())?.recv().map_err(|_| ())))
            .map_err(|()| PyValueError::new_err("the replay thread stopped"))?;
        let keys = run.keys.last().cloned().unwrap_or_default();
        match ev {
            l2::Event::Items(items) => Ok(Some((false, PyL2Chunk { items }))),
            l2::Event::GroupEnd(_) => {
                run.keys.pop();
                if run.keys.is_empty() {
                    let mut run = self.running.take().expect("running");
                    let handle = run.handle.take().expect("joined once");
                    self.bank = py.detach(|| handle.join()).map_err(|_| PyValueError::new_err("the replay thread panicked"))?;
                }
                Ok(Some((true, PyL2Chunk { items: Vec::new() })))
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
/// (last group first) and the `bytes` whose buffers the thread reads (released only after
/// the thread has ended: `Drop` closes the channel, so the thread stops at its next chunk,
/// and joins it).
struct Running {
    rx: std::sync::Mutex<Option<std::sync::mpsc::Receiver<l2::Event>>>, // Mutex: a pyclass is Sync
    handle: Option<std::thread::JoinHandle<l2::FeatureBank>>,
    keys: Vec<Vec<String>>,
    _lines: Vec<Py<PyBytes>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(rx) = self.rx.get_mut() {
            rx.take();
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A published message as a tuple: ("book", state, seq, ts_event_ns, bids, asks) or
/// ("status", state, seq, ts_event_ns, reason, resyncs).
fn out_py<'py>(py: Python<'py>, o: &sync::Out) -> PyResult<Bound<'py, PyAny>> {
    Ok(match o {
        sync::Out::Book { state, seq, ts_ns, bids, asks } => {
            ("book", state.as_str(), *seq, *ts_ns, bids, asks).into_pyobject(py)?.into_any()
        }
        sync::Out::Status { state, reason, seq, resyncs, ts_ns } => {
            ("status", state.as_str(), *seq, *ts_ns, reason, *resyncs).into_pyobject(py)?.into_any()
        }
    })
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyOrderBook>()?;
    m.add_class::<PyMicroKernel>()?;
    m.add_class::<PyBookSync>()?;
    m.add_class::<PyL2Replay>()?;
    m.add_class::<PyL2Chunk>()?;
    m.add_class::<PyMicroFeatures>()?;
    m.add_function(wrap_pyfunction!(batch_features, m)?)?;
    m.add("BACKEND", "native")?;
    Ok(())
}
