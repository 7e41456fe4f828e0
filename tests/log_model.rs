//! Model-based tests: random sequences of operations run against a real log and against a
//! plain in-memory model (a list of `(offset, payload)`), and after every step the two must
//! agree exactly.
//!
//! Segments are tiny (4 KiB) and records up to 1500 bytes, so a handful of appends rolls to a
//! new segment, and batches regularly fill a segment exactly or do not fit at all. Besides
//! appends, the operations close and reopen the log, drop the writer without closing it (what
//! a process crash leaves behind: every appended byte is still in the page cache, so nothing
//! may be lost), open a read-only handle beside the writer, and replay or read from record
//! boundaries, from the end, and from offsets that are not boundaries.
//!
//! After every step: `end_offset` is the model's end, `replay(0)` yields exactly the model's
//! records (offsets and bytes), write timestamps never decrease, and every read-only handle
//! still sees exactly the records that existed when it was opened.
//!
//! The number of cases is 64 unless `PROPTEST_CASES` says otherwise.

use chronicle::{Event, EventLog, Log, Options, StorageError};
use proptest::prelude::*;
use proptest::test_runner::Config;
use tempfile::TempDir;

const SEGMENT_BYTES: u64 = 4096;
const RECORD_BYTES_MAX: usize = 1500;
/// Bytes of a segment that hold frames: the file minus its 64-byte header.
const SEGMENT_DATA_BYTES: u64 = SEGMENT_BYTES - 64;
const FRAME_HEADER_BYTES: u64 = 32;
const OPS_MAX: usize = 40;

fn options() -> Options {
    Options {
        segment_bytes: SEGMENT_BYTES,
        record_bytes_max: Some(RECORD_BYTES_MAX as u64),
        ..Options::default()
    }
}

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    Config {
        cases,
        // Failures print the minimal case; no regression files are written into the tree.
        failure_persistence: None,
        ..Config::default()
    }
}

/// Bytes a record with a payload of `len` bytes occupies: the 32-byte frame header plus the
/// payload, rounded up to 8.
fn stride(len: usize) -> u64 {
    (FRAME_HEADER_BYTES + len as u64 + 7) & !7
}

/// Deterministic pseudo-random bytes (splitmix64), so a payload is described by its length
/// and seed and a failing case prints short.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

#[derive(Clone, Copy)]
struct PayloadSpec {
    len: usize,
    seed: u64,
}

impl std::fmt::Debug for PayloadSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}b#{:x}", self.len, self.seed & 0xffff)
    }
}

impl PayloadSpec {
    fn bytes(self) -> Vec<u8> {
        bytes(self.len, self.seed)
    }
}

/// Picks one of `n` items from a raw random number; `n` must be positive.
fn pick(raw: u64, n: usize) -> usize {
    (raw % n as u64) as usize
}

// ---------------------------------------------------------------------------------------------
// The raw log.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum LogOp {
    Append(PayloadSpec),
    AppendSync(PayloadSpec),
    AppendBatch {
        payloads: Vec<PayloadSpec>,
        sync: bool,
    },
    /// A batch of `count` records whose frames total exactly one segment's data region, plus
    /// `over` bytes: it fits exactly when `over` is 0 and is refused otherwise.
    AppendBatchFill {
        count: usize,
        over: bool,
        seed: u64,
    },
    Sync,
    Reopen,
    /// Drops the writer without closing it, as a process crash would, and reopens.
    Crash,
    Replay(u64),
    ReplayUntil {
        from: u64,
        until: u64,
        until_boundary: bool,
    },
    /// Replays from a record's offset plus `delta` (never a boundary), or from past the end.
    ReplayInvalid {
        at: u64,
        delta: u64,
    },
    ReadAt(u64),
    ReadOnly,
}

fn payload_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 0usize..200,
        3 => 0usize..=RECORD_BYTES_MAX,
        1 => Just(RECORD_BYTES_MAX),
        1 => Just(RECORD_BYTES_MAX + 1),
        1 => (RECORD_BYTES_MAX + 1)..4000,
    ]
}

fn batch_payload_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..300,
        3 => 0usize..=RECORD_BYTES_MAX,
        1 => (RECORD_BYTES_MAX + 1)..2000,
    ]
}

fn payload_spec(len: impl Strategy<Value = usize>) -> impl Strategy<Value = PayloadSpec> {
    (len, any::<u64>()).prop_map(|(len, seed)| PayloadSpec { len, seed })
}

fn log_op() -> impl Strategy<Value = LogOp> {
    prop_oneof![
        8 => payload_spec(payload_len()).prop_map(LogOp::Append),
        3 => payload_spec(payload_len()).prop_map(LogOp::AppendSync),
        4 => (prop::collection::vec(payload_spec(batch_payload_len()), 1..=8), any::<bool>())
            .prop_map(|(payloads, sync)| LogOp::AppendBatch { payloads, sync }),
        1 => (3usize..=8, any::<bool>(), any::<u64>())
            .prop_map(|(count, over, seed)| LogOp::AppendBatchFill { count, over, seed }),
        1 => Just(LogOp::Sync),
        2 => Just(LogOp::Reopen),
        2 => Just(LogOp::Crash),
        2 => any::<u64>().prop_map(LogOp::Replay),
        2 => (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(from, until, until_boundary)| {
            LogOp::ReplayUntil { from, until, until_boundary }
        }),
        1 => (any::<u64>(), any::<u64>())
            .prop_map(|(at, delta)| LogOp::ReplayInvalid { at, delta }),
        2 => any::<u64>().prop_map(LogOp::ReadAt),
        1 => Just(LogOp::ReadOnly),
    ]
}

/// The model: the records the log must hold, in order.
#[derive(Debug, Default, Clone)]
struct LogModel {
    records: Vec<(u64, Vec<u8>)>,
}

impl LogModel {
    fn end(&self) -> u64 {
        self.records.last().map_or(0, |(offset, payload)| offset + stride(payload.len()))
    }

    /// A record boundary or the end, chosen by `raw`.
    fn boundary(&self, raw: u64) -> u64 {
        let i = pick(raw, self.records.len() + 1);
        self.records.get(i).map_or(self.end(), |r| r.0)
    }
}

/// Asserts that `log` holds exactly `records`, read through the iterator, with
/// non-decreasing timestamps.
fn assert_log_holds(log: &Log, records: &[(u64, Vec<u8>)], what: &str) {
    let end = records.last().map_or(0, |(offset, payload)| offset + stride(payload.len()));
    assert_eq!(log.end_offset(), end, "{what}: end offset");
    assert_eq!(log.start_offset(), 0, "{what}: start offset");
    let mut timestamp_ms = 0;
    let mut count = 0;
    for (i, record) in log.replay(0).enumerate() {
        let record = record.unwrap_or_else(|e| panic!("{what}: replay(0) item {i}: {e}"));
        let (offset, payload) = records
            .get(i)
            .unwrap_or_else(|| panic!("{what}: replay(0) yields an extra record {record:?}"));
        assert_eq!(record.offset, *offset, "{what}: offset of record {i}");
        assert_eq!(&*record.payload, &payload[..], "{what}: payload of record {i}");
        assert!(
            record.write_timestamp_ms >= timestamp_ms,
            "{what}: timestamp of record {i} went back from {timestamp_ms} to {}",
            record.write_timestamp_ms
        );
        timestamp_ms = record.write_timestamp_ms;
        count += 1;
    }
    assert_eq!(count, records.len(), "{what}: replay(0) record count");
}

struct LogHarness {
    dir: TempDir,
    log: Option<Log>,
    model: LogModel,
    /// Read-only handles and how many of the model's records existed when each was opened.
    readers: Vec<(Log, usize)>,
    /// `Options::zero_fill_segments` for the writer now open; each reopen flips it, so logs
    /// mix segments made with and without it.
    zero_fill: bool,
}

impl LogHarness {
    fn new(zero_fill: bool) -> LogHarness {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open_with(dir.path(), Self::options(zero_fill)).unwrap();
        assert!(log.open_report().created);
        assert_eq!(log.open_report().end_offset, 0);
        let model = LogModel::default();
        LogHarness { dir, log: Some(log), model, readers: Vec::new(), zero_fill }
    }

    fn options(zero_fill: bool) -> Options {
        Options { zero_fill_segments: zero_fill, ..options() }
    }

    fn log(&mut self) -> &mut Log {
        self.log.as_mut().unwrap()
    }

    fn reopen(&mut self, crash: bool) {
        let log = self.log.take().unwrap();
        if crash {
            drop(log);
        } else {
            log.close().unwrap();
        }
        self.zero_fill = !self.zero_fill;
        let log = Log::open_with(self.dir.path(), Self::options(self.zero_fill)).unwrap();
        let report = log.open_report();
        assert!(!report.created, "{report:?}");
        assert_eq!(report.end_offset, self.model.end(), "{report:?}");
        assert_eq!(report.torn_tail, None, "nothing was torn: {report:?}");
        assert_eq!(report.repair, None, "{report:?}");
        assert_eq!(report.temp_files_removed, 0, "{report:?}");
        self.log = Some(log);
    }

    /// Expected outcome of a batch: its offsets, or the error the log must refuse it with.
    fn expect_batch(&self, payloads: &[Vec<u8>]) -> Result<Vec<u64>, (u64, u64)> {
        if let Some(p) = payloads.iter().find(|p| p.len() > RECORD_BYTES_MAX) {
            return Err((p.len() as u64, RECORD_BYTES_MAX as u64));
        }
        let total: u64 = payloads.iter().map(|p| stride(p.len())).sum();
        if total > SEGMENT_DATA_BYTES {
            return Err((total, SEGMENT_DATA_BYTES));
        }
        let mut offset = self.model.end();
        Ok(payloads
            .iter()
            .map(|p| {
                let this = offset;
                offset += stride(p.len());
                this
            })
            .collect())
    }

    fn append_batch(&mut self, payloads: Vec<Vec<u8>>, sync: bool) {
        let expected = self.expect_batch(&payloads);
        let log = self.log();
        let result =
            if sync { log.append_batch_sync(&payloads) } else { log.append_batch(&payloads) };
        match (expected, result) {
            (Ok(expected), Ok(offsets)) => {
                assert_eq!(offsets, expected, "batch offsets");
                self.model.records.extend(offsets.into_iter().zip(payloads));
            }
            (Err((len, max)), Err(StorageError::RecordTooLarge { len: l, max: m })) => {
                assert_eq!((l, m), (len, max), "batch refused with the wrong sizes");
            }
            (expected, result) => {
                panic!("batch of {} records: expected {expected:?}, got {result:?}", payloads.len())
            }
        }
    }

    fn append(&mut self, payload: Vec<u8>, sync: bool) {
        let expected = self.model.end();
        let log = self.log();
        let result = if sync { log.append_sync(&payload) } else { log.append(&payload) };
        if payload.len() > RECORD_BYTES_MAX {
            match result {
                Err(StorageError::RecordTooLarge { len, max }) => {
                    assert_eq!((len, max), (payload.len() as u64, RECORD_BYTES_MAX as u64));
                }
                other => panic!("append of {} bytes: {other:?}", payload.len()),
            }
        } else {
            let offset = result.unwrap();
            assert_eq!(offset, expected, "an append returns the previous end");
            self.model.records.push((offset, payload));
        }
    }

    fn apply(&mut self, op: &LogOp) {
        match op {
            LogOp::Append(p) => self.append(p.bytes(), false),
            LogOp::AppendSync(p) => self.append(p.bytes(), true),
            LogOp::AppendBatch { payloads, sync } => {
                self.append_batch(payloads.iter().map(|p| p.bytes()).collect(), *sync);
            }
            LogOp::AppendBatchFill { count, over, seed } => {
                let total = SEGMENT_DATA_BYTES + if *over { 8 } else { 0 };
                let each = (total / *count as u64) & !7;
                let payloads = (0..*count)
                    .map(|i| {
                        let frame =
                            if i + 1 == *count { total - each * (*count as u64 - 1) } else { each };
                        let len = (frame - FRAME_HEADER_BYTES) as usize;
                        bytes(len, seed.wrapping_add(i as u64))
                    })
                    .collect::<Vec<_>>();
                assert_eq!(payloads.iter().map(|p| stride(p.len())).sum::<u64>(), total);
                self.append_batch(payloads, false);
            }
            LogOp::Sync => self.log().sync().unwrap(),
            LogOp::Reopen => self.reopen(false),
            LogOp::Crash => self.reopen(true),
            LogOp::Replay(raw) => {
                let from = self.model.boundary(*raw);
                let log = self.log.as_ref().unwrap();
                let mut replay = log.replay(from);
                let mut got = Vec::new();
                // The borrowing path, to cover it as well as the iterator.
                while let Some(record) = replay.next_ref() {
                    let record = record.unwrap();
                    got.push((record.offset, record.payload.to_vec()));
                }
                let want: Vec<_> =
                    self.model.records.iter().filter(|r| r.0 >= from).cloned().collect();
                assert_eq!(got, want, "replay({from})");
            }
            LogOp::ReplayUntil { from, until, until_boundary } => {
                let from = self.model.boundary(*from);
                let until = if *until_boundary {
                    self.model.boundary(*until)
                } else {
                    until % (self.model.end() + 64)
                };
                let log = self.log.as_ref().unwrap();
                let got: Vec<_> = log
                    .replay_until(from, until)
                    .map(|r| {
                        let r = r.unwrap();
                        (r.offset, r.payload.to_vec())
                    })
                    .collect();
                let want: Vec<_> = self
                    .model
                    .records
                    .iter()
                    .filter(|r| r.0 >= from && r.0 < until)
                    .cloned()
                    .collect();
                assert_eq!(got, want, "replay_until({from}, {until})");
            }
            LogOp::ReplayInvalid { at, delta } => {
                let n = self.model.records.len();
                let from = match self.model.records.get(pick(*at, n + 1)) {
                    // Strictly inside the record: never a boundary.
                    Some((offset, payload)) => offset + 1 + delta % (stride(payload.len()) - 1),
                    None => self.model.end() + 1 + delta % 10_000,
                };
                let log = self.log.as_ref().unwrap();
                let mut replay = log.replay(from);
                match replay.next() {
                    Some(Err(StorageError::InvalidOffset { offset, .. })) => {
                        assert_eq!(offset, from);
                    }
                    other => panic!("replay({from}) from a non-boundary: {other:?}"),
                }
                assert!(replay.next().is_none(), "replay continues after its error");
                assert!(matches!(log.read_at(from), Err(StorageError::InvalidOffset { .. })));
            }
            LogOp::ReadAt(raw) => {
                let n = self.model.records.len();
                let log = self.log.as_ref().unwrap();
                match self.model.records.get(pick(*raw, n + 1)) {
                    Some((offset, payload)) => {
                        let record = log.read_at(*offset).unwrap();
                        assert_eq!(record.offset, *offset);
                        assert_eq!(&*record.payload, &payload[..], "read_at({offset})");
                    }
                    None => {
                        let end = self.model.end();
                        assert!(
                            matches!(log.read_at(end), Err(StorageError::InvalidOffset { .. })),
                            "read_at(end {end})"
                        );
                    }
                }
            }
            LogOp::ReadOnly => {
                let reader = Log::open_read_only(self.dir.path()).unwrap();
                assert!(reader.is_read_only());
                assert_eq!(reader.open_report().torn_tail, None);
                assert_eq!(reader.open_report().end_offset, self.model.end());
                let mut probe = Log::open_read_only(self.dir.path()).unwrap();
                assert!(matches!(probe.append(b"nope"), Err(StorageError::ReadOnly)));
                // Keep at most a few handles, so long cases do not pile up maps.
                if self.readers.len() >= 3 {
                    self.readers.remove(0);
                }
                self.readers.push((reader, self.model.records.len()));
            }
        }
    }

    fn check(&self, step: usize, op: &LogOp) {
        let what = format!("after step {step} ({op:?})");
        assert_log_holds(self.log.as_ref().unwrap(), &self.model.records, &what);
        for (reader, count) in &self.readers {
            let prefix = &self.model.records[..*count];
            assert_log_holds(reader, prefix, &format!("{what}, read-only handle"));
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn log_matches_model(
        ops in prop::collection::vec(log_op(), 1..=OPS_MAX),
        zero_fill in any::<bool>(),
    ) {
        let mut harness = LogHarness::new(zero_fill);
        for (step, op) in ops.iter().enumerate() {
            harness.apply(op);
            harness.check(step, op);
        }
        // A final clean reopen and a full verification.
        harness.reopen(false);
        harness.check(ops.len(), &LogOp::Reopen);
        let report = harness.log.as_ref().unwrap().verify().unwrap();
        prop_assert_eq!(report.records, harness.model.records.len() as u64);
        let payload_bytes: usize = harness.model.records.iter().map(|r| r.1.len()).sum();
        prop_assert_eq!(report.payload_bytes, payload_bytes as u64);
    }
}

// ---------------------------------------------------------------------------------------------
// The typed event log.
// ---------------------------------------------------------------------------------------------

/// Bounds on a record holding `event`: the payload and strings plus the smallest and the
/// largest `MessagePack` framing they can have (strings are under 32 bytes, see
/// [`short_string`]). The exact layout is the codec's business;
/// this test only needs to know when a record is certainly small or certainly too large.
fn encoded_len_bounds(event: &Event) -> (usize, usize) {
    let content = event.event_type.len()
        + event.namespace.len()
        + event.schema_id.len()
        + event.payload.len();
    // Array marker 1; strings 1..=2 each; version 1..=5; aggregate 1..=9; payload 2..=5.
    (content + 1 + 3 + 1 + 1 + 2, content + 1 + 6 + 5 + 9 + 5)
}

fn short_string() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z.]{1,12}", Just("order.placed".to_string()),]
}

fn event(payload_len: impl Strategy<Value = usize>) -> impl Strategy<Value = Event> {
    (
        short_string(),
        short_string(),
        short_string(),
        any::<u32>(),
        prop::option::of(any::<u64>()),
        payload_spec(payload_len),
    )
        .prop_map(
            |(event_type, namespace, schema_id, schema_version, aggregate_id, payload)| Event {
                event_type,
                namespace,
                schema_id,
                schema_version,
                aggregate_id,
                payload: payload.bytes(),
            },
        )
}

/// Payload sizes whose events are certainly within the record limit.
fn small_event() -> impl Strategy<Value = Event> {
    event(prop_oneof![6 => 0usize..200, 2 => 0usize..1400])
}

#[derive(Debug, Clone)]
enum EventOp {
    Append(Event),
    AppendSync(Event),
    AppendBatch {
        events: Vec<Event>,
        sync: bool,
    },
    /// An event whose payload alone exceeds the record limit.
    AppendTooLarge(Event),
    Sync,
    Reopen,
    Crash,
    Replay(u64),
    ReplayUntil {
        from: u64,
        until: u64,
    },
    ReadAt(u64),
    ReadOnly,
}

fn event_op() -> impl Strategy<Value = EventOp> {
    prop_oneof![
        8 => small_event().prop_map(EventOp::Append),
        2 => small_event().prop_map(EventOp::AppendSync),
        4 => (prop::collection::vec(small_event(), 1..=8), any::<bool>())
            .prop_map(|(events, sync)| EventOp::AppendBatch { events, sync }),
        1 => event((RECORD_BYTES_MAX + 1)..3000).prop_map(EventOp::AppendTooLarge),
        1 => Just(EventOp::Sync),
        2 => Just(EventOp::Reopen),
        2 => Just(EventOp::Crash),
        2 => any::<u64>().prop_map(EventOp::Replay),
        2 => (any::<u64>(), any::<u64>())
            .prop_map(|(from, until)| EventOp::ReplayUntil { from, until }),
        2 => any::<u64>().prop_map(EventOp::ReadAt),
        1 => Just(EventOp::ReadOnly),
    ]
}

/// One stored event and the size of its record, learnt from the log after the append.
#[derive(Debug, Clone)]
struct StoredEvent {
    offset: u64,
    event: Event,
    stride: u64,
}

fn events_end(events: &[StoredEvent]) -> u64 {
    events.last().map_or(0, |e| e.offset + e.stride)
}

fn assert_event_log_holds(log: &EventLog, events: &[StoredEvent], what: &str) {
    assert_eq!(log.end_offset(), events_end(events), "{what}: end offset");
    let mut timestamp_ms = 0;
    let mut count = 0;
    for (i, envelope) in log.replay(0).enumerate() {
        let envelope = envelope.unwrap_or_else(|e| panic!("{what}: replay(0) item {i}: {e}"));
        let stored = events
            .get(i)
            .unwrap_or_else(|| panic!("{what}: replay(0) yields an extra event {envelope:?}"));
        assert_eq!(envelope.offset, stored.offset, "{what}: offset of event {i}");
        assert_eq!(envelope.event, stored.event, "{what}: event {i}");
        assert!(
            envelope.write_timestamp_ms >= timestamp_ms,
            "{what}: timestamp of event {i} went back"
        );
        timestamp_ms = envelope.write_timestamp_ms;
        count += 1;
    }
    assert_eq!(count, events.len(), "{what}: replay(0) event count");
}

struct EventHarness {
    dir: TempDir,
    log: Option<EventLog>,
    events: Vec<StoredEvent>,
    readers: Vec<(EventLog, usize)>,
}

impl EventHarness {
    fn new() -> EventHarness {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open_with(dir.path(), options()).unwrap();
        assert!(log.open_report().created);
        EventHarness { dir, log: Some(log), events: Vec::new(), readers: Vec::new() }
    }

    fn log(&mut self) -> &mut EventLog {
        self.log.as_mut().unwrap()
    }

    fn end(&self) -> u64 {
        events_end(&self.events)
    }

    fn boundary(&self, raw: u64) -> u64 {
        let i = pick(raw, self.events.len() + 1);
        self.events.get(i).map_or(self.end(), |e| e.offset)
    }

    /// Records that an event was stored at `offset`, learning its record size from the log,
    /// and checks that size against the codec's bounds.
    fn stored(&self, offset: u64, event: Event) -> StoredEvent {
        let record = self.log.as_ref().unwrap().log().read_at(offset).unwrap();
        let (low, high) = encoded_len_bounds(&event);
        let len = record.payload.len();
        assert!(
            (low..=high).contains(&len),
            "record of {len} bytes for an event whose bounds are {low}..={high}: {event:?}"
        );
        StoredEvent { offset, event, stride: stride(len) }
    }

    fn reopen(&mut self, crash: bool) {
        let log = self.log.take().unwrap();
        if crash {
            drop(log);
        } else {
            log.close().unwrap();
        }
        let log = EventLog::open_with(self.dir.path(), options()).unwrap();
        let report = log.open_report();
        assert!(!report.created, "{report:?}");
        assert_eq!(report.end_offset, self.end(), "{report:?}");
        assert_eq!(report.torn_tail, None, "{report:?}");
        self.log = Some(log);
    }

    fn apply(&mut self, op: &EventOp) {
        match op {
            EventOp::Append(event) | EventOp::AppendSync(event) => {
                let end = self.end();
                let log = self.log();
                let offset = if matches!(op, EventOp::AppendSync(_)) {
                    log.append_sync(event)
                } else {
                    log.append(event)
                }
                .unwrap();
                assert_eq!(offset, end, "an append returns the previous end");
                let stored = self.stored(offset, event.clone());
                self.events.push(stored);
            }
            EventOp::AppendTooLarge(event) => match self.log().append(event) {
                Err(StorageError::RecordTooLarge { len, max }) => {
                    assert_eq!(max, RECORD_BYTES_MAX as u64);
                    let (low, high) = encoded_len_bounds(event);
                    assert!((low as u64..=high as u64).contains(&len), "{len}");
                }
                other => panic!("too large an event: {other:?}"),
            },
            EventOp::AppendBatch { events, sync } => {
                let end = self.end();
                let (low, high) = events.iter().fold((0, 0), |(low, high), e| {
                    let (l, h) = encoded_len_bounds(e);
                    (low + stride(l), high + stride(h))
                });
                let log = self.log();
                let result = log.append_batch(events);
                if *sync && result.is_ok() {
                    log.sync().unwrap();
                }
                match result {
                    Ok(offsets) => {
                        assert!(low <= SEGMENT_DATA_BYTES, "a batch of {low}+ bytes was taken");
                        assert_eq!(offsets.len(), events.len());
                        let mut expected = end;
                        for (offset, event) in offsets.into_iter().zip(events) {
                            assert_eq!(offset, expected, "batch offsets are consecutive");
                            let stored = self.stored(offset, event.clone());
                            expected += stored.stride;
                            self.events.push(stored);
                        }
                    }
                    Err(StorageError::RecordTooLarge { len, max }) => {
                        assert!(
                            high > SEGMENT_DATA_BYTES,
                            "a batch of at most {high} bytes was refused ({len} > {max})"
                        );
                        assert_eq!(max, SEGMENT_DATA_BYTES);
                        assert!((low..=high).contains(&len), "{len} not in {low}..={high}");
                    }
                    Err(other) => panic!("batch: {other}"),
                }
            }
            EventOp::Sync => self.log().sync().unwrap(),
            EventOp::Reopen => self.reopen(false),
            EventOp::Crash => self.reopen(true),
            EventOp::Replay(raw) => {
                let from = self.boundary(*raw);
                let log = self.log.as_ref().unwrap();
                let got: Vec<_> = log
                    .replay(from)
                    .map(|e| {
                        let e = e.unwrap();
                        (e.offset, e.event)
                    })
                    .collect();
                let want: Vec<_> = self
                    .events
                    .iter()
                    .filter(|e| e.offset >= from)
                    .map(|e| (e.offset, e.event.clone()))
                    .collect();
                assert_eq!(got, want, "replay({from})");
            }
            EventOp::ReplayUntil { from, until } => {
                let from = self.boundary(*from);
                let until = until % (self.end() + 64);
                let log = self.log.as_ref().unwrap();
                let got: Vec<_> = log
                    .replay_until(from, until)
                    .map(|e| {
                        let e = e.unwrap();
                        (e.offset, e.event)
                    })
                    .collect();
                let want: Vec<_> = self
                    .events
                    .iter()
                    .filter(|e| e.offset >= from && e.offset < until)
                    .map(|e| (e.offset, e.event.clone()))
                    .collect();
                assert_eq!(got, want, "replay_until({from}, {until})");
            }
            EventOp::ReadAt(raw) => {
                let log = self.log.as_ref().unwrap();
                match self.events.get(pick(*raw, self.events.len() + 1)) {
                    Some(stored) => {
                        let envelope = log.read_at(stored.offset).unwrap();
                        assert_eq!(envelope.offset, stored.offset);
                        assert_eq!(envelope.event, stored.event);
                    }
                    None => assert!(matches!(
                        log.read_at(self.end()),
                        Err(StorageError::InvalidOffset { .. })
                    )),
                }
            }
            EventOp::ReadOnly => {
                let reader = EventLog::open_read_only(self.dir.path()).unwrap();
                assert_eq!(reader.open_report().end_offset, self.end());
                if self.readers.len() >= 3 {
                    self.readers.remove(0);
                }
                self.readers.push((reader, self.events.len()));
            }
        }
    }

    fn check(&self, step: usize, op: &EventOp) {
        let what = format!("after step {step} ({op:?})");
        assert_event_log_holds(self.log.as_ref().unwrap(), &self.events, &what);
        for (reader, count) in &self.readers {
            assert_event_log_holds(reader, &self.events[..*count], &format!("{what}, reader"));
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn event_log_matches_model(ops in prop::collection::vec(event_op(), 1..=OPS_MAX)) {
        let mut harness = EventHarness::new();
        for (step, op) in ops.iter().enumerate() {
            harness.apply(op);
            harness.check(step, op);
        }
        harness.reopen(false);
        harness.check(ops.len(), &EventOp::Reopen);
        let report = harness.log.as_ref().unwrap().log().verify().unwrap();
        prop_assert_eq!(report.records, harness.events.len() as u64);
    }
}
