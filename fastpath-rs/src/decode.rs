//! Zero-copy decoder for Binance `depthUpdate` JSON (raw or inside a combined-stream
//! envelope `{"stream": ..., "data": {...}}`), applying levels straight into the book.
//!
//! Prices become integer units exactly (decimal digits, no float on the way); quantities use
//! the exact fast path m / 10^f when the mantissa fits 53 bits (a correctly rounded
//! quotient of two exact doubles, i.e. the same double as parsing the decimal), else the
//! standard library parser. Message format: Binance WebSocket Market Streams, "Diff. Depth
//! Stream" (spot: e, E, s, U, u, b, a; USD-M adds T and pu).

use crate::book::{OrderBook, Verdict};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad depthUpdate: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Header of one depthUpdate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DepthHeader {
    pub event_ms: u64,
    pub first: u64,
    pub last: u64,
    pub prev: Option<u64>,
    /// The recorder's sequence number (`seq`, 0 when absent): a capture's replay order is
    /// (event time, seq).
    pub seq: u64,
}

const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
    1e20, 1e21, 1e22,
];

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\n' | b'\r' | b'\t') {
            self.i += 1;
        }
    }

    #[inline]
    fn peek(&mut self) -> Result<u8, DecodeError> {
        self.ws();
        self.b.get(self.i).copied().ok_or(DecodeError("unexpected end"))
    }

    #[inline]
    fn expect(&mut self, c: u8) -> Result<(), DecodeError> {
        if self.peek()? != c {
            return Err(DecodeError("unexpected character"));
        }
        self.i += 1;
        Ok(())
    }

    /// A string's raw bytes (escapes are skipped over, not decoded: Binance's fields have none).
    #[inline]
    fn string(&mut self) -> Result<&'a [u8], DecodeError> {
        self.expect(b'"')?;
        let start = self.i;
        // keys and symbols are short: look at them byte by byte before searching
        let short = self.b.len().min(start + 16);
        while self.i < short {
            match self.b[self.i] {
                b'"' => {
                    self.i += 1;
                    return Ok(&self.b[start..self.i - 1]);
                }
                b'\\' => break,
                _ => self.i += 1,
            }
        }
        loop {
            let Some(off) = memchr::memchr2(b'"', b'\\', &self.b[self.i..]) else {
                return Err(DecodeError("unterminated string"));
            };
            self.i += off;
            if self.b[self.i] == b'\\' {
                self.i += 2;
                continue;
            }
            let s = &self.b[start..self.i];
            self.i += 1;
            return Ok(s);
        }
    }

    /// An object key and its ':'. Binance's keys are mostly one letter: `"E":` is one
    /// 4-byte compare.
    #[inline]
    fn key(&mut self) -> Result<&'a [u8], DecodeError> {
        self.ws();
        if let Some(w) = self.b.get(self.i..self.i + 4) {
            if w[0] == b'"' && w[2] == b'"' && w[3] == b':' && !matches!(w[1], b'"' | b'\\') {
                self.i += 4;
                return Ok(&self.b[self.i - 3..self.i - 2]);
            }
        }
        let key = self.string()?;
        self.expect(b':')?;
        Ok(key)
    }

    /// An unsigned integer of at most 19 digits (ids, timestamps), 8 digits at a time.
    #[inline]
    fn uint(&mut self) -> Result<u64, DecodeError> {
        self.ws();
        let start = self.i;
        let mut v: u64 = 0;
        while self.i + 8 <= self.b.len() && self.i - start < 16 {
            let chunk = load8(self.b, self.i);
            if !all_digits(chunk) {
                break;
            }
            v = v * 100_000_000 + parse8(chunk);
            self.i += 8;
        }
        while self.i < self.b.len() && self.b[self.i].is_ascii_digit() && self.i - start < 19 {
            v = v * 10 + (self.b[self.i] - b'0') as u64;
            self.i += 1;
        }
        if self.i == start {
            return Err(DecodeError("expected an unsigned integer"));
        }
        if self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            return Err(DecodeError("integer overflow"));
        }
        Ok(v)
    }

    /// Skip any JSON value.
    fn skip(&mut self) -> Result<(), DecodeError> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => {
                let mut depth = 0usize;
                while self.i < self.b.len() {
                    match self.b[self.i] {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Ok(());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
                Err(DecodeError("unterminated container"))
            }
            _ => {
                while self.i + 8 <= self.b.len() && all_digits(load8(self.b, self.i)) {
                    self.i += 8; // long numbers (timestamps) 8 digits at a time
                }
                while self.i < self.b.len() && !matches!(self.b[self.i], b',' | b'}' | b']') {
                    self.i += 1;
                }
                Ok(())
            }
        }
    }
}

const POW10_I64: [i64; 19] = [
    1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000, 10_000_000_000,
    100_000_000_000, 1_000_000_000_000, 10_000_000_000_000, 100_000_000_000_000, 1_000_000_000_000_000,
    10_000_000_000_000_000, 100_000_000_000_000_000, 1_000_000_000_000_000_000,
];

/// General decimal → f64: Clinger's fast path (m / 10^f is exact-over-exact when m has at
/// most 15 significant digits and f ≤ 22), else the standard parser.
fn qty_general(s: &[u8]) -> Result<f64, DecodeError> {
    let n = s.len();
    let mut m: u64 = 0;
    let mut sig = 0u32;
    let mut i = 0;
    let mut f: usize = 0;
    let mut seen_dot = false;
    let mut any = false;
    while i < n {
        let c = s[i];
        if c == b'.' && !seen_dot {
            seen_dot = true;
        } else {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return Err(DecodeError("bad quantity"));
            }
            any = true;
            if m != 0 || d != 0 {
                sig += 1;
            }
            m = m.wrapping_mul(10).wrapping_add(d as u64);
            if seen_dot {
                f += 1;
            }
        }
        i += 1;
    }
    if !any {
        return Err(DecodeError("bad quantity"));
    }
    if sig <= 15 && f < POW10.len() {
        return Ok(m as f64 / POW10[f]);
    }
    std::str::from_utf8(s).ok().and_then(|t| t.parse::<f64>().ok()).ok_or(DecodeError("bad quantity"))
}

/// True when the 8 bytes of `chunk` (little-endian) are all ASCII digits.
#[inline(always)]
fn all_digits(chunk: u64) -> bool {
    (chunk & 0xF0F0_F0F0_F0F0_F0F0) | (((chunk.wrapping_add(0x0606_0606_0606_0606)) & 0xF0F0_F0F0_F0F0_F0F0) >> 4)
        == 0x3333_3333_3333_3333
}

/// Value of 8 ASCII digits packed little-endian (SWAR; Lemire, "Fast integer parsing").
#[inline(always)]
fn parse8(chunk: u64) -> u64 {
    let mut v = chunk - 0x3030_3030_3030_3030;
    v = (v * 10) + (v >> 8);
    (((v & 0x0000_00FF_0000_00FF).wrapping_mul(100 + (1_000_000 << 32)))
        .wrapping_add(((v >> 16) & 0x0000_00FF_0000_00FF).wrapping_mul(1 + (10_000 << 32))))
        >> 32
}

/// Index of the closing quote at or after `i`.
#[inline(always)]
fn close_quote(b: &[u8], i: usize) -> Result<usize, DecodeError> {
    // level strings are short: test 8 bytes at a time for a '"' (SWAR zero-byte trick)
    let mut j = i;
    while j + 8 <= b.len() {
        let z = bytes_eq(load8(b, j), b'"');
        if z != 0 {
            return Ok(j + (z.trailing_zeros() / 8) as usize);
        }
        j += 8;
    }
    while j < b.len() {
        if b[j] == b'"' {
            return Ok(j);
        }
        j += 1;
    }
    Err(DecodeError("unterminated string"))
}

/// Split a decimal `d[.f]` body into (integer digits value, fraction slice). Integer part:
/// at most 18 digits.
#[inline(always)]
fn int_part(s: &[u8]) -> Result<(u64, &[u8]), DecodeError> {
    let mut v: u64 = 0;
    let mut i = 0;
    while i < s.len() && s[i] != b'.' {
        let d = s[i].wrapping_sub(b'0');
        if d > 9 || i >= 18 {
            return Err(DecodeError("bad number"));
        }
        v = v * 10 + d as u64;
        i += 1;
    }
    if i == 0 {
        return Err(DecodeError("bad number"));
    }
    Ok((v, if i < s.len() { &s[i + 1..] } else { &[] }))
}

/// Value of a fraction's first `want` digits (8 at a time when possible).
#[inline(always)]
fn frac_digits(f: &[u8], want: usize) -> Result<u64, DecodeError> {
    let take = f.len().min(want);
    if take == 8 {
        let chunk = load8(f, 0);
        if all_digits(chunk) {
            return Ok(parse8(chunk));
        }
        return Err(DecodeError("bad number"));
    }
    let mut v = 0u64;
    for &c in &f[..take] {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return Err(DecodeError("bad number"));
        }
        v = v * 10 + d as u64;
    }
    Ok(v)
}

/// Decimal string → integer units of 10^-decimals (exact). Digits beyond `decimals` must be
/// 0; at most 18 integer digits.
#[inline(always)]
pub fn parse_units(s: &[u8], decimals: u32) -> Result<i64, DecodeError> {
    let (whole, frac) = int_part(s)?;
    let d = decimals as usize;
    let take = frac.len().min(d);
    let fv = frac_digits(frac, d)?;
    if frac[take..].iter().any(|&c| c != b'0') {
        return Err(if frac[take..].iter().all(u8::is_ascii_digit) {
            DecodeError("price has more decimals than the book")
        } else {
            DecodeError("bad price")
        });
    }
    (whole as i64)
        .checked_mul(POW10_I64[d])
        .and_then(|w| w.checked_add(fv as i64 * POW10_I64[d - take]))
        .ok_or(DecodeError("price overflow"))
}

/// Decimal string → f64, identical to a correctly rounded parse: up to 8 decimals and
/// 7 integer digits via 8-digit SWAR (mantissa < 10^15, exact division), else the general path.
#[inline(always)]
pub fn parse_qty(s: &[u8]) -> Result<f64, DecodeError> {
    let (whole, frac) = int_part(s)?;
    if frac.len() <= 8 && whole < 10_000_000 {
        let fv = frac_digits(frac, 8)?;
        let m = whole * POW10_I64[frac.len()] as u64 + fv;
        return Ok(m as f64 / POW10[frac.len()]);
    }
    qty_general(s)
}

/// A price string's body from `i` (after the opening quote): (units, index after the quote).
#[inline(always)]
fn units_until_quote(b: &[u8], i: usize, decimals: u32) -> Result<(i64, usize), DecodeError> {
    let q = close_quote(b, i)?;
    Ok((parse_units(&b[i..q], decimals)?, q + 1))
}

/// A quantity string's body from `i`: (value, index after the closing quote).
#[inline(always)]
fn qty_until_quote(b: &[u8], i: usize) -> Result<(f64, usize), DecodeError> {
    let q = close_quote(b, i)?;
    Ok((parse_qty(&b[i..q])?, q + 1))
}

/// Byte ranges of the `b` and `a` arrays plus the header.
struct Located<'s> {
    header: DepthHeader,
    decimals: u32,
    bids: &'s mut Vec<(i64, f64)>,
    asks: &'s mut Vec<(i64, f64)>,
    from: (usize, usize), // lengths of `bids` and `asks` before this message
    seen: u8,
}

fn scan_object(c: &mut Cursor<'_>, out: &mut Located<'_>) -> Result<(), DecodeError> {
    c.expect(b'{')?;
    if c.peek()? == b'}' {
        c.i += 1;
        return Ok(());
    }
    loop {
        match c.key()? {
            b"E" => {
                out.header.event_ms = c.uint()?;
                out.seen |= 1;
            }
            b"U" => {
                out.header.first = c.uint()?;
                out.seen |= 2;
            }
            b"u" => {
                out.header.last = c.uint()?;
                out.seen |= 4;
            }
            b"pu" => out.header.prev = Some(c.uint()?),
            b"seq" => out.header.seq = c.uint()?,
            b"b" => {
                out.bids.truncate(out.from.0); // a repeated key: the last one counts
                c.i = parse_levels(c.b, c.i, out.decimals, out.bids)?;
                out.seen |= 8;
            }
            b"a" => {
                out.asks.truncate(out.from.1);
                c.i = parse_levels(c.b, c.i, out.decimals, out.asks)?;
                out.seen |= 16;
            }
            b"data" => scan_object(c, out)?,
            _ => c.skip()?,
        }
        match c.peek()? {
            b',' => c.i += 1,
            b'}' => {
                c.i += 1;
                return Ok(());
            }
            _ => return Err(DecodeError("expected , or }")),
        }
    }
}

#[inline(always)]
pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i] <= b' ' {
        i += 1;
    }
    i
}

#[inline(always)]
fn expect_at(b: &[u8], i: usize, c: u8) -> Result<usize, DecodeError> {
    if b.get(i) == Some(&c) {
        Ok(i + 1)
    } else {
        Err(DecodeError("malformed level array"))
    }
}

const ZEROS: u64 = 0x3030_3030_3030_3030;

#[inline(always)]
fn load8(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

/// Bit 7 of each byte of `w` equal to `c` (only the lowest flagged byte is exact — the
/// zero-byte trick's borrow can flag bytes above it).
#[inline(always)]
fn bytes_eq(w: u64, c: u8) -> u64 {
    let x = w ^ (c as u64).wrapping_mul(0x0101_0101_0101_0101);
    x.wrapping_sub(0x0101_0101_0101_0101) & !x & 0x8080_8080_8080_8080
}

/// SWAR parse of a decimal string body at `s` (after its opening quote) in Binance's spot
/// format: 1-7 integer digits, '.', exactly 8 fraction digits, '"'. Returns (value × 10^8,
/// index of the closing quote), or None when the text is not of that shape (the caller then
/// takes the general path, which handles every other shape and produces the errors).
#[inline(always)]
fn fixed8(b: &[u8], s: usize) -> Option<(u64, usize)> {
    if s + 17 > b.len() {
        return None;
    }
    let w = load8(b, s);
    let n = (bytes_eq(w, b'.').trailing_zeros() / 8) as usize; // integer digits; 8: no '.'
    let e = s + n + 9;
    if n.wrapping_sub(1) >= 7 || b[e] != b'"' {
        return None;
    }
    let int = (w << (8 * (8 - n))) | (ZEROS >> (8 * n));
    let frac = load8(b, s + n + 1);
    if !all_digits(int) || !all_digits(frac) {
        return None;
    }
    Some((parse8(int) * 100_000_000 + parse8(frac), e))
}

/// One level `["p","q"]` at `i` (its '[') in the spot format, price in 10^-8 units:
/// ((units, size), index after its ']'), or None for the general path.
#[inline(always)]
fn spot_level(b: &[u8], i: usize) -> Option<((i64, f64), usize)> {
    if b.get(i..i + 2) != Some(b"[\"") {
        return None;
    }
    let (units, pe) = fixed8(b, i + 2)?;
    if b.get(pe..pe + 3) != Some(b"\",\"") {
        return None;
    }
    let (m, qe) = fixed8(b, pe + 3)?;
    // m < 10^15 < 2^53 and 10^8 are exact doubles, so the quotient is correctly rounded:
    // the same double as parsing the decimal string
    (b.get(qe + 1) == Some(&b']')).then_some(((units as i64, m as f64 / 1e8), qe + 2))
}

/// Parse a `[["p","q"],...]` array starting at `i`, pushing (units, size) onto `out`;
/// returns the index after the array.
fn parse_levels(b: &[u8], i: usize, decimals: u32, out: &mut Vec<(i64, f64)>) -> Result<usize, DecodeError> {
    let mut i = expect_at(b, skip_ws(b, i), b'[')?;
    i = skip_ws(b, i);
    if b.get(i) == Some(&b']') {
        return Ok(i + 1);
    }
    loop {
        // spot levels: SIMD while it can, then one level by SWAR, else the general parser
        if decimals == 8 {
            match crate::simd::levels(b, i, out) {
                Ok(end) => return Ok(end),
                Err(at) => i = skip_ws(b, at), // it may stop after a ',' before a space
            }
        }
        if let Some((level, j)) = spot_level(b, i).filter(|_| decimals == 8) {
            out.push(level);
            i = j;
        } else {
            i = expect_at(b, i, b'[')?;
            i = expect_at(b, skip_ws(b, i), b'"')?;
            let (p, j) = units_until_quote(b, i, decimals)?;
            i = expect_at(b, skip_ws(b, j), b',')?;
            i = expect_at(b, skip_ws(b, i), b'"')?;
            let (q, j) = qty_until_quote(b, i)?;
            i = expect_at(b, skip_ws(b, j), b']')?;
            out.push((p, q));
        }
        i = skip_ws(b, i);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b']') => return Ok(i + 1),
            _ => return Err(DecodeError("expected , or ]")),
        }
    }
}

/// Decode one message and apply it if it continues the book. The book is unchanged unless
/// the verdict is Ok (the whole message is decoded before anything is written).
pub fn apply_depth_json(book: &mut OrderBook, buf: &[u8]) -> Result<(Verdict, DepthHeader), DecodeError> {
    apply_depth_json_with(book, buf, &mut Scratch::default())
}

/// Decoded (bids, asks) as (price units, size).
pub type UnitLevels<'a> = (&'a [(i64, f64)], &'a [(i64, f64)]);

/// Reusable decode buffers.
#[derive(Default)]
pub struct Scratch {
    bids: Vec<(i64, f64)>,
    asks: Vec<(i64, f64)>,
}

/// Decode one message into `scratch` (levels as (units, size)) without touching a book.
pub fn decode_depth_json(buf: &[u8], decimals: u32, scratch: &mut Scratch) -> Result<DepthHeader, DecodeError> {
    scratch.bids.clear();
    scratch.asks.clear();
    decode_appending(buf, decimals, &mut scratch.bids, &mut scratch.asks)
}

/// Decode one message, appending its levels to `bids` and `asks` (on error they are left as
/// they were). For decoding many messages into one buffer.
pub fn decode_appending(
    buf: &[u8],
    decimals: u32,
    bids: &mut Vec<(i64, f64)>,
    asks: &mut Vec<(i64, f64)>,
) -> Result<DepthHeader, DecodeError> {
    let from = (bids.len(), asks.len());
    let mut loc = Located { header: DepthHeader::default(), decimals, bids, asks, from, seen: 0 };
    let mut c = Cursor { b: buf, i: 0 };
    let r = scan_object(&mut c, &mut loc).and_then(|()| match (loc.seen, skip_ws(buf, c.i) == buf.len()) {
        (31, true) => Ok(loc.header),
        (31, false) => Err(DecodeError("data after the message")),
        _ => Err(DecodeError("missing E, U, u, b or a")),
    });
    if r.is_err() {
        bids.truncate(from.0);
        asks.truncate(from.1);
    }
    r
}

impl Scratch {
    /// The decoded (bids, asks) of the last message, as (units, size).
    pub fn levels(&self) -> UnitLevels<'_> {
        (&self.bids, &self.asks)
    }
}

/// Apply decoded levels if the header continues the book (else the book is unchanged).
pub fn apply_decoded(book: &mut OrderBook, h: &DepthHeader, bids: &[(i64, f64)], asks: &[(i64, f64)]) -> Verdict {
    let v = book.check(h.first, h.last, h.prev);
    if v != Verdict::Ok {
        return v;
    }
    for &(u, q) in bids {
        book.bids.set(u, q);
    }
    for &(u, q) in asks {
        book.asks.set(u, q);
    }
    book.commit(h.last);
    v
}

/// As `apply_depth_json`, reusing `scratch`.
pub fn apply_depth_json_with(
    book: &mut OrderBook,
    buf: &[u8],
    scratch: &mut Scratch,
) -> Result<(Verdict, DepthHeader), DecodeError> {
    let h = decode_depth_json(buf, book.decimals, scratch)?;
    Ok((apply_decoded(book, &h, &scratch.bids, &scratch.asks), h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_quantities_are_exact() {
        assert_eq!(parse_units(b"61737.63000000", 8), Ok(6_173_763_000_000));
        assert_eq!(parse_units(b"61800.2", 2), Ok(6_180_020));
        assert!(parse_units(b"1.123", 2).is_err());
        for s in ["0.00000000", "1.54698000", "0.014", "20.004", "123456789.123456789", "3.78826"] {
            assert_eq!(parse_qty(s.as_bytes()).unwrap(), s.parse::<f64>().unwrap(), "{s}");
        }
    }

    #[test]
    fn decodes_raw_and_enveloped_messages() {
        let mut book = OrderBook::new(true, 8);
        book.apply_snapshot(&[(100.0, 1.0)], &[(101.0, 1.0)], 10);
        let raw = br#"{"e":"depthUpdate","E":1723161256299,"T":1,"s":"BTCUSDT","U":8,"u":12,"pu":7,"b":[["100.10","2.5"],["100.00","0"]],"a":[]}"#;
        let (v, h) = apply_depth_json(&mut book, raw).unwrap();
        assert_eq!((v, h.first, h.last, h.prev, h.event_ms), (Verdict::Ok, 8, 12, Some(7), 1723161256299));
        assert_eq!(book.best_bid(), Some((100.1, 2.5)));
        let env = br#"{"stream":"btcusdt@depth","data":{"e":"depthUpdate","E":2,"U":13,"u":14,"pu":12,"b":[],"a":[["101.00","3"]]}}"#;
        assert_eq!(apply_depth_json(&mut book, env).unwrap().0, Verdict::Ok);
        assert_eq!(book.best_ask(), Some((101.0, 3.0)));
        let gap = br#"{"E":3,"U":20,"u":21,"pu":19,"b":[["1","1"]],"a":[]}"#;
        assert_eq!(apply_depth_json(&mut book, gap).unwrap().0, Verdict::Gap);
        assert_eq!(book.best_bid(), Some((100.1, 2.5)));
    }

    #[test]
    fn malformed_messages_leave_the_book_untouched() {
        let mut book = OrderBook::new(false, 8);
        book.apply_snapshot(&[(100.0, 1.0)], &[(101.0, 1.0)], 10);
        let bad = br#"{"E":1,"U":11,"u":11,"b":[["100.5","1"],["x","2"]],"a":[]}"#;
        assert!(apply_depth_json(&mut book, bad).is_err());
        assert_eq!(book.best_bid(), Some((100.0, 1.0)));
        assert!(apply_depth_json(&mut book, br#"{"E":1}"#).is_err());
        assert!(apply_depth_json(&mut book, b"not json").is_err());
    }
}
