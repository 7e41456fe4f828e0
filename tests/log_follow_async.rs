//! Following a log as a `futures_core::Stream` (feature `async`): the writer wakes a waiting
//! task (no timer), once per wait; the last waker given is the one woken; dropping a stream
//! takes its waker out; a writer thread rolling small segments while three tasks follow;
//! durable streams, stop, bad offsets, read-only handles and consumers.
//!
//! The executor is the smallest there is: `block_on` parks its thread until the waker is
//! called, and fails the test (instead of hanging) if no wake-up comes within 10 s.

mod common;

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use chronicle::{FollowStream, Log, StorageError};
use common::{payload, segments, small};
use futures_core::stream::{FusedStream, Stream};

/// How long `block_on` waits for a wake-up before it calls it lost.
const WAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A waker that counts its calls and unparks the thread that made it.
struct Parker {
    thread: Thread,
    wakes: AtomicUsize,
}

impl Parker {
    fn new() -> Arc<Parker> {
        Arc::new(Parker { thread: thread::current(), wakes: AtomicUsize::new(0) })
    }

    fn wakes(&self) -> usize {
        self.wakes.load(Ordering::SeqCst)
    }
}

impl Wake for Parker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// Runs `future` on this thread, parking between polls until its waker is called.
///
/// # Panics
/// If a poll returns `Pending` and no wake-up follows within [`WAKE_TIMEOUT`].
fn block_on<F: Future>(future: F) -> F::Output {
    let parker = Parker::new();
    let waker = Waker::from(Arc::clone(&parker));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        let seen = parker.wakes();
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        let deadline = Instant::now() + WAKE_TIMEOUT;
        while parker.wakes() == seen {
            let now = Instant::now();
            assert!(now < deadline, "pending and not woken within {WAKE_TIMEOUT:?}");
            thread::park_timeout(deadline - now);
        }
    }
}

/// The stream's next item.
async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
}

/// Polls `stream` once with `parker`'s waker.
fn poll_once(
    stream: &mut FollowStream,
    parker: &Arc<Parker>,
) -> Poll<Option<chronicle::Result<chronicle::Record>>> {
    let waker = Waker::from(Arc::clone(parker));
    Pin::new(stream).poll_next(&mut Context::from_waker(&waker))
}

/// The offset and payload of a record item.
fn record(item: Option<chronicle::Result<chronicle::Record>>) -> (u64, Vec<u8>) {
    match item {
        Some(Ok(r)) => (r.offset, r.payload.to_vec()),
        other => panic!("expected a record, got {other:?}"),
    }
}

#[test]
fn a_stream_is_send_and_unpin() {
    fn check<T: Send + Unpin + 'static>() {}
    check::<FollowStream>();
}

#[test]
fn a_stream_replays_then_delivers_new_records_and_says_when_it_is_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path().join("log"), small(200)).unwrap();
    let first: Vec<u64> = (0..30).map(|i| log.append(&payload(i, 40)).unwrap()).collect();
    let mut stream = log.follow_stream(0);
    assert!(!stream.is_caught_up());
    block_on(async {
        for (i, &offset) in first.iter().enumerate() {
            assert_eq!(record(next(&mut stream).await), (offset, payload(i, 40)));
            assert_eq!(stream.is_caught_up(), i == first.len() - 1, "after record {i}");
        }
    });
    assert_eq!(stream.next_offset(), log.end_offset());
    let offset = log.append(b"live").unwrap();
    assert!(!stream.is_caught_up());
    assert_eq!(record(block_on(next(&mut stream))), (offset, b"live".to_vec()));
    assert!(stream.is_caught_up());
    assert!(!stream.is_terminated());
}

#[test]
fn a_pending_stream_is_woken_by_the_append_once_and_not_by_a_timer() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path().join("log"), small(200)).unwrap();
    let mut stream = log.follow_stream(0);
    let parker = Parker::new();
    assert!(poll_once(&mut stream, &parker).is_pending());
    // Nothing else wakes it: no timer, no helper thread.
    thread::sleep(Duration::from_millis(50));
    assert_eq!(parker.wakes(), 0);
    // The append wakes the task before it returns; the next append finds no task waiting
    // (the wake-up took it out) and wakes nothing.
    let a = log.append(b"a").unwrap();
    assert_eq!(parker.wakes(), 1);
    let b = log.append(b"b").unwrap();
    assert_eq!(parker.wakes(), 1);
    assert_eq!(record(block_on(next(&mut stream))), (a, b"a".to_vec()));
    assert_eq!(record(block_on(next(&mut stream))), (b, b"b".to_vec()));
    // Waiting again registers again.
    assert!(poll_once(&mut stream, &parker).is_pending());
    let c = log.append(b"c").unwrap();
    assert_eq!(parker.wakes(), 2);
    assert_eq!(record(block_on(next(&mut stream))), (c, b"c".to_vec()));
}

#[test]
fn only_the_last_waker_given_is_woken() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path().join("log"), small(200)).unwrap();
    let mut stream = log.follow_stream(0);
    let (first, last) = (Parker::new(), Parker::new());
    assert!(poll_once(&mut stream, &first).is_pending());
    assert!(poll_once(&mut stream, &last).is_pending());
    log.append(b"x").unwrap();
    assert_eq!((first.wakes(), last.wakes()), (0, 1));
}

#[test]
fn dropping_a_pending_stream_takes_its_waker_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path().join("log"), small(200)).unwrap();
    let mut stream = log.follow_stream(0);
    let parker = Parker::new();
    assert!(poll_once(&mut stream, &parker).is_pending());
    assert!(Arc::strong_count(&parker) > 1, "the log holds the waker");
    drop(stream);
    assert_eq!(Arc::strong_count(&parker), 1, "the log still holds the waker");
    log.append(b"x").unwrap();
    assert_eq!(parker.wakes(), 0);
}

#[test]
fn three_tasks_follow_a_writer_thread_that_rolls_small_segments() {
    const OPS: usize = 6000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = Log::open_with(&path, small(200)).unwrap();
    let streams = [log.follow_stream(0), log.follow_stream(0), log.follow_durable_stream(0)];
    let writer = thread::spawn(move || {
        let mut expected = Vec::new();
        for op in 0..OPS {
            let p = payload(op, 8 + op % 190);
            match op % 10 {
                0..=6 => expected.push((log.append(&p).unwrap(), p)),
                7 => expected.push((log.append_sync(&p).unwrap(), p)),
                _ => {
                    let batch = [p.clone(), payload(op + OPS, 30), p.clone()];
                    let offsets = log.append_batch(&batch).unwrap();
                    expected.extend(offsets.into_iter().zip(batch));
                }
            }
            // Now and then a pause, so that the followers catch up and wait.
            if op % 40 == 0 {
                thread::sleep(Duration::from_micros(500));
            }
        }
        log.sync().unwrap();
        (log, expected)
    });
    let consumers: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            thread::spawn(move || {
                let got = block_on(async {
                    let mut got = Vec::new();
                    // Every op adds at least one record; the writer's count is not known here,
                    // so read until the expected total, which the main thread checks.
                    while let Some(item) = next(&mut stream).await {
                        let r = item.unwrap();
                        got.push((r.offset, r.payload.to_vec()));
                        if got.len() == expected_len(OPS) {
                            break;
                        }
                    }
                    got
                });
                (stream, got)
            })
        })
        .collect();
    let (log, expected) = writer.join().unwrap();
    assert_eq!(expected.len(), expected_len(OPS));
    assert!(segments(&path).len() > 50, "{} segments", segments(&path).len());
    for consumer in consumers {
        let (stream, got) = consumer.join().unwrap();
        assert_eq!(got.len(), expected.len());
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(g, e, "record {i}");
        }
        assert_eq!(stream.next_offset(), log.end_offset());
        assert!(stream.is_caught_up());
    }
}

/// How many records the writer of the test above appends in `ops` operations.
fn expected_len(ops: usize) -> usize {
    (0..ops).map(|op| if op % 10 >= 8 { 3 } else { 1 }).sum()
}

#[test]
fn an_append_racing_the_task_going_to_sleep_still_wakes_it() {
    // Ping-pong: the writer appends record i once the task has record i - 1, after a pause of
    // 0 to ~20 us, so that appends land while the task is between finding nothing and
    // registering its waker. A wake-up lost there leaves `block_on` unwoken, which fails.
    const ROUNDS: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path().join("log"), small(200)).unwrap();
    let mut stream = log.follow_stream(0);
    let received = Arc::new(AtomicUsize::new(0));
    let task = {
        let received = Arc::clone(&received);
        thread::spawn(move || {
            for i in 0..ROUNDS {
                let (_, got) = record(block_on(next(&mut stream)));
                assert_eq!(got, (i as u64).to_le_bytes());
                received.store(i + 1, Ordering::SeqCst);
            }
        })
    };
    let mut pause = 0x9e37_79b9_u32;
    for i in 0..ROUNDS {
        while received.load(Ordering::SeqCst) < i {
            if task.is_finished() {
                break; // It failed: `join` reports why.
            }
            std::hint::spin_loop();
        }
        pause ^= pause << 13;
        pause ^= pause >> 17;
        pause ^= pause << 5;
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_nanos(u64::from(pause % 20_000)) {
            std::hint::spin_loop();
        }
        log.append(&(i as u64).to_le_bytes()).unwrap();
    }
    task.join().unwrap();
}

#[test]
fn a_durable_stream_waits_for_the_sync() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path().join("log"), small(200)).unwrap();
    log.append_sync(b"synced").unwrap();
    let mut stream = log.follow_durable_stream(0);
    assert!(stream.is_durable());
    assert_eq!(record(block_on(next(&mut stream))), (0, b"synced".to_vec()));
    let parker = Parker::new();
    assert!(poll_once(&mut stream, &parker).is_pending());
    let buffered = log.append(b"buffered").unwrap();
    assert!(stream.is_caught_up(), "a record no sync covers counts for nothing");
    assert!(poll_once(&mut stream, &parker).is_pending());
    let before = parker.wakes();
    log.sync().unwrap();
    assert_eq!(parker.wakes(), before + 1, "the sync wakes the task");
    assert_eq!(record(block_on(next(&mut stream))), (buffered, b"buffered".to_vec()));
}

#[test]
fn stop_wakes_a_pending_stream_and_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path().join("log"), small(200)).unwrap();
    log.append(b"before").unwrap();
    let mut stream = log.follow_stream(0);
    let stop = stream.stop_handle();
    let task = thread::spawn(move || {
        let first = block_on(next(&mut stream));
        let end = block_on(next(&mut stream));
        (first.map(|r| r.map(|r| r.payload.to_vec()).unwrap()), end.is_none(), stream)
    });
    thread::sleep(Duration::from_millis(50));
    stop.stop();
    let (first, ended, mut stream) = task.join().unwrap();
    assert_eq!(first, Some(b"before".to_vec()));
    assert!(ended);
    assert!(stream.is_terminated());
    log.append(b"after").unwrap();
    assert!(block_on(next(&mut stream)).is_none());
}

#[test]
fn a_bad_offset_is_the_first_item_then_the_stream_ends() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path().join("log"), small(200)).unwrap();
    log.append(b"0123456789").unwrap();
    let mut stream = log.follow_stream(8);
    match block_on(next(&mut stream)) {
        Some(Err(StorageError::InvalidOffset { offset, .. })) => assert_eq!(offset, 8),
        other => panic!("expected InvalidOffset, got {other:?}"),
    }
    assert!(block_on(next(&mut stream)).is_none());
    assert!(stream.is_terminated());
}

#[test]
fn a_read_only_stream_follows_another_handles_writes_across_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut writer = Log::open_with(&path, small(500)).unwrap();
    writer.append(b"before").unwrap();
    let reader = Log::open_read_only(&path).unwrap();
    let mut stream = reader.follow_stream(0);
    let appender = thread::spawn(move || {
        let mut expected = vec![(0, b"before".to_vec())];
        for i in 0..300 {
            let p = payload(i, 100);
            expected.push((writer.append(&p).unwrap(), p));
            if i % 20 == 0 {
                thread::sleep(Duration::from_millis(2));
            }
        }
        expected
    });
    let got = block_on(async {
        let mut got = Vec::new();
        while got.len() < 301 {
            got.push(record(next(&mut stream).await));
        }
        got
    });
    assert_eq!(got, appender.join().unwrap());
    assert!(segments(&path).len() > 5);
    // A pending read-only stream stops at once too.
    let stop = stream.stop_handle();
    let task = thread::spawn(move || block_on(next(&mut stream)).is_none());
    thread::sleep(Duration::from_millis(20));
    stop.stop();
    assert!(task.join().unwrap());
}

#[test]
fn a_consumers_follow_becomes_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path().join("log"), small(200)).unwrap();
    let offsets: Vec<u64> = (0..5).map(|i| log.append(&payload(i, 20)).unwrap()).collect();
    let mut consumer = log.consumer("billing").unwrap();
    consumer.commit(offsets[3]).unwrap();
    let mut stream = consumer.follow().unwrap().into_stream();
    assert_eq!(record(block_on(next(&mut stream))), (offsets[3], payload(3, 20)));
    consumer.commit(stream.next_offset()).unwrap();
    assert_eq!(consumer.position(), Some(offsets[4]));
}
