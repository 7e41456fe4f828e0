//! Torn tails: what a crash leaves at the end of the last segment. Recovery must keep exactly
//! the complete records before the damage, report the cut, zero it (writers only), and let the
//! next append land where the torn record was.

mod common;

use std::fs;
use std::path::Path;

use chronicle::Log;
use common::{
    all, append_all, build_log, copy_dir, dir_bytes, file_pos, frame_len, payload, read_at,
    segment_of, segments, small, stride, torn_of, varied_lens, write_at, zero_from, Rec,
};

const MAX: u64 = 300;

/// A closed log over several segments whose last record is a 200-byte record that is not the
/// first of its segment. Returns the records.
fn fixture(dir: &Path) -> Vec<Rec> {
    let mut lens = varied_lens(90, MAX as usize);
    lens.push(200);
    // A crash: the writer goes away without `close`, so the last segment was never synced
    // (earlier segments were, when the writer rolled past them).
    let mut log = Log::open_with(dir, small(MAX)).unwrap();
    let recs = append_all(&mut log, 0, &lens);
    drop(log);
    assert!(segments(dir).len() >= 4);
    let last = recs.last().unwrap();
    assert_ne!(segment_of(dir, last.offset).0, last.offset);
    recs
}

/// Opens a writer on a damaged copy and checks the recovery: exactly `kept` survive, the log
/// ends at `cut`, the report says `torn`, and an append lands at `cut` and survives a reopen.
/// `torn` is the expected `(offset, bytes, frames_dropped)` of the reported torn tail.
fn check_recovered(dir: &Path, kept: &[Rec], cut: u64, torn: Option<(u64, u64, u64)>) {
    // A reader first: it must see the same records and report the same tail, changing nothing.
    let before = dir_bytes(dir);
    let ro = Log::open_read_only(dir).unwrap();
    assert_eq!(ro.end_offset(), cut);
    assert_eq!(torn_of(ro.open_report()), torn);
    assert_eq!(all(ro.replay(0)), kept);
    drop(ro);
    assert_eq!(dir_bytes(dir), before, "a read-only open changed the files");

    let mut log = Log::open_with(dir, small(MAX)).unwrap();
    assert_eq!(log.end_offset(), cut);
    assert_eq!(log.open_report().end_offset, cut);
    assert_eq!(torn_of(log.open_report()), torn);
    if let Some((_, bytes, _)) = torn {
        assert!(bytes > 0);
    }
    assert_eq!(all(log.replay(0)), kept);
    let mut expected = kept.to_vec();
    let added = append_all(&mut log, 1000, &[200]);
    assert_eq!(added[0].offset, cut, "the first append after recovery is not at the cut");
    expected.extend(added);
    assert_eq!(all(log.replay(0)), expected);
    log.close().unwrap();

    let log = Log::open_read_only(dir).unwrap();
    assert_eq!(torn_of(log.open_report()), None, "the torn bytes were not zeroed");
    assert_eq!(all(log.replay(0)), expected);
    assert_eq!(log.verify().unwrap().records, expected.len() as u64);
}

/// `TornTail::bytes` for a frame whose first `k` bytes survived: from the frame's start to the
/// end of the 8-byte word holding the last non-zero surviving byte.
fn torn_bytes(frame: &[u8], k: usize) -> u64 {
    match frame[..k].iter().rposition(|&b| b != 0) {
        Some(j) => ((j as u64 + 1) + 7) & !7,
        None => 0,
    }
}

#[test]
fn cut_by_zeroing_at_every_byte_of_the_last_frame() {
    let src = tempfile::tempdir().unwrap();
    let recs = fixture(src.path());
    let last = recs.last().unwrap().clone();
    let kept = &recs[..recs.len() - 1];
    let (base, seg) = segment_of(src.path(), last.offset);
    let flen = frame_len(last.payload.len()) as usize;
    let frame = read_at(&seg, file_pos(base, last.offset), flen);

    let mut torn_count = 0;
    for k in 0..flen {
        let work = tempfile::tempdir().unwrap();
        copy_dir(src.path(), work.path());
        let seg = work.path().join(seg.file_name().unwrap());
        zero_from(&seg, file_pos(base, last.offset) + k as u64);
        let bytes = torn_bytes(&frame, k);
        // Cutting at the frame's first byte leaves only zeros: indistinguishable from a log
        // that ended there, so there is nothing to report.
        let torn = (bytes > 0).then_some((last.offset, bytes, 0));
        torn_count += usize::from(torn.is_some());
        check_recovered(work.path(), kept, last.offset, torn);
    }
    // Only a cut at the first byte, or one that leaves nothing but zero bytes, reports nothing.
    assert!(torn_count >= flen - 8, "{torn_count} of {flen} cuts reported a torn tail");
}

#[test]
fn cut_by_truncating_the_file_inside_the_last_frame() {
    // A segment file shorter than it was created is not something Chronicle does (mapped
    // files never shrink), but another program or a filesystem repair might. The engine must
    // recover the earlier records or refuse clearly, never panic. It recovers: the shortened
    // data region is scanned like any other, and the next append rolls to a new segment.
    let src = tempfile::tempdir().unwrap();
    let recs = fixture(src.path());
    let last = recs.last().unwrap().clone();
    let kept = &recs[..recs.len() - 1];
    let (base, seg) = segment_of(src.path(), last.offset);
    let flen = frame_len(last.payload.len()) as usize;
    let frame = read_at(&seg, file_pos(base, last.offset), flen);
    for k in 0..flen {
        let work = tempfile::tempdir().unwrap();
        copy_dir(src.path(), work.path());
        let seg = work.path().join(seg.file_name().unwrap());
        let f = fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(file_pos(base, last.offset) + k as u64).unwrap();
        drop(f);
        // The data region is rounded down to whole 8-byte words, so only those bytes count.
        let bytes = torn_bytes(&frame, k & !7);
        let torn = (bytes > 0).then_some((last.offset, bytes, 0));
        check_recovered(work.path(), kept, last.offset, torn);
    }
}

#[test]
fn truncating_a_last_segment_that_holds_only_the_torn_frame() {
    // As above, but the torn frame is the first of its segment, so the append after recovery
    // creates a segment with the same base (and file name) as the shortened one.
    let src = tempfile::tempdir().unwrap();
    let mut lens = varied_lens(40, MAX as usize);
    lens.push(MAX as usize);
    let mut recs = build_log(src.path(), MAX, &lens);
    // Fill the last segment, then roll into a new one with one record.
    {
        let mut log = Log::open_with(src.path(), small(MAX)).unwrap();
        let before = segments(src.path()).len();
        while segments(src.path()).len() == before {
            let r = append_all(&mut log, recs.len(), &[MAX as usize]);
            recs.extend(r);
        }
        drop(log); // a crash: the new segment's frame was never synced
    }
    let last = recs.last().unwrap().clone();
    let (base, _) = segment_of(src.path(), last.offset);
    assert_eq!(base, last.offset);
    let kept = &recs[..recs.len() - 1];
    for k in [0u64, 3, 8, 13, 32, 100, frame_len(MAX as usize) - 1] {
        let work = tempfile::tempdir().unwrap();
        copy_dir(src.path(), work.path());
        let seg = work.path().join(common::seg_name(base));
        let f = fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(file_pos(base, base) + k).unwrap();
        drop(f);
        let frame = payload_frame_prefix(src.path(), base, k);
        let bytes = torn_bytes(&frame, (k & !7) as usize);
        let torn = (bytes > 0).then_some((base, bytes, 0));
        check_recovered(work.path(), kept, base, torn);
        // The append went into the shortened file if it fit there; otherwise it rolled to a
        // new, whole segment file with the same name.
        let expected_len =
            if (k & !7) >= stride(200) { file_pos(base, base) + k } else { common::SEGMENT_BYTES };
        assert_eq!(fs::metadata(&seg).unwrap().len(), expected_len);
    }
}

fn payload_frame_prefix(dir: &Path, base: u64, k: u64) -> Vec<u8> {
    read_at(&dir.join(common::seg_name(base)), file_pos(base, base), k as usize)
}

/// Deterministic non-zero bytes.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 255) as u8 + 1
        })
        .collect()
}

#[test]
fn garbage_after_the_last_frame_is_a_torn_tail() {
    let src = tempfile::tempdir().unwrap();
    let recs = fixture(src.path());
    let end = recs.last().map(|r| r.offset + stride(r.payload.len())).unwrap();
    let (base, seg) = segment_of(src.path(), end);
    let room = common::CAPACITY - (end - base);
    // (gap of zeros after the end, garbage length)
    for (gap, len) in [(0, 1), (0, 5), (0, 100), (0, room), (8, 40), (3, 1), (400, 77)] {
        if gap + len > room {
            continue;
        }
        let work = tempfile::tempdir().unwrap();
        copy_dir(src.path(), work.path());
        let seg = work.path().join(seg.file_name().unwrap());
        write_at(&seg, file_pos(base, end) + gap, &garbage(gap * 1000 + len, len as usize));
        let torn = (end, (gap + len + 7) & !7, 0);
        check_recovered(work.path(), &recs, end, Some(torn));
    }
}

#[test]
fn a_torn_batch_disappears_whole() {
    let src = tempfile::tempdir().unwrap();
    let mut recs = build_log(src.path(), MAX, &varied_lens(45, MAX as usize));
    let batch: Vec<Vec<u8>> = (0..5).map(|i| payload(500 + i, 100)).collect();
    let offsets = {
        let mut log = Log::open_with(src.path(), small(MAX)).unwrap();
        let offsets = log.append_batch(&batch).unwrap();
        drop(log); // a crash: the batch was never synced
        offsets
    };
    let (base, seg) = segment_of(src.path(), offsets[0]);
    assert_eq!(segment_of(src.path(), offsets[4]).0, base);
    let kept = recs.clone();
    for (o, p) in offsets.iter().zip(&batch) {
        recs.push(Rec { offset: *o, payload: p.clone() });
    }
    // The intact log has the whole batch.
    assert_eq!(all(Log::open_read_only(src.path()).unwrap().replay(0)), recs);

    let s = stride(100);
    // Zero from frame `c` of the batch on: frames before it are dropped with it.
    for c in 0..5u64 {
        for within in [0, 1, 31, 40] {
            let work = tempfile::tempdir().unwrap();
            copy_dir(src.path(), work.path());
            let seg = work.path().join(seg.file_name().unwrap());
            let frame = read_at(&seg, file_pos(base, offsets[c as usize]), 132);
            let bytes = c * s + torn_bytes(&frame, within as usize);
            zero_from(&seg, file_pos(base, offsets[c as usize]) + within);
            let torn = (bytes > 0).then_some((offsets[0], bytes, c));
            check_recovered(work.path(), &kept, offsets[0], torn);
        }
    }
    // A damaged (not cut) last frame: the whole batch goes, four intact frames are counted.
    let work = tempfile::tempdir().unwrap();
    copy_dir(src.path(), work.path());
    let seg = work.path().join(seg.file_name().unwrap());
    common::flip_bit(&seg, file_pos(base, offsets[4]) + 32 + 50, 3);
    let torn = (offsets[0], 5 * s, 4);
    check_recovered(work.path(), &kept, offsets[0], Some(torn));
}

#[test]
fn an_empty_last_segment() {
    // A crash right after a segment was created, before its first frame reached the disk,
    // leaves a last segment with a valid header and an all-zero data region.
    let src = tempfile::tempdir().unwrap();
    let recs = fixture(src.path());
    let n = segments(src.path()).len();
    let (old_last_base, _) = segments(src.path())[n - 1].clone();
    // Append until a roll, so the last record is alone in a new segment.
    let mut all_recs = recs.clone();
    {
        let mut log = Log::open_with(src.path(), small(MAX)).unwrap();
        while segments(src.path()).len() == n {
            all_recs.extend(append_all(&mut log, all_recs.len(), &[MAX as usize]));
        }
        drop(log); // a crash: the new segment's frame was never synced
    }
    let (base, seg) = segments(src.path())[n].clone();
    assert!(base > old_last_base);
    assert_eq!(all_recs.last().unwrap().offset, base);
    zero_from(&seg, file_pos(base, base));
    let kept = &all_recs[..all_recs.len() - 1];

    let ro = Log::open_read_only(src.path()).unwrap();
    assert_eq!(ro.open_report().segments, n + 1);
    drop(ro);
    check_recovered(src.path(), kept, base, None);
    // The append went into the existing empty segment, not a new one.
    assert_eq!(segments(src.path()).len(), n + 1);

    // A brand-new log is an empty last segment too.
    let fresh = tempfile::tempdir().unwrap();
    Log::open_with(fresh.path(), small(MAX)).unwrap().close().unwrap();
    let log = Log::open_with(fresh.path(), small(MAX)).unwrap();
    let report = log.open_report();
    assert!(!report.created);
    assert_eq!((report.segments, report.end_offset, report.records_scanned), (1, 0, 0));
    assert_eq!(torn_of(report), None);
    drop(log);
    check_recovered(fresh.path(), &[], 0, None);
}

#[test]
fn a_zero_filled_tail_is_not_torn_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let recs = fixture(dir.path());
    let end = recs.last().map(|r| r.offset + stride(r.payload.len())).unwrap();
    let (base, seg) = segment_of(dir.path(), end);
    // Explicitly zero what is already zero.
    zero_from(&seg, file_pos(base, end));
    let before = common::segment_bytes(dir.path());
    let log = Log::open_with(dir.path(), small(MAX)).unwrap();
    assert_eq!(torn_of(log.open_report()), None);
    assert_eq!(log.open_report().repair, None);
    assert_eq!(log.end_offset(), end);
    assert_eq!(all(log.replay(0)), recs);
    log.close().unwrap();
    assert_eq!(
        common::segment_bytes(dir.path()),
        before,
        "opening a clean log changed its segments"
    );
}

#[test]
fn damage_followed_by_unsynced_frames_is_a_torn_tail() {
    // The counterpart of the corruption test for the last segment: the frames after the
    // damaged one were written while it was not yet durable (plain `append`, no sync between),
    // so a crash explains the loss; they are dropped and counted.
    let dir = tempfile::tempdir().unwrap();
    let mut recs = fixture(dir.path());
    {
        let mut log = Log::open_with(dir.path(), small(MAX)).unwrap();
        recs.extend(append_all(&mut log, 100, &[50, 60, 70]));
        drop(log); // a crash: none of the three was synced
    }
    let n = recs.len();
    let damaged = recs[n - 3].clone();
    let (base, seg) = segment_of(dir.path(), damaged.offset);
    common::flip_bit(&seg, file_pos(base, damaged.offset) + 40, 0);
    let torn = (damaged.offset, stride(50) + stride(60) + stride(70), 2);
    check_recovered(dir.path(), &recs[..n - 3], damaged.offset, Some(torn));
    assert!(matches!(
        Log::open_with(dir.path(), small(MAX)).map(|l| l.end_offset()),
        Ok(e) if e == damaged.offset + stride(200)
    ));
}

fn segment_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    names
}

/// A segment created by a roll is not synced until the next sync: after a power loss its
/// header (or the whole file) may be missing. Such a torn creation, and everything after it,
/// held only unacknowledged records: open sets it aside and keeps everything before it.
#[test]
fn segment_created_without_sync_and_lost_is_a_torn_tail() {
    for damage in ["zero header", "empty file"] {
        let dir = tempfile::tempdir().unwrap();
        let options = small(1000);
        let mut log = Log::open_with(dir.path(), options.clone()).unwrap();
        let mut synced = Vec::new();
        for i in 0..20u8 {
            synced.push((log.append_sync(&[i; 300]).unwrap(), vec![i; 300]));
        }
        let synced_end = log.end_offset();
        // Buffered appends until the log rolls into a segment that is created but not synced.
        let segments_before = segment_names(dir.path()).len();
        while segment_names(dir.path()).len() == segments_before {
            log.append(&[0xee; 900]).unwrap();
        }
        log.append(&[0xdd; 900]).unwrap();
        drop(log); // a crash: no close
        let names = segment_names(dir.path());
        let newest_name = names.last().unwrap().clone();
        let newest = dir.path().join(&newest_name);
        match damage {
            "zero header" => {
                let mut bytes = fs::read(&newest).unwrap();
                bytes[..64].fill(0);
                fs::write(&newest, bytes).unwrap();
            }
            _ => fs::write(&newest, b"").unwrap(),
        }
        let newest_base: u64 = newest_name[..20].parse().unwrap();
        assert!(newest_base >= synced_end);

        let log = Log::open_with(dir.path(), options.clone()).unwrap();
        let torn = log.open_report().torn_tail.clone().expect("a torn tail is reported");
        assert!(
            torn.segments_dropped.iter().any(|p| p.to_string_lossy().contains(&newest_name[..20])),
            "{damage}: {torn:?}"
        );
        assert!(!segment_names(dir.path()).contains(&newest_name), "{damage}: set aside");
        assert!(log.end_offset() <= newest_base, "{damage}");
        assert!(log.end_offset() >= synced_end, "{damage}: acknowledged records lost");
        let records: Vec<_> = log.replay(0).map(|r| r.unwrap()).collect();
        for (offset, payload) in &synced {
            let record = records.iter().find(|r| r.offset == *offset).expect("synced record kept");
            assert_eq!(&*record.payload, &payload[..]);
        }
        // The log goes on: a new append lands at the end and survives a reopen.
        let mut log = log;
        let end = log.end_offset();
        let offset = log.append_sync(b"after").unwrap();
        assert_eq!(offset, end);
        log.close().unwrap();
        let log = Log::open_with(dir.path(), options).unwrap();
        assert_eq!(log.open_report().torn_tail, None);
        assert_eq!(&*log.read_at(offset).unwrap().payload, b"after");
    }
}

/// Once a sync has returned, the segments created before it are durable: a lost header then
/// is damage, and open refuses.
#[test]
fn segment_header_lost_after_a_sync_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let options = small(1000);
    let mut log = Log::open_with(dir.path(), options.clone()).unwrap();
    for i in 0..30u8 {
        log.append(&[i; 300]).unwrap();
    }
    log.sync().unwrap();
    log.append(&[1; 10]).unwrap();
    drop(log);
    let names = segment_names(dir.path());
    assert!(names.len() >= 3);
    // The last segment's header was synced, so its loss is damage (the recorded durable
    // point of the next segment, or its frames, say so).
    let newest = dir.path().join(names.last().unwrap());
    let mut bytes = fs::read(&newest).unwrap();
    bytes[..64].fill(0);
    fs::write(&newest, bytes).unwrap();
    let err = Log::open_with(dir.path(), options).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, chronicle::StorageError::Corruption { .. })
            && text.contains(&names.last().unwrap()[..20]),
        "{text}"
    );
}

/// Buffered appends may roll through several segments before a power loss, and each segment
/// created since the last sync may come back with a zero header or empty: they are one torn
/// tail, set aside together. A later header that is damaged rather than missing is not what a
/// crash leaves, and is refused as in any segment.
#[test]
fn several_segments_created_without_sync_and_lost_are_one_torn_tail() {
    for damage in ["zero headers", "zero header, then an empty file", "zero, then damaged"] {
        let dir = tempfile::tempdir().unwrap();
        let options = small(1000);
        let mut log = Log::open_with(dir.path(), options.clone()).unwrap();
        for i in 0..20u8 {
            log.append_sync(&[i; 300]).unwrap();
        }
        let synced_end = log.end_offset();
        let segments_before = segment_names(dir.path()).len();
        while segment_names(dir.path()).len() < segments_before + 3 {
            log.append(&[0xee; 900]).unwrap();
        }
        drop(log); // a crash: no close
        let names = segment_names(dir.path());
        let torn = &names[names.len() - 2..];
        for (k, name) in torn.iter().enumerate() {
            let path = dir.path().join(name);
            let mut bytes = fs::read(&path).unwrap();
            match (damage, k) {
                ("zero header, then an empty file", 1) => bytes.clear(),
                ("zero, then damaged", 1) => bytes[20] ^= 1,
                _ => bytes[..64].fill(0),
            }
            fs::write(&path, bytes).unwrap();
        }
        let first_torn: u64 = torn[0][..20].parse().unwrap();
        assert!(first_torn > synced_end);

        if damage == "zero, then damaged" {
            for err in [
                Log::open_read_only(dir.path()).unwrap_err(),
                Log::open_with(dir.path(), options.clone()).unwrap_err(),
            ] {
                let (segment, offset, _) = common::corruption(&err);
                assert_eq!(segment, dir.path().join(&torn[1]), "{damage}");
                assert_eq!(offset, torn[1][..20].parse::<u64>().unwrap(), "{damage}");
            }
            continue;
        }
        let read_only = Log::open_read_only(dir.path()).unwrap();
        let end = read_only.end_offset();
        assert!(end >= synced_end && end <= first_torn, "{damage}: end {end}");
        drop(read_only);
        let log = Log::open_with(dir.path(), options.clone()).unwrap();
        let report = log.open_report().torn_tail.clone().expect("a torn tail is reported");
        assert_eq!(log.end_offset(), end, "{damage}");
        for name in torn {
            assert!(
                report.segments_dropped.iter().any(|p| p.to_string_lossy().contains(&name[..20])),
                "{damage}: {report:?}"
            );
        }
        assert_eq!(segment_names(dir.path()), names[..names.len() - 2], "{damage}");
        drop(log);
        let log = Log::open_with(dir.path(), options).unwrap();
        assert_eq!(log.open_report().torn_tail, None, "{damage}");
        assert_eq!(log.end_offset(), end, "{damage}");
    }
}

/// A file with a header of zeros (or none) is a torn creation only at a base a segment can
/// have: one named with a base near `u64::MAX` would have its bytes checked against offsets
/// that overflow. It is refused as any file with a header that is not Chronicle's.
#[test]
fn a_headerless_file_with_an_impossible_base_is_no_torn_creation() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), MAX, &varied_lens(20, MAX as usize));
    let mut bytes = vec![0x5a_u8; 4096];
    bytes[..64].fill(0);
    let name = format!("{:020}.seg", u64::MAX - 7);
    fs::write(dir.path().join(&name), &bytes).unwrap();
    for err in [
        Log::open_read_only(dir.path()).unwrap_err(),
        Log::open_with(dir.path(), small(MAX)).unwrap_err(),
    ] {
        assert!(
            matches!(&err, chronicle::StorageError::NotALog { path, .. } if path.ends_with(&name)),
            "{err:?}"
        );
    }
    fs::write(dir.path().join(&name), &bytes[..40]).unwrap();
    let (segment, _, _) = common::corruption(&Log::open_read_only(dir.path()).unwrap_err());
    assert!(segment.ends_with(&name));
}
