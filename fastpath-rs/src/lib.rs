//! Stevie's fast path: the L2 order book with Binance diff-depth sequencing, a zero-copy
//! decoder for raw `depthUpdate` JSON (SIMD level parser chosen at run time), the replay of a
//! recorded capture (one thread, or decode ∥ apply on two), and the rolling microstructure
//! kernel.
//!
//! The pure-Python/numpy twin in `stevie.quant` (`book.py`, `micro.py`, `kernels.py`) is
//! the executable specification: one parity test body runs over both backends.

pub mod book;
pub mod decode;
pub mod l2;
pub mod micro;
pub mod replay;
pub mod sync;
mod simd;

#[cfg(feature = "python")]
mod py;

/// A tiny deterministic PRNG (xorshift64*, Vigna 2016) for the model and SIMD tests.
#[cfg(test)]
pub(crate) fn test_rng(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}
