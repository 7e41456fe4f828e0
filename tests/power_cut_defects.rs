//! One test per defect the power-cut filesystem (`tests/power_cut/`) found, each the smallest
//! case that showed it. They skip, saying why, where FUSE cannot be mounted.

#[path = "power_cut/mod.rs"]
mod power_cut;

use chronicle::{Event, EventLog, Log, Options};
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

/// Set in the child process of [`read_error_on_a_mapped_segment_is_an_error_with_read_checks`]: the
/// log's directory.
const MAP_READ_CHILD: &str = "CHRONICLE_POWER_CUT_MAP_READ_CHILD";
const MAP_READ_RECORDS: usize = 3000;

/// Replay reads segments through their memory maps, so a read error (`EIO`) on a page of a
/// segment that is not in the page cache reaches the process as `SIGBUS` when replay touches
/// it, and kills it: neither an error nor a panic. With read checks
/// (`Log::set_read_checks`), replay reads each window into memory first and the failure is an
/// `Io` error. A child process opens a log on this process's filesystem (which must outlive
/// it) and, once the pages fail to read, replays it with read checks on; the test fails if
/// the child dies of a signal or its replay ends without that error.
#[test]
fn read_error_on_a_mapped_segment_is_an_error_with_read_checks() {
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::os::unix::process::ExitStatusExt as _;
    use std::process::{Command, Stdio};

    use power_cut::{Fault, Op};
    if let Some(dir) = std::env::var_os(MAP_READ_CHILD) {
        return map_read_child(std::path::Path::new(&dir));
    }
    let Some(mut fs) =
        PowerCutMount::new("read_error_on_a_mapped_segment_is_an_error_with_read_checks")
    else {
        return;
    };
    let options = Options { segment_bytes: 4 << 20, ..Options::default() };
    let mut log = Log::open_with(fs.path().join("log"), options).unwrap();
    for i in 0..MAP_READ_RECORDS {
        log.append(&[i as u8 | 1; 1000]).unwrap();
    }
    log.close().unwrap();
    fs.remount(); // nothing of the log in the page cache
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "read_error_on_a_mapped_segment_is_an_error_with_read_checks"])
        .args(["--nocapture", "--test-threads", "1"])
        .env(MAP_READ_CHILD, fs.path().join("log"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The child has opened the log (reading headers and the last frame with `pread`).
    while !lines.next().expect("the child opens the log").unwrap().contains("opened the log") {}
    fs.control().inject(Fault::always(Op::Read, ".seg", libc::EIO));
    writeln!(child.stdin.take().unwrap(), "go").unwrap();
    let status = child.wait().unwrap();
    let said: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(fs.control().faults_fired() > 0, "no read failed");
    assert_eq!(status.signal(), None, "the replay was killed by a signal ({status}): {said:?}");
    assert!(status.success(), "the child failed: {status}: {said:?}");
    let error = said.iter().find(|line| line.starts_with("replay error"));
    let error = error.unwrap_or_else(|| panic!("the replay gave no error: {said:?}"));
    assert!(error.contains("could not be read into memory"), "{error}");
    assert!(error.contains(".seg"), "the error does not name the segment: {error}");
}

/// The child: opens the log read-only, says so, waits for the parent, replays.
fn map_read_child(dir: &std::path::Path) {
    use std::io::BufRead as _;
    let log = Log::open_read_only(dir).unwrap();
    log.set_read_checks(true);
    println!("opened the log");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
    let (mut records, mut errors) = (0, 0);
    for item in log.replay(0) {
        match item {
            Ok(record) => {
                assert_eq!(record.payload.len(), 1000);
                records += 1;
            }
            Err(e) => {
                println!("replay error after {records} records: {e}");
                errors += 1;
            }
        }
    }
    println!("{records} records, {errors} errors");
    assert_eq!(errors, 1, "{records} records and {errors} errors");
}

/// Set in the child process of the `read_error_during_*_open_*` tests: the log's directory,
/// how to open it, and which pages to read before the faults.
const OPEN_CHILD: &str = "CHRONICLE_POWER_CUT_OPEN_CHILD";
const OPEN_CHILD_READ_ONLY: &str = "CHRONICLE_POWER_CUT_OPEN_CHILD_READ_ONLY";
const OPEN_CHILD_WARM: &str = "CHRONICLE_POWER_CUT_OPEN_CHILD_WARM";
const OPEN_EVENTS: u64 = 3000;

/// An event log catches its index up inside `open`, reading the log through the maps, before
/// a caller could call `set_read_checks`: a read error there was a `SIGBUS` even for a caller
/// who wanted read checks. `Options::read_checks` turns them on from the open. The child
/// process reads the log's first and last pages with a plain read-only open (so the event
/// log's open finds the pages its own `pread`s need in the page cache), then, once every
/// other read of a segment fails with `EIO`, opens the event log (its index file removed, so
/// the catch-up reads the whole log) with read checks. The open must fail with an `Io` error,
/// not die of a signal.
#[test]
fn read_error_during_an_event_logs_open_is_an_error_with_read_checks() {
    const NAME: &str = "read_error_during_an_event_logs_open_is_an_error_with_read_checks";
    open_with_read_errors(NAME, Some("index.chx"), "open", "could not be read into memory");
}

/// Recovery scans the log past its recorded durable point (here, without `DURABLE`, the whole
/// last segment) through the maps; a read error there was a `SIGBUS`, read checks or not.
/// With `Options::read_checks`, recovery reads what it will scan into memory first. The child
/// reads only each segment's first page (its header) before the faults.
#[test]
fn read_error_during_recovery_is_an_error_with_read_checks() {
    const NAME: &str = "read_error_during_recovery_is_an_error_with_read_checks";
    open_with_read_errors(NAME, Some("DURABLE"), "headers", "could not be read into memory");
}

/// A clean open reads the frame `DURABLE` names as the log's last with `pread`; a failed read
/// sent it to read the same bytes through the map instead, a `SIGBUS` with or without read
/// checks. The child reads only each segment's first page before the faults.
#[test]
fn read_error_on_a_pread_at_open_is_an_error() {
    const NAME: &str = "read_error_on_a_pread_at_open_is_an_error";
    open_with_read_errors(NAME, None, "headers", "Input/output error");
}

/// Builds an event log, removes its file `remove`, and has a child (`test` in this binary)
/// warm the page cache as `warm` says, then open the log with read checks, read-only and as
/// a writer, while every other read of a segment fails with `EIO`: the open must fail with
/// an error that says `expected`.
fn open_with_read_errors(test: &str, remove: Option<&str>, warm: &str, expected: &str) {
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::os::unix::process::ExitStatusExt as _;
    use std::process::{Command, Stdio};

    use power_cut::{Fault, Op};
    if let Some(dir) = std::env::var_os(OPEN_CHILD) {
        return open_child(std::path::Path::new(&dir));
    }
    let Some(mut fs) = PowerCutMount::new(test) else {
        return;
    };
    let options = Options { segment_bytes: 4 << 20, ..Options::default() };
    let mut log = EventLog::open_with(fs.path().join("log"), options).unwrap();
    for i in 0..OPEN_EVENTS {
        let event = Event::builder("tick").aggregate_id(i % 7).payload(vec![i as u8; 1000]);
        log.append(&event.build()).unwrap();
    }
    log.close().unwrap();
    if let Some(remove) = remove {
        std::fs::remove_file(fs.path().join("log").join(remove)).unwrap();
    }
    for read_only in [true, false] {
        fs.remount(); // nothing of the log in the page cache
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads", "1"])
            .env(OPEN_CHILD, fs.path().join("log"))
            .env(OPEN_CHILD_READ_ONLY, if read_only { "1" } else { "0" })
            .env(OPEN_CHILD_WARM, warm)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        while !lines.next().expect("the child reads the log").unwrap().contains("warmed") {}
        fs.control().inject(Fault::always(Op::Read, ".seg", libc::EIO));
        writeln!(child.stdin.take().unwrap(), "go").unwrap();
        let status = child.wait().unwrap();
        let said: Vec<String> = lines.map_while(Result::ok).collect();
        assert!(fs.control().faults_fired() > 0, "no read failed");
        assert_eq!(status.signal(), None, "read-only {read_only}: killed ({status}): {said:?}");
        assert!(status.success(), "the child failed: {status}: {said:?}");
        let error = said.iter().find(|line| line.starts_with("open error"));
        let error = error.unwrap_or_else(|| panic!("the open gave no error: {said:?}"));
        assert!(error.contains(expected), "{error}");
    }
}

/// The child: warms the page cache, then, once told, opens the event log with read checks.
fn open_child(dir: &std::path::Path) {
    use std::io::{BufRead as _, Read as _};
    let read_only = std::env::var(OPEN_CHILD_READ_ONLY).as_deref() == Ok("1");
    if std::env::var(OPEN_CHILD_WARM).as_deref() == Ok("open") {
        drop(Log::open_read_only(dir).unwrap());
    } else {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "seg") {
                let mut page = [0u8; 4096];
                std::fs::File::open(path).unwrap().read_exact(&mut page).unwrap();
            }
        }
    }
    println!("warmed");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
    let options = Options { segment_bytes: 4 << 20, read_checks: true, ..Options::default() };
    let opened = if read_only {
        EventLog::open_read_only_with(dir, options)
    } else {
        EventLog::open_with(dir, options)
    };
    match opened {
        Ok(log) => println!("opened, {} bytes", log.end_offset()),
        Err(err) => println!("open error: {err}"),
    }
}

/// The commands read logs through the maps too: `chronicle verify`, the command someone runs
/// on a log they suspect, died of `SIGBUS` at the first page a disk could not read. They now
/// open every log with read checks. The test reads the pages the open itself reads (headers,
/// the last frame) into the page cache, makes every other read of a segment fail with `EIO`,
/// and runs the built binary: it must report the error, naming the segment, and exit 2.
#[test]
fn read_error_under_chronicle_verify_is_reported() {
    use std::os::unix::process::ExitStatusExt as _;

    use power_cut::{Fault, Op};
    let Some(mut fs) = PowerCutMount::new("read_error_under_chronicle_verify_is_reported") else {
        return;
    };
    let options = Options { segment_bytes: 4 << 20, ..Options::default() };
    let mut log = Log::open_with(fs.path().join("log"), options).unwrap();
    for i in 0..3000u32 {
        log.append(&[i as u8; 1000]).unwrap();
    }
    log.close().unwrap();
    fs.remount(); // nothing of the log in the page cache
    let dir = fs.path().join("log");
    drop(Log::open_read_only(&dir).unwrap());
    fs.control().inject(Fault::always(Op::Read, ".seg", libc::EIO));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(["verify", "--json"])
        .arg(&dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(fs.control().faults_fired() > 0, "no read failed");
    assert_eq!(output.status.signal(), None, "verify was killed ({}): {errors}", output.status);
    // Exit 2: the log could not be read (1 is for damage verify found).
    assert_eq!(output.status.code(), Some(2), "{said} {errors}");
    assert!(errors.contains("could not be read into memory"), "{errors}");
    assert!(errors.contains(".seg"), "the error does not name the segment: {errors}");
}

/// Recovery with read checks reads into memory what its scan will read, and no more: the
/// sealed segments before the durable point the last segment's header proves are not scanned
/// (their links are read with `pread`), so they are not read either. A first version read
/// every segment from the recorded durable point, here (no `DURABLE`) the whole log. A log
/// of several segments, its first segment's pages failing with `EIO` except those a plain
/// open reads; the open with read checks must succeed.
#[test]
fn recovery_with_read_checks_reads_only_what_it_scans() {
    use power_cut::{Fault, Op};
    let Some(mut fs) = PowerCutMount::new("recovery_with_read_checks_reads_only_what_it_scans")
    else {
        return;
    };
    let options = Options { segment_bytes: 1 << 20, ..Options::default() };
    let mut log = Log::open_with(fs.path().join("log"), options.clone()).unwrap();
    for i in 0..3000u32 {
        log.append(&[i as u8; 1000]).unwrap();
        if i % 100 == 99 {
            log.sync().unwrap();
        }
    }
    log.close().unwrap();
    std::fs::remove_file(fs.path().join("log/DURABLE")).unwrap();
    fs.remount(); // nothing of the log in the page cache
    let dir = fs.path().join("log");
    let segments: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".seg"))
        .collect();
    assert!(segments.len() >= 3, "{segments:?}");
    // What an open reads anyway: headers and links with `pread`, the last segment's scan.
    let end = Log::open_read_only(&dir).unwrap().end_offset();
    fs.control().inject(Fault::always(Op::Read, "00000000000000000000.seg", libc::EIO));
    let options = Options { read_checks: true, ..options };
    let log = Log::open_read_only_with(&dir, options.clone()).unwrap();
    assert_eq!(log.end_offset(), end);
    drop(log);
    let log = Log::open_with(&dir, options).unwrap();
    assert_eq!(log.end_offset(), end);
    assert_eq!(fs.control().faults_fired(), 0, "an open read the first segment's data");
}
