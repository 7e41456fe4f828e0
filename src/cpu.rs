//! CPU instructions that Rust offers only as `unsafe` intrinsics: the time-stamp counter
//! ([`time_stamp_counter`], for `log::clock`) and carry-less multiplication behind runtime
//! feature detection ([`crc32_fold`], for `format::checksum`).
//!
//! This module and `segment::mapping` are the only modules with `unsafe` code: CPU instructions
//! here, memory maps there (with the prefetch hints on mapped bytes, whose argument is about
//! the map). `#[allow(unsafe_code)]` is on their declarations; the crate denies it everywhere
//! else. Every function here is safe to call with any arguments, and this module
//! depends on nothing else in the crate: what it needs (the folding constants) its callers
//! pass in.

/// The CPU's time-stamp counter (`rdtsc`): a tick count that only its caller can turn into time
/// (`log::clock` checks that the kernel keeps time with it, and measures its frequency).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn time_stamp_counter() -> u64 {
    // SAFETY: `rdtsc` exists on every x86-64 CPU, reads no memory and has no side effects;
    // the intrinsic is declared `unsafe` all the same.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use clmul::{crc32_fold, CrcFoldKeys};

/// The bit-reflected CRC-32 fold of Gopal et al. ("Fast CRC Computation for Generic Polynomials
/// Using PCLMULQDQ Instruction", Intel, 2009), in one step: every whole 16-byte chunk is
/// multiplied by the constant that carries it to the position of the last one, and the
/// products are added up. The constants are the caller's (`format::checksum` computes them).
#[cfg(target_arch = "x86_64")]
mod clmul {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi8, _mm_and_si128, _mm_clmulepi64_si128, _mm_cvtsi32_si128,
        _mm_extract_epi32, _mm_set1_epi8, _mm_set_epi32, _mm_set_epi64x, _mm_setr_epi8,
        _mm_shuffle_epi8, _mm_srli_si128, _mm_xor_si128,
    };
    use std::sync::OnceLock;

    /// The constants of a CRC for [`crc32_fold`], all in the bit-reflected form the fold
    /// multiplies by.
    #[derive(Debug)]
    pub(crate) struct CrcFoldKeys<'a> {
        /// At index `j` (index 0 unused), the pair that folds a 16-byte chunk forward by `j`
        /// chunks: the chunk's low half is multiplied by the first, its high half by the
        /// second. Its length bounds the whole chunks a buffer may have.
        pub(crate) fold: &'a [(u64, u64)],
        /// Folds 64 bits to 32 in the final reduction.
        pub(crate) k_64: u64,
        /// The polynomial and the Barrett quotient `floor(x^64 / P)`, for the final reduction.
        pub(crate) p_reflected: u64,
        pub(crate) mu_reflected: u64,
        /// The register value before the first four bytes, which are taken as zeros.
        pub(crate) initial_before_field: u32,
    }

    /// The CRC-32 of `head[4..]` followed by `payload`, computed by folding every 16-byte chunk
    /// of `head` (its first four bytes taken as zeros, the register starting at
    /// `keys.initial_before_field`) and `payload` in one step. `None` if this CPU lacks
    /// `PCLMULQDQ`, SSE4.1 or SSSE3 (checked once per process), or if the buffer has more whole
    /// chunks than `keys.fold` has entries.
    #[inline]
    pub(crate) fn crc32_fold(
        head: &[u8; 32],
        payload: &[u8],
        keys: &CrcFoldKeys<'_>,
    ) -> Option<u32> {
        let chunks = head.len() / 16 + payload.len() / 16;
        if chunks > keys.fold.len() || !available() {
            return None;
        }
        // SAFETY: the CPU has every instruction `fold` is compiled for (just checked).
        Some(unsafe { fold(head, payload, keys) })
    }

    /// Whether this CPU has the instructions [`fold`] uses (checked once).
    #[inline]
    fn available() -> bool {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            std::arch::is_x86_feature_detected!("pclmulqdq")
                && std::arch::is_x86_feature_detected!("sse4.1")
                && std::arch::is_x86_feature_detected!("ssse3")
        })
    }

    /// The 16 bytes at `bytes[at..at + 16]`, in memory order (byte 0 lowest).
    #[inline]
    #[target_feature(enable = "sse2")]
    fn load(bytes: &[u8], at: usize) -> __m128i {
        let half = |from: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[at + from..at + from + 8]);
            i64::from_le_bytes(word)
        };
        _mm_set_epi64x(half(8), half(0))
    }

    /// `chunk` moved forward by `keys`' distance and added into `acc`.
    #[inline]
    #[target_feature(enable = "pclmulqdq,sse2")]
    fn fold_into(acc: __m128i, chunk: __m128i, keys: (u64, u64)) -> __m128i {
        let k = _mm_set_epi64x(keys.1 as i64, keys.0 as i64);
        let low = _mm_clmulepi64_si128::<0x00>(chunk, k);
        let high = _mm_clmulepi64_si128::<0x11>(chunk, k);
        _mm_xor_si128(acc, _mm_xor_si128(low, high))
    }

    /// [`crc32_fold`] once the CPU and the chunk count are checked: `keys.fold` has an entry
    /// for every whole chunk of the buffer (so at least two, those of `head`).
    #[target_feature(enable = "pclmulqdq,sse2,sse4.1,ssse3")]
    fn fold(head: &[u8; 32], payload: &[u8], keys: &CrcFoldKeys<'_>) -> u32 {
        let table = keys.fold;
        let whole = payload.len() / 16;
        // Whole chunks of the buffer: two of `head`, then the payload's.
        let chunks = 2 + whole;
        // Chunk 0 with its first four bytes cleared and the initial value added in.
        let first = _mm_and_si128(load(head, 0), _mm_set_epi32(-1, -1, -1, 0));
        let first = _mm_xor_si128(first, _mm_cvtsi32_si128(keys.initial_before_field as i32));
        let second = load(head, 16);
        // Every whole chunk but the last is folded onto the last.
        let mut acc = match whole {
            0 => second,
            _ => load(payload, (whole - 1) * 16),
        };
        acc = fold_into(acc, first, table[chunks - 1]);
        if whole > 0 {
            acc = fold_into(acc, second, table[chunks - 2]);
        }
        for k in 0..whole.saturating_sub(1) {
            acc = fold_into(acc, load(payload, k * 16), table[whole - 1 - k]);
        }
        let rest = &payload[whole * 16..];
        if !rest.is_empty() {
            acc = fold_rest(acc, rest, table[1]);
        }
        reduce(acc, keys)
    }

    /// Folds the last `rest.len()` (1 to 15) bytes in: `acc` is shifted left by that many
    /// bytes, the bytes shifted out are folded forward one chunk (`one`) onto the rest.
    #[inline]
    #[target_feature(enable = "pclmulqdq,sse2,ssse3")]
    fn fold_rest(acc: __m128i, rest: &[u8], one: (u64, u64)) -> __m128i {
        let n = rest.len() as i8;
        let mut padded = [0u8; 16];
        padded[..rest.len()].copy_from_slice(rest);
        let seq = _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        // Byte shuffles: `shl` takes the top `n` bytes of a register to its bottom (others to
        // zero), `shr` moves the low `16 - n` bytes up by `n`.
        let shl = _mm_add_epi8(seq, _mm_set1_epi8(n - 16));
        let shr = _mm_xor_si128(shl, _mm_set1_epi8(-128));
        let overflow = _mm_shuffle_epi8(acc, shl);
        let shifted = _mm_shuffle_epi8(acc, shr);
        let part = _mm_shuffle_epi8(load(&padded, 0), shl);
        fold_into(_mm_xor_si128(shifted, part), overflow, one)
    }

    /// The CRC of the 16 bytes in `x` (the initial value was added in at the start): folded to
    /// 64 bits, then to 32, then Barrett-reduced, and inverted as CRC-32 ends.
    #[inline]
    #[target_feature(enable = "pclmulqdq,sse2,sse4.1")]
    fn reduce(x: __m128i, keys: &CrcFoldKeys<'_>) -> u32 {
        let low32 = _mm_set_epi32(0, 0, 0, -1);
        let one = keys.fold[1];
        let k = _mm_set_epi64x(one.1 as i64, one.0 as i64);
        let x = _mm_xor_si128(_mm_clmulepi64_si128::<0x10>(x, k), _mm_srli_si128::<8>(x));
        let k64 = _mm_set_epi64x(0, keys.k_64 as i64);
        let x = _mm_xor_si128(
            _mm_clmulepi64_si128::<0x00>(_mm_and_si128(x, low32), k64),
            _mm_srli_si128::<4>(x),
        );
        let pu = _mm_set_epi64x(keys.mu_reflected as i64, keys.p_reflected as i64);
        let t1 = _mm_clmulepi64_si128::<0x10>(_mm_and_si128(x, low32), pu);
        let t2 = _mm_clmulepi64_si128::<0x00>(_mm_and_si128(t1, low32), pu);
        !(_mm_extract_epi32::<1>(_mm_xor_si128(x, t2)) as u32)
    }
}
