//! The bytes of a loaded index file, memory-mapped.
//!
//! A loaded index keeps the file's bytes for as long as it lives: its offset lists stay in the
//! file's compact form until used (see `list.rs`). Reading the file would copy it into fresh
//! heap, whose first touch costs a page fault per 4 KiB (about 3,000 for the 12 MB index of a
//! million events, several milliseconds on a cold process); mapping it lends the page cache's
//! pages instead, which the kernel maps 64 KiB at a time, and shares them between processes.
//!
//! This module has no `unsafe` code: the map is made by [`map_read_only`] (in
//! `segment::mapping`, with the crate's other memory maps and their `unsafe` blocks), whose one
//! requirement of its caller this module keeps: **an index file is never modified or shrunk in
//! place.** Chronicle replaces it whole (a temporary file renamed
//! over it, see `save_index`), which leaves the inode this map holds untouched; the writer's
//! directory lock keeps other Chronicle writers out. As for segments (FORMAT.md, section 11),
//! another program that truncates the file while it is mapped makes a later read of the lost
//! range raise `SIGBUS`; one that rewrites bytes in place makes the lists that were not yet
//! decoded wrong (never a panic: decoding saturates, and a wrong offset reads as
//! `InvalidOffset` from the log).

use std::fs::File;
use std::io;
use std::ops::Deref;

use memmap2::Mmap;

use crate::segment::map_read_only;

/// The bytes of an index file: mapped, or owned (decoded from a buffer, or empty).
#[derive(Debug)]
pub(super) enum FileBytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Default for FileBytes {
    fn default() -> Self {
        FileBytes::Owned(Vec::new())
    }
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(map) => map,
            FileBytes::Owned(bytes) => bytes,
        }
    }
}

impl FileBytes {
    /// Maps the whole of `file`, read-only, and reads it into memory (`MADV_POPULATE_READ`,
    /// where the kernel has it): loading checksums every byte right after, and a disk read
    /// error is then this error rather than a `SIGBUS` there.
    ///
    /// # Errors
    /// The error of `fstat` or `mmap`, or a read error.
    pub(super) fn map(file: &File) -> io::Result<FileBytes> {
        if file.metadata()?.len() == 0 {
            // An empty file cannot be mapped; it decodes (and is refused) all the same.
            return Ok(FileBytes::Owned(Vec::new()));
        }
        // `file` is an index file, which Chronicle never writes or truncates in place (it
        // replaces it by rename): the invariant `map_read_only` asks of its callers.
        let map = map_read_only(file)?;
        #[cfg(target_os = "linux")]
        match map.advise(memmap2::Advice::PopulateRead) {
            // EINVAL: a kernel without the advice (before Linux 5.14); nothing is checked.
            Err(err) if err.raw_os_error() != Some(libc::EINVAL) => {
                let what = format!("the file could not be read into memory: {err}");
                return Err(io::Error::new(err.kind(), what));
            }
            _ => {}
        }
        Ok(FileBytes::Mapped(map))
    }
}
