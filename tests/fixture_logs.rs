//! More logs written by the library and checked in under `tests/fixtures/` (format version 1),
//! each with what it must yield, so that no later change can silently stop reading them:
//!
//! - `v1-torn-tail`: a writer that died with unsynced appends, the last frame torn; the log
//!   must yield every record before the torn frame, and report the torn tail.
//! - `v1-corrupt-frame`: a closed log with one flipped bit in a frame of a sealed segment; it
//!   opens, and replay yields every record before that frame, then `Corruption` naming it.
//! - `v1-event-log`: a closed event log with its index file, `DURABLE` and a stored rollup
//!   page; it must yield the same events, answer from its index file without rebuilding it,
//!   and give the tree head from its page that the records give.
//!
//! - `v1-event-versions`: a closed event log whose records store aggregate versions (event
//!   record layout 2, `FORMAT.md` 7), beside events without an aggregate.
//! - `v1-trimmed`: a closed log after retention removed its front segments, with its start
//!   record, a consumer position and a stored page; it must begin where the record says, yield
//!   the records after that, give the tree head recorded when it was written
//!   (`v1-trimmed.head.json`), and take appends that extend that tree.
//!
//! They are written once by the ignored tests `write_fixture_logs`,
//! `write_event_versions_fixture` and `write_trimmed_fixture`
//! (`CHRONICLE_WRITE_FIXTURES=1 cargo test --release --test fixture_logs -- --ignored`). Write
//! them again only to add one, never to make a failing check pass.

use std::fs;
use std::path::{Path, PathBuf};

use chronicle::{Event, EventLog, ExpectedVersion, Log, Options, StorageError};

const SEGMENT_BYTES: u64 = 4096;
const RECORDS: usize = 60;
/// Records synced before the writer of `v1-torn-tail` dies.
const SYNCED: usize = 50;
/// The record of `v1-corrupt-frame` whose frame holds the flipped bit.
const CORRUPT: usize = 30;
const EVENTS: u64 = 300;

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures").join(name)
}

fn options() -> Options {
    Options { segment_bytes: SEGMENT_BYTES, prepare_next_segment: false, ..Options::default() }
}

fn payload(i: usize) -> Vec<u8> {
    (0..(i * 37 % 150)).map(|k| (i * 13 + k) as u8 ^ 0xa5).collect()
}

fn event(i: u64) -> Event {
    Event::builder(["opened", "changed", "closed"][(i % 3) as usize])
        .aggregate_id(i % 5)
        .payload(format!("event {i}").into_bytes())
        .build()
}

/// A copy of fixture `name` in a new directory (so writers never change the checked-in one).
fn copy_of(name: &str) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(fixture_dir(name)).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    copy
}

/// Every record of `log` until the first error: payloads, and the error.
fn read(log: &Log) -> (Vec<Vec<u8>>, Option<StorageError>) {
    let mut records = Vec::new();
    for item in log.replay(0) {
        match item {
            Ok(record) => records.push(record.payload.to_vec()),
            Err(err) => return (records, Some(err)),
        }
    }
    (records, None)
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    names.sort();
    names.pop().unwrap()
}

#[test]
#[ignore = "writes tests/fixtures; run by hand only to add a fixture"]
fn write_fixture_logs() {
    if std::env::var_os("CHRONICLE_WRITE_FIXTURES").is_none() {
        return;
    }
    for name in ["v1-torn-tail", "v1-corrupt-frame", "v1-event-log"] {
        let dir = fixture_dir(name);
        if dir.exists() {
            fs::remove_dir_all(&dir).unwrap();
        }
    }
    // A writer that dies with its last records unsynced, the last frame half written.
    let dir = fixture_dir("v1-torn-tail");
    let mut log = Log::open_with(&dir, options()).unwrap();
    let mut last = 0;
    for i in 0..RECORDS {
        last = log.append(&payload(i)).unwrap();
        if i + 1 == SYNCED {
            log.sync().unwrap();
        }
    }
    drop(log);
    let segment = last_segment(&dir);
    let seg_base: u64 = segment.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let mut bytes = fs::read(&segment).unwrap();
    let frame = 64 + (last - seg_base) as usize;
    bytes[frame + 32..frame + 32 + payload(RECORDS - 1).len()].fill(0);
    fs::write(&segment, bytes).unwrap();

    // A closed log, one bit of one frame's payload flipped in a sealed segment.
    let dir = fixture_dir("v1-corrupt-frame");
    let mut log = Log::open_with(&dir, options()).unwrap();
    let mut offsets = Vec::new();
    for i in 0..RECORDS {
        offsets.push(log.append(&payload(i)).unwrap());
    }
    log.close().unwrap();
    let mut segments: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    let holder = segments
        .iter()
        .rev()
        .find(|p| {
            let base: u64 = p.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            base <= offsets[CORRUPT]
        })
        .unwrap();
    assert_ne!(holder, segments.last().unwrap(), "the frame is in a sealed segment");
    let base: u64 = holder.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let mut bytes = fs::read(holder).unwrap();
    bytes[64 + (offsets[CORRUPT] - base) as usize + 33] ^= 0x10;
    fs::write(holder, bytes).unwrap();

    // An event log with its index file, DURABLE and one stored rollup page.
    let dir = fixture_dir("v1-event-log");
    let mut log = EventLog::open_with(&dir, options()).unwrap();
    for i in 0..EVENTS {
        log.append(&event(i)).unwrap();
    }
    log.log().tree_head(None).unwrap();
    log.close().unwrap();
    for name in ["v1-torn-tail", "v1-corrupt-frame", "v1-event-log"] {
        fs::remove_file(fixture_dir(name).join("LOCK")).ok();
    }
}

#[test]
fn a_torn_tail_written_by_version_1_is_cut_at_the_torn_frame() {
    let dir = fixture_dir("v1-torn-tail");
    let expected: Vec<Vec<u8>> = (0..RECORDS - 1).map(payload).collect();
    let log = Log::open_read_only(&dir).unwrap();
    assert!(log.open_report().torn_tail.is_some(), "{:?}", log.open_report());
    let (records, error) = read(&log);
    assert!(records == expected && error.is_none(), "{error:?}");
    drop(log);
    let copy = copy_of("v1-torn-tail");
    let mut log = Log::open_with(copy.path(), options()).unwrap();
    assert!(log.open_report().torn_tail.is_some());
    let (records, error) = read(&log);
    assert!(records == expected && error.is_none(), "{error:?}");
    log.append_sync(b"after the cut").unwrap();
    log.close().unwrap();
    let log = Log::open_read_only(copy.path()).unwrap();
    let (records, error) = read(&log);
    assert!(error.is_none());
    assert_eq!(records[..RECORDS - 1], expected[..]);
    assert_eq!(records[RECORDS - 1], b"after the cut");
}

#[test]
fn a_corrupt_frame_written_by_version_1_is_reported_where_it_is() {
    let dir = fixture_dir("v1-corrupt-frame");
    let expected: Vec<Vec<u8>> = (0..CORRUPT).map(payload).collect();
    for log in [
        Log::open_read_only(&dir).unwrap(),
        Log::open_with(copy_of("v1-corrupt-frame").path(), options()).unwrap(),
    ] {
        let (records, error) = read(&log);
        assert_eq!(records, expected);
        match error {
            Some(StorageError::Corruption { offset, .. }) => {
                let next = log.replay(offset).next();
                assert!(matches!(next, Some(Err(StorageError::Corruption { .. }))), "{next:?}");
                assert!(log.read_at(offset).is_err());
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        assert!(log.verify().is_err());
    }
}

#[test]
fn an_event_log_written_by_version_1_answers_from_its_files() {
    let dir = fixture_dir("v1-event-log");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.retain(|n| !n.ends_with(".seg"));
    names.sort();
    assert_eq!(names, ["DURABLE", "index.chx", "rollup-0.pages"]);
    let log = EventLog::open_read_only(&dir).unwrap();
    let events: Vec<Event> = log.replay(0).map(|e| e.unwrap().event).collect();
    assert_eq!(events, (0..EVENTS).map(event).collect::<Vec<_>>());
    let index = log.index_report();
    assert!(index.loaded && index.rebuilt_because.is_none(), "{index:?}");
    assert_eq!(index.records_replayed, 0, "{index:?}");
    for id in 0..5 {
        let found: Vec<Event> =
            log.load_aggregate(id).unwrap().into_iter().map(|e| e.event).collect();
        let want: Vec<Event> = (0..EVENTS).filter(|i| i % 5 == id).map(event).collect();
        assert_eq!(found, want, "aggregate {id}");
    }
    let report = log.log().rollup_report();
    let head = log.log().tree_head(None).unwrap();
    assert_eq!((head.tree_size, log.log().rollup_report().entries_kept_on_open), (EVENTS, 256));
    assert!(report.dropped.is_none(), "{report:?}");
    drop(log);
    let copy = copy_of("v1-event-log");
    let plain = Log::open_with(copy.path(), Options { merkle_rollup: false, ..options() }).unwrap();
    assert_eq!(plain.tree_head(None).unwrap(), head, "the page's head is the records' head");
    assert!(Log::open_read_only(&dir).unwrap().verify_pages(None, None).unwrap().is_clean());
}

#[test]
fn versions_of_events_written_before_versions_were_stored_are_their_positions() {
    let log = EventLog::open_read_only(fixture_dir("v1-event-log")).unwrap();
    for envelope in log.replay(0) {
        assert_eq!(envelope.unwrap().aggregate_version, None, "layout 1 stores no version");
    }
    for id in 0..5 {
        let versions: Vec<_> =
            log.load_aggregate(id).unwrap().iter().map(|e| e.aggregate_version).collect();
        assert_eq!(versions, (0..EVENTS / 5).map(Some).collect::<Vec<_>>(), "aggregate {id}");
        assert_eq!(log.aggregate_version(id).unwrap(), Some(EVENTS / 5 - 1));
    }
    drop(log);
    // A writer continues the count, and stores versions from there on.
    let copy = copy_of("v1-event-log");
    let mut log = EventLog::open_with(copy.path(), options()).unwrap();
    let stale = log.append_expecting(ExpectedVersion::Exact(EVENTS / 5 - 2), &[event(0)]);
    assert!(matches!(stale, Err(StorageError::WrongExpectedVersion { .. })), "{stale:?}");
    let offsets =
        log.append_expecting(ExpectedVersion::Exact(EVENTS / 5 - 1), &[event(0)]).unwrap();
    assert_eq!(log.read_at(offsets[0]).unwrap().aggregate_version, Some(EVENTS / 5));
}

/// The events of `v1-event-versions`: three aggregates and, every seventh, none.
fn versioned_event(i: u64) -> Event {
    let builder = Event::builder("counted").payload(i.to_le_bytes().to_vec());
    if i % 7 == 6 {
        builder.build()
    } else {
        builder.aggregate_id(100 + i % 3).build()
    }
}

const VERSIONED_EVENTS: u64 = 60;

#[test]
#[ignore = "writes tests/fixtures; run by hand only to add a fixture"]
fn write_event_versions_fixture() {
    if std::env::var_os("CHRONICLE_WRITE_FIXTURES").is_none() {
        return;
    }
    let dir = fixture_dir("v1-event-versions");
    if dir.exists() {
        fs::remove_dir_all(&dir).unwrap();
    }
    let mut log = EventLog::open_with(&dir, options()).unwrap();
    for i in 0..VERSIONED_EVENTS {
        log.append(&versioned_event(i)).unwrap();
    }
    log.close().unwrap();
    fs::remove_file(dir.join("LOCK")).ok();
}

#[test]
fn an_event_log_with_stored_versions_reads_them_back() {
    let dir = fixture_dir("v1-event-versions");
    let log = EventLog::open_read_only(&dir).unwrap();
    let mut counts = [0u64; 3];
    let mut seen = 0;
    for (i, envelope) in (0..).zip(log.replay(0)) {
        let envelope = envelope.unwrap();
        assert_eq!(envelope.event, versioned_event(i));
        let expected = envelope.event.aggregate_id.map(|id| {
            let slot = &mut counts[(id - 100) as usize];
            *slot += 1;
            *slot - 1
        });
        assert_eq!(envelope.aggregate_version, expected, "event {i}");
        seen += 1;
    }
    assert_eq!(seen, VERSIONED_EVENTS);
    for id in 100..103 {
        let versions: Vec<_> =
            log.load_aggregate(id).unwrap().iter().map(|e| e.aggregate_version).collect();
        let count = counts[(id - 100) as usize];
        assert_eq!(versions, (0..count).map(Some).collect::<Vec<_>>());
        assert_eq!(log.aggregate_version(id).unwrap(), Some(count - 1));
    }
}

/// Records of `v1-trimmed`; retention removed the segments before record
/// `TRIMMED_BEFORE` (as far as whole segments and stored pages allow), and its consumer
/// `reports` committed the offset of record `TRIMMED_CONSUMER`.
const TRIMMED_RECORDS: usize = 300;
const TRIMMED_BEFORE: usize = 270;
const TRIMMED_CONSUMER: usize = 280;

/// The tree head of `v1-trimmed` over all its records, recorded when it was written (the
/// records it was computed from are gone from the log).
fn trimmed_head_file() -> PathBuf {
    fixture_dir("v1-trimmed.head.json")
}

#[test]
#[ignore = "writes tests/fixtures; run by hand only to add a fixture"]
fn write_trimmed_fixture() {
    if std::env::var_os("CHRONICLE_WRITE_FIXTURES").is_none() {
        return;
    }
    let dir = fixture_dir("v1-trimmed");
    if dir.exists() {
        fs::remove_dir_all(&dir).unwrap();
    }
    let mut log = Log::open_with(&dir, options()).unwrap();
    let offsets: Vec<u64> =
        (0..TRIMMED_RECORDS).map(|i| log.append(&payload(i)).unwrap()).collect();
    log.sync().unwrap();
    let head = log.tree_head(None).unwrap();
    log.consumer("reports").unwrap().commit(offsets[TRIMMED_CONSUMER]).unwrap();
    let report = log.truncate_before(offsets[TRIMMED_BEFORE]).unwrap();
    assert!(report.records_removed > 0, "{report:?}");
    log.close().unwrap();
    fs::remove_file(dir.join("LOCK")).ok();
    fs::write(trimmed_head_file(), serde_json::to_vec_pretty(&head).unwrap()).unwrap();
}

#[test]
fn a_log_trimmed_by_retention_in_version_1_begins_at_its_start_record() {
    let dir = fixture_dir("v1-trimmed");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let first_segment: u64 = names[0].strip_suffix(".seg").unwrap().parse().unwrap();
    names.retain(|n| !n.ends_with(".seg"));
    assert_eq!(names, ["DURABLE", "START", "consumer-reports.pos", "rollup-0.pages"]);
    let head: chronicle::rollup::TreeHead =
        serde_json::from_slice(&fs::read(trimmed_head_file()).unwrap()).unwrap();

    let log = Log::open_read_only(&dir).unwrap();
    // It begins at its first segment, after the records retention removed.
    assert!(first_segment > 0);
    assert_eq!(log.start_offset(), first_segment);
    let removed = log.reader().start_entry() as usize;
    assert!((1..TRIMMED_BEFORE).contains(&removed), "{removed} records removed");
    let records: Vec<(u64, Vec<u8>)> = log
        .replay(first_segment)
        .map(|r| r.unwrap())
        .map(|r| (r.offset, r.payload.to_vec()))
        .collect();
    let payloads: Vec<&Vec<u8>> = records.iter().map(|r| &r.1).collect();
    let want: Vec<Vec<u8>> = (removed..TRIMMED_RECORDS).map(payload).collect();
    assert!(payloads.iter().copied().eq(want.iter()), "the records after its start");
    assert!(matches!(log.replay(0).next(), Some(Err(StorageError::InvalidOffset { .. }))));
    // Its pages keep the tree of its whole history.
    assert_eq!(log.tree_head(None).unwrap(), head);
    let position = log.consumer("reports").unwrap().position();
    assert_eq!(position, Some(records[TRIMMED_CONSUMER - removed].0));
    drop(log);

    // A writer goes on from it, and its tree grows from the recorded one.
    let copy = copy_of("v1-trimmed");
    let mut log = Log::open_with(copy.path(), options()).unwrap();
    assert_eq!(log.start_offset(), first_segment);
    log.append_sync(b"after the trim").unwrap();
    let grown = log.tree_head(None).unwrap();
    assert_eq!(grown.tree_size, head.tree_size + 1);
    let proof = log.consistency_proof(head.tree_size, Some(grown.tree_size)).unwrap();
    proof.verify(Some((&head.root, &grown.root))).unwrap();
}
