//! What a user saw: reopening a log right after `close` failed with `Locked` now and then in a
//! program whose other threads started processes. A child forked by another thread holds a
//! copy of the lock file's descriptor until it calls `exec`, and the `flock` lock belongs to
//! the open file description they share, so closing the descriptor did not release it.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use chronicle::Log;

#[test]
fn a_log_can_be_reopened_at_once_after_close_while_other_threads_spawn_processes() {
    let dir = tempfile::tempdir().unwrap();
    Log::open(dir.path()).unwrap().close().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let spawners: Vec<_> = (0..2)
        .map(|_| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = Command::new("true").status();
                }
            })
        })
        .collect();
    let mut locked = 0;
    for _ in 0..300 {
        match Log::open(dir.path()) {
            Ok(log) => log.close().unwrap(),
            Err(chronicle::StorageError::Locked { .. }) => locked += 1,
            Err(other) => panic!("{other}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    for spawner in spawners {
        spawner.join().unwrap();
    }
    assert_eq!(locked, 0, "{locked} of 300 reopens found the directory still locked");
}
