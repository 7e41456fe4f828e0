//! Fuzz target bodies, shared by the cargo-fuzz targets in `fuzz/` and by the stable test
//! `tests/fuzz_corpus.rs` that runs the checked-in corpus.
//!
//! **Not a stable API.** This module exists for fuzzers and tests only; it is hidden from the
//! docs and may change in any release.
//!
//! Every function accepts any byte slice, does a bounded amount of work, and panics only when
//! an invariant of the engine is broken (a panic inside the engine counts too). Each one
//! documents how it reads its input, so that a crashing input can be understood by hand; the
//! `seed_*` functions build well-formed inputs in those layouts.

mod crash_model;
mod decoders;
mod directory;
mod directory_input;
mod index;
mod pages;
mod proof;

pub use crash_model::{crash_model, seed_crash_models};
pub use decoders::{
    event_decoder, frame_decoder, seed_events, seed_frames, seed_headers, segment_header_decoder,
};
pub use directory::{open_directory, open_directory_outcome, seed_directories, DirectoryOutcome};
pub use directory_input::{
    encode_directory_input, write_directory, SegmentSpec, DIR_CLEAN_END, DIR_DURABLE_FILE,
    DIR_STRAY_FILE, DIR_TEMP_FILE, HEADER_CHAINED, HEADER_CHAINED_AT, HEADER_RAW,
    HEADER_RAW_RESEALED, MODE_BAD_LINK, MODE_NAME_MISMATCH, MODE_SCRIPT, MODE_SHORT_FILE,
    MODE_SIZE_SHIFT, OP_BATCH, OP_FRAME, OP_GAP, OP_GARBAGE, OP_LOSE, OP_MISPLACED,
    OP_SYNC_OR_TORN, OP_UNKNOWN_FLAG, OP_UNSYNCED_SHIFT,
};
pub use index::{index_file, seed_index_files};
pub use pages::{
    rollup_pages, seed_pages, PAGES_DECODE, PAGES_IN_LOG, PAGES_RESEAL, PAGES_SET_LENGTH,
};
pub use proof::{merkle_proof, seed_proofs, PROOF_JSON, PROOF_RAW};

/// Segment size the directory target opens logs with (the smallest allowed).
const SEGMENT_BYTES: u64 = 4096;

/// Record size limit the directory target opens logs with.
const RECORD_BYTES_MAX: u64 = 1024;

/// Largest body one segment of a directory input may take, so every input stays cheap.
const SEGMENT_BODY_MAX: usize = 8192;

/// Log identifier written into generated headers that follow no decodable header.
const LOG_ID: u64 = 0x0c4e_0f1c_2a5e_ed01;

/// Creation time written into generated headers.
const CREATED_AT_MS: u64 = 1_700_000_000_000;

/// A cursor over fuzz input that yields zeros once the input runs out.
struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let (&first, rest) = self.bytes.split_first().unwrap_or((&0, &[]));
        self.bytes = rest;
        first
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.bytes.split_at(n.min(self.bytes.len()));
        self.bytes = rest;
        head
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u64(&mut self) -> u64 {
        let mut out = [0u8; 8];
        let taken = self.take(8);
        out[..taken.len()].copy_from_slice(taken);
        u64::from_le_bytes(out)
    }
}
