//! One test per defect the power-cut filesystem (`tests/power_cut/`) found, each the smallest
//! case that showed it. They skip, saying why, where FUSE cannot be mounted.

#[path = "power_cut/mod.rs"]
mod power_cut;

use chronicle::{Log, Options};
use power_cut::{CutMode, PowerCutMount};

/// Creating a log synced its first segment and its own directory, not the directory holding
/// it: the new directory's entry in its parent was not durable, and a power cut took the whole
/// log, records acknowledged by `append_sync` included.
#[test]
fn new_log_directory_lost_at_power_cut() {
    let Some(mut fs) = PowerCutMount::new("new_log_directory_lost_at_power_cut") else {
        return;
    };
    let options = Options { segment_bytes: 64 << 10, ..Options::default() };
    let mut log = Log::open_with(fs.path().join("log"), options.clone()).unwrap();
    let offset = log.append_sync(b"acknowledged").unwrap();
    drop(log);
    fs.cut(CutMode::Strict);
    let log = Log::open_with(fs.path().join("log"), options).unwrap();
    let record = log.read_at(offset).expect("the acknowledged record survives the power cut");
    assert_eq!(&*record.payload, b"acknowledged");
}
