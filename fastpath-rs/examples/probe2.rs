use std::time::Instant;
use stevie_fastpath::decode::{parse_qty, parse_units};
fn main() {
    let data = std::fs::read_to_string(std::env::args().nth(1).unwrap()).unwrap();
    let mut strs: Vec<(String, String)> = Vec::new();
    for line in data.lines() {
        for side in ["\"b\": [", "\"a\": ["] {
            if let Some(i) = line.find(side) {
                let rest = &line[i + side.len()..];
                let end = rest.find("]]").map(|e| e + 1).unwrap_or(0);
                for pair in rest[..end].split("], [") {
                    let p: Vec<&str> = pair.split(", ").map(|s| s.trim_matches(|c| c == '"' || c == '[' || c == ']')).collect();
                    if p.len() == 2 { strs.push((p[0].to_string(), p[1].to_string())); }
                }
            }
        }
    }
    let t = Instant::now();
    let mut acc = 0.0;
    for _ in 0..10 { for (p, q) in &strs { acc += parse_units(p.as_bytes(), 8).unwrap() as f64 + parse_qty(q.as_bytes()).unwrap(); } }
    let dt = t.elapsed().as_secs_f64();
    println!("{} levels, {:.1} ns/level ({acc})", strs.len(), dt * 1e9 / (10.0 * strs.len() as f64));
}
