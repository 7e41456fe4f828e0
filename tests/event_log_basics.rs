//! `EventLog`: typed events through the log, with small segments so they cross rolls.

mod common;

use chronicle::{encode_payload, Event, EventEnvelope, EventLog, Log, StorageError};
use common::{segments, small};
use serde::{Deserialize, Serialize};

const MAX: u64 = 1000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderPlaced {
    order: u64,
    customer: String,
    lines: Vec<(String, u32)>,
    note: Option<String>,
}

fn order(i: u64) -> OrderPlaced {
    OrderPlaced {
        order: i,
        customer: format!("customer-{}", i % 7),
        lines: (0..i % 5).map(|k| (format!("sku-{k}"), (k * i) as u32)).collect(),
        note: i.is_multiple_of(3).then(|| "x".repeat((i % 40) as usize)),
    }
}

/// A spread of events: typed serde payloads, raw byte payloads (empty ones included), with
/// and without aggregate ids, in several namespaces and schema versions.
fn event(i: u64) -> Event {
    let builder = Event::builder(format!("order.kind{}", i % 4))
        .namespace(if i.is_multiple_of(2) { "shop" } else { "billing" })
        .schema("order", (i % 3) as u32 + 1);
    let builder = if i.is_multiple_of(5) { builder } else { builder.aggregate_id(i % 11) };
    if i % 4 == 3 {
        builder.payload(common::payload(i as usize, (i * 13 % 200) as usize)).build()
    } else {
        builder.payload_serde(&order(i)).unwrap().build()
    }
}

fn events(log: &EventLog, from: u64) -> Vec<EventEnvelope> {
    log.replay(from).map(|e| e.unwrap()).collect()
}

fn check(log: &EventLog, expected: &[(u64, Event)]) {
    let got = events(log, 0);
    assert_eq!(got.len(), expected.len());
    for (env, (offset, event)) in got.iter().zip(expected) {
        assert_eq!(env.offset, *offset);
        assert_eq!(&env.event, event);
        if env.event.event_type.ends_with('3') {
            assert!(env.event.payload.len() < 200);
        } else {
            // Serde payloads decode to exactly the value they were built from.
            let value = env.decode_payload::<OrderPlaced>().unwrap();
            assert_eq!(value, order(value.order));
            assert_eq!(env.event.decode_payload::<OrderPlaced>().unwrap(), value);
        }
        let at = log.read_at(*offset).unwrap();
        assert_eq!(&at, env);
    }
    assert!(got.windows(2).all(|w| w[0].write_timestamp_ms <= w[1].write_timestamp_ms));
}

#[test]
fn typed_events_round_trip_through_every_append_and_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected: Vec<(u64, Event)> = Vec::new();
    {
        let mut log = EventLog::open_with(dir.path(), small(MAX)).unwrap();
        assert!(log.open_report().created);
        for i in 0..60 {
            let e = event(i);
            let offset =
                if i % 10 == 9 { log.append_sync(&e).unwrap() } else { log.append(&e).unwrap() };
            assert!(log.end_offset() > offset);
            expected.push((offset, e));
        }
        let batch: Vec<Event> = (60..66).map(event).collect();
        let offsets = log.append_batch(&batch).unwrap();
        assert_eq!(offsets.len(), 6);
        assert!(offsets.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(offsets[0], expected.last().map(|(o, _)| *o).unwrap() + stride_of(&log, 59));
        expected.extend(offsets.into_iter().zip(batch));
        for i in 66..80 {
            let e = event(i);
            expected.push((log.append(&e).unwrap(), e));
        }
        assert!(log.append_batch(&[]).unwrap().is_empty());
        log.sync().unwrap();
        check(&log, &expected);
        // The typed events are ordinary records of the underlying log.
        assert_eq!(log.log().replay(0).count(), expected.len());
        assert_eq!(log.reader().replay(0).count(), expected.len());
        log.close().unwrap();
    }
    assert!(segments(dir.path()).len() >= 3, "{} segments", segments(dir.path()).len());

    // Reopen: everything is there; replay and replay_until from boundaries give suffixes
    // and ranges; offsets inside records are refused.
    let mut log = EventLog::open_with(dir.path(), small(MAX)).unwrap();
    check(&log, &expected);
    for (k, (offset, _)) in expected.iter().enumerate().step_by(7) {
        let got: Vec<u64> = events(&log, *offset).iter().map(|e| e.offset).collect();
        let want: Vec<u64> = expected[k..].iter().map(|(o, _)| *o).collect();
        assert_eq!(got, want);
        for (j, (until, _)) in expected.iter().enumerate().step_by(5) {
            let got: Vec<Event> =
                log.replay_until(*offset, *until).map(|e| e.unwrap().event).collect();
            let want: Vec<Event> = if j > k {
                expected[k..j].iter().map(|(_, e)| e.clone()).collect()
            } else {
                Vec::new()
            };
            assert_eq!(got, want, "replay_until({offset}, {until})");
        }
        let inside = offset + 8;
        let mut replay = log.replay(inside);
        assert!(matches!(
            replay.next(),
            Some(Err(StorageError::InvalidOffset { offset, .. })) if offset == inside
        ));
        assert!(replay.next().is_none());
        assert!(matches!(log.read_at(inside), Err(StorageError::InvalidOffset { .. })));
    }
    let end = log.end_offset();
    assert_eq!(events(&log, end), vec![]);
    let e = event(1000);
    assert_eq!(log.append(&e).unwrap(), end);
    expected.push((end, e));
    log.close().unwrap();

    // Read-only: sees every event, refuses appends.
    let mut ro = EventLog::open_read_only(dir.path()).unwrap();
    check(&ro, &expected);
    assert!(matches!(ro.append(&event(1)), Err(StorageError::ReadOnly)));
    assert!(matches!(ro.append_sync(&event(1)), Err(StorageError::ReadOnly)));
    assert!(matches!(ro.append_batch(&[event(1)]), Err(StorageError::ReadOnly)));
    assert!(matches!(ro.sync(), Err(StorageError::ReadOnly)));
    check(&ro, &expected);
}

/// The stride of record `i` as the log stored it.
fn stride_of(log: &EventLog, i: usize) -> u64 {
    let rec = log.log().replay(0).nth(i).unwrap().unwrap();
    common::stride(rec.payload.len())
}

#[test]
fn serde_payload_helpers_round_trip() {
    let value = order(12);
    let bytes = encode_payload(&value).unwrap();
    let e = Event::builder("t").payload(bytes.clone()).build();
    assert_eq!(e.decode_payload::<OrderPlaced>().unwrap(), value);
    let e2 = Event::builder("t").payload_serde(&value).unwrap().build();
    assert_eq!(e2.payload, bytes);
    // Builder defaults.
    let d = Event::builder("only.type").build();
    assert_eq!(d.namespace, "default");
    assert_eq!(d.schema_id, "");
    assert_eq!(d.schema_version, 1);
    assert_eq!(d.aggregate_id, None);
    assert!(d.payload.is_empty());
    // A payload of the wrong shape is a Decode error, not a panic.
    let wrong = Event::builder("t").payload(b"\xc1garbage".to_vec()).build();
    assert!(matches!(wrong.decode_payload::<OrderPlaced>(), Err(StorageError::Decode { .. })));
}

#[test]
fn a_raw_record_that_is_not_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut before = Vec::new();
    {
        let mut log = EventLog::open_with(dir.path(), small(MAX)).unwrap();
        for i in 0..30 {
            let e = event(i);
            before.push((log.append(&e).unwrap(), e));
        }
        log.close().unwrap();
    }
    // Raw records written with the byte log into the same directory: garbage, an empty record
    // (a valid record, but not a valid event), then a copy of a valid event's bytes.
    let (bad, empty, after_offset) = {
        let mut raw = Log::open_with(dir.path(), small(MAX)).unwrap();
        let good = raw.read_at(before[3].0).unwrap().payload.to_vec();
        let bad = raw.append(b"\x93this is not an event").unwrap();
        let empty = raw.append(b"").unwrap();
        let after = raw.append(&good).unwrap();
        raw.close().unwrap();
        (bad, empty, after)
    };

    let log = EventLog::open_read_only(dir.path()).unwrap();
    let mut replay = log.replay(0);
    for (offset, e) in &before {
        let env = replay.next().unwrap().unwrap();
        assert_eq!((&env.offset, &env.event), (offset, e));
    }
    match replay.next() {
        Some(Err(StorageError::Decode { offset, reason })) => {
            assert_eq!(offset, bad);
            assert!(!reason.is_empty());
        }
        other => panic!("expected Decode at {bad}, got {other:?}"),
    }
    assert!(replay.next().is_none(), "replay continued after a Decode error");
    assert!(replay.next().is_none());

    // Each bad record on its own, and the good one after them.
    for offset in [bad, empty] {
        assert!(matches!(
            log.read_at(offset),
            Err(StorageError::Decode { offset: o, .. }) if o == offset
        ));
        let mut replay = log.replay(offset);
        assert!(matches!(
            replay.next(),
            Some(Err(StorageError::Decode { offset: o, .. })) if o == offset
        ));
        assert!(replay.next().is_none());
    }
    assert_eq!(events(&log, after_offset).len(), 1);
    assert_eq!(log.read_at(after_offset).unwrap().event, before[3].1);
    // replay_until that stops before the bad record is clean.
    let clean: Vec<_> = log.replay_until(0, bad).map(|e| e.unwrap()).collect();
    assert_eq!(clean.len(), before.len());
    drop(log);

    // A writer opens it as an event log too, and sees the same.
    let log = EventLog::open_with(dir.path(), small(MAX)).unwrap();
    let (ok, err): (Vec<_>, Vec<_>) = log.replay(0).partition(|e| e.is_ok());
    assert_eq!(ok.len(), before.len());
    assert!(matches!(&err[..], [Err(StorageError::Decode { offset, .. })] if *offset == bad));
}
