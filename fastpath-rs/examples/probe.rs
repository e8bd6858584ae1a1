//! Profiling helper (not a test): `cargo run --release --example probe <depth_snapshot.json> <updates.jsonl>`
//! replays a capture through the bytes-in path, e.g. under `perf record`, and splits the time
//! into decode / apply / top-k; with a third argument it times the decoder alone.
use std::io::Read;
use std::time::Instant;
use stevie_fastpath::book::OrderBook;
use stevie_fastpath::decode::{self, parse_qty, parse_units};

fn levels(v: &str, key: &str) -> Vec<(i64, f64)> {
    // tiny ad-hoc extraction for the probe: "key":[["p","q"],...]
    let start = v.find(&format!("\"{key}\":[[")).unwrap() + key.len() + 4;
    let end = start + v[start..].find("]]").unwrap();
    v[start..end]
        .split("],[")
        .map(|pair| {
            let mut it = pair.split(',').map(|s| s.trim_matches(|c| c == '"' || c == '[' || c == ']'));
            (parse_units(it.next().unwrap().as_bytes(), 8).unwrap(), parse_qty(it.next().unwrap().as_bytes()).unwrap())
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() > 3 {
        let data = std::fs::read(&args[2]).unwrap();
        let lines: Vec<&[u8]> = data.split(|&c| c == b'\n').filter(|l| !l.is_empty()).collect();
        let mut scratch = decode::Scratch::default();
        let t0 = Instant::now();
        for _ in 0..50 {
            for l in &lines {
                decode::decode_depth_json(l, 8, &mut scratch).unwrap();
            }
        }
        println!("decode only {:.0} ns/msg", t0.elapsed().as_secs_f64() / lines.len() as f64 / 50.0 * 1e9);
        return;
    }
    let snap = std::fs::read_to_string(&args[1]).unwrap();
    let last: u64 = {
        let i = snap.find("\"lastUpdateId\":").unwrap() + 15;
        snap[i..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    let mut data = Vec::new();
    std::fs::File::open(&args[2]).unwrap().read_to_end(&mut data).unwrap();
    let n = data.split(|&c| c == b'\n').filter(|l| !l.is_empty()).count();
    for _ in 0..5 {
        let mut book = OrderBook::new(false, 8);
        book.apply_snapshot_units(levels(&snap, "bids"), levels(&snap, "asks"), last);
        let t = Instant::now();
        let st = decode::replay_lines(&mut book, &data, 20);
        let dt = t.elapsed().as_secs_f64();
        println!("{:?} {:.0} msg/s levels={}+{}", st, n as f64 / dt, book.bids.len(), book.asks.len());
        split(levels(&snap, "bids"), levels(&snap, "asks"), last, &data);
    }
}

/// Split timing: decode only, then apply only (pre-decoded), then top-k only.
pub fn split(snap_b: Vec<(i64, f64)>, snap_a: Vec<(i64, f64)>, last: u64, data: &[u8]) {
    let lines: Vec<&[u8]> = data.split(|&c| c == b'\n').filter(|l| !l.is_empty()).collect();
    let mut scratch = decode::Scratch::default();
    let t0 = Instant::now();
    let mut nlev = 0;
    for l in &lines {
        decode::decode_depth_json(l, 8, &mut scratch).unwrap();
        nlev += scratch.levels().0.len() + scratch.levels().1.len();
    }
    println!("decode only {:.0} ns/msg ({} levels)", t0.elapsed().as_secs_f64() / lines.len() as f64 * 1e9, nlev);
    let t = Instant::now();
    let mut decoded = Vec::new();
    for l in &lines {
        let h = decode::decode_depth_json(l, 8, &mut scratch).unwrap();
        let (b, a) = scratch.levels();
        decoded.push((h, b.to_vec(), a.to_vec()));
    }
    let dt = t.elapsed().as_secs_f64();
    let mut book = OrderBook::new(false, 8);
    book.apply_snapshot_units(snap_b, snap_a, last);
    let t2 = Instant::now();
    for (h, b, a) in &decoded {
        decode::apply_decoded(&mut book, h, b, a);
    }
    let dt2 = t2.elapsed().as_secs_f64();
    let mut bb = vec![(0.0, 0.0); 20];
    let mut aa = vec![(0.0, 0.0); 20];
    let t3 = Instant::now();
    for _ in &decoded {
        book.top_k_into(20, &mut bb, &mut aa);
    }
    let dt3 = t3.elapsed().as_secs_f64();
    let n = lines.len() as f64;
    println!("decode {:.0} ns/msg, apply {:.0} ns/msg, top-k {:.0} ns/msg", dt / n * 1e9, dt2 / n * 1e9, dt3 / n * 1e9);
}
