//! `Options::zero_fill_segments`: every segment file the writer makes (at open, at a roll, or
//! ahead of need as the spare) is written with zeros and synced when it is made, so that no
//! part of it is preallocated-but-unwritten space when records are synced into it. These tests
//! check that on the files themselves (the filesystem's extent map, `FS_IOC_FIEMAP`, which
//! flags preallocated space never written as "unwritten" on ext4 and XFS), and that such a log
//! recovers from a crash like any other: the zeros past its end are not mistaken for damage.

mod common;

use std::fs::{self, File};
use std::os::fd::AsRawFd as _;
use std::path::Path;
use std::time::{Duration, Instant};

use chronicle::{Log, Options};
use common::{all, copy_dir, payload, segments, stride, Rec};

const SEGMENT_BYTES: u64 = 1 << 20;
const SPARE: &str = "next.seg.tmp";

fn options() -> Options {
    Options {
        segment_bytes: SEGMENT_BYTES,
        record_bytes_max: Some(4096),
        zero_fill_segments: true,
        ..Options::default()
    }
}

/// `struct fiemap` of `<linux/fiemap.h>`, with room for `EXTENTS` extents.
#[repr(C)]
struct Fiemap {
    start: u64,
    length: u64,
    flags: u32,
    mapped_extents: u32,
    extent_count: u32,
    reserved: u32,
    extents: [FiemapExtent; EXTENTS],
}

/// `struct fiemap_extent`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct FiemapExtent {
    logical: u64,
    physical: u64,
    length: u64,
    reserved64: [u64; 2],
    flags: u32,
    reserved: [u32; 3],
}

const EXTENTS: usize = 256;
/// `_IOWR('f', 11, struct fiemap)`.
const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
const FIEMAP_FLAG_SYNC: u32 = 1;
const FIEMAP_EXTENT_LAST: u32 = 0x1;
const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x800;

/// Bytes of the file that are allocated but flagged unwritten, and bytes not allocated at all,
/// after syncing it (`FIEMAP_FLAG_SYNC`); `None` if the filesystem has no extent map.
fn unwritten_and_unallocated(path: &Path) -> Option<(u64, u64)> {
    extent_state(path).unwrap_or_else(|too_many| panic!("{too_many}"))
}

/// [`unwritten_and_unallocated`], or an error if the file has more than [`EXTENTS`] extents:
/// a file being written over in pieces may have that many for a while.
fn extent_state(path: &Path) -> Result<Option<(u64, u64)>, String> {
    let file = File::open(path).unwrap();
    let len = file.metadata().unwrap().len();
    let mut map = Fiemap {
        start: 0,
        length: u64::MAX,
        flags: FIEMAP_FLAG_SYNC,
        mapped_extents: 0,
        extent_count: EXTENTS as u32,
        reserved: 0,
        extents: [FiemapExtent::default(); EXTENTS],
    };
    // SAFETY: `map` is a `struct fiemap` followed by room for `extent_count` extents, as the
    // ioctl expects; the kernel writes only inside it, and it outlives the call.
    if unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP, &mut map) } != 0 {
        return Ok(None);
    }
    let extents = &map.extents[..map.mapped_extents as usize];
    let last = extents.last().map_or(0, |e| e.flags);
    if last & FIEMAP_EXTENT_LAST == 0 {
        return Err(format!("more than {EXTENTS} extents in {}", path.display()));
    }
    let unwritten: u64 = extents
        .iter()
        .filter(|e| e.flags & FIEMAP_EXTENT_UNWRITTEN != 0)
        .map(|e| e.length.min(len.saturating_sub(e.logical)))
        .sum();
    let allocated: u64 = extents.iter().map(|e| e.length.min(len.saturating_sub(e.logical))).sum();
    Ok(Some((unwritten, len.saturating_sub(allocated))))
}

/// Asserts that no byte of the file is unallocated or unwritten.
fn assert_written_to_its_end(path: &Path) {
    let (unwritten, unallocated) = unwritten_and_unallocated(path).unwrap();
    assert_eq!((unwritten, unallocated), (0, 0), "unwritten, unallocated in {}", path.display());
}

/// Whether this filesystem's extent map flags preallocated, never-written space (ext4 and
/// XFS do); without that, the file checks below cannot see the setting's effect.
fn extent_map_shows_unwritten_space(dir: &Path) -> bool {
    let path = dir.join("probe");
    let file = File::create(&path).unwrap();
    // SAFETY: `fallocate` on a file descriptor owned here; it reads no memory.
    let allocated = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, 1 << 20) } == 0;
    let shows = allocated && unwritten_and_unallocated(&path).is_some_and(|(u, _)| u == 1 << 20);
    fs::remove_file(&path).unwrap();
    shows
}

/// Appends `count` records from index `first`, syncing every tenth (some as batches of two).
fn append_mixed(log: &mut Log, first: usize, count: usize) -> Vec<Rec> {
    let mut written = Vec::new();
    for i in first..first + count {
        let p = payload(i, 300 + (i * 53) % 700);
        if i % 10 == 9 {
            let q = payload(i + 1_000_000, 64);
            let offsets = log.append_batch_sync(&[&p, &q]).unwrap();
            written.push(Rec { offset: offsets[0], payload: p });
            written.push(Rec { offset: offsets[1], payload: q });
        } else {
            written.push(Rec { offset: log.append(&p).unwrap(), payload: p });
        }
    }
    written
}

/// Waits up to 10 s for the helper thread to have made the spare file and zero-filled it:
/// preallocated to its full size, then written over (so unwritten until the zeros are in).
fn wait_for_zero_filled_spare(dir: &Path) {
    let path = dir.join(SPARE);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let full = fs::metadata(&path).is_ok_and(|m| m.len() == SEGMENT_BYTES);
        // While the helper writes the zeros, the file may be in more pieces than are read.
        match extent_state(&path) {
            Ok(Some((0, 0))) if full => return,
            state => assert!(
                Instant::now() < deadline,
                "the spare was not zero-filled within 10 s: unwritten, unallocated {state:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn every_segment_made_with_the_setting_is_written_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    if !extent_map_shows_unwritten_space(dir.path()) {
        eprintln!("skipped: this filesystem's extent map does not flag unwritten space");
        return;
    }
    // Without the setting, a new log's segment is unwritten past its header.
    let plain = dir.path().join("plain");
    let log = Log::open_with(&plain, Options { zero_fill_segments: false, ..options() }).unwrap();
    let (_, first) = segments(&plain).remove(0);
    let (unwritten, _) = unwritten_and_unallocated(&first).unwrap();
    assert!(unwritten >= SEGMENT_BYTES - 4096, "the control segment: {unwritten} B unwritten");
    log.close().unwrap();

    let zeroed = dir.path().join("zeroed");
    let mut log = Log::open_with(&zeroed, options()).unwrap();
    let (_, first) = segments(&zeroed).remove(0);
    assert_written_to_its_end(&first);
    // Several segments of records: the rolls take spares made by the helper thread (waited
    // for, so the roll cannot make its own instead), each checked before it is used.
    let mut written = Vec::new();
    let mut spares_checked = 0;
    while written.len() < 5000 {
        let base = written.len();
        written.extend(append_mixed(&mut log, base, 100));
        if fs::metadata(zeroed.join(SPARE)).is_ok() {
            wait_for_zero_filled_spare(&zeroed);
            spares_checked += 1;
            let base = written.len();
            written.extend(append_mixed(&mut log, base, 1000));
        }
    }
    assert!(spares_checked >= 2, "only {spares_checked} spares were seen");
    let files = segments(&zeroed);
    assert!(files.len() >= 4, "only {} segments", files.len());
    for (_, path) in &files {
        assert_written_to_its_end(path);
    }
    log.close().unwrap();
    let log = Log::open_with(&zeroed, options()).unwrap();
    assert_eq!(all(log.replay(0)), written);
}

/// A crash image of a zero-filled log (copied while the writer is open, with unsynced
/// records after the last sync) reopens with every record that was in it and no torn tail:
/// the zeros past the end are an end of data, as in a preallocated segment.
#[test]
fn a_crashed_zero_filled_log_reopens_with_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let mut log = Log::open_with(&live, options()).unwrap();
    let mut written = append_mixed(&mut log, 0, 2500);
    written.extend((0..7).map(|i| {
        let p = payload(900_000 + i, 100);
        Rec { offset: log.append(&p).unwrap(), payload: p }
    }));
    let crashed = dir.path().join("crashed");
    copy_dir(&live, &crashed);
    log.close().unwrap();

    let log = Log::open_with(&crashed, options()).unwrap();
    let report = log.open_report();
    assert!(report.torn_tail.is_none(), "{report:?}");
    let last = written.last().unwrap();
    assert_eq!(log.end_offset(), last.offset + stride(last.payload.len()));
    assert_eq!(all(log.replay(0)), written);
}
