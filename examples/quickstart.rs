//! Quick start: typed events with `EventLog`, then raw records with `Log`.
//!
//! Run it with `cargo run --example quickstart`. It works in a temporary directory.

use chronicle::{Event, EventLog, Log};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;

    // Typed events.
    let events_dir = dir.path().join("events");
    let mut events = EventLog::open(&events_dir)?;
    let placed = Event::builder("order.placed")
        .namespace("shop")
        .aggregate_id(42)
        .payload_serde(&("espresso", 2_u32))?
        .build();
    // Buffered: in the page cache on return; survives a process crash, not a power cut.
    let first = events.append(&placed)?;
    // Durable on return, together with everything appended before it.
    events.append_sync(&Event::builder("order.paid").aggregate_id(42).build())?;
    // All or nothing after a crash.
    events.append_batch(&[
        Event::builder("order.packed").aggregate_id(42).build(),
        Event::builder("order.shipped").aggregate_id(42).build(),
    ])?;
    events.sync()?;
    events.close()?;

    let events = EventLog::open(&events_dir)?;
    for envelope in events.replay(first) {
        let envelope = envelope?;
        println!(
            "{:>6}  {}  aggregate {:?}",
            envelope.offset, envelope.event.event_type, envelope.event.aggregate_id
        );
    }
    let (item, quantity): (String, u32) = events.read_at(first)?.decode_payload()?;
    println!("first order: {quantity} x {item}");
    events.close()?;

    // Raw byte records.
    let mut log = Log::open(dir.path().join("raw"))?;
    let a = log.append(b"first record")?;
    let b = log.append_sync(b"second record")?;
    for record in log.replay(a) {
        let record = record?;
        println!("{:>6}  {}", record.offset, String::from_utf8_lossy(&record.payload));
    }
    assert_eq!(log.read_at(b)?.payload.to_vec(), b"second record");
    log.close()?;
    Ok(())
}
