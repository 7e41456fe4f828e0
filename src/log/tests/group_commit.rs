use std::sync::{Arc, Barrier};
use std::thread;

use crate::error::StorageError;
use crate::log::Log;

/// One failed sync in a group commit fails every caller waiting on it: the thread that ran
/// it gets the I/O error, every other one (waiting or later) `Poisoned`, none hangs, and no
/// call that returned success lost its record.
#[test]
fn a_failed_group_sync_poisons_every_waiting_thread() {
    const THREADS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap().into_shared();
    let before = log.append_sync(b"before").unwrap();
    log.with_log_mut(|log| log.writer.as_mut().unwrap().fail_next_sync = true);
    let start = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let (log, start) = (log.clone(), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                let mut acknowledged = Vec::new();
                for n in 0..50u32 {
                    let payload = format!("thread {i} record {n}");
                    match log.append_sync(payload.as_bytes()) {
                        Ok(offset) => acknowledged.push((offset, payload)),
                        Err(err) => return (acknowledged, err),
                    }
                }
                panic!("thread {i} never saw the failure");
            })
        })
        .collect();
    let (mut io_errors, mut acknowledged) = (0, Vec::new());
    for handle in handles {
        let (acked, err) = handle.join().unwrap();
        acknowledged.extend(acked);
        match err {
            StorageError::Io { op: "sync segment", .. } => io_errors += 1,
            StorageError::Poisoned { cause } => assert!(cause.contains("injected"), "{cause}"),
            other => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(io_errors, 1, "exactly one thread ran the failed sync");
    assert!(matches!(log.sync(), Err(StorageError::Poisoned { .. })));
    assert!(matches!(log.close(), Err(StorageError::Poisoned { .. })));

    let log = Log::open(dir.path()).unwrap();
    assert_eq!(&*log.read_at(before).unwrap().payload, b"before");
    for (offset, payload) in acknowledged {
        assert_eq!(&*log.read_at(offset).unwrap().payload, payload.as_bytes());
    }
}

/// A sync that has nothing to write makes no system call and counts as no sync; a durable
/// append by one thread alone takes one sync each.
#[test]
fn syncs_are_counted_only_when_they_write() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap().into_shared();
    log.sync().unwrap();
    assert_eq!(log.sync_count(), 0);
    for n in 0..5u8 {
        log.append_sync(&[n]).unwrap();
    }
    assert_eq!(log.sync_count(), 5);
    log.append(b"buffered").unwrap();
    log.append(b"buffered").unwrap();
    log.sync().unwrap();
    log.sync().unwrap();
    assert_eq!(log.sync_count(), 6);
}

/// A panic while a leader performs its sync poisons the writer: the leader gets an error,
/// and every later sync, through the shared handle or the writer inside it, `Poisoned`, not
/// "another sync of this log is in flight".
#[test]
fn a_panic_inside_a_group_sync_poisons_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap().into_shared();
    let before = log.append_sync(b"before").unwrap();
    log.with_log_mut(|log| log.writer.as_mut().unwrap().panic_next_sync = true);
    match log.append_sync(b"during") {
        Err(StorageError::Io { source, .. }) => assert!(source.to_string().contains("panicked")),
        other => panic!("expected the sync's error, got {other:?}"),
    }
    assert!(matches!(log.append_sync(b"after"), Err(StorageError::Poisoned { .. })));
    let direct = log.with_log_mut(Log::sync);
    assert!(matches!(direct, Err(StorageError::Poisoned { .. })), "{direct:?}");
    drop(log);
    let log = Log::open(dir.path()).unwrap();
    assert_eq!(&*log.read_at(before).unwrap().payload, b"before");
}
