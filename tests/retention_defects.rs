//! One test per defect found in retention (`FORMAT.md` 6.6) and what reads a log beside it:
//! each says what went wrong and what must happen instead.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use chronicle::{Log, Next, Options, StorageError};
use common::segment_bases;

fn options() -> Options {
    Options { segment_bytes: 64 << 10, ..Options::default() }
}

fn payload(i: u64) -> Vec<u8> {
    let mut p = i.to_le_bytes().to_vec();
    p.resize(100 + (i % 50) as usize, (i % 251) as u8);
    p
}

/// Copies every file of `from` into `to`: the directory as a process crash would leave it
/// (everything written is in the page cache, nothing more).
fn crash_image(from: &Path, to: &Path) {
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A read-only handle follows a log that another handle writes, and the writer's retention
/// removes records the follower has not reached, with the segment after the last one it has
/// mapped. The follower looked for that segment by name for ever, delivering nothing and
/// saying nothing; it must end with `InvalidOffset`, as a replay from before the start does.
#[test]
fn a_read_only_follower_behind_retention_hangs_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Log::open_with(dir.path(), options()).unwrap();
    for i in 0..100 {
        writer.append(&payload(i)).unwrap();
    }
    writer.sync().unwrap();
    let reader = Log::open_read_only(dir.path()).unwrap();
    let mut follow = reader.follow(reader.end_offset());
    assert!(matches!(follow.next_timeout(Duration::from_millis(10)), Next::CaughtUp));
    // The writer goes on for many segments and then trims all but the active one.
    for i in 100..5000 {
        writer.append(&payload(i)).unwrap();
    }
    writer.sync().unwrap();
    let second = segment_bases(dir.path())[1];
    let report = writer.truncate_before(writer.end_offset()).unwrap();
    assert!(report.segments_removed.len() > 3, "{report:?}");
    let (start, end) = (writer.start_offset(), writer.end_offset());
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut last = None;
    let mut outcome = None;
    while Instant::now() < deadline && outcome.is_none() {
        match follow.next_timeout(Duration::from_millis(200)) {
            Next::Record(r) => {
                last = Some(r.offset);
                if r.offset >= second {
                    outcome = Some(format!("record at {} (past the first segment)", r.offset));
                }
            }
            Next::Error(e) => outcome = Some(format!("error: {e}")),
            Next::Stopped => outcome = Some("stopped".to_string()),
            Next::CaughtUp | Next::TimedOut => {}
        }
    }
    assert!(
        outcome.is_some(),
        "log now {start}..{end}; the follower delivered up to {last:?} (the first segment ends \
         at {second}) and then waited for 3 s with neither a record nor an error"
    );
}

/// A read-only handle that keeps up with the writer kept every segment the writer's
/// retention removed mapped, so their disk space was never freed while it lived, and its
/// `start_offset` stayed at 0. Its follower must drop them as the start record moves.
#[test]
fn a_read_only_handle_pins_removed_segments_for_ever() {
    let dir = tempfile::tempdir().unwrap();
    let by_size = Options { retention_max_bytes: Some(4 * (64 << 10)), ..options() };
    let mut writer = Log::open_with(dir.path(), by_size).unwrap();
    writer.append(&payload(0)).unwrap();
    writer.sync().unwrap();
    let reader = Log::open_read_only(dir.path()).unwrap();
    let mut follow = reader.follow(0);
    let mut seen = 0u64;
    for i in 1..30_000u64 {
        writer.append(&payload(i)).unwrap();
        if i % 100 == 0 {
            writer.sync().unwrap();
            loop {
                match follow.next_timeout(Duration::from_millis(50)) {
                    Next::Record(_) => seen += 1,
                    Next::CaughtUp | Next::TimedOut => break,
                    other => panic!("{other:?}"),
                }
            }
        }
    }
    assert!(writer.retention_error().is_none(), "{:?}", writer.retention_error());
    assert!(writer.start_offset() > 0, "the size policy removed nothing");
    // The follower catches up with the last removal too.
    writer.sync().unwrap();
    loop {
        match follow.next_timeout(Duration::from_millis(50)) {
            Next::Record(_) => seen += 1,
            Next::CaughtUp | Next::TimedOut => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(seen > 20_000, "{seen}");
    drop(follow);
    let deleted_maps = fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains(dir.path().to_str().unwrap()) && l.contains(".seg (deleted)"))
        .count();
    assert_eq!(
        (reader.start_offset(), deleted_maps),
        (writer.start_offset(), 0),
        "the reader still starts at 0 and maps removed segment files"
    );
}

/// An event log trimmed by retention, then a process crash before its index was saved again.
/// The next open found the stored index short of the new start and rebuilt it from the
/// remaining records, forgetting every aggregate whose events were all removed: `NoStream` was
/// accepted and version 0 given a second time. The index must be saved before retention
/// removes anything, and retention must never remove what the saved index does not cover.
#[test]
fn an_event_log_crash_after_retention_loses_the_versions_of_removed_aggregates() {
    use chronicle::{Event, EventLog, ExpectedVersion};
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open_with(dir.path(), options()).unwrap();
    let mut offsets = Vec::new();
    for i in 0..3000u64 {
        // Aggregate 7 has its five events at the very front only.
        let id = if i < 5 { 7 } else { i % 3 };
        let event = Event::builder("t").aggregate_id(id).payload(payload(i)).build();
        offsets.push(log.append(&event).unwrap());
    }
    let report = log.truncate_before(offsets[2000]).unwrap();
    assert!(report.start_offset > offsets[4], "{report:?}");
    assert_eq!(log.aggregate_version(7).unwrap(), Some(4));
    let image = tempfile::tempdir().unwrap();
    crash_image(dir.path(), image.path());
    drop(log);

    let mut log = EventLog::open_with(image.path(), options()).unwrap();
    assert_eq!(
        log.aggregate_version(7).unwrap(),
        Some(4),
        "after the crash: index {:?}",
        log.index_report()
    );
    let taken = log.append_expecting(
        ExpectedVersion::NoStream,
        &[Event::builder("t").aggregate_id(7).build()],
    );
    assert!(taken.is_err(), "aggregate 7 had five events; NoStream was accepted");
}

/// `FORMAT.md` 6.6: "If no segment file begins at or after start_offset, `BrokenChain`." With a
/// `START` and no segment file at all, a writer's open created a new, empty log at offset 0
/// and deleted `START`, and the old log's consumer files stood beside a log they did not
/// belong to. It must refuse the directory.
#[test]
fn a_start_record_without_any_segment_file_is_refused_not_replaced_by_a_new_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path(), options()).unwrap();
    let offsets: Vec<u64> = (0..3000).map(|i| log.append(&payload(i)).unwrap()).collect();
    let report = log.truncate_before(offsets[2000]).unwrap();
    assert!(report.start_offset > 0);
    log.close().unwrap();
    for base in segment_bases(dir.path()) {
        fs::remove_file(dir.path().join(format!("{base:020}.seg"))).unwrap();
    }
    // The read-only open says `NotALogDirectory` ("no segment files (an empty directory)",
    // although START, DURABLE and page files are there) rather than `BrokenChain`.
    match Log::open_read_only(dir.path()) {
        Err(StorageError::BrokenChain { .. }) => {}
        other => eprintln!("read-only open: {other:?}"),
    }
    match Log::open_with(dir.path(), options()) {
        Err(StorageError::BrokenChain { .. }) => {}
        Ok(log) => panic!(
            "a new log was created at offset {} (START still there: {})",
            log.start_offset(),
            dir.path().join("START").exists()
        ),
        Err(other) => panic!("{other}"),
    }
}

/// A log whose front was removed with `truncate_before_forced` while it kept no Merkle pages,
/// later opened with pages (the default): every `truncate_before` failed with `Proof`, so the
/// size policy stopped for good and the log grew without bound. The tree is lost already, so
/// the pages must limit nothing.
#[test]
fn after_a_forced_truncation_without_pages_retention_fails_for_ever() {
    let dir = tempfile::tempdir().unwrap();
    let no_pages = Options { merkle_rollup: false, ..options() };
    let mut log = Log::open_with(dir.path(), no_pages).unwrap();
    for i in 0..3000 {
        log.append(&payload(i)).unwrap();
    }
    let forced = log.truncate_before_forced(log.end_offset()).unwrap();
    assert!(!forced.segments_removed.is_empty(), "{forced:?}");
    log.close().unwrap();

    let by_size = Options { retention_max_bytes: Some(4 * (64 << 10)), ..options() };
    let mut log = Log::open_with(dir.path(), by_size).unwrap();
    for i in 0..20_000u64 {
        log.append(&payload(i)).unwrap();
    }
    let kept = log.end_offset() - log.start_offset();
    let policy = log.retention_error().map(str::to_string);
    let plain = log.truncate_before(log.end_offset());
    assert!(
        plain.is_ok() && policy.is_none(),
        "truncate_before: {plain:?}; size policy: {policy:?}; {kept} bytes kept against a \
         limit of {}",
        4 * (64 << 10)
    );
}

/// Read-only opens while the writer appends (rolling every few records) and removes segments:
/// a listing made while the writer worked could miss a segment or name one about to go, and
/// the open failed (`Io` "not found", or `BrokenChain`) on an intact log. An open whose
/// directory changed under it must start again.
#[test]
fn a_read_only_open_during_retention_fails_spuriously() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let small = Options { segment_bytes: 4096, ..Options::default() };
    let mut writer = Log::open_with(dir.path(), small).unwrap();
    for i in 0..2000 {
        writer.append(&payload(i)).unwrap();
    }
    writer.sync().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let path = dir.path().to_path_buf();
    let stop2 = Arc::clone(&stop);
    let opener = std::thread::spawn(move || {
        let (mut opens, mut failures) = (0u32, Vec::new());
        while !stop2.load(Ordering::Relaxed) {
            opens += 1;
            if let Err(e) = Log::open_read_only(&path) {
                failures.push(e.to_string());
            }
        }
        (opens, failures)
    });
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut i = 2000u64;
    while Instant::now() < deadline {
        for _ in 0..300 {
            writer.append(&payload(i)).unwrap();
            i += 1;
        }
        writer.truncate_before(writer.end_offset()).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let (opens, failures) = opener.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {opens} read-only opens failed during retention: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
}

/// A start record whose start_entry is near `u64::MAX` behind a matching checksum was accepted,
/// and the next removal overflowed adding to it (a panic with overflow checks, a wrapped entry
/// number in `START` without). An impossible start_entry must be refused at open.
#[test]
fn a_start_record_with_a_huge_start_entry_overflows_on_the_next_removal() {
    let dir = tempfile::tempdir().unwrap();
    let no_pages = Options { merkle_rollup: false, ..options() };
    let mut log = Log::open_with(dir.path(), no_pages.clone()).unwrap();
    let offsets: Vec<u64> = (0..3000).map(|i| log.append(&payload(i)).unwrap()).collect();
    log.truncate_before_forced(offsets[1000]).unwrap();
    log.close().unwrap();
    let path = dir.path().join("START");
    let mut bytes = fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 36);
    bytes[24..32].copy_from_slice(&(u64::MAX - 5).to_le_bytes());
    let crc = crc32fast::hash(&bytes[..32]);
    bytes[32..].copy_from_slice(&crc.to_le_bytes());
    fs::write(&path, &bytes).unwrap();

    let mut log = match Log::open_with(dir.path(), no_pages) {
        Ok(log) => log,
        Err(e) => return eprintln!("refused at open, as it should be: {e}"),
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        log.truncate_before_forced(offsets[2500]).map(|r| r.records_removed)
    }));
    assert!(
        matches!(outcome, Ok(Err(_))),
        "start_entry {} accepted at open; the removal gave {:?}",
        u64::MAX - 5,
        outcome.map_err(|p| p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())))
    );
}
