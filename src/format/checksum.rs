//! The frame checksum, computed fast for the small frames a log mostly holds.
//!
//! A frame's checksum is the CRC-32 (ISO-HDLC: zlib's and crc32fast's) of its bytes from
//! offset 4 to its end (`FORMAT.md`, section 3). crc32fast folds a buffer 64 bytes at a time
//! into four accumulators, the right plan for long buffers; for a frame of a few hundred bytes
//! most of its time goes into the serial steps at the end (folding the four accumulators into
//! one, then the rest 16 bytes at a time), and a writer of small records spent more on the
//! checksum than on copying the record. On x86-64 with `PCLMULQDQ`, a frame of at most
//! [`PARALLEL_CHUNKS_MAX`] whole 16-byte chunks is instead folded in one step: each chunk is
//! multiplied by the constant that carries it to the position of the last whole chunk, and
//! the products are added up. Copying 1M frames of 160 bytes into warm memory and hashing each
//! in place took 12.7 ns per frame for the hashing, against 21 ns with crc32fast; the writer's
//! CPU time for 1M appends of 128 bytes went from 56–59 to 49–51 ms (`BENCHMARKS.md`). Replay,
//! which hashes frames it only reads, gained nothing measurable: there the CPU overlaps one
//! frame's hashing with the next frame's work. Longer frames, and other CPUs, use crc32fast;
//! the result is the same bit for bit (tested against it for every payload length to past the
//! limit).
//!
//! The method is that of Gopal et al., "Fast CRC Computation for Generic Polynomials Using
//! PCLMULQDQ Instruction" (Intel, 2009), in its bit-reflected form, as crc32fast implements
//! it too; the constants are computed below rather than copied. The fold itself, which needs
//! the CPU's instructions behind runtime feature detection, is `crate::cpu::crc32_fold`: this
//! module has no `unsafe` code.

// The constants serve the x86-64 code (and the tests) only.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use super::FRAME_HEADER_LEN;

/// Frames of at most this many 16-byte chunks (before a shorter last piece) take the parallel
/// fold; the table of constants has one pair per chunk distance.
pub(super) const PARALLEL_CHUNKS_MAX: usize = 32;

/// The checksum of a frame whose first [`FRAME_HEADER_LEN`] bytes are `head` (its checksum
/// field, bytes 0 to 4, is ignored) and whose payload is `payload`: the CRC-32 of `head[4..]`
/// followed by `payload`, folded in one step. `None` for a frame of more than
/// [`PARALLEL_CHUNKS_MAX`] whole chunks, or on a CPU without the instructions: the caller then
/// uses crc32fast, over the bytes as it holds them (one contiguous frame, or header and payload).
#[must_use]
#[inline]
pub(super) fn small_frame_checksum(head: &[u8; FRAME_HEADER_LEN], payload: &[u8]) -> Option<u32> {
    #[cfg(target_arch = "x86_64")]
    if FRAME_HEADER_LEN / 16 + payload.len() / 16 <= PARALLEL_CHUNKS_MAX {
        return crate::cpu::crc32_fold(head, payload, &KEYS);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (head, payload);
    None
}

/// CRC-32 polynomial, `x^32 + x^26 + ... + 1`, with its `x^32` term.
const POLY: u64 = 0x1_04C1_1DB7;

/// `x^n mod POLY`, as a 32-bit polynomial (most significant bit: `x^31`).
const fn x_pow_mod(n: u32) -> u64 {
    let mut r: u64 = 1;
    let mut i = 0;
    while i < n {
        r <<= 1;
        if r & (1 << 32) != 0 {
            r ^= POLY;
        }
        i += 1;
    }
    r
}

/// The folding constant for `x^n`: `x^n mod POLY` bit-reflected and shifted left by one, the
/// form the reflected algorithm multiplies by.
const fn fold_constant(n: u32) -> u64 {
    ((x_pow_mod(n) as u32).reverse_bits() as u64) << 1
}

/// `floor(x^64 / POLY)`, the quotient Barrett reduction needs (33 bits).
const fn barrett_quotient() -> u64 {
    // Long division of x^64 (a 65-bit number, held as remainder bits shifted in one at a time).
    let mut quotient: u64 = 0;
    let mut remainder: u64 = 0;
    let mut bit = 64i32;
    while bit >= 0 {
        remainder = (remainder << 1) | if bit == 64 { 1 } else { 0 };
        quotient <<= 1;
        if remainder & (1 << 32) != 0 {
            remainder ^= POLY;
            quotient |= 1;
        }
        bit -= 1;
    }
    quotient
}

/// A 33-bit value bit-reflected (bit 0 becomes bit 32).
const fn reflect33(v: u64) -> u64 {
    (v & 0x1_FFFF_FFFF).reverse_bits() >> 31
}

/// Constants that fold a 16-byte chunk forward by `j` chunks (index `j`; index 0 unused): the
/// low half of the chunk is multiplied by the first, the high half by the second.
const FOLD: [(u64, u64); PARALLEL_CHUNKS_MAX] = {
    let mut table = [(0u64, 0u64); PARALLEL_CHUNKS_MAX];
    let mut j = 1;
    while j < PARALLEL_CHUNKS_MAX {
        let bits = 128 * j as u32;
        table[j] = (fold_constant(bits + 32), fold_constant(bits - 32));
        j += 1;
    }
    table
};

/// Folds 64 bits to 32 in the final reduction.
const K_64: u64 = fold_constant(64);
/// `POLY` and the Barrett quotient, bit-reflected, for the final reduction.
const P_REFLECTED: u64 = reflect33(POLY);
const MU_REFLECTED: u64 = reflect33(barrett_quotient());

/// The frame's first four bytes (its checksum field) are taken as zeros, so that the chunks
/// line up with the frame. A CRC register that holds this value before four zero bytes holds
/// the standard initial value `0xFFFF_FFFF` after them (found by running the register back over
/// four zero bytes; a test checks it), so starting from it gives the CRC of the bytes from
/// offset 4.
const INITIAL_BEFORE_FIELD: u32 = 0x9226_F562;

/// The constants above, as the fold takes them.
#[cfg(target_arch = "x86_64")]
const KEYS: crate::cpu::CrcFoldKeys<'static> = crate::cpu::CrcFoldKeys {
    fold: &FOLD,
    k_64: K_64,
    p_reflected: P_REFLECTED,
    mu_reflected: MU_REFLECTED,
    initial_before_field: INITIAL_BEFORE_FIELD,
};

// The fold takes the header as exactly two chunks.
const _: () = assert!(FRAME_HEADER_LEN == 32);

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-at-a-time CRC-32 register update, the definition the fast code must match.
    fn register_after(mut reg: u32, bytes: &[u8]) -> u32 {
        for &b in bytes {
            reg ^= u32::from(b);
            for _ in 0..8 {
                reg = if reg & 1 != 0 { (reg >> 1) ^ 0xEDB8_8320 } else { reg >> 1 };
            }
        }
        reg
    }

    #[test]
    fn the_constants_are_the_published_ones() {
        // As printed in the Intel paper and used by crc32fast (k1 to k5, P', u').
        assert_eq!(FOLD[4], (0x1_5444_2BD4, 0x1_C6E4_1596));
        assert_eq!(FOLD[1], (0x1_7519_97D0, 0x0_CCAA_009E));
        assert_eq!(K_64, 0x1_63CD_6124);
        assert_eq!(P_REFLECTED, 0x1_DB71_0641);
        assert_eq!(MU_REFLECTED, 0x1_F701_1641);
    }

    #[test]
    fn the_initial_value_before_the_field_becomes_the_standard_one() {
        assert_eq!(register_after(INITIAL_BEFORE_FIELD, &[0; 4]), 0xFFFF_FFFF);
    }

    /// Bytes that differ at every position and between calls.
    fn pattern(len: usize, seed: u32) -> Vec<u8> {
        (0..len)
            .map(|i| {
                let x = (i as u32).wrapping_mul(0x9E37_79B9) ^ seed.wrapping_mul(0x85EB_CA6B);
                (x >> 13) as u8 ^ (x >> 24) as u8
            })
            .collect()
    }

    /// Whether this machine takes the fast path (then every test below must see it taken).
    fn fast_path_expected() -> bool {
        cfg!(target_arch = "x86_64") && std::arch::is_x86_feature_detected!("pclmulqdq")
    }

    #[test]
    fn every_payload_length_matches_crc32fast() {
        let max = (PARALLEL_CHUNKS_MAX + 3) * 16;
        for len in 0..=max {
            let within = FRAME_HEADER_LEN / 16 + len / 16 <= PARALLEL_CHUNKS_MAX;
            for seed in 0..4 {
                let bytes = pattern(FRAME_HEADER_LEN + len, seed * 7919 + len as u32);
                let head: &[u8; FRAME_HEADER_LEN] =
                    bytes[..FRAME_HEADER_LEN].try_into().expect("header length");
                let expected = crc32fast::hash(&bytes[4..]);
                let got = small_frame_checksum(head, &bytes[FRAME_HEADER_LEN..]);
                assert_eq!(got.is_some(), within && fast_path_expected(), "payload of {len} bytes");
                let Some(got) = got else { continue };
                assert_eq!(got, expected, "payload of {len} bytes, seed {seed}");
                // The checksum field does not take part.
                let mut with_field = *head;
                with_field[..4].copy_from_slice(&got.to_le_bytes());
                let again = small_frame_checksum(&with_field, &bytes[FRAME_HEADER_LEN..]);
                assert_eq!(again, Some(expected));
            }
        }
    }

    #[test]
    fn one_flipped_bit_anywhere_changes_the_checksum() {
        if !fast_path_expected() {
            return;
        }
        let bytes = pattern(FRAME_HEADER_LEN + 128, 1);
        let head: [u8; FRAME_HEADER_LEN] = bytes[..FRAME_HEADER_LEN].try_into().expect("len");
        let clean = small_frame_checksum(&head, &bytes[FRAME_HEADER_LEN..]);
        for bit in 32..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let head: [u8; FRAME_HEADER_LEN] = damaged[..FRAME_HEADER_LEN].try_into().expect("len");
            let sum = small_frame_checksum(&head, &damaged[FRAME_HEADER_LEN..]);
            assert_ne!(sum, clean, "bit {bit}");
            assert_eq!(sum, Some(crc32fast::hash(&damaged[4..])), "bit {bit}");
        }
    }
}
