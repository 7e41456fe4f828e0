//! The `chronicle` command-line tool, run as a built binary against real log directories.
//!
//! Each test builds a log through the library, runs one subcommand, and checks its exit code
//! and what it printed against what the library wrote.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::process::{Command, Output};

use chronicle::{Event, EventLog, Log, Options};

/// Bytes of a segment header; the data region (logical offset `base`) starts here.
const SEGMENT_HEADER_LEN: u64 = 64;
/// Bytes of a frame header; the payload starts here.
const FRAME_HEADER_LEN: u64 = 32;

fn chronicle(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(args)
        .output()
        .expect("run the chronicle binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn small() -> Options {
    Options { segment_bytes: 4096, record_bytes_max: Some(1000), ..Options::default() }
}

/// Writes 100 raw records over several 4 KiB segments; returns their offsets and payloads.
fn small_log(dir: &Path) -> Vec<(u64, Vec<u8>)> {
    let mut log = Log::open_with(dir, small()).unwrap();
    let mut records = Vec::new();
    for i in 0..100u32 {
        let payload: Vec<u8> = (0..(20 + i % 90)).map(|k| (i * 7 + k) as u8).collect();
        let offset = log.append(&payload).unwrap();
        records.push((offset, payload));
    }
    log.close().unwrap();
    records
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn demo_appends_reopens_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("demo");
    let out = chronicle(&[
        "demo",
        "--dir",
        log_dir.to_str().unwrap(),
        "--events",
        "20000",
        "--synced",
        "20",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr));
    // 20000 buffered + 20 synced + 10 batches of 100.
    assert!(stdout.contains("verified: 21020 events"), "{stdout}");
    assert!(stdout.contains("20000 events in"), "{stdout}");
    assert!(stdout.contains("torn tail:           none"), "{stdout}");
    // The tour of the rest: each step checked, and the closing table.
    for step in [
        "events with versions 0 to",
        "proof of",
        "every event delivered once, in order",
        "400 durable appends",
        "append to live delivery (median)",
    ] {
        assert!(stdout.contains(step), "{step}: {stdout}");
    }
    // The log it left behind holds those events, then the tour's 500 live and 400 raced ones.
    let log = EventLog::open_read_only(&log_dir).unwrap();
    assert_eq!(log.replay(0).count(), 21020 + 500 + 400);
}

#[test]
fn dump_prints_every_record_and_honours_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let records = small_log(dir.path());
    let path = dir.path().to_str().unwrap();

    // `dump` is `replay`'s other name; records that are not events are shown raw.
    let out = chronicle(&["dump", path]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    // One line per record, and a count.
    assert_eq!(lines.len(), records.len() + 1, "{stdout}");
    assert_eq!(lines.last().copied(), Some("100 shown"));
    for ((offset, payload), line) in records.iter().zip(&lines) {
        assert!(line.ends_with("(record)"), "{line}");
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[0], offset.to_string(), "{line}");
        assert_eq!(fields[2], payload.len().to_string(), "{line}");
        assert!(fields[3].starts_with(&hex(&payload[..16])), "{line}");
    }

    let from = records[10].0.to_string();
    let until = records[30].0.to_string();
    let out = chronicle(&["dump", path, "--from", &from, "--until", &until, "--limit", "5"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.ends_with("5 shown\n"), "{stdout}");
    assert!(stdout.lines().next().unwrap().trim_start().starts_with(&from));

    let out = chronicle(&["replay", path, "--from", &from, "--until", &until]);
    assert!(text(&out.stdout).ends_with("20 shown\n"));

    // Not a record boundary: refused with the library's message.
    let inside = (records[10].0 + 8).to_string();
    let out = chronicle(&["dump", path, "--from", &inside]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: offset "), "{stderr}");
    assert!(stderr.contains("not a record boundary"), "{stderr}");
}

#[test]
fn dump_events_decodes_typed_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path()).unwrap();
    let first = log
        .append(
            &Event::builder("order.placed")
                .namespace("shop")
                .schema("order", 3)
                .aggregate_id(42)
                .payload(vec![0xab; 20])
                .build(),
        )
        .unwrap();
    let second = log.append(&Event::builder("user.seen").payload(b"hi".to_vec()).build()).unwrap();
    log.close().unwrap();

    let out = chronicle(&["dump", "--events", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].trim_start().starts_with(&first.to_string()));
    assert!(
        lines[0].contains("type=order.placed namespace=shop schema=order@3 aggregate=42@0"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("payload=0xabababab"), "{}", lines[0]);
    assert!(lines[1].trim_start().starts_with(&second.to_string()));
    assert!(
        lines[1].contains("type=user.seen namespace=default schema=@1 aggregate=-"),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains("payload=\"hi\""), "{}", lines[1]);
    assert_eq!(lines[2], "2 shown");
}

#[test]
fn verify_and_stats_report_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let records = small_log(dir.path());
    let path = dir.path().to_str().unwrap();
    let payload_bytes: usize = records.iter().map(|(_, p)| p.len()).sum();
    let segments = Log::open_read_only(dir.path()).unwrap().verify().unwrap().segments;
    assert!(segments > 2, "the test needs several segments");

    let out = chronicle(&["verify", path]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("records:       100\n"), "{stdout}");
    assert!(stdout.contains(&format!("segments:      {segments}\n")), "{stdout}");
    assert!(stdout.contains(&format!("payload bytes: {payload_bytes} ")), "{stdout}");

    let out = chronicle(&["stats", path]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&format!("segments: {segments}\n")), "{stdout}");
    assert!(stdout.contains("00000000000000000000.seg"), "{stdout}");
    assert!(stdout.contains("records:       100\n"), "{stdout}");
    let end = Log::open_read_only(dir.path()).unwrap().end_offset();
    assert!(stdout.contains(&format!("end offset:    {end}\n")), "{stdout}");
}

/// Flips one payload byte of the frame at `offset`, which lies in the segment based at `base`.
fn flip_payload_byte(dir: &Path, base: u64, offset: u64) -> String {
    let name = format!("{base:020}.seg");
    let file = OpenOptions::new().read(true).write(true).open(dir.join(&name)).unwrap();
    let at = SEGMENT_HEADER_LEN + (offset - base) + FRAME_HEADER_LEN + 3;
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0x40], at).unwrap();
    name
}

#[test]
fn verify_fails_on_a_damaged_sealed_segment_and_repair_truncates() {
    let dir = tempfile::tempdir().unwrap();
    let records = small_log(dir.path());
    let path = dir.path().to_str().unwrap();
    // Record 5 sits in the first segment, which is sealed (the log has several).
    let damaged = records[5].0;
    let name = flip_payload_byte(dir.path(), 0, damaged);

    let out = chronicle(&["verify", path]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("PROBLEMS FOUND: "), "{stdout}");
    let finding = stdout.lines().find(|l| l.trim_start().starts_with("error")).unwrap();
    assert!(finding.contains(&name), "{finding}");
    assert!(finding.contains(&format!("at offset {damaged}")), "{finding}");

    // Without --yes and without a terminal to ask on, nothing is changed.
    let out = chronicle(&["repair", "--truncate", path]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("--yes"), "{}", text(&out.stderr));
    let out = chronicle(&["repair", "--truncate", "--yes", path]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&format!("damaged: offsets [{damaged}, ")), "{stdout}");
    assert!(stdout.contains(&format!("log ends at:     {damaged} ")), "{stdout}");
    assert!(stdout.contains("records kept:    5\n"), "{stdout}");

    let out = chronicle(&["verify", path]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("records:       5\n"));
}

/// What a user saw: one byte flipped in the middle of a cleanly closed log of one segment;
/// `verify` reported the checksum mismatch, and `repair` then zeroed every record after it,
/// printed "no damage found", exited 0 and kept no copy. Now the default repair keeps every
/// intact record, shows what it would do first, and says damage was found.
#[test]
fn repair_of_a_flipped_byte_in_a_closed_log_keeps_every_intact_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let mut log = Log::open(dir.path()).unwrap();
    let records: Vec<(u64, Vec<u8>)> = (0..2000u32)
        .map(|i| {
            let payload = format!("event {i:05} of a single-segment log").into_bytes();
            (log.append(&payload).unwrap(), payload)
        })
        .collect();
    log.close().unwrap();
    let damaged = records[1000].0;
    flip_payload_byte(dir.path(), 0, damaged);
    let before = std::fs::read(dir.path().join("00000000000000000000.seg")).unwrap();

    let out = chronicle(&["repair", "--dry-run", path]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let next = records[1001].0;
    assert!(stdout.contains(&format!("damaged: offsets [{damaged}, {next})")), "{stdout}");
    assert!(stdout.contains("records kept:    1999\n"), "{stdout}");
    assert!(stdout.contains("dry run: nothing was changed"), "{stdout}");
    let after = std::fs::read(dir.path().join("00000000000000000000.seg")).unwrap();
    assert!(before == after, "a dry run changed the segment");

    let out = chronicle(&["repair", "--yes", path]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("damage found in "), "{stdout}");
    assert!(stdout.contains("records kept:    1999\n"), "{stdout}");
    assert!(stdout.contains(".damaged-"), "the damaged bytes are kept: {stdout}");

    let out = chronicle(&["verify", path]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("records:       1999\n"), "{stdout}");
    assert!(stdout.contains(&format!("gap [{damaged}, {next})")), "{stdout}");

    let log = Log::open_read_only(dir.path()).unwrap();
    let mut kept = Vec::new();
    for item in log.replay(0) {
        match item {
            Ok(record) => kept.push((record.offset, record.payload.to_vec())),
            Err(chronicle::StorageError::Gap { start, end, .. }) => {
                assert_eq!((start, end), (damaged, next));
            }
            Err(other) => panic!("replay after salvage: {other}"),
        }
    }
    let mut expected = records.clone();
    expected.remove(1000);
    assert_eq!(kept, expected);
}

#[test]
fn errors_are_reported_with_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("00000000000000000000.seg"), [0x55u8; 4096]).unwrap();
    let out = chronicle(&["verify", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("is not a Chronicle log segment"), "{stderr}");

    let missing = dir.path().join("missing");
    let out = chronicle(&["repair", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!missing.exists(), "repair must not create a log");
}

/// `head`, `proof` and `consistency` print one JSON object each, in the documented shape, and
/// `verify-proof` accepts what they print, refuses a tampered copy (exit 1) and reports what
/// it cannot read (exit 2).
#[test]
fn merkle_heads_and_proofs_round_trip_through_verify_proof() {
    let dir = tempfile::tempdir().unwrap();
    let records = small_log(dir.path());
    let path = dir.path().to_str().unwrap();
    let json = |out: Output| -> serde_json::Value {
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let out = chronicle(&["head", path, "--json"]);
    let printed = text(&out.stdout);
    let order = ["\"tree_size\":", "\"root\":", "\"end_offset\":", "\"last_write_timestamp_ms\":"];
    let at: Vec<usize> = order.iter().map(|k| printed.find(k).expect(k)).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{printed}");
    let head = json(out);
    assert_eq!(head["tree_size"], 100);
    let root = head["root"].as_str().unwrap().to_string();
    assert_eq!(root.len(), 64);
    let at_50 = json(chronicle(&["head", path, "--tree-size", "50", "--json"]));
    assert_eq!(at_50["end_offset"], records[50].0);

    let offset = records[37].0.to_string();
    let proof = json(chronicle(&["proof", path, "--offset", &offset, "--json"]));
    assert_eq!(proof["type"], "inclusion");
    assert_eq!(proof["leaf_index"], 37);
    assert_eq!(proof["payload_hex"], hex(&records[37].1));
    let file = dir.path().join("proof.json");
    std::fs::write(&file, proof.to_string()).unwrap();
    let check = |args: &[&str]| chronicle(&[&["verify-proof"], args].concat()).status.code();
    assert_eq!(check(&[file.to_str().unwrap(), "--root", &root]), Some(0));
    let mut tampered = proof.clone();
    tampered["payload_hex"] = serde_json::Value::from(hex(b"forged"));
    std::fs::write(&file, tampered.to_string()).unwrap();
    assert_eq!(check(&[file.to_str().unwrap()]), Some(1));
    std::fs::write(&file, proof.to_string()).unwrap();
    let other_root = "00".repeat(32);
    assert_eq!(check(&[file.to_str().unwrap(), "--root", &other_root]), Some(1));
    std::fs::write(&file, b"{ not json").unwrap();
    assert_eq!(check(&[file.to_str().unwrap()]), Some(2));

    let consistency = json(chronicle(&["consistency", path, "--old-size", "50", "--json"]));
    assert_eq!(consistency["type"], "consistency");
    assert_eq!(consistency["old_root"], at_50["root"]);
    assert_eq!(consistency["new_root"], head["root"]);
    std::fs::write(&file, consistency.to_string()).unwrap();
    assert_eq!(check(&[file.to_str().unwrap(), "--root", &root]), Some(0));
    // A size the log does not have is an error, not a proof.
    let out = chronicle(&["consistency", path, "--old-size", "500", "--json"]);
    assert_eq!(out.status.code(), Some(2));
}

/// What a user saw: `verify` and `stats` on an empty directory, or one of unrelated files,
/// printed `ok` and exited 0; `repair` on a missing path or a regular file said the path "holds
/// no Chronicle segment files". Now each says what is wrong and exits 2 (the log could not be
/// read at all).
#[test]
fn a_path_that_is_not_a_log_is_an_error_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let notes = dir.path().join("notes");
    std::fs::create_dir(&notes).unwrap();
    std::fs::write(notes.join("todo.txt"), b"buy milk").unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let missing = dir.path().join("missing");
    for command in ["verify", "stats", "repair", "replay", "index status", "tail", "head"] {
        let mut words: Vec<&str> = command.split(' ').collect();
        for (path, expected) in [
            (&empty, "is not a Chronicle log: no segment files"),
            (&notes, "todo.txt"),
            (&file, "Not a directory"),
            (&missing, "No such file or directory"),
        ] {
            words.push(path.to_str().unwrap());
            let out = chronicle(&words);
            words.pop();
            assert_eq!(out.status.code(), Some(2), "{command} {}", path.display());
            let stderr = text(&out.stderr);
            assert!(stderr.contains(expected), "{command} {}: {stderr}", path.display());
        }
    }
    assert!(!missing.exists());
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0, "a command wrote into it");
}

#[test]
fn verify_pages_names_a_damaged_page_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path(), small()).unwrap();
    for i in 0..1_000u32 {
        log.append(&i.to_le_bytes()).unwrap();
    }
    let head = log.tree_head(None).unwrap();
    log.close().unwrap();
    let path = dir.path().to_str().unwrap();
    let out = chronicle(&["verify-pages", path, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (report["entries"].as_u64(), report["pages_checked"].as_u64()),
        (Some(1_000), Some(3))
    );
    assert_eq!(report["problems"], serde_json::json!([]));

    // One bit of page 1's children.
    let file = OpenOptions::new().read(true).write(true).open(dir.path().join("rollup-0.pages"));
    let file = file.unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, 9328 + 500).unwrap();
    file.write_all_at(&[byte[0] ^ 1], 9328 + 500).unwrap();
    let out = chronicle(&["verify-pages", path]);
    assert_eq!(out.status.code(), Some(1));
    let printed = text(&out.stdout);
    assert!(printed.starts_with("damaged pages"), "{printed}");
    assert!(
        printed.contains("level 0 page 1 (offsets") && printed.contains("checksum"),
        "{printed}"
    );
    let out = chronicle(&["verify-pages", path, "--level", "0", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["problems"][0]["index"], 1);
    // Heads and proofs from a read-only open do not trust the damaged page.
    let out = chronicle(&["head", path, "--json"]);
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["root"], head.root.to_string());
    let out = chronicle(&["verify-pages", "/nonexistent/chronicle-log"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn tail_prints_the_last_records_as_json_and_follows_a_growing_log() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let records = small_log(&log_dir);
    let path = log_dir.to_str().unwrap();
    let out = chronicle(&["tail", path, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> =
        text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 10);
    for (line, (offset, payload)) in lines.iter().zip(&records[90..]) {
        assert_eq!(line["offset"], *offset);
        assert_eq!(line["len"], payload.len());
        assert_eq!(line["payload_hex"], hex(payload));
    }
    let from = records[97].0.to_string();
    let out = chronicle(&["tail", path, "--from", &from, "--json"]);
    assert_eq!(text(&out.stdout).lines().count(), 3);

    // --follow prints what another writer appends while it runs.
    let mut child = Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(["tail", path, "--follow", "--from", &records[99].0.to_string(), "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = Log::open_with(&log_dir, small()).unwrap();
    let appended = log.append(b"live record").unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["offset"], records[99].0);
    let live: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(live["offset"], appended);
    assert_eq!(live["payload_hex"], hex(b"live record"));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn tail_events_prints_event_fields() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("events");
    let mut events = EventLog::open(&log_dir).unwrap();
    events
        .append(&Event::builder("order.placed").namespace("shop").aggregate_id(7).build())
        .unwrap();
    events.close().unwrap();
    let out = chronicle(&["tail", log_dir.to_str().unwrap(), "--events", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(line["event_type"], "order.placed");
    assert_eq!(line["namespace"], "shop");
    assert_eq!(line["aggregate_id"], 7);
}
