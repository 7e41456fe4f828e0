//! Logs written by the library and checked in under `tests/fixtures/`, so that "old logs keep
//! opening" is tested on bytes that no later change to the writer can quietly rewrite:
//!
//! - `v1-clean`: a log of 4 KiB segments, closed cleanly (its `DURABLE` record says so), with
//!   buffered and synced appends, a batch and an empty record. Every segment has version 1.
//! - `v2-salvaged`: the same records, closed, then two frames damaged and the log repaired with
//!   `RecoveryMode::Salvage` and closed again: one gap in the middle of the first segment and
//!   one that ends the second (the third segment's header names it). Those two segments have
//!   version 2, the others version 1, and the damaged bytes lie beside them
//!   (`*.seg.damaged-*`).
//!
//! Each is opened read-only and, on a copy, by a writer that appends to it; both must read
//! exactly the records and gaps below, and so must the FORMAT.md reader.
//!
//! The fixtures are written once by `write_fixtures`:
//! `CHRONICLE_WRITE_FIXTURES=1 cargo test --test format_spec_reader write_fixtures -- --ignored`.
//! Write them again only to add a fixture, never to make a failing check pass: a failure means
//! a build no longer reads logs that earlier builds wrote.

use std::path::PathBuf;

use super::*;

const V1_CLEAN: &str = "v1-clean";
const V2_SALVAGED: &str = "v2-salvaged";
/// The segment size of both fixtures, and its data capacity.
const SEGMENT_BYTES: u64 = 4096;
const CAPACITY: u64 = SEGMENT_BYTES - HEADER_LEN as u64;
/// Records appended to both fixtures; those from `BATCH_AT` on for `BATCH_LEN` form one batch.
const RECORDS: usize = 80;
const BATCH_AT: usize = 40;
const BATCH_LEN: usize = 4;

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures").join(name)
}

fn fixture_options() -> Options {
    Options { segment_bytes: SEGMENT_BYTES, prepare_next_segment: false, ..Options::default() }
}

/// The payload of record `i`: lengths from 0 to 333 bytes, bytes that depend on `i`.
fn fixture_payload(i: usize) -> Vec<u8> {
    const LENS: [usize; 12] = [0, 1, 7, 8, 9, 31, 32, 100, 250, 333, 200, 120];
    (0..LENS[i % LENS.len()]).map(|k| ((i * 31 + k * 7) as u8) ^ 0x5a).collect()
}

/// What both fixtures hold, derived from FORMAT.md alone: offsets run on from 0 by each
/// frame's stride, and a new segment starts at the end of the log when a record (or the whole
/// batch) does not fit in the rest of the last one.
struct Plan {
    /// Every record: offset and payload.
    records: Vec<(u64, Vec<u8>)>,
    /// Segment base offsets.
    bases: Vec<u64>,
    end: u64,
}

fn plan() -> Plan {
    let mut plan = Plan { records: Vec::new(), bases: vec![0], end: 0 };
    let mut i = 0;
    while i < RECORDS {
        let count = if i == BATCH_AT { BATCH_LEN } else { 1 };
        let payloads: Vec<Vec<u8>> = (i..i + count).map(fixture_payload).collect();
        let size: u64 = payloads.iter().map(|p| frame_stride(p.len())).sum();
        let base = *plan.bases.last().unwrap();
        if plan.end - base + size > CAPACITY {
            plan.bases.push(plan.end);
        }
        for payload in payloads {
            let offset = plan.end;
            plan.end += frame_stride(payload.len());
            plan.records.push((offset, payload));
        }
        i += count;
    }
    plan
}

/// The records `v2-salvaged` lost to damage: one in the middle of the first segment, and the
/// last one of the second segment.
fn damaged_records(plan: &Plan) -> [usize; 2] {
    let in_first = plan.records.iter().filter(|r| r.0 < plan.bases[1]).count();
    let in_first_two = plan.records.iter().filter(|r| r.0 < plan.bases[2]).count();
    [in_first / 2, in_first_two - 1]
}

/// What reading a fixture yields, as (offset, payload, 0) for a record and (start, None, end)
/// for a gap (the form of `item_view`).
fn expected(name: &str) -> Vec<(u64, Option<Vec<u8>>, u64)> {
    let plan = plan();
    let damaged = if name == V2_SALVAGED { damaged_records(&plan).to_vec() } else { Vec::new() };
    plan.records
        .iter()
        .enumerate()
        .map(|(i, (offset, payload))| {
            if damaged.contains(&i) {
                let next = plan.records.get(i + 1).map_or(plan.end, |r| r.0);
                (*offset, None, next)
            } else {
                (*offset, Some(payload.clone()), 0)
            }
        })
        .collect()
}

/// Appends the planned records to a new log in `dir` and closes it.
fn write_records(dir: &Path) {
    let plan = plan();
    let mut log = Log::open_with(dir, fixture_options()).unwrap();
    let mut i = 0;
    while i < RECORDS {
        if i == BATCH_AT {
            let batch: Vec<Vec<u8>> = (i..i + BATCH_LEN).map(fixture_payload).collect();
            let offsets = log.append_batch(&batch).unwrap();
            assert_eq!(
                offsets,
                plan.records[i..i + BATCH_LEN].iter().map(|r| r.0).collect::<Vec<_>>()
            );
            i += BATCH_LEN;
            continue;
        }
        let payload = fixture_payload(i);
        let offset = if i % 7 == 3 {
            log.append_sync(&payload).unwrap()
        } else {
            log.append(&payload).unwrap()
        };
        assert_eq!(offset, plan.records[i].0, "record {i}");
        i += 1;
    }
    log.close().unwrap();
    assert_eq!(bases(dir), plan.bases);
}

/// Writes `tests/fixtures/`. Run by hand, and only to add a fixture (see the module's docs).
#[test]
#[ignore = "writes tests/fixtures; run by hand only to add a fixture"]
fn write_fixtures() {
    if std::env::var_os("CHRONICLE_WRITE_FIXTURES").is_none() {
        return;
    }
    for name in [V1_CLEAN, V2_SALVAGED] {
        let dir = fixture_dir(name);
        if dir.exists() {
            fs::remove_dir_all(&dir).unwrap();
        }
        fs::create_dir_all(dir.parent().unwrap()).unwrap();
        write_records(&dir);
        if name == V2_SALVAGED {
            let plan = plan();
            for i in damaged_records(&plan) {
                // One bit of the frame's offset field: its checksum fails.
                let offset = plan.records[i].0;
                flip(&dir, base_of(&dir, offset), offset + 8);
            }
            let salvage = Options { recovery: RecoveryMode::Salvage, ..fixture_options() };
            let log = Log::open_with(&dir, salvage).unwrap();
            assert_eq!(log.open_report().repair.as_ref().unwrap().damaged.len(), 2);
            log.close().unwrap();
        }
        fs::remove_file(dir.join("LOCK")).unwrap();
    }
}

/// Replays `log` from its start in the form of `item_view`; any other error fails.
fn replayed(log: &Log) -> Vec<(u64, Option<Vec<u8>>, u64)> {
    let items: Vec<Item> = log
        .replay(log.start_offset())
        .map(|item| match item {
            Ok(r) => Item::Record(SpecRecord {
                offset: r.offset,
                timestamp_ms: r.write_timestamp_ms,
                payload: r.payload.to_vec(),
            }),
            Err(StorageError::Gap { start, end, .. }) => Item::Gap { start, end },
            Err(other) => panic!("replay failed: {other}"),
        })
        .collect();
    item_view(&items)
}

/// Opens fixture `name` read-only, with the FORMAT.md reader, and as a writer on a copy that
/// appends a record and closes; each must read exactly the planned records and gaps.
fn check_fixture(name: &str) {
    let dir = fixture_dir(name);
    let expected = expected(name);
    let plan = plan();
    assert_eq!(bases(&dir), plan.bases, "{name}: segment files");

    let log = Log::open_read_only(&dir).unwrap();
    assert_eq!(log.end_offset(), plan.end, "{name}");
    assert!(log.open_report().clean_close, "{name}: closed cleanly");
    assert_eq!(replayed(&log), expected, "{name}: read-only replay");
    drop(log);
    assert_eq!(item_view(&agree(&dir).unwrap()), expected, "{name}: the FORMAT.md reader");

    let copy = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    let mut log = Log::open_with(copy.path(), fixture_options()).unwrap();
    let report = log.open_report().clone();
    assert!(report.torn_tail.is_none() && report.repair.is_none(), "{name}: {report:?}");
    assert_eq!(replayed(&log), expected, "{name}: writer's replay");
    let appended = log.append_sync(b"appended by this build").unwrap();
    assert_eq!(appended, plan.end, "{name}");
    log.close().unwrap();
    let mut more = expected.clone();
    more.push((appended, Some(b"appended by this build".to_vec()), 0));
    let log = Log::open_with(copy.path(), fixture_options()).unwrap();
    assert_eq!(replayed(&log), more, "{name}: after an append");
    drop(log);
    assert_eq!(item_view(&agree(copy.path()).unwrap()), more, "{name}: after an append");
}

/// Section 2's version field, for each segment of fixture `name`.
fn versions(name: &str) -> Vec<u16> {
    let dir = fixture_dir(name);
    bases(&dir)
        .into_iter()
        .map(|base| u16_at(&fs::read(dir.join(segment_name(base))).unwrap(), 4))
        .collect()
}

#[test]
fn a_version_1_log_keeps_opening() {
    let names: Vec<String> = fs::read_dir(fixture_dir(V1_CLEAN))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| !name.ends_with(".seg"))
        .collect();
    assert_eq!(names, ["DURABLE"]);
    assert!(versions(V1_CLEAN).iter().all(|&v| v == 1));
    check_fixture(V1_CLEAN);
}

#[test]
fn a_salvaged_log_with_version_2_segments_keeps_opening() {
    let dir = fixture_dir(V2_SALVAGED);
    let damaged: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.contains(".seg.damaged-"))
        .collect();
    assert_eq!(damaged.len(), 2, "{damaged:?}");
    let mut expected_versions = vec![1; plan().bases.len()];
    expected_versions[..2].fill(2);
    assert_eq!(versions(V2_SALVAGED), expected_versions);
    check_fixture(V2_SALVAGED);
}

/// `v1-trimmed` (written by `tests/fixture_logs.rs`, which checks what it holds): a log after
/// retention removed its first segments, with its start record. The FORMAT.md reader and the
/// library agree on where it begins and on every record after that.
#[test]
fn a_trimmed_log_written_by_version_1_reads_the_same_by_the_spec() {
    let dir = fixture_dir("v1-trimmed");
    let (_, start_offset, start_entry) = read_start(&dir).unwrap().expect("a start record");
    assert!(start_offset > 0 && start_entry > 0);
    let records = agree_records(&dir).unwrap();
    assert_eq!(records.first().map(|r| r.offset), Some(start_offset));
    assert_eq!(Log::open_read_only(&dir).unwrap().reader().start_entry(), start_entry);
}
