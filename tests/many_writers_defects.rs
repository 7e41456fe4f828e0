//! One test per defect found in the many-writers path (shared writers, expected versions,
//! and a caller's code that panics): each says what went wrong and what must happen instead.

mod common;

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use chronicle::{
    Event, EventLog, IndexOptions, Log, Options, RecoveryMode, StorageError, SEGMENT_BYTES_MIN,
};
use common::{file_pos, flip_bit, segment_of};

/// A payload whose `as_ref` panics on its own `panic_on`-th call: a caller's type with a
/// buggy `AsRef<[u8]>`.
struct Flaky {
    bytes: Vec<u8>,
    calls: Cell<u32>,
    panic_on: u32,
}

impl Flaky {
    fn new(bytes: &[u8], panic_on: u32) -> Flaky {
        Flaky { bytes: bytes.to_vec(), calls: Cell::new(0), panic_on }
    }
}

impl AsRef<[u8]> for Flaky {
    fn as_ref(&self) -> &[u8] {
        let n = self.calls.get() + 1;
        self.calls.set(n);
        assert!(n != self.panic_on, "caller's AsRef panics (call {n})");
        &self.bytes
    }
}

/// Two payloads, the second of which panics the second time it is asked for its bytes: a
/// writer that asks once to check sizes and again to write has then written the first frame
/// of the batch (flagged "batch continues") when the panic unwinds.
fn flaky_batch() -> [Flaky; 2] {
    [Flaky::new(b"batch-0", 0), Flaky::new(b"batch-1", 2)]
}

fn payloads(log: &Log) -> Vec<Vec<u8>> {
    log.replay(log.start_offset()).map(|r| r.unwrap().payload.to_vec()).collect()
}

/// What a log holds after `before`, a batch that may have panicked, and `after`: the batch
/// whole or not at all.
fn batch_whole_or_absent(got: &[Vec<u8>]) {
    let absent = [b"before".to_vec(), b"after".to_vec()];
    let whole = [b"before".to_vec(), b"batch-0".to_vec(), b"batch-1".to_vec(), b"after".to_vec()];
    assert!(got == absent || got == whole, "a batch partly present: {got:?}");
}

/// A panic in the caller's `as_ref` while a batch is written must not leave half of it for the
/// next record to complete: the writer asks each payload for its bytes once, before it
/// changes anything.
#[test]
fn a_panic_inside_append_batch_leaves_half_a_batch_that_the_next_append_completes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path()).unwrap();
    log.append(b"before").unwrap();
    let batch = flaky_batch();
    let _ = catch_unwind(AssertUnwindSafe(|| log.append_batch(&batch)));
    log.append(b"after").unwrap();
    batch_whole_or_absent(&payloads(&log));
}

/// The same through the file (`append_batch_sync`): a writer that accounted for the first
/// frame before the panic would acknowledge the next `append_sync` behind bytes never written,
/// and lose it on reopen.
#[test]
fn a_panic_inside_append_batch_sync_loses_the_next_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path()).unwrap();
    log.append_sync(b"before").unwrap();
    let batch = flaky_batch();
    let _ = catch_unwind(AssertUnwindSafe(|| log.append_batch_sync(&batch)));
    // Acknowledged as durable.
    let offset = log.append_sync(b"after").unwrap();
    let seen = log.read_at(offset).map(|r| r.payload.to_vec());
    drop(log);
    let reopened = Log::open(dir.path()).unwrap();
    let after = reopened.read_at(offset).map(|r| r.payload.to_vec());
    assert!(
        matches!(&seen, Ok(p) if p == b"after"),
        "acknowledged record unreadable in the same process: {seen:?}"
    );
    assert!(matches!(&after, Ok(p) if p == b"after"), "acknowledged record lost: {after:?}");
    batch_whole_or_absent(&payloads(&reopened));
}

/// A thread that panicked while it held a shared writer may have left an append half done,
/// so the writer is refused from then on; `into_log` (and `close` on the last handle) must
/// hand it back refused, not as if nothing had happened.
#[test]
fn a_shared_log_poisoned_by_a_panicking_append_is_still_closed_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Log::open(dir.path()).unwrap().into_shared();
    shared.append_sync(b"before").unwrap();
    let batch = [Flaky::new(b"batch-0", 0), Flaky::new(b"batch-1", 1)];
    assert!(catch_unwind(AssertUnwindSafe(|| shared.append_batch(&batch))).is_err());
    assert!(matches!(shared.append(b"x"), Err(StorageError::Poisoned { .. })));
    let into_log = shared.into_log();
    let Ok(mut log) = into_log else { panic!("into_log returned the handle") };
    let appended = log.append(b"after");
    assert!(
        matches!(appended, Err(StorageError::Poisoned { .. })),
        "a writer refused after a panic must stay refused after into_log: {appended:?}"
    );
    assert!(matches!(log.close(), Err(StorageError::Poisoned { .. })));
}

/// A caller's closure that panicked in the read-only `SharedLog::with_log` poisoned the
/// writer's lock, and every later append of every thread failed with `Poisoned` although
/// nothing was written. A panic with only `&Log` in hand must leave the writer usable.
#[test]
fn a_panic_in_a_read_only_with_log_closure_poisons_every_later_append() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Log::open(dir.path()).unwrap().into_shared();
    shared.append_sync(b"before").unwrap();
    let panicked =
        catch_unwind(AssertUnwindSafe(|| shared.with_log(|_| panic!("caller's query panics"))));
    assert!(panicked.is_err());
    let appended = shared.append_sync(b"after");
    assert!(appended.is_ok(), "a read-only closure's panic refused the writer: {appended:?}");
}

/// Two last handles closing at once: each saw the other (`Arc::try_unwrap`), only synced, and
/// the log was dropped without being closed cleanly, although `close` promises the log
/// "closes with the last of them".
#[test]
fn the_last_two_handles_closing_at_once_leave_the_log_not_closed_cleanly() {
    let options =
        || Options { segment_bytes: SEGMENT_BYTES_MIN.max(64 << 20), ..Options::default() };
    let mut unclean = 0;
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open_with(dir.path(), options()).unwrap().into_shared();
        // Unsynced data, so that the first close's sync takes a while.
        let record = vec![7u8; 64 << 10];
        for _ in 0..128 {
            log.append(&record).unwrap();
        }
        let start = Arc::new(Barrier::new(2));
        let handles: Vec<_> = [log.clone(), log]
            .into_iter()
            .map(|log| {
                let start = Arc::clone(&start);
                thread::spawn(move || {
                    start.wait();
                    log.close()
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap().unwrap();
        }
        let reopened = Log::open_with(dir.path(), options()).unwrap();
        if !reopened.open_report().clean_close {
            unclean += 1;
        }
    }
    assert_eq!(unclean, 0, "closes that both returned Ok left the log not closed cleanly");
}

fn small_segments() -> Options {
    Options { segment_bytes: SEGMENT_BYTES_MIN.max(64 << 10), ..Options::default() }
}

fn filler(i: u64) -> Event {
    Event::builder("filler").aggregate_id(2).payload(vec![(i % 251) as u8; 120]).build()
}

/// After retention removed every event of an aggregate, the index file is the only record of
/// it: an open that finds the file missing (or damaged) refuses to rebuild it silently
/// (`IndexLost`), which would forget the aggregate and issue its versions 0.. a second time.
/// Asked to rebuild anyway, it does, and says so.
#[test]
fn versions_restart_after_retention_and_an_index_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open_with(dir.path(), small_segments()).unwrap();
    let mut last_of_1 = 0;
    for i in 0..50u64 {
        let e = Event::builder("counter").aggregate_id(1).payload(i.to_le_bytes().to_vec()).build();
        last_of_1 = log.append(&e).unwrap();
    }
    let mut offsets = Vec::new();
    for i in 0..3000u64 {
        offsets.push(log.append(&filler(i)).unwrap());
    }
    let report = log.truncate_before(offsets[2000]).unwrap();
    assert!(report.start_offset > last_of_1, "retention removed aggregate 1: {report:?}");
    assert_eq!(log.aggregate_version(1).unwrap(), Some(49));
    log.close().unwrap();
    // With its index file, the reopened log still knows the aggregate.
    let log = EventLog::open_with(dir.path(), small_segments()).unwrap();
    assert_eq!(log.aggregate_version(1).unwrap(), Some(49));
    log.close().unwrap();

    std::fs::remove_file(dir.path().join("index.chx")).unwrap();
    match EventLog::open_with(dir.path(), small_segments()) {
        Err(StorageError::IndexLost { reason, .. }) => assert!(reason.contains("no index file")),
        other => panic!("an index lost after retention was rebuilt silently: {:?}", other.err()),
    }
    let lossy = IndexOptions { rebuild_after_retention: true, ..IndexOptions::default() };
    let log = EventLog::open_with_index_options(dir.path(), small_segments(), lossy).unwrap();
    assert!(log.index_report().rebuilt_because.is_some());
    assert_eq!(log.aggregate_version(1).unwrap(), None, "forgotten, as asked");
}

/// `SharedEventLog::load_aggregate` takes the aggregate's offsets under the lock and reads
/// them without it; a retention policy run by another thread's append in between removed a
/// segment, and the load failed with `InvalidOffset`. What retention removed meanwhile must
/// be skipped, as what it removed before is.
#[test]
fn load_aggregate_fails_when_retention_runs_during_it() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { retention_max_bytes: Some(4 * (64 << 10)), ..small_segments() };
    // Retention removes only what a completed index save covers: save often.
    let index = IndexOptions { checkpoint_bytes: 32 << 10, ..IndexOptions::default() };
    let log = EventLog::open_with_index_options(dir.path(), options, index).unwrap().into_shared();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (log, stop) = (log.clone(), Arc::clone(&stop));
        thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let event = if i.is_multiple_of(4) {
                    Event::builder("counter").aggregate_id(1).payload(vec![1; 120]).build()
                } else {
                    filler(i)
                };
                log.append(&event).unwrap();
                i += 1;
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut failure = None;
    let mut loads = 0u64;
    while Instant::now() < deadline {
        match log.load_aggregate(1) {
            Ok(_) => loads += 1,
            Err(err) => {
                failure = Some(err);
                break;
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    let trimmed = log.with_event_log(|l| l.log().start_offset()).unwrap();
    assert!(trimmed > 0, "retention never ran");
    assert!(failure.is_none(), "load_aggregate failed after {loads} loads: {failure:?}");
}

/// A salvage repair turned an aggregate's last event into a gap while the stored index, intact,
/// still named it: finding the aggregate's version read it, got `Gap`, and every append to
/// the aggregate failed from then on. The lost event's version must count, not stop it.
#[test]
fn after_a_salvage_an_aggregate_whose_last_event_became_a_gap_cannot_be_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { segment_bytes: 4096, ..Options::default() };
    let mut log = EventLog::open_with(dir.path(), options.clone()).unwrap();
    let offsets: Vec<u64> = (0..120u64)
        .map(|i| {
            let aggregate = if i <= 50 && i % 2 == 0 { 7 } else { 2 };
            let event = Event::builder("deposit")
                .aggregate_id(aggregate)
                .payload(vec![i as u8; 20])
                .build();
            log.append(&event).unwrap()
        })
        .collect();
    log.close().unwrap();
    // Damage aggregate 7's last event (its version 25).
    let (base, path) = segment_of(dir.path(), offsets[50]);
    flip_bit(&path, file_pos(base, offsets[50]) + 33, 0);
    let salvage = Options { recovery: RecoveryMode::Salvage, ..options };
    let mut log = EventLog::open_with(dir.path(), salvage).unwrap();
    assert!(log.open_report().repair.is_some(), "the damage was repaired");
    let version = log.aggregate_version(7);
    let appended = log.append(&Event::builder("deposit").aggregate_id(7).build());
    assert!(
        appended.is_ok(),
        "aggregate 7 after the salvage: version {version:?}, append {appended:?}"
    );
}

/// `SharedLog::sync` from threads that append without syncing, while others append durably,
/// makes each thread's buffered records durable, and a reopen finds every record acknowledged
/// by a sync.
#[test]
fn buffered_appends_then_sync_from_many_threads_are_durable_on_return() {
    const THREADS: u64 = 4;
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open_with(dir.path(), small_segments()).unwrap().into_shared();
    let start = Arc::new(Barrier::new(THREADS as usize));
    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (log, start) = (log.clone(), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                let mut acknowledged = Vec::new();
                for n in 0..300u64 {
                    let payload = [thread.to_le_bytes(), n.to_le_bytes()].concat();
                    if thread % 2 == 0 {
                        let offset = log.append(&payload).unwrap();
                        log.sync().unwrap();
                        assert!(log.reader().durable_offset() > offset);
                        acknowledged.push((offset, payload));
                    } else {
                        acknowledged.push((log.append_sync(&payload).unwrap(), payload));
                    }
                }
                acknowledged
            })
        })
        .collect();
    let acknowledged: Vec<_> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    drop(log);
    let log = Log::open(dir.path()).unwrap();
    for (offset, payload) in acknowledged {
        assert_eq!(&*log.read_at(offset).unwrap().payload, &payload[..]);
    }
}
