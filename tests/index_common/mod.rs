//! Helpers shared by the index tests: deterministic events, and the brute-force oracle that
//! every index query is checked against.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

use chronicle::{Event, EventEnvelope, EventLog, Options, StorageError};

pub const TYPES: [&str; 3] = ["order.placed", "order.paid", "user.renamed"];
pub const NAMESPACES: [&str; 2] = ["shop", "crm"];

pub fn small() -> Options {
    Options { segment_bytes: 4096, record_bytes_max: Some(1024), ..Options::default() }
}

pub fn event(i: u64) -> Event {
    let mut builder = Event::builder(TYPES[(i % 3) as usize])
        .namespace(NAMESPACES[(i % 2) as usize])
        .payload(i.to_le_bytes().to_vec());
    if !i.is_multiple_of(4) {
        builder = builder.aggregate_id(i % 5);
    }
    builder.build()
}

/// Appends events `from..to`, sleeping 2 ms every `tick` events so that timestamps differ.
pub fn append_range(log: &mut EventLog, from: u64, to: u64, tick: u64) {
    for i in from..to {
        if i % tick == 0 {
            sleep(Duration::from_millis(2));
        }
        log.append(&event(i)).unwrap();
    }
}

pub fn scan(log: &EventLog) -> Vec<EventEnvelope> {
    log.replay(log.log().start_offset()).collect::<Result<_, _>>().unwrap()
}

pub fn collect(
    it: impl Iterator<Item = Result<EventEnvelope, StorageError>>,
) -> Vec<EventEnvelope> {
    it.collect::<Result<_, _>>().unwrap()
}

/// Checks every query against a filter over a full scan.
pub fn assert_queries_match_scan(log: &EventLog) {
    let all = scan(log);
    let index = log.index();
    assert_eq!(index.covered_end(), log.end_offset(), "index covers the log");
    assert_eq!(index.records(), all.len() as u64, "index counts every record");

    let mut ids: BTreeSet<u64> = all.iter().filter_map(|e| e.event.aggregate_id).collect();
    ids.insert(999);
    for id in ids {
        let expected: Vec<_> =
            all.iter().filter(|e| e.event.aggregate_id == Some(id)).cloned().collect();
        assert_eq!(log.load_aggregate(id).unwrap(), expected, "aggregate {id}");
        assert_eq!(collect(log.aggregate_events(id)), expected);
    }
    let froms = [0, 8, all.get(all.len() / 2).map_or(0, |e| e.offset), log.end_offset()];
    for ty in TYPES.iter().chain(&["absent"]) {
        for &from in &froms {
            let expected: Vec<_> = all
                .iter()
                .filter(|e| e.event.event_type == *ty && e.offset >= from)
                .cloned()
                .collect();
            assert_eq!(collect(log.events_of_type(ty, from)), expected, "{ty} from {from}");
        }
    }
    for ns in NAMESPACES.iter().chain(&["absent"]) {
        for &from in &froms {
            let expected: Vec<_> = all
                .iter()
                .filter(|e| e.event.namespace == *ns && e.offset >= from)
                .cloned()
                .collect();
            let got = collect(log.events_in_namespace(ns, from));
            assert_eq!(got, expected, "{ns} from {from}");
        }
    }
    let mut times: BTreeSet<u64> = all.iter().map(|e| e.write_timestamp_ms).collect();
    let (lo, hi) = (times.first().copied().unwrap_or(0), times.last().copied().unwrap_or(0));
    times.extend([lo.saturating_sub(1), hi + 1, hi + 2, 0]);
    let bounds: Vec<u64> = times.into_iter().collect();
    let step = (bounds.len() / 8).max(1);
    for &from in bounds.iter().step_by(step).chain(bounds.last()) {
        for &to in bounds.iter().step_by(step).chain(bounds.last()) {
            let expected: Vec<_> = all
                .iter()
                .filter(|e| e.write_timestamp_ms >= from && e.write_timestamp_ms < to)
                .cloned()
                .collect();
            let got = collect(log.events_in_time_range(from, to));
            assert_eq!(got, expected, "time range [{from}, {to})");
        }
    }
}

/// The base offset of the last segment file in `dir`.
pub fn last_segment_base(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".seg").and_then(|stem| stem.parse().ok())
        })
        .max()
        .unwrap()
}

/// Zeroes the data of the last segment from log offset `from` on, as a crash that lost the
/// unsynced tail would leave it.
pub fn tear_tail(dir: &Path, from: u64) {
    let mut segments: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    let last = segments.last().unwrap();
    let base: u64 = last.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let file = OpenOptions::new().write(true).open(last).unwrap();
    let len = file.metadata().unwrap().len();
    let start = 64 + from.checked_sub(base).expect("tear inside the last segment");
    file.write_all_at(&vec![0u8; (len - start) as usize], start).unwrap();
}
