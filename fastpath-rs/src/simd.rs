//! SIMD level parsers for Binance spot `["p","q"]` levels (x86-64, chosen at run time).
//!
//! Both numbers of a spot level have one shape — 1-7 integer digits, '.', exactly 8 fraction
//! digits — so a level is checked with a few byte-class masks and converted with a byte
//! shuffle that right-aligns the integer digits next to the fraction, then multiply-adds that
//! fold 16 digits into two 8-digit integers (Langdale & Lemire, "Parsing Gigabytes of JSON per
//! Second", VLDB J. 2019, §6; Mula's SSE digit conversion).
//! - AVX-512 VBMI: the whole level (at most 32 bytes) in one register; the two dots' offsets
//!   pick its shape from a table (expected bytes, digit positions, byte permutation).
//! - AVX2: the price's 16 bytes in the low lane, the quantity's in the high lane.
//!
//! Any other shape stops here and the scalar parsers take the level; the result is the same
//! either way (the test below compares the paths level by level).

/// Levels from `i` (at a level's '['), prices in 10^-8 units, as `decode::spot_level` one
/// at a time: Ok(index after the array's ']') at the end of the array, or Err(index of the
/// first level this path does not take — another shape, whitespace, or within 64 bytes of
/// the end of `b`). AVX-512 VBMI when the CPU has it, else AVX2, else nothing.
#[cfg(target_arch = "x86_64")]
pub use x86::levels;

#[cfg(not(target_arch = "x86_64"))]
pub fn levels(_b: &[u8], i: usize, _out: &mut Vec<(i64, f64)>) -> Result<usize, usize> {
    Err(i)
}

/// The x86-64 parsers (every item here needs `std::arch::x86_64`).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    pub fn levels(b: &[u8], i: usize, out: &mut Vec<(i64, f64)>) -> Result<usize, usize> {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512vbmi") && has!("avx512vl") && has!("avx512bw") && has!("bmi1") {
            // SAFETY: the CPU has the features the function is compiled for.
            unsafe { levels_avx512(b, i, out) }
        } else if has!("avx2") && has!("bmi1") {
            // SAFETY: as above.
            unsafe { levels_avx2(b, i, out) }
        } else {
            Err(i)
        }
    }



    /// Per integer-digit count `n` (1-7): shuffle of a number's 16 bytes `D{n}.F{8}` into
    /// `0{8-n} D{n} F{8}` (0x80 writes a zero digit).
    #[repr(align(16))]
    struct Shuffles([[u8; 16]; 8]);

    static SHUFFLES: Shuffles = {
        let mut t = [[0x80u8; 16]; 8];
        let mut n = 1;
        while n < 8 {
            let mut k = 0;
            while k < n {
                t[n][8 - n + k] = k as u8;
                k += 1;
            }
            let mut f = 0;
            while f < 8 {
                t[n][8 + f] = (n + 1 + f) as u8;
                f += 1;
            }
            n += 1;
        }
        Shuffles(t)
    };

    #[inline(always)]
    fn le3(s: &[u8; 3]) -> u32 {
        s[0] as u32 | (s[1] as u32) << 8 | (s[2] as u32) << 16
    }

    #[inline(always)]
    fn load3(b: &[u8], i: usize) -> u32 {
        le3(b[i..i + 3].try_into().expect("3 bytes"))
    }

    /// Bit k set when `b[base + k] == c`, for the 64 bytes from `base` (`base + 64 <= b.len()`).
    #[inline(always)]
    unsafe fn byte_mask64(b: &[u8], base: usize, c: __m256i) -> u64 {
        debug_assert!(base + 64 <= b.len());
        let lo = _mm256_loadu_si256(b.as_ptr().add(base) as *const __m256i);
        let hi = _mm256_loadu_si256(b.as_ptr().add(base + 32) as *const __m256i);
        let lo = _mm256_movemask_epi8(_mm256_cmpeq_epi8(lo, c)) as u32 as u64;
        let hi = _mm256_movemask_epi8(_mm256_cmpeq_epi8(hi, c)) as u32 as u64;
        lo | hi << 32
    }

    /// Bytes a level parser may read from the level's '['.
    const READ: usize = 40;

    /// The loop shared by both parsers. Level starts come from a bitmap of '[' bytes, 64 at a
    /// time, not from the end of the level before, so the levels' loads do not wait on each
    /// other's parse (a valid level holds no '[': the next set bit is the next level exactly when
    /// the one before ends with "],"). `level(i)` checks and converts the level at `i`, with
    /// `i + READ <= b.len()`: Some((units, size, length through its ']')) or None.
    #[inline(always)]
    unsafe fn drive(
        b: &[u8],
        i: usize,
        out: &mut Vec<(i64, f64)>,
        mut level: impl FnMut(usize) -> Option<(u64, f64, usize)>,
    ) -> Result<usize, usize> {
        let open = _mm256_set1_epi8(b'[' as i8);
        let mut base = i;
        if base + 64 > b.len() {
            return Err(i);
        }
        let mut opens = byte_mask64(b, base, open);
        let mut expect = i;
        loop {
            while opens == 0 {
                base += 64;
                if base + 64 > b.len() {
                    return Err(expect);
                }
                opens = byte_mask64(b, base, open);
            }
            let i = base + opens.trailing_zeros() as usize;
            opens &= opens - 1;
            if i + READ > b.len() {
                return Err(expect);
            }
            // parse first, compare with `expect` after: loads at `i` must not wait on the level
            // before (on the path past the compare the compiler may address them from `expect`)
            let parsed = level(i);
            if i != expect {
                return Err(expect);
            }
            let Some((units, size, len)) = parsed else {
                return Err(i);
            };
            let t = b[i + len];
            if t != b',' && t != b']' {
                return Err(i);
            }
            out.push((units as i64, size));
            expect = i + len + 1;
            if t == b']' {
                return Ok(expect);
            }
        }
    }

    /// Per lane of `d` (16 digit values each): the (first 8, last 8) digits as integers. Byte
    /// then word multiply-adds (Mula; Langdale & Lemire 2019 §6).
    #[inline(always)]
    unsafe fn fold_digits(d: __m256i) -> (u64, u64) {
        let d = _mm256_madd_epi16(_mm256_maddubs_epi16(d, _mm256_set1_epi16(0x010A)), _mm256_set1_epi32(0x0001_0064));
        let d = _mm256_madd_epi16(_mm256_packus_epi32(d, d), _mm256_set1_epi32(0x0001_2710)); // [hi8, lo8, ..]
        let d = _mm256_add_epi64(_mm256_mul_epu32(d, _mm256_set1_epi64x(100_000_000)), _mm256_srli_epi64::<32>(d));
        let hi = _mm256_extracti128_si256::<1>(d);
        (_mm_cvtsi128_si64(_mm256_castsi256_si128(d)) as u64, _mm_cvtsi128_si64(hi) as u64)
    }

    /// Quantity from its value × 10^8: m < 10^15 < 2^53 and 10^8 are exact doubles, so the
    /// quotient is correctly rounded — the same double as parsing the decimal string.
    #[inline(always)]
    fn size(m: u64) -> f64 {
        m as f64 / 1e8
    }

    #[target_feature(enable = "avx2,bmi1")]
    unsafe fn levels_avx2(b: &[u8], i: usize, out: &mut Vec<(i64, f64)>) -> Result<usize, usize> {
        let dot = _mm256_set1_epi8(b'.' as i8);
        drive(b, i, out, |i| {
            // price body at s, quantity body at q = s + n + 12, 16 bytes each (q + 16 <= i + 37)
            let s = i + 2;
            if b[i + 1] != b'"' {
                return None;
            }
            let xp = _mm_loadu_si128(b.as_ptr().add(s) as *const __m128i);
            let n = _mm_movemask_epi8(_mm_cmpeq_epi8(xp, _mm256_castsi256_si128(dot))).trailing_zeros() as usize;
            if n.wrapping_sub(1) >= 7 || load3(b, s + n + 9) != le3(b"\",\"") {
                return None;
            }
            let q = s + n + 12;
            let x = _mm256_set_m128i(_mm_loadu_si128(b.as_ptr().add(q) as *const __m128i), xp);
            let v = _mm256_sub_epi8(x, _mm256_set1_epi8(b'0' as i8));
            let digits = _mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_min_epu8(v, _mm256_set1_epi8(9)), v)) as u32;
            let dots = _mm256_movemask_epi8(_mm256_cmpeq_epi8(x, dot)) as u32;
            let m = (dots >> 16).trailing_zeros() as usize;
            if m.wrapping_sub(1) >= 7 {
                return None;
            }
            let body = ((1u32 << (n + 9)) - 1) | (((1u32 << (m + 9)) - 1) << 16);
            let e = q + m + 9; // the quantity's closing quote
            if (digits | dots) & body != body || dots & body != (1 << n) | (1 << (16 + m)) || b[e..e + 2] != *b"\"]" {
                return None;
            }
            let shuf = _mm256_set_m128i(
                _mm_load_si128(SHUFFLES.0[m].as_ptr() as *const __m128i),
                _mm_load_si128(SHUFFLES.0[n].as_ptr() as *const __m128i),
            );
            let (units, mant) = fold_digits(_mm256_shuffle_epi8(v, shuf));
            Some((units, size(mant), e + 2 - i))
        })
    }

    /// Per level shape (price and quantity integer digits n, m with n + m <= 7, so the level
    /// `["p","q"]` fits 32 bytes): the expected bytes, the digit positions, the level's length,
    /// and the byte permutation that lays out `0..0 P . P 0..0 Q . Q` as four 8-digit groups.
    #[derive(Clone, Copy)]
    #[repr(C, align(32))]
    struct Shape {
        expect: [u8; 32], // punctuation where the level has it, '0' at digits
        perm: [u8; 32],   // output byte k <- input byte perm[k]
        keep: u32,        // output bytes that come from the input (the rest are zero digits)
        digits: u32,      // positions that must be digits
        full: u32,        // positions of the level: bit 0 .. len - 1
        len: u32,
    }

    /// Shape table index from the two dots' offsets in the level (d1 = n + 2, d2 = n + m + 14):
    /// distinct for every valid (n, m); entries that are not a valid shape never match.
    #[inline(always)]
    const fn shape_index(d1: u32, d2: u32) -> usize {
        (((d1 & 7) << 3) | (d2 & 7)) as usize
    }

    static SHAPES: [Shape; 64] = {
        let never = Shape { expect: [b']'; 32], perm: [0; 32], keep: 0, digits: 0, full: 1, len: 0 };
        let mut t = [never; 64];
        let mut n = 1;
        while n < 8 {
            let mut m = 1;
            while n + m <= 7 {
                let len = 25 + n + m;
                let mut s = Shape { expect: [b'0'; 32], perm: [0; 32], keep: 0, digits: 0, full: 0, len: len as u32 };
                let punct = [(0, b'['), (1, b'"'), (2 + n, b'.'), (11 + n, b'"'), (12 + n, b','), (13 + n, b'"'),
                    (14 + n + m, b'.'), (23 + n + m, b'"'), (24 + n + m, b']')];
                let mut k = 0;
                while k < punct.len() {
                    s.expect[punct[k].0] = punct[k].1;
                    k += 1;
                }
                s.full = if len == 32 { u32::MAX } else { (1u32 << len) - 1 };
                let mut p = 0;
                while p < len {
                    if s.expect[p] == b'0' {
                        s.digits |= 1 << p;
                    }
                    p += 1;
                }
                // groups: price integer (right-aligned), price fraction, quantity integer, fraction
                let groups = [(0, 2, n), (8, 3 + n, 8), (16, 14 + n, m), (24, 15 + n + m, 8)];
                let mut g = 0;
                while g < 4 {
                    let (at, from, count) = groups[g];
                    let mut j = 0;
                    while j < count {
                        let out = at + 8 - count + j;
                        s.perm[out] = (from + j) as u8;
                        s.keep |= 1 << out;
                        j += 1;
                    }
                    g += 1;
                }
                t[shape_index(2 + n as u32, (n + m + 14) as u32)] = s;
                m += 1;
            }
            n += 1;
        }
        t
    };

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi,avx2,bmi1")]
    unsafe fn levels_avx512(b: &[u8], i: usize, out: &mut Vec<(i64, f64)>) -> Result<usize, usize> {
        drive(b, i, out, |i| {
            // the whole level in one register; its shape from the two dots' offsets
            let x = _mm256_loadu_si256(b.as_ptr().add(i) as *const __m256i);
            let dots = _mm256_cmpeq_epi8_mask(x, _mm256_set1_epi8(b'.' as i8));
            let s = &SHAPES[shape_index(dots.trailing_zeros(), (dots & dots.wrapping_sub(1)).trailing_zeros())];
            let v = _mm256_sub_epi8(x, _mm256_set1_epi8(b'0' as i8));
            let digits = _mm256_cmple_epu8_mask(v, _mm256_set1_epi8(9));
            let same = _mm256_cmpeq_epi8_mask(x, _mm256_load_si256(s.expect.as_ptr() as *const __m256i));
            if (same | (digits & s.digits)) & s.full != s.full {
                return None;
            }
            let perm = _mm256_load_si256(s.perm.as_ptr() as *const __m256i);
            let (units, mant) = fold_digits(_mm256_maskz_permutexvar_epi8(s.keep, perm, v));
            Some((units, size(mant), s.len as usize))
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::decode::{parse_qty, parse_units};
        use crate::test_rng as rng;

        /// (units, size) when `level` is exactly `["P","Q"]` with P, Q of 1-7 integer digits,
        /// '.', 8 fraction digits — the only shape the SIMD paths may take.
        fn spot(level: &[u8]) -> Option<(i64, f64)> {
            let s = std::str::from_utf8(level).ok()?.strip_prefix("[\"")?.strip_suffix("\"]")?;
            let (p, q) = s.split_once("\",\"")?;
            let ok = |x: &str| {
                let (i, f) = x.split_once('.').unwrap_or(("", ""));
                (1..=7).contains(&i.len()) && f.len() == 8 && (i.to_owned() + f).bytes().all(|c| c.is_ascii_digit())
            };
            (ok(p) && ok(q)).then(|| (parse_units(p.as_bytes(), 8).unwrap(), parse_qty(q.as_bytes()).unwrap()))
        }

        fn number(st: &mut u64) -> String {
            let digits = 1 + rng(st) % if rng(st).is_multiple_of(4) { 8 } else { 4 };
            let int: String = (0..digits).map(|_| (b'0' + (rng(st) % 10) as u8) as char).collect();
            match rng(st) % 10 {
                0 => int,
                1 => format!("{int}.25"),
                _ => format!("{int}.{:08}", rng(st) % 100_000_000),
            }
        }

        /// Random level arrays (spot and other shapes, corrupted bytes, spaces) through both SIMD
        /// paths: every level they take equals the exact parse, and they stop exactly at the
        /// first level they do not take.
        #[test]
        fn simd_paths_take_exactly_the_spot_levels() {
            type Path = unsafe fn(&[u8], usize, &mut Vec<(i64, f64)>) -> Result<usize, usize>;
            let paths: [(&str, bool, Path); 2] = [
                ("avx2", is_x86_feature_detected!("avx2") && is_x86_feature_detected!("bmi1"), levels_avx2),
                ("avx512", is_x86_feature_detected!("avx512vbmi") && is_x86_feature_detected!("avx512vl"), levels_avx512),
            ];
            let mut st = 0x2545_F491_4F6C_DD1D_u64;
            let mut taken = [0usize; 2];
            for case in 0..3000 {
                let (mut buf, mut starts, mut want) = (b"[".to_vec(), vec![], vec![]);
                for k in 0..1 + rng(&mut st) % 12 {
                    if k > 0 {
                        buf.extend_from_slice(if rng(&mut st).is_multiple_of(40) { b", " } else { b"," });
                    }
                    let mut level = format!("[\"{}\",\"{}\"]", number(&mut st), number(&mut st)).into_bytes();
                    if rng(&mut st).is_multiple_of(30) {
                        let at = (rng(&mut st) % level.len() as u64) as usize;
                        level[at] = b"0.\",[] x9"[(rng(&mut st) % 9) as usize];
                    }
                    starts.push(buf.len());
                    want.push(spot(&level));
                    buf.extend_from_slice(&level);
                }
                let array_end = buf.len() + 1;
                buf.extend_from_slice(b"],\"a\":[]}");
                buf.resize(buf.len() + (rng(&mut st) % 80) as usize, b' ');
                for (p, (name, has, f)) in paths.iter().enumerate() {
                    if !has {
                        continue;
                    }
                    let mut out = vec![];
                    // SAFETY: the CPU has the path's features (checked above).
                    let r = unsafe { f(&buf, 1, &mut out) };
                    let n = out.len();
                    taken[p] += n;
                    assert!(want[..n].iter().zip(&out).all(|(w, o)| *w == Some(*o)), "{name} case {case}");
                    match r {
                        Ok(end) => assert!(n == want.len() && end == array_end, "{name} case {case}"),
                        Err(at) => assert!(at == starts[n] || at + 1 == starts[n] && buf[at] == b' ', "{name} case {case}"),
                    }
                }
            }
            for (p, (name, has, _)) in paths.iter().enumerate() {
                assert!(!has || taken[p] > 2000, "{name} took only {} levels", taken[p]);
                println!("{name}: {} levels", taken[p]);
            }
        }
    }
}
