//! Damage a crash cannot explain: bit flips in sealed segments and in durable frames of the
//! last segment, damaged or foreign segment headers, missing, swapped and stale segments, and
//! what `RecoveryMode::Truncate` does about them (`tests/log_salvage.rs` has the salvage).

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use chronicle::{FormatError, Log, Options, RecoveryMode, StorageError, DROPPED_SUFFIX};
use common::{
    all, append_all, corruption, dir_bytes, drain, file_pos, flip_bit, frame_len, payload,
    rewrite_header, segments, small, stride, varied_lens, write_at, Rec, CAPACITY,
};

const MAX: u64 = 300;

fn repair() -> Options {
    Options { recovery: RecoveryMode::Truncate, ..small(MAX) }
}

/// A closed log of at least five segments; every payload byte is non-zero.
fn fixture(dir: &Path) -> Vec<Rec> {
    let recs = common::build_log(dir, MAX, &varied_lens(110, MAX as usize));
    assert!(segments(dir).len() >= 5, "{} segments", segments(dir).len());
    recs
}

/// The records (by index range) held by segment `k`.
fn records_in(dir: &Path, recs: &[Rec], k: usize) -> std::ops::Range<usize> {
    let segs = segments(dir);
    let lo = segs[k].0;
    let hi = segs.get(k + 1).map_or(u64::MAX, |s| s.0);
    let first = recs.iter().position(|r| r.offset >= lo).unwrap();
    let end = recs.iter().position(|r| r.offset >= hi).unwrap_or(recs.len());
    first..end
}

fn broken_chain_at(err: &StorageError) -> PathBuf {
    match err {
        StorageError::BrokenChain { segment, .. } => segment.clone(),
        other => panic!("expected BrokenChain, got {other:?}"),
    }
}

#[test]
fn bit_flips_in_a_sealed_segment() {
    let dir = tempfile::tempdir().unwrap();
    let recs = fixture(dir.path());
    let segs = segments(dir.path());
    let (base, seg) = segs[1].clone();
    let range = records_in(dir.path(), &recs, 1);
    assert!(range.len() >= 8);
    let link = range.end - 1;
    let end = recs.last().map(|r| r.offset + stride(r.payload.len())).unwrap();
    let mut writer_opens = 0;

    for i in range.clone() {
        let r = &recs[i];
        let start = file_pos(base, r.offset);
        for byte in 0..frame_len(r.payload.len()) {
            let pos = start + byte;
            let bit = (byte % 8) as u8;
            flip_bit(&seg, pos, bit);
            let opened = Log::open_read_only(dir.path());
            if i == link {
                // The next header names this frame: the chain check on open catches it.
                match opened.unwrap_err() {
                    StorageError::Corruption { segment, offset, .. } => {
                        assert_eq!((segment, offset), (seg.clone(), r.offset), "byte {byte}");
                    }
                    StorageError::BrokenChain { segment, .. } => {
                        assert_eq!(segment, segs[2].1, "byte {byte}");
                    }
                    other => panic!("link frame byte {byte}: unexpected {other:?}"),
                }
            } else {
                // Sealed frames are not read on open; replay and verify find the damage.
                let log = opened.unwrap();
                assert_eq!(log.end_offset(), end);
                let (got, err) = drain(log.replay(0));
                assert_eq!(got, recs[..i], "frame {i} byte {byte}");
                let (path, offset, kind) = corruption(&err.unwrap());
                assert_eq!((&path, offset), (&seg, r.offset), "frame {i} byte {byte}");
                let (vpath, voffset, vkind) = corruption(&log.verify().unwrap_err());
                assert_eq!((vpath, voffset, vkind), (path, offset, kind));
                // Replay from the segment's base stops at the same frame; from the next
                // segment on, nothing is wrong.
                let (got, err) = drain(log.replay(base));
                assert_eq!(got, recs[range.start..i]);
                assert_eq!(corruption(&err.unwrap()).1, r.offset);
                assert_eq!(all(log.replay(segs[2].0)), recs[range.end..]);
                // The damaged record itself cannot be read; the error names its offset.
                match log.read_at(r.offset).unwrap_err() {
                    StorageError::InvalidOffset { offset, .. } => assert_eq!(offset, r.offset),
                    err => assert_eq!(corruption(&err).1, r.offset),
                }
                // A writer opens too (sampled: every header field of every frame).
                if byte % 4 == 0 && byte < 32 {
                    let log = Log::open_with(dir.path(), small(MAX)).unwrap();
                    assert_eq!(log.end_offset(), end);
                    drop(log);
                    writer_opens += 1;
                }
            }
            flip_bit(&seg, pos, bit);
        }
    }
    assert!(writer_opens > 0);
    // The flips were all undone: the log is intact again.
    let log = Log::open_read_only(dir.path()).unwrap();
    assert_eq!(all(log.replay(0)), recs);
    assert_eq!(log.verify().unwrap().records, recs.len() as u64);
}

#[test]
fn damage_before_durable_frames_of_the_last_segment_is_refused() {
    // Every frame of the last segment was written by `append_sync`, so each records that all
    // before it was durable. Damage to any but the last cannot be a torn write.
    let dir = tempfile::tempdir().unwrap();
    let mut recs = fixture(dir.path());
    let synced = {
        let mut log = Log::open_with(dir.path(), small(MAX)).unwrap();
        // Roll, so the synced frames are the whole last segment.
        let n = segments(dir.path()).len();
        while segments(dir.path()).len() == n {
            recs.extend(append_all(&mut log, recs.len(), &[MAX as usize]));
        }
        let mut synced = vec![recs.len() - 1];
        for k in 0..5 {
            let p = payload(900 + k, 90 + 7 * k);
            let offset = log.append_sync(&p).unwrap();
            recs.push(Rec { offset, payload: p });
            synced.push(recs.len() - 1);
        }
        // A crash (no `close`): only the frames themselves record what was durable.
        drop(log);
        synced
    };
    let (base, seg) = segments(dir.path()).last().unwrap().clone();
    assert_eq!(recs[synced[0]].offset, base);
    let before = dir_bytes(dir.path());
    // All frames but the last (whose damage is indistinguishable from a torn write).
    for &i in &synced[..synced.len() - 1] {
        let r = recs[i].clone();
        for byte in 0..frame_len(r.payload.len()) {
            let pos = file_pos(base, r.offset) + byte;
            let bit = ((byte * 3) % 8) as u8;
            flip_bit(&seg, pos, bit);
            for read_only in [false, true] {
                let err = if read_only {
                    Log::open_read_only(dir.path()).unwrap_err()
                } else {
                    Log::open_with(dir.path(), small(MAX)).unwrap_err()
                };
                let (path, offset, _) = corruption(&err);
                assert_eq!((&path, offset), (&seg, r.offset), "frame {i} byte {byte}");
            }
            flip_bit(&seg, pos, bit);
        }
    }
    assert_eq!(dir_bytes(dir.path()), before, "a refused open changed the files");

    // Repair truncates at the damaged frame and keeps everything before it.
    let i = synced[2];
    flip_bit(&seg, file_pos(base, recs[i].offset) + 40, 5);
    let mut log = Log::open_with(dir.path(), repair()).unwrap();
    let report = log.open_report().repair.clone().expect("no repair report");
    assert_eq!(report.truncated_at, Some(recs[i].offset));
    assert!(report.segments_dropped.is_empty());
    // The cut bytes are kept beside the log.
    assert_eq!(report.saved.len(), 1);
    assert!(fs::read(&report.saved[0]).unwrap().len() as u64 >= stride(recs[i].payload.len()));
    assert_eq!(log.end_offset(), recs[i].offset);
    assert_eq!(all(log.replay(0)), recs[..i]);
    let added = append_all(&mut log, 5000, &[10]);
    assert_eq!(added[0].offset, recs[i].offset);
    log.close().unwrap();
    let log = Log::open_with(dir.path(), small(MAX)).unwrap();
    let mut expected = recs[..i].to_vec();
    expected.extend(added);
    assert_eq!(all(log.replay(0)), expected);
}

#[test]
fn foreign_and_future_segment_headers() {
    let dir = tempfile::tempdir().unwrap();
    let recs = fixture(dir.path());
    let segs = segments(dir.path());
    let pristine = dir_bytes(dir.path());
    let restore = || {
        for (name, bytes) in &pristine {
            fs::write(dir.path().join(name), bytes).unwrap();
        }
    };
    let open_both = |f: &dyn Fn(StorageError)| {
        f(Log::open_read_only(dir.path()).unwrap_err());
        f(Log::open_with(dir.path(), small(MAX)).unwrap_err());
    };

    for k in [0, 2, segs.len() - 1] {
        let (base, path) = &segs[k];
        // Every byte of the header, one bit each.
        for byte in 0..64u64 {
            for bit in [0u8, 6] {
                flip_bit(path, byte, bit);
                open_both(&|err| match (byte, err) {
                    (0..=3, StorageError::NotALog { path: p, found }) => {
                        assert_eq!(&p, path);
                        let mut magic = *b"CHRN";
                        magic[byte as usize] ^= 1 << bit;
                        assert_eq!(found, magic);
                    }
                    // Version 1 with bit 0 flipped is version 0, which is not newer: the
                    // checksum catches it.
                    (4, StorageError::Corruption { segment, offset, kind }) if bit == 0 => {
                        assert_eq!((&segment, offset), (path, *base));
                        assert!(matches!(kind, FormatError::HeaderChecksum { .. }));
                    }
                    (4 | 5, StorageError::UnsupportedVersion { path: p, found, supported }) => {
                        assert_eq!(&p, path);
                        assert_eq!(supported, 2);
                        assert_eq!(found, 1 ^ (1u16 << (bit + 8 * (byte as u8 - 4))));
                    }
                    (6..=63, StorageError::Corruption { segment, offset, kind }) => {
                        assert_eq!((&segment, offset), (path, *base), "byte {byte}");
                        assert!(matches!(kind, FormatError::HeaderChecksum { .. }), "{kind:?}");
                    }
                    (_, other) => panic!("segment {k} header byte {byte} bit {bit}: {other:?}"),
                });
                flip_bit(path, byte, bit);
            }
        }
        // A newer version with a valid checksum: refused before anything else is read.
        // (Version 2 is a segment that holds a gap frame, which this build reads.)
        for version in [3u16, 7, u16::MAX] {
            rewrite_header(path, |h| h[4..6].copy_from_slice(&version.to_le_bytes()));
            open_both(&|err| match err {
                StorageError::UnsupportedVersion { path: p, found, supported } => {
                    assert_eq!((&p, found, supported), (path, version, 2));
                }
                other => panic!("version {version}: {other:?}"),
            });
            restore();
        }
        // Version 0 never existed.
        rewrite_header(path, |h| h[4..6].copy_from_slice(&0u16.to_le_bytes()));
        open_both(&|err| {
            assert!(matches!(err, StorageError::UnsupportedVersion { found: 0, .. }), "{err:?}")
        });
        restore();
        // Unknown header flags with a valid checksum.
        rewrite_header(path, |h| h[6] = 1);
        open_both(&|err| {
            let (p, offset, kind) = corruption(&err);
            assert_eq!((&p, offset), (path, *base));
            assert!(matches!(kind, FormatError::UnknownHeaderFlags { flags: 1 }));
        });
        restore();
        // A durable offset past the base with a valid checksum: a segment is created at the
        // end of the log, so no writer records that.
        rewrite_header(path, |h| h[40..48].copy_from_slice(&(base + 8).to_le_bytes()));
        open_both(&|err| {
            let (p, offset, kind) = corruption(&err);
            assert_eq!((&p, offset), (path, *base));
            assert!(matches!(kind, FormatError::Other(ref m) if m.contains("durable offset")));
        });
        restore();
        // A file that is not a log at all.
        write_at(path, 0, b"PK\x03\x04");
        open_both(&|err| {
            assert!(matches!(err, StorageError::NotALog { found, .. } if &found == b"PK\x03\x04"))
        });
        restore();
    }
    assert_eq!(all(Log::open_read_only(dir.path()).unwrap().replay(0)), recs);
}

#[test]
fn missing_swapped_and_renamed_segments_break_the_chain() {
    let src = tempfile::tempdir().unwrap();
    fixture(src.path());
    let segs = segments(src.path());
    let fresh = || {
        let d = tempfile::tempdir().unwrap();
        common::copy_dir(src.path(), d.path());
        d
    };
    let in_dir = |d: &Path, k: usize| d.join(segs[k].1.file_name().unwrap());
    let both = |d: &Path| {
        [Log::open_read_only(d).unwrap_err(), Log::open_with(d, small(MAX)).unwrap_err()]
    };

    // A missing middle segment: the one after the gap does not continue its predecessor.
    for k in 1..segs.len() - 1 {
        let d = fresh();
        fs::remove_file(in_dir(d.path(), k)).unwrap();
        for err in both(d.path()) {
            match err {
                StorageError::BrokenChain { segment, .. } => {
                    assert_eq!(segment, in_dir(d.path(), k + 1), "missing {k}");
                }
                other => panic!(
                    "missing segment {k} of {}: expected BrokenChain, got {other:?}",
                    segs.len()
                ),
            }
        }
    }
    // Two segments swapped by renaming: each file's header contradicts its name.
    let d = fresh();
    let (a, b) = (in_dir(d.path(), 1), in_dir(d.path(), 2));
    let tmp = d.path().join("swap");
    fs::rename(&a, &tmp).unwrap();
    fs::rename(&b, &a).unwrap();
    fs::rename(&tmp, &b).unwrap();
    for err in both(d.path()) {
        assert_eq!(broken_chain_at(&err), a);
    }
    // A segment renamed to another base.
    let d = fresh();
    let last = in_dir(d.path(), segs.len() - 1);
    let moved = d.path().join(common::seg_name(segs.last().unwrap().0 + 8));
    fs::rename(&last, &moved).unwrap();
    for err in both(d.path()) {
        assert_eq!(broken_chain_at(&err), moved);
    }
    // A segment whose header was rewritten (valid checksum) to claim the renamed base too:
    // 8 bytes of log are now missing between it and its predecessor. Refused either as a
    // broken chain at the moved segment, or as corruption in one of the two files.
    rewrite_header(&moved, |h| {
        h[16..24].copy_from_slice(&(segs.last().unwrap().0 + 8).to_le_bytes())
    });
    let prev = in_dir(d.path(), segs.len() - 2);
    for err in both(d.path()) {
        match err {
            StorageError::BrokenChain { segment, .. } => assert_eq!(segment, moved),
            StorageError::Corruption { segment, .. } => {
                assert!(
                    segment == prev || segment == moved,
                    "names {segment:?}, not a file of the log"
                );
            }
            other => panic!("expected BrokenChain or Corruption, got {other:?}"),
        }
    }
}

#[test]
fn a_stale_copy_of_a_sealed_segment_breaks_the_chain() {
    // Two logs with identical record sizes: equal in segment 0, different payloads from
    // segment 1 on. Segment 1 of the other log has the same base and header links but
    // different content.
    let a = tempfile::tempdir().unwrap();
    let recs = fixture(a.path());
    let base1 = segments(a.path())[1].0;
    let b = tempfile::tempdir().unwrap();
    {
        let mut log = Log::open_with(b.path(), small(MAX)).unwrap();
        for (i, r) in recs.iter().enumerate() {
            let p = if r.offset < base1 {
                r.payload.clone()
            } else {
                payload(i + 7777, r.payload.len())
            };
            assert_eq!(log.append(&p).unwrap(), r.offset);
        }
        log.close().unwrap();
    }
    let segs_a = segments(a.path());
    let segs_b = segments(b.path());
    assert_eq!(
        segs_a.iter().map(|s| s.0).collect::<Vec<_>>(),
        segs_b.iter().map(|s| s.0).collect::<Vec<_>>()
    );
    for k in [1, 2] {
        let d = tempfile::tempdir().unwrap();
        common::copy_dir(a.path(), d.path());
        let name = segs_a[k].1.file_name().unwrap();
        fs::copy(&segs_b[k].1, d.path().join(name)).unwrap();
        // A stale segment 2 names the other log's segment 1 as its predecessor. A stale
        // segment 1 is caught at its own header (which names the other log's segment 0, whose
        // last frame has another timestamp) or, had the timestamps matched, at segment 2's
        // header, which names a last frame the stale segment 1 does not have.
        let named: Vec<PathBuf> = [1, 2]
            .iter()
            .filter(|&&j| j >= k)
            .map(|&j| d.path().join(segs_a[j].1.file_name().unwrap()))
            .collect();
        for err in [
            Log::open_read_only(d.path()).unwrap_err(),
            Log::open_with(d.path(), small(MAX)).unwrap_err(),
        ] {
            let at = broken_chain_at(&err);
            assert!(named.contains(&at), "stale segment {k}: {err}");
        }
    }
}

#[test]
fn repair_truncates_at_the_first_bad_frame_of_a_sealed_segment() {
    let src = tempfile::tempdir().unwrap();
    let recs = fixture(src.path());
    let segs = segments(src.path());
    let range = records_in(src.path(), &recs, 1);
    // A middle frame of segment 1, and its link frame.
    for i in [range.start + 3, range.end - 1] {
        let d = tempfile::tempdir().unwrap();
        common::copy_dir(src.path(), d.path());
        let (base, _) = segs[1];
        let seg = d.path().join(segs[1].1.file_name().unwrap());
        let r = recs[i].clone();
        flip_bit(&seg, file_pos(base, r.offset) + 32 + 3, 2);
        // Strict refuses (link frame) or opens (middle frame); repair fixes either.
        let mut log = Log::open_with(d.path(), repair()).unwrap();
        let report = log.open_report().clone();
        let repair = report.repair.clone().expect("no repair report");
        assert_eq!(repair.truncated_at, Some(r.offset));
        assert!(repair.damaged[0].reason.contains("checksum"), "{repair:?}");
        let dropped: Vec<PathBuf> = segs[2..]
            .iter()
            .map(|(_, p)| {
                let mut name = p.file_name().unwrap().to_os_string();
                name.push(DROPPED_SUFFIX);
                d.path().join(name)
            })
            .collect();
        assert_eq!(repair.segments_dropped, dropped);
        for (k, p) in dropped.iter().enumerate() {
            assert_eq!(fs::read(p).unwrap(), fs::read(&segs[k + 2].1).unwrap());
            assert!(!d.path().join(segs[k + 2].1.file_name().unwrap()).exists());
        }
        // At least the dropped records' frames, at most the data regions from the cut on.
        let dropped_frames: u64 = recs[i..].iter().map(|r| stride(r.payload.len())).sum();
        let bytes_dropped = repair.bytes_cut + dropped.len() as u64 * CAPACITY;
        assert!(bytes_dropped >= dropped_frames, "{repair:?}");
        assert!(repair.bytes_cut <= CAPACITY - (r.offset - base), "{repair:?}");
        assert_eq!(report.segments, 2);
        assert_eq!(report.end_offset, r.offset);
        assert_eq!(log.end_offset(), r.offset);
        assert_eq!(all(log.replay(0)), recs[..i]);
        assert_eq!(log.verify().unwrap().records, i as u64);
        // Appending continues at the cut, across new segments.
        let mut expected = recs[..i].to_vec();
        expected.extend(append_all(&mut log, 3000, &varied_lens(40, MAX as usize)));
        assert_eq!(expected[i].offset, r.offset);
        log.close().unwrap();
        let log = Log::open_with(d.path(), small(MAX)).unwrap();
        assert_eq!(log.open_report().repair, None);
        assert_eq!(all(log.replay(0)), expected);
        // The set-aside files are still there, untouched, and ignored.
        for p in &dropped {
            assert!(p.exists());
        }
    }
}

#[test]
fn repair_of_a_missing_middle_segment_reports_where_the_log_ends() {
    let src = tempfile::tempdir().unwrap();
    let recs = fixture(src.path());
    let segs = segments(src.path());
    let keep = records_in(src.path(), &recs, 1).end;
    fs::remove_file(&segs[2].1).unwrap();
    let mut log = Log::open_with(src.path(), repair()).unwrap();
    let report = log.open_report().clone();
    assert_eq!(log.end_offset(), segs[2].0);
    assert_eq!(all(log.replay(0)), recs[..keep]);
    let repair = report.repair.expect("no repair report");
    assert_eq!(repair.segments_dropped.len(), segs.len() - 3);
    let added = append_all(&mut log, 4000, &[5]);
    assert_eq!(added[0].offset, segs[2].0);
    // The log ends where segment 1's frames end (segment 2's base), but the report claims the
    // end of segment 1's data region: the broken-link branch of repair cuts at the capacity
    // and nothing corrects the report after the tail scan finds the real end.
    assert_eq!(repair.truncated_at, Some(segs[2].0), "where the log now ends");
}

/// A durable sealed segment is only link-checked on open. If its data starts with zeros (a
/// zero length where its first frame should be), a replay or `read_at` that starts right there
/// reports that the data ends early, as a replay reaching it from an earlier segment does,
/// not that the offset is no record boundary: a segment's first offset always is one.
#[test]
fn a_sealed_segment_that_starts_with_zeros_is_corruption_at_its_base() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let segs = segments(dir.path());
    for (base, path) in [segs[1].clone(), segs[0].clone()] {
        write_at(&path, file_pos(base, base), &[0u8; 8]);
        let log = Log::open_read_only(dir.path()).unwrap();
        for err in [drain(log.replay(base)).1.unwrap(), log.read_at(base).unwrap_err()] {
            let (segment, offset, kind) = corruption(&err);
            assert_eq!((segment, offset), (path.clone(), base));
            assert!(matches!(kind, FormatError::UnexpectedEnd { .. }), "{kind:?}");
        }
        // From the log's start, the records before it come first.
        let (before, err) = drain(log.replay(0));
        assert_eq!(
            before.last().map(|r| r.offset < base),
            if base == 0 { None } else { Some(true) }
        );
        assert_eq!(corruption(&err.unwrap()).1, base);
    }
}

/// Found by `tests/damage_campaign.rs`: a log of one segment whose segment was replaced by
/// another log's opened as that other log, since a `DURABLE` of another log was ignored and a
/// single segment has no chain to check. Such a record now refuses the log.
#[test]
fn a_foreign_single_segment_beside_this_logs_durable_record_is_refused() {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    for dir in [ours.path(), theirs.path()] {
        let mut log = Log::open_with(dir, small(MAX)).unwrap();
        log.append(b"a record").unwrap();
        log.close().unwrap();
    }
    let segment = segments(ours.path())[0].1.clone();
    fs::copy(&segments(theirs.path())[0].1, &segment).unwrap();
    for err in [
        Log::open_read_only(ours.path()).unwrap_err(),
        Log::open_with(ours.path(), small(MAX)).unwrap_err(),
    ] {
        assert_eq!(broken_chain_at(&err), segment);
        assert!(err.to_string().contains("from another log"), "{err}");
    }
    // What the message says to do works.
    fs::remove_file(ours.path().join("DURABLE")).unwrap();
    let log = Log::open_read_only(ours.path()).unwrap();
    assert_eq!(all(log.replay(0)).len(), 1);
}

/// A new log made where only another log's `DURABLE` is left removes it, so a crash before
/// the new log's first close does not leave a record of another log beside its segment.
#[test]
fn a_new_log_removes_a_durable_record_left_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path(), small(MAX)).unwrap();
    log.append(b"old").unwrap();
    log.close().unwrap();
    for (_, path) in segments(dir.path()) {
        fs::remove_file(path).unwrap();
    }
    assert!(dir.path().join("DURABLE").exists());
    let mut log = Log::open_with(dir.path(), small(MAX)).unwrap();
    assert!(log.open_report().created);
    assert!(!dir.path().join("DURABLE").exists());
    log.append_sync(b"new").unwrap();
    drop(log); // no close: the crash case
    let log = Log::open_read_only(dir.path()).unwrap();
    let records = all(log.replay(0));
    assert_eq!(records.len(), 1);
}
