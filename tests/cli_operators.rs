//! The `chronicle` tool as an operator uses it: `append` and `replay` round trips, filters,
//! `verify` on injected faults, `index`, help, completions, and read-only subcommands that
//! change nothing. Runs the built binary.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::SystemTime;

use chronicle::{Event, EventLog, Log, Options};
use serde_json::{json, Value};

fn chronicle(args: &[&str]) -> Output {
    chronicle_with_input(args, b"")
}

fn chronicle_with_input(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the chronicle binary");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json_lines(out: &Output) -> Vec<Value> {
    text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A random event as a JSON line, with each payload form and every optional field varied.
fn random_line(rng: &mut u64) -> Value {
    let pick = splitmix(rng);
    let mut line = json!({ "event_type": format!("type.{}", pick % 7) });
    let object = line.as_object_mut().unwrap();
    if pick & 8 != 0 {
        object.insert("namespace".into(), json!(format!("ns-{}", pick % 3)));
    }
    if pick & 16 != 0 {
        object.insert("schema_id".into(), json!("schema ☃"));
        object.insert("schema_version".into(), json!((pick >> 40) % 70_000));
    }
    if pick & 32 != 0 {
        object.insert("aggregate_id".into(), json!((pick >> 20) % 50));
    }
    let n = splitmix(rng);
    match pick % 4 {
        0 => object.insert(
            "payload".into(),
            json!({ "n": n % 1000, "s": format!("x{n}"), "list": [1, -2, 3.5, null, true] }),
        ),
        1 => object.insert("payload_text".into(), json!(format!("text {n} ünïcode"))),
        2 => {
            let bytes: Vec<u8> = (0..n % 40).map(|i| (n >> (i % 8)) as u8 ^ 0x80).collect();
            use base64::Engine as _;
            object.insert(
                "payload_base64".into(),
                json!(base64::engine::general_purpose::STANDARD.encode(bytes)),
            )
        }
        _ => None, // no payload: empty
    };
    line
}

/// The payload bytes an object's payload field stands for, and whether it was given as JSON.
fn payload_bytes(object: &Value) -> (Vec<u8>, Option<Value>) {
    use base64::Engine as _;
    if let Some(value) = object.get("payload") {
        return (rmp_serde::to_vec(value).unwrap(), Some(value.clone()));
    }
    if let Some(text) = object.get("payload_text") {
        return (text.as_str().unwrap().as_bytes().to_vec(), None);
    }
    if let Some(encoded) = object.get("payload_base64") {
        let bytes = base64::engine::general_purpose::STANDARD.decode(encoded.as_str().unwrap());
        return (bytes.unwrap(), None);
    }
    (Vec::new(), None)
}

/// The fields `append` reads, with defaults filled in and the payload as bytes.
fn normalized(object: &Value) -> (Value, (Vec<u8>, Option<Value>)) {
    let get = |k: &str, default: Value| object.get(k).cloned().unwrap_or(default);
    let fields = json!({
        "event_type": get("event_type", json!(null)),
        "namespace": get("namespace", json!("default")),
        "schema_id": get("schema_id", json!("")),
        "schema_version": get("schema_version", json!(1)),
        "aggregate_id": get("aggregate_id", json!(null)),
    });
    (fields, payload_bytes(object))
}

#[test]
fn append_then_replay_json_round_trips_every_field_of_10000_random_events() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let mut rng = 7;
    let lines: Vec<Value> = (0..10_000).map(|_| random_line(&mut rng)).collect();
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let out = chronicle_with_input(&["append", a.to_str().unwrap(), "--sync"], input.as_bytes());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let offsets: Vec<u64> = text(&out.stdout).lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(offsets.len(), 10_000);

    let out = chronicle(&["replay", a.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let replayed = json_lines(&out);
    assert_eq!(replayed.len(), 10_000);
    let mut versions: BTreeMap<u64, u64> = BTreeMap::new();
    for ((line, event), offset) in lines.iter().zip(&replayed).zip(&offsets) {
        assert_eq!(event["offset"], json!(offset));
        // The same fields and the same payload bytes; a payload given as JSON comes back as
        // the same JSON.
        let ((fields, (bytes, json)), (line_fields, (line_bytes, line_json))) =
            (normalized(event), normalized(line));
        assert_eq!((fields, bytes), (line_fields, line_bytes), "line {line}");
        if line_json.is_some() {
            assert_eq!(json, line_json, "line {line}");
        }
        if let Some(id) = line.get("aggregate_id").and_then(Value::as_u64) {
            let next = versions.entry(id).or_insert(0);
            assert_eq!(event["aggregate_version"], json!(*next));
            *next += 1;
        }
    }

    // `replay --json | append` copies a log's events.
    let out = chronicle_with_input(&["append", b.to_str().unwrap(), "--batch"], &out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let copied = json_lines(&chronicle(&["replay", b.to_str().unwrap(), "--json"]));
    let strip = |events: &[Value]| -> Vec<Value> {
        events
            .iter()
            .map(|e| {
                let mut e = e.clone();
                e.as_object_mut().unwrap().remove("write_timestamp_ms");
                e
            })
            .collect()
    };
    assert_eq!(strip(&copied), strip(&replayed));
}

#[test]
fn a_bad_line_is_named_and_a_bad_batch_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let path = log.to_str().unwrap();
    let input = b"{\"event_type\":\"a\"}\n\n{\"event_type\":\"b\"}\n{\"event_type\": 7}\n{\"event_type\":\"c\"}\n";
    let out = chronicle_with_input(&["append", path, "--batch"], input);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("line 4, column"), "{stderr}");
    assert!(!log.exists(), "a bad batch must not even create the log");

    // Without --batch the lines before the bad one are appended, and stay.
    let out = chronicle_with_input(&["append", path], input);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout).lines().count(), 2);
    let events = json_lines(&chronicle(&["replay", path, "--json"]));
    let types: Vec<&str> = events.iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["a", "b"]);

    for (bad, expected) in [
        (&b"not json\n"[..], "line 1, column 2"),
        (b"{\"event_type\":\"x\",\"payload\":1,\"payload_text\":\"y\"}\n", "at most one"),
        (b"{\"event_type\":\"x\",\"payload_base64\":\"***\"}\n", "not base64"),
        (b"{\"event_type\":\"x\",\"colour\":\"red\"}\n", "unknown field `colour`"),
        (b"{\"event_type\":\"x\",\"aggregate_id\":-1}\n", "line 1"),
    ] {
        let out = chronicle_with_input(&["append", path, "--batch"], bad);
        assert_eq!(out.status.code(), Some(2), "{}", text(bad));
        assert!(text(&out.stderr).contains(expected), "{}", text(&out.stderr));
    }
    assert_eq!(json_lines(&chronicle(&["replay", path, "--json"])).len(), 2);
}

/// An event log of 300 events over 5 aggregates, 3 types and 2 namespaces, plus one raw record.
fn event_log(dir: &Path) -> Vec<u64> {
    let mut log =
        EventLog::open_with(dir, Options { segment_bytes: 8192, ..Options::default() }).unwrap();
    let mut offsets = Vec::new();
    for i in 0..300u64 {
        let event = Event::builder(["opened", "changed", "closed"][(i % 3) as usize])
            .namespace(["shop", "billing"][(i % 2) as usize])
            .aggregate_id(i % 5)
            .payload_serde(&i)
            .unwrap()
            .build();
        offsets.push(log.append(&event).unwrap());
    }
    log.close().unwrap();
    let mut raw =
        Log::open_with(dir, Options { segment_bytes: 8192, ..Options::default() }).unwrap();
    offsets.push(raw.append(b"\xff\xfe not an event").unwrap());
    raw.close().unwrap();
    offsets
}

#[test]
fn replay_filters_use_the_indexes_and_show_raw_records_as_records() {
    let dir = tempfile::tempdir().unwrap();
    let offsets = event_log(dir.path());
    let path = dir.path().to_str().unwrap();
    let shown = |args: &[&str]| -> Vec<Value> {
        let mut all = vec!["replay", path, "--json"];
        all.extend_from_slice(args);
        let out = chronicle(&all);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        json_lines(&out)
    };
    let all = shown(&[]);
    assert_eq!(all.len(), 301);
    assert_eq!(
        all[300],
        json!({"offset": offsets[300], "write_timestamp_ms": all[300]["write_timestamp_ms"], "len": 15, "payload_hex": "fffe206e6f7420616e206576656e74"})
    );
    let of_3 = shown(&["--aggregate", "3"]);
    assert_eq!(of_3.len(), 60);
    assert!(of_3
        .iter()
        .enumerate()
        .all(|(v, e)| e["aggregate_id"] == 3 && e["aggregate_version"] == v as u64));
    assert_eq!(of_3[0]["payload"], json!(3));
    let closed_shop = shown(&["--type", "closed", "--namespace", "shop"]);
    assert_eq!(closed_shop.len(), 50); // i % 3 == 2 and i % 2 == 0
    let from = offsets[100].to_string();
    let until = offsets[200].to_string();
    let ranged = shown(&["--aggregate", "1", "--from", &from, "--until", &until, "--limit", "7"]);
    assert_eq!(ranged.len(), 7);
    assert!(ranged.iter().all(|e| e["offset"].as_u64().unwrap() >= offsets[100]));
    let ts = all[0]["write_timestamp_ms"].as_u64().unwrap();
    assert_eq!(shown(&["--since-ms", &ts.to_string()]).len(), 300, "raw records are not events");
    assert!(shown(&["--until-ms", &ts.to_string()]).is_empty());
    assert!(shown(&["--aggregate", "99"]).is_empty(), "a filter that matches nothing");
    let out = chronicle(&["replay", path, "--type", "nothing"]);
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "0 shown\n".to_string()));
    let inside = (offsets[10] + 8).to_string();
    let out = chronicle(&["replay", path, "--from", &inside]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

/// Every file of `dir`: name → (length, modification time, contents).
fn snapshot(dir: &Path) -> BTreeMap<String, (u64, SystemTime, Vec<u8>)> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            let name = e.file_name().into_string().unwrap();
            (name, (meta.len(), meta.modified().unwrap(), fs::read(e.path()).unwrap()))
        })
        .collect()
}

#[test]
fn read_only_subcommands_change_nothing_in_the_log_directory() {
    let dir = tempfile::tempdir().unwrap();
    let offsets = event_log(dir.path());
    let log = Log::open(dir.path()).unwrap();
    log.tree_head(None).unwrap();
    log.consumer("projection").unwrap().commit(offsets[5]).unwrap();
    log.close().unwrap();
    let path = dir.path().to_str().unwrap();
    let before = snapshot(dir.path());
    let offset = offsets[3].to_string();
    for args in [
        vec!["replay", path],
        vec!["replay", path, "--json", "--aggregate", "2"],
        vec!["dump", path, "--raw"],
        vec!["stats", path],
        vec!["stats", path, "--json"],
        vec!["verify", path],
        vec!["verify", path, "--json"],
        vec!["index", "status", path],
        vec!["head", path],
        vec!["proof", path, "--offset", &offset],
        vec!["tail", path, "-n", "3"],
        vec!["verify-pages", path],
    ] {
        let out = chronicle(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(snapshot(dir.path()) == before, "{args:?} changed the log directory");
    }
}

fn flip(path: &Path, at: u64) {
    let file = OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0x10], at).unwrap();
}

fn verify_json(path: &Path) -> (Option<i32>, Value) {
    let out = chronicle(&["verify", path.to_str().unwrap(), "--json"]);
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), report)
}

#[test]
fn verify_finds_each_injected_fault_and_calls_a_clean_log_clean() {
    let base = tempfile::tempdir().unwrap();
    let clean = base.path().join("clean");
    fs::create_dir(&clean).unwrap();
    event_log(&clean);
    let log = Log::open(&clean).unwrap();
    log.tree_head(None).unwrap();
    log.consumer("c").unwrap().commit(0).unwrap();
    log.close().unwrap();
    let (code, report) = verify_json(&clean);
    assert_eq!((code, report["healthy"].clone()), (Some(0), json!(true)), "{report}");
    assert_eq!(report["records"], 301);

    let copy = |name: &str| {
        let to = base.path().join(name);
        fs::create_dir(&to).unwrap();
        for e in fs::read_dir(&clean).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
        to
    };
    let finding = |report: &Value, check: &str| -> Value {
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["check"] == check)
            .cloned()
            .unwrap_or(Value::Null)
    };
    // A flipped payload byte in the first (sealed) segment: an error naming segment and offset.
    let frames = copy("frame");
    flip(&frames.join("00000000000000000000.seg"), 64 + 32 + 2);
    let (code, report) = verify_json(&frames);
    let found = finding(&report, "frames");
    assert_eq!(
        (code, found["severity"].clone(), found["offset"].clone()),
        (Some(1), json!("error"), json!(0)),
        "{report}"
    );
    assert!(found["segment"].as_str().unwrap().ends_with("00000000000000000000.seg"));
    // A damaged index file: not used, a warning.
    let index = copy("index");
    flip(&index.join("index.chx"), 70);
    let (code, report) = verify_json(&index);
    assert_eq!(
        (code, finding(&report, "index")["severity"].clone()),
        (Some(1), json!("warning")),
        "{report}"
    );
    // A damaged Merkle page.
    let pages = copy("pages");
    flip(&pages.join("rollup-0.pages"), 500);
    let (code, report) = verify_json(&pages);
    assert_eq!(
        (code, finding(&report, "pages")["severity"].clone()),
        (Some(1), json!("warning")),
        "{report}"
    );
    // A damaged consumer position.
    let consumer = copy("consumer");
    flip(&consumer.join("consumer-c.pos"), 20);
    let (code, report) = verify_json(&consumer);
    assert_eq!(
        (code, finding(&report, "consumer")["severity"].clone()),
        (Some(1), json!("warning")),
        "{report}"
    );
    // A damaged segment header.
    let header = copy("header");
    flip(&header.join("00000000000000000000.seg"), 20);
    let (code, report) = verify_json(&header);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(finding(&report, "open")["severity"], "error", "{report}");
    // A missing segment in the middle of the chain.
    let missing = copy("missing");
    let mut segments: Vec<_> = fs::read_dir(&missing)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 3, "the test needs a middle segment");
    fs::remove_file(&segments[1]).unwrap();
    let (code, report) = verify_json(&missing);
    assert_eq!(
        (code, finding(&report, "open")["severity"].clone()),
        (Some(1), json!("error")),
        "{report}"
    );
    // A directory that is not a log: access error, exit 2.
    let (code, _) = verify_json(base.path());
    assert_eq!(code, Some(2));
}

#[test]
fn index_subcommands_report_rebuild_and_save() {
    let dir = tempfile::tempdir().unwrap();
    event_log(dir.path());
    let path = dir.path().to_str().unwrap();
    fs::remove_file(dir.path().join("index.chx")).unwrap();
    let status: Value =
        serde_json::from_slice(&chronicle(&["index", "status", path, "--json"]).stdout).unwrap();
    assert_eq!(
        (status["loaded_from_file"].clone(), status["records_indexed"].clone()),
        (json!(false), json!(300))
    );
    assert!(!dir.path().join("index.chx").exists(), "status is read-only");
    let out = chronicle(&["index", "rebuild", path, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rebuilt: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rebuilt["records_read_by_rebuild"], 301);
    assert!(dir.path().join("index.chx").exists());
    let status: Value =
        serde_json::from_slice(&chronicle(&["index", "status", path, "--json"]).stdout).unwrap();
    assert_eq!(status["loaded_from_file"], true, "{status}");
    assert!(chronicle(&["index", "checkpoint", path]).status.success());
}

#[test]
fn every_subcommand_has_help_with_an_example_and_completions_and_man_page_generate() {
    for sub in [
        "demo",
        "replay",
        "append",
        "verify",
        "stats",
        "repair",
        "head",
        "proof",
        "consistency",
        "tail",
        "verify-proof",
        "verify-pages",
        "completions",
    ] {
        let out = chronicle(&[sub, "--help"]);
        assert!(out.status.success(), "{sub}");
        assert!(text(&out.stdout).contains("Example"), "{sub} --help has no example");
    }
    for sub in ["status", "rebuild", "checkpoint"] {
        assert!(
            text(&chronicle(&["index", sub, "--help"]).stdout).contains("Example"),
            "index {sub}"
        );
    }
    for shell in ["bash", "zsh", "fish"] {
        let out = chronicle(&["completions", shell]);
        assert!(out.status.success() && text(&out.stdout).contains("replay"), "{shell}");
    }
    let man = chronicle(&["man"]);
    assert!(
        text(&man.stdout).starts_with(".ie") || text(&man.stdout).contains(".TH"),
        "{}",
        text(&man.stdout)
    );
    let out = chronicle(&["replay"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
}

#[test]
fn truncate_before_removes_front_segments_and_stats_show_the_new_start() {
    let dir = tempfile::tempdir().unwrap();
    let offsets = event_log(dir.path());
    let path = dir.path().to_str().unwrap();
    let target = offsets[250].to_string();
    let out = chronicle(&["truncate-before", path, &target, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let start = report["start_offset"].as_u64().unwrap();
    assert!(start > 0 && start <= offsets[250], "{report}");
    let stats: Value =
        serde_json::from_slice(&chronicle(&["stats", path, "--json"]).stdout).unwrap();
    assert_eq!(stats["start_offset"], start);
    let shown = json_lines(&chronicle(&["replay", path, "--json"]));
    assert_eq!(shown[0]["offset"], start);
    let (code, report) = verify_json(dir.path());
    assert_eq!(code, Some(0), "{report}");
    let out = chronicle(&["truncate-before", "/nonexistent/log", "5"]);
    assert_eq!(out.status.code(), Some(2));
}
