use crate::log::pager::FILL_MIN_UNSYNCED;
use crate::log::{Log, Options};

/// A writer that syncs every few KiB asks for no filling ahead (pages made ready ahead made
/// such syncs slower the further a segment filled); one that buffers a MiB or more does,
/// ahead of its end.
#[test]
fn only_a_buffering_writer_asks_for_filling_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path()).unwrap();
    let batch = vec![vec![7u8; 128]; 100];
    // Appends through the map, each followed by a sync (`append_sync` and
    // `append_batch_sync` write through the file, which never fills ahead).
    for _ in 0..400 {
        log.append_batch(&batch).unwrap();
        log.sync().unwrap();
    }
    for _ in 0..400 {
        for record in batch.iter().take(10) {
            log.append(record).unwrap();
        }
        log.sync().unwrap();
    }
    let writer = log.writer.as_ref().unwrap();
    assert!(writer.pos > 6 << 20, "the durable writes should cover several MiB");
    assert_eq!(writer.fill_requested, 0, "a durable writer asked for filling ahead");

    for _ in 0..10_000 {
        log.append(&batch[0]).unwrap();
    }
    let writer = log.writer.as_ref().unwrap();
    assert!(writer.end() - writer.synced_end >= FILL_MIN_UNSYNCED);
    assert!(
        writer.fill_requested > writer.pos,
        "a buffering writer should have asked for pages ahead of its end"
    );
}

/// Write-behind is asked for every 4 MiB appended, whichever way the records were
/// written, and never for bytes already synced.
#[test]
fn write_behind_follows_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path()).unwrap();
    let payload = vec![1u8; 1000];
    while log.writer.as_ref().unwrap().pos < 9 << 20 {
        log.append(&payload).unwrap();
    }
    let writer = log.writer.as_ref().unwrap();
    assert!(writer.write_behind_requested >= 8 << 20);
    assert!(writer.write_behind_requested <= writer.pos);

    let mut log_off = Log::open_with(
        dir.path().join("off"),
        Options { write_behind: false, ..Options::default() },
    )
    .unwrap();
    for _ in 0..9000 {
        log_off.append(&payload).unwrap();
    }
    assert_eq!(log_off.writer.as_ref().unwrap().write_behind_requested, 0);
}
