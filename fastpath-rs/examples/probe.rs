//! Profiling helper (not a test): `cargo run --release --example probe <depth_snapshot.json> <updates.jsonl>`
//! replays a capture through the bytes-in path, e.g. under `perf record`.
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
    }
}
