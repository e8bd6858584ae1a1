//! Profiling helper (not a test): `cargo run --release --example probe <depth_snapshot.json> <updates.jsonl>`
//! replays a capture through the bytes-in path (e.g. under `perf record`) and splits the time
//! into decode / apply / top-k, each the best of 15 passes.
use std::time::Instant;
use stevie_fastpath::book::OrderBook;
use stevie_fastpath::decode::{self, parse_qty, parse_units};
use stevie_fastpath::replay;

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

/// Best-of-15 nanoseconds per message of `f`, which gets a fresh snapshot book each pass.
fn best_ns(book: &OrderBook, n: usize, mut f: impl FnMut(&mut OrderBook)) -> f64 {
    (0..15)
        .map(|_| {
            let mut b = book.clone();
            let t = Instant::now();
            f(&mut b);
            t.elapsed().as_secs_f64() * 1e9 / n as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let snap = std::fs::read_to_string(&args[1]).unwrap();
    let last: u64 = {
        let i = snap.find("\"lastUpdateId\":").unwrap() + 15;
        snap[i..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    let data = std::fs::read(&args[2]).unwrap();
    let lines: Vec<&[u8]> = data.split(|&c| c == b'\n').filter(|l| !l.is_empty()).collect();
    let n = lines.len();
    let mut book = OrderBook::new(false, 8);
    book.apply_snapshot_units(levels(&snap, "bids"), levels(&snap, "asks"), last);

    let mut st = Default::default();
    let one = best_ns(&book, n, |b| st = replay::replay_lines(b, &data, 20));
    println!("{st:?}: replay {one:.0} ns/msg = {:.0} msg/s", 1e9 / one);
    let two = best_ns(&book, n, |b| st = replay::replay_lines_pipelined(b, &data, 20));
    println!("{st:?}: pipelined replay (2 threads) {two:.0} ns/msg = {:.0} msg/s", 1e9 / two);

    let mut scratch = decode::Scratch::default();
    let dec = best_ns(&book, n, |_| {
        for l in &lines {
            decode::decode_depth_json(l, 8, &mut scratch).unwrap();
        }
    });
    let decoded: Vec<_> = lines
        .iter()
        .map(|l| {
            let h = decode::decode_depth_json(l, 8, &mut scratch).unwrap();
            let (b, a) = scratch.levels();
            (h, b.to_vec(), a.to_vec())
        })
        .collect();
    let nlev: usize = decoded.iter().map(|d| d.1.len() + d.2.len()).sum();
    let apply = best_ns(&book, n, |b| {
        for (h, bids, asks) in &decoded {
            decode::apply_decoded(b, h, bids, asks);
        }
    });
    let mut after = book.clone();
    for (h, bids, asks) in &decoded {
        decode::apply_decoded(&mut after, h, bids, asks);
    }
    let (mut bb, mut aa) = (vec![(0.0, 0.0); 20], vec![(0.0, 0.0); 20]);
    let top = best_ns(&after, n, |b| {
        for _ in 0..n {
            b.top_k_into(20, &mut bb, &mut aa);
        }
    });
    println!(
        "decode {dec:.0} ns/msg ({:.1} ns/level), apply {apply:.0} ns/msg ({:.1} ns/level), top-20 {top:.0} ns/msg",
        dec / (nlev as f64 / n as f64),
        apply / (nlev as f64 / n as f64)
    );
}
