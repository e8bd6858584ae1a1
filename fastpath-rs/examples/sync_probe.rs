//! Profiling helper (not a test): `cargo run --release --example sync_probe <updates.jsonl>`
//! `<depth_snapshot.json> [usdm]` runs the book sync (decode, sort, guard, apply, coalesced top-k) over a
//! capture's raw lines; prints the best of 5 passes in ns per message.
use std::time::Instant;
use stevie_fastpath::book::OrderBook;
use stevie_fastpath::sync::{BookSync, Settings};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let buf = std::fs::read(&args[1]).expect("read the capture lines");
    let snap = std::fs::read_to_string(&args[2]).expect("read the snapshot");
    let usdm = args.get(3).is_some_and(|a| a == "usdm");
    let (bids, asks) = (levels(&snap, "bids"), levels(&snap, "asks"));
    let at = snap.find("\"lastUpdateId\":").expect("lastUpdateId") + 15;
    let last: u64 = snap[at..].split(|c: char| !c.is_ascii_digit()).next().and_then(|d| d.parse().ok()).expect("id");
    let n = buf.split(|&c| c == b'\n').filter(|l| !l.is_empty()).count();
    let mut best = f64::INFINITY;
    let mut published = 0;
    for _ in 0..5 {
        let mut s = BookSync::new(OrderBook::new(usdm, 8), Settings::default());
        let t = Instant::now();
        let (_, out) = s.replay_capture(&bids, &asks, last, &buf).expect("decodes");
        best = best.min(t.elapsed().as_secs_f64());
        published = out.len();
    }
    println!("{n} lines, {published} published, {:.0} ns/msg", best * 1e9 / n as f64);
}

/// `"key":[["p","q"],...]` of the snapshot as (price, size) (an ad-hoc extraction for the probe).
fn levels(v: &str, key: &str) -> Vec<(f64, f64)> {
    let start = v.find(&format!("\"{key}\":[[")).expect("levels") + key.len() + 4;
    let end = start + v[start..].find("]]").expect("end of levels");
    v[start..end]
        .split("],[")
        .map(|pair| {
            let mut it = pair.split(',').map(|s| s.trim_matches(|c| c == '"' || c == '[' || c == ']').parse::<f64>());
            (it.next().unwrap().unwrap(), it.next().unwrap().unwrap())
        })
        .collect()
}
