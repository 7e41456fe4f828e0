use chronicle::{Log, Options, StorageError};

fn small() -> Options {
    Options { segment_bytes: 4096, record_bytes_max: Some(1000), ..Options::default() }
}

#[test]
fn round_trip_across_segments_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut offsets = Vec::new();
    {
        let mut log = Log::open_with(dir.path(), small()).unwrap();
        assert!(log.open_report().created);
        for i in 0..500u32 {
            let payload = vec![(i % 251) as u8; (i % 300) as usize];
            offsets.push(log.append(&payload).unwrap());
        }
        let got: Vec<_> = log.replay(0).map(|r| r.unwrap()).collect();
        assert_eq!(got.len(), 500);
        log.close().unwrap();
    }
    let log = Log::open_with(dir.path(), small()).unwrap();
    assert!(log.open_report().segments > 10, "{:?}", log.open_report());
    assert_eq!(log.open_report().torn_tail, None);
    let got: Vec<_> = log.replay(0).map(|r| r.unwrap()).collect();
    assert_eq!(got.len(), 500);
    for (i, rec) in got.iter().enumerate() {
        assert_eq!(rec.offset, offsets[i]);
        assert_eq!(&*rec.payload, &vec![(i as u32 % 251) as u8; i % 300][..]);
    }
    let mid = offsets[250];
    assert_eq!(log.replay(mid).count(), 250);
    assert_eq!(log.replay_until(offsets[10], offsets[20]).count(), 10);
    assert!(matches!(log.replay(mid + 8).next(), Some(Err(StorageError::InvalidOffset { .. }))));
    assert!(matches!(Log::open(dir.path()), Err(StorageError::Locked { .. })));
    let ro = Log::open_read_only(dir.path()).unwrap();
    assert_eq!(ro.replay(0).count(), 500);
    assert_eq!(log.verify().unwrap().records, 500);
}
