//! Rolling microstructure features over event time — the same definitions, window rule and
//! summation order as `stevie.quant.micro` (its Python twin), so results agree to the last
//! bit in practice and to 1e-9 by test.
//!
//! OBI = (B − A)/(B + A) over the top k levels; TI = (buy − sell)/(buy + sell) over the
//! window; spread_bps = (ask − bid)/mid·1e4; micro-vol = sqrt(Σ r²)·1e4 of log mid changes in
//! the window; cancel rate = visible size removed and not explained by trades at that price,
//! per second. The window is [t − window_ns, t].

use std::collections::VecDeque;

/// Why an update was rejected (the Python twin raises `QuantInputError` for both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MicroError {
    /// Event time went backwards.
    TimeWentBack,
    /// Non-positive mid or crossed / non-positive quote.
    InvalidQuote,
}

impl std::fmt::Display for MicroError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MicroError::TimeWentBack => "event time went backwards",
            MicroError::InvalidQuote => "invalid quote (non-positive or crossed)",
        })
    }
}

impl std::error::Error for MicroError {}

/// Features at one book update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Features {
    pub obi: f64,
    pub ti: f64,
    pub spread_bps: f64,
    pub micro_vol_bps: f64,
    pub cancel_rate: f64,
    pub mid: f64,
    pub ts_ns: i64,
}

#[derive(Debug, Clone)]
struct Window<T> {
    window_ns: i64,
    items: VecDeque<(i64, T)>,
}

impl<T> Window<T> {
    fn new(window_ns: i64) -> Self {
        Window { window_ns, items: VecDeque::new() }
    }

    fn add(&mut self, ts: i64, v: T) -> Result<(), MicroError> {
        if let Some((last, _)) = self.items.back() {
            if ts < *last {
                return Err(MicroError::TimeWentBack);
            }
        }
        self.items.push_back((ts, v));
        self.evict(ts);
        Ok(())
    }

    fn evict(&mut self, now: i64) {
        while let Some((t, _)) = self.items.front() {
            if *t < now - self.window_ns {
                self.items.pop_front();
            } else {
                break;
            }
        }
    }
}

/// Order-book imbalance over the top `k` levels (0 when both sides are empty).
pub fn obi(bids: &[(f64, f64)], asks: &[(f64, f64)], k: usize) -> f64 {
    let b: f64 = bids.iter().take(k).fold(0.0, |s, l| s + l.1);
    let a: f64 = asks.iter().take(k).fold(0.0, |s, l| s + l.1);
    if b + a <= 0.0 {
        0.0
    } else {
        (b - a) / (b + a)
    }
}

#[derive(Debug, Clone)]
pub struct MicroKernel {
    pub k: usize,
    window_ns: i64,
    trades: Window<(f64, f64)>,
    vol: Window<f64>,
    last_mid: Option<f64>,
    cancels: Window<f64>,
    prev: Option<crate::book::Levels>,
    traded: Vec<(f64, f64)>,
}

fn lookup(levels: &[(f64, f64)], price: f64) -> f64 {
    levels.iter().find(|l| l.0 == price).map_or(0.0, |l| l.1)
}

impl MicroKernel {
    pub fn new(k: usize, window_ns: i64) -> Self {
        MicroKernel {
            k,
            window_ns,
            trades: Window::new(window_ns),
            vol: Window::new(window_ns),
            last_mid: None,
            cancels: Window::new(window_ns),
            prev: None,
            traded: Vec::new(),
        }
    }

    pub fn window_ns(&self) -> i64 {
        self.window_ns
    }

    pub fn on_trade(&mut self, price: f64, size: f64, is_buy: bool, ts: i64) -> Result<(), MicroError> {
        let v = if is_buy { (size, 0.0) } else { (0.0, size) };
        self.trades.add(ts, v)?;
        match self.traded.iter_mut().find(|t| t.0 == price) {
            Some(t) => t.1 += size,
            None => self.traded.push((price, size)),
        }
        Ok(())
    }

    fn ti(&mut self, now: i64) -> f64 {
        self.trades.evict(now);
        let buy = self.trades.items.iter().fold(0.0, |s, (_, v)| s + v.0);
        let sell = self.trades.items.iter().fold(0.0, |s, (_, v)| s + v.1);
        if buy + sell <= 0.0 {
            0.0
        } else {
            (buy - sell) / (buy + sell)
        }
    }

    fn cancel_update(&mut self, bids: &[(f64, f64)], asks: &[(f64, f64)], ts: i64) -> Result<(), MicroError> {
        if let Some((pb, pa)) = &self.prev {
            if !bids.is_empty() && !asks.is_empty() {
                let lo = bids[bids.len() - 1].0;
                let hi = asks[asks.len() - 1].0;
                let mut removed = 0.0;
                for (prev_side, new_side) in [(pb, bids), (pa, asks)] {
                    for &(price, q) in prev_side.iter() {
                        if lo <= price && price <= hi {
                            let drop = q - lookup(new_side, price) - lookup(&self.traded, price);
                            removed += drop.max(0.0);
                        }
                    }
                }
                self.cancels.add(ts, removed)?;
            }
        }
        self.prev = Some((bids.to_vec(), asks.to_vec()));
        self.traded.clear();
        Ok(())
    }

    /// Update from a LIVE top-k book; None when a side is empty.
    pub fn on_book(&mut self, bids: &[(f64, f64)], asks: &[(f64, f64)], ts: i64) -> Result<Option<Features>, MicroError> {
        if bids.is_empty() || asks.is_empty() {
            return Ok(None);
        }
        let mid = 0.5 * (bids[0].0 + asks[0].0);
        if !(mid.is_finite() && mid > 0.0) {
            return Err(MicroError::InvalidQuote);
        }
        if let Some(last) = self.last_mid {
            let r = (mid / last).ln();
            self.vol.add(ts, r * r)?;
        }
        self.last_mid = Some(mid);
        self.cancel_update(bids, asks, ts)?;
        self.vol.evict(ts);
        let micro_vol = self.vol.items.iter().fold(0.0, |s, (_, v)| s + v).sqrt() * 1e4;
        self.cancels.evict(ts);
        let cancel = self.cancels.items.iter().fold(0.0, |s, (_, v)| s + v) / (self.window_ns as f64 / 1e9);
        let (bb, ba) = (bids[0].0, asks[0].0);
        let ti = self.ti(ts);
        if !(bb > 0.0 && ba > 0.0) || ba < bb {
            return Err(MicroError::InvalidQuote);
        }
        Ok(Some(Features {
            obi: obi(bids, asks, self.k),
            ti,
            spread_bps: (ba - bb) / (0.5 * (bb + ba)) * 1e4,
            micro_vol_bps: micro_vol,
            cancel_rate: cancel,
            mid,
            ts_ns: ts,
        }))
    }

    pub fn reset(&mut self) {
        *self = MicroKernel::new(self.k, self.window_ns);
    }
}

/// Batch features over recorded events: books (n, k) arrays with NaN padding for missing
/// levels, trades (m,). Trades at the same timestamp as a book are applied before it.
/// Returns n rows of [obi, ti, spread_bps, micro_vol_bps, cancel_rate, mid] (NaN rows for a
/// book with an empty side).
#[allow(clippy::too_many_arguments)]
pub fn batch(
    k: usize,
    window_ns: i64,
    book_ts: &[i64],
    bid_px: &[f64],
    bid_sz: &[f64],
    ask_px: &[f64],
    ask_sz: &[f64],
    levels: usize,
    trade_ts: &[i64],
    trade_px: &[f64],
    trade_sz: &[f64],
    trade_buy: &[bool],
) -> Result<Vec<[f64; 6]>, MicroError> {
    let mut kern = MicroKernel::new(k, window_ns);
    let mut out = Vec::with_capacity(book_ts.len());
    let mut j = 0;
    let mut bids = Vec::with_capacity(levels);
    let mut asks = Vec::with_capacity(levels);
    for (i, &ts) in book_ts.iter().enumerate() {
        while j < trade_ts.len() && trade_ts[j] <= ts {
            kern.on_trade(trade_px[j], trade_sz[j], trade_buy[j], trade_ts[j])?;
            j += 1;
        }
        bids.clear();
        asks.clear();
        for l in 0..levels {
            let (bp, bs, ap, asz) = (bid_px[i * levels + l], bid_sz[i * levels + l], ask_px[i * levels + l], ask_sz[i * levels + l]);
            if !bp.is_nan() {
                bids.push((bp, bs));
            }
            if !ap.is_nan() {
                asks.push((ap, asz));
            }
        }
        out.push(match kern.on_book(&bids, &asks, ts)? {
            Some(f) => [f.obi, f.ti, f.spread_bps, f.micro_vol_bps, f.cancel_rate, f.mid],
            None => [f64::NAN; 6],
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    const S: i64 = 1_000_000_000;

    #[test]
    fn hand_computed_values() {
        assert!((obi(&[(100.0, 3.0), (99.0, 1.0)], &[(101.0, 1.0), (102.0, 1.0)], 2) - 2.0 / 6.0).abs() < 1e-15);
        let mut k = MicroKernel::new(1, 5 * S);
        k.on_book(&[(100.0, 1.0)], &[(100.1, 3.0)], S).unwrap();
        k.on_trade(100.1, 1.0, true, 2 * S).unwrap();
        k.on_trade(100.1, 3.0, false, 2 * S).unwrap();
        let f = k.on_book(&[(100.0, 1.0)], &[(100.1, 1.0)], 3 * S).unwrap().unwrap();
        assert_eq!(f.obi, 0.0);
        assert!((f.ti + 0.5).abs() < 1e-15);
        // ask 100.1 went 3 → 1 with 4 traded there: fully explained, no cancel
        assert_eq!(f.cancel_rate, 0.0);
        assert!(k.on_trade(1.0, 1.0, true, S).is_err());
    }

    #[test]
    fn cancel_rate_excludes_traded_size() {
        let mut k = MicroKernel::new(5, S);
        k.on_book(&[(100.0, 5.0), (99.0, 2.0)], &[(101.0, 4.0), (102.0, 1.0)], 0).unwrap();
        k.on_trade(101.0, 1.0, true, 1).unwrap();
        let f = k.on_book(&[(100.0, 4.0), (99.0, 2.0)], &[(101.0, 1.0), (102.0, 1.0)], S / 2).unwrap().unwrap();
        assert!((f.cancel_rate - 3.0).abs() < 1e-12);
    }

    #[test]
    fn batch_equals_incremental() {
        let ts = [S, 2 * S, 3 * S];
        let nan = f64::NAN;
        let bp = [100.0, 99.0, 100.5, 99.0, 100.0, nan];
        let bs = [1.0, 2.0, 1.0, 2.0, 3.0, nan];
        let ap = [101.0, 102.0, 101.0, 102.0, 101.0, 102.0];
        let az = [1.0, 1.0, 2.0, 1.0, 1.0, 1.0];
        let out = batch(2, 5 * S, &ts, &bp, &bs, &ap, &az, 2, &[2 * S], &[101.0], &[0.5], &[true]).unwrap();
        let mut k = MicroKernel::new(2, 5 * S);
        let a = k.on_book(&[(100.0, 1.0), (99.0, 2.0)], &[(101.0, 1.0), (102.0, 1.0)], S).unwrap().unwrap();
        k.on_trade(101.0, 0.5, true, 2 * S).unwrap();
        let b = k.on_book(&[(100.5, 1.0), (99.0, 2.0)], &[(101.0, 2.0), (102.0, 1.0)], 2 * S).unwrap().unwrap();
        let c = k.on_book(&[(100.0, 3.0)], &[(101.0, 1.0), (102.0, 1.0)], 3 * S).unwrap().unwrap();
        for (row, f) in out.iter().zip([a, b, c]) {
            assert_eq!(row, &[f.obi, f.ti, f.spread_bps, f.micro_vol_bps, f.cancel_rate, f.mid]);
        }
    }
}
