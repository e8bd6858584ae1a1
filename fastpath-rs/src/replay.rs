//! Replay of newline-separated raw `depthUpdate` messages (a recorded capture) into a book,
//! with the top `k` levels computed after every applied message — the work a book maintainer
//! publishing books does. One thread, or two: one decodes while the other applies (decoding
//! does not depend on the book, so the result is the same; a test checks it).

use crate::book::{OrderBook, Verdict};
use crate::decode::{apply_decoded, decode_depth_json, skip_ws, DepthHeader, Scratch};
use std::sync::mpsc;

/// Counts of a replay.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayStats {
    pub ok: u64,
    pub stale: u64,
    pub gap: u64,
    pub errors: u64,
}

impl ReplayStats {
    fn count(&mut self, v: Verdict) {
        match v {
            Verdict::Ok => self.ok += 1,
            Verdict::Stale => self.stale += 1,
            Verdict::Gap => self.gap += 1,
        }
    }
}

/// The non-blank lines of `buf`. Each step hints the CPU to load the next line (about as long
/// as this one) without keeping it in the outer caches, where the book lives.
fn lines(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    std::iter::from_fn(move || {
        while start < buf.len() {
            let end = memchr::memchr(b'\n', &buf[start..]).map_or(buf.len(), |o| start + o);
            let line = &buf[start..end];
            start = end + 1;
            prefetch(buf, start, line.len());
            if skip_ws(line, 0) < line.len() {
                return Some(line);
            }
        }
        None
    })
}

#[inline(always)]
fn prefetch(buf: &[u8], at: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_NTA};
        for p in (at..buf.len().min(at + len)).step_by(64) {
            // SAFETY: a prefetch of an address inside `buf` (p < buf.len()) reads nothing.
            unsafe { _mm_prefetch::<_MM_HINT_NTA>(buf.as_ptr().add(p) as *const i8) };
        }
    }
}

/// Replay every message of `buf` in order on one thread; a message that does not decode is
/// counted in `errors` and leaves the book unchanged. Messages are decoded `ONE_THREAD_BATCH`
/// at a time, then applied: the applier never waits on stores the decoder just made.
pub fn replay_lines(book: &mut OrderBook, buf: &[u8], k: usize) -> ReplayStats {
    let mut applier = Applier::new(k);
    let (mut scratch, mut batch) = (Scratch::default(), Batch::default());
    let mut lines = lines(buf);
    while batch.fill(&mut lines, book.decimals, &mut scratch, ONE_THREAD_BATCH) {
        applier.apply(book, &mut batch);
    }
    applier.st
}

/// Messages per batch: decoded then applied on one thread, or handed from the decoding
/// thread to the applying one.
const ONE_THREAD_BATCH: usize = 256;
const TWO_THREAD_BATCH: usize = 128;

/// Decoded messages: per message its header (None: did not decode) and how many bid and ask
/// levels it put in `levels`.
#[derive(Default)]
struct Batch {
    msgs: Vec<(Option<DepthHeader>, u32, u32)>,
    levels: Vec<(i64, f64)>,
}

impl Batch {
    /// Decode up to `n` more lines into the (empty) batch; false when there were none.
    fn fill<'a>(
        &mut self,
        lines: &mut impl Iterator<Item = &'a [u8]>,
        decimals: u32,
        scratch: &mut Scratch,
        n: usize,
    ) -> bool {
        for line in lines.take(n) {
            let h = decode_depth_json(line, decimals, scratch).ok();
            let (b, a) = if h.is_some() { scratch.levels() } else { (&[][..], &[][..]) };
            self.msgs.push((h, b.len() as u32, a.len() as u32));
            self.levels.extend_from_slice(b);
            self.levels.extend_from_slice(a);
        }
        !self.msgs.is_empty()
    }
}

/// Applies decoded batches in order, top-k after every applied message, and counts.
struct Applier {
    st: ReplayStats,
    k: usize,
    bids: Vec<(f64, f64)>,
    asks: Vec<(f64, f64)>,
}

impl Applier {
    fn new(k: usize) -> Self {
        Applier { st: ReplayStats::default(), k, bids: vec![(0.0, 0.0); k], asks: vec![(0.0, 0.0); k] }
    }

    /// Apply every message of `batch`, leaving it empty.
    fn apply(&mut self, book: &mut OrderBook, batch: &mut Batch) {
        let mut at = 0;
        for &(h, nb, na) in &batch.msgs {
            let Some(h) = h else {
                self.st.errors += 1;
                continue;
            };
            let (nb, na) = (nb as usize, na as usize);
            let v = apply_decoded(book, &h, &batch.levels[at..at + nb], &batch.levels[at + nb..at + nb + na]);
            at += nb + na;
            self.st.count(v);
            if v == Verdict::Ok {
                book.top_k_into(self.k, &mut self.bids, &mut self.asks);
            }
        }
        batch.msgs.clear();
        batch.levels.clear();
    }
}

/// As `replay_lines`, with the decoding on a second thread, `TWO_THREAD_BATCH` messages at a
/// time (batches are recycled, so the steady state allocates nothing). Same book, same counts.
pub fn replay_lines_pipelined(book: &mut OrderBook, buf: &[u8], k: usize) -> ReplayStats {
    let decimals = book.decimals;
    let (full_tx, full_rx) = mpsc::sync_channel::<Batch>(4);
    let (free_tx, free_rx) = mpsc::channel::<Batch>();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut scratch = Scratch::default();
            let mut lines = lines(buf);
            loop {
                let mut batch = free_rx.try_recv().unwrap_or_default();
                if !batch.fill(&mut lines, decimals, &mut scratch, TWO_THREAD_BATCH) || full_tx.send(batch).is_err() {
                    return;
                }
            }
        });
        let mut applier = Applier::new(k);
        for mut batch in full_rx {
            applier.apply(book, &mut batch);
            let _ = free_tx.send(batch);
        }
        applier.st
    })
}
