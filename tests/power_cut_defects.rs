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
    open_with_read_errors(
        NAME,
        Change::Remove("index.chx"),
        "open",
        "could not be read into memory",
    );
}

/// Recovery scans the log past its recorded durable point (here, without `DURABLE`, the whole
/// last segment) through the maps; a read error there was a `SIGBUS`, read checks or not.
/// With `Options::read_checks`, recovery reads what it will scan into memory first. The child
/// reads only each segment's first page (its header) before the faults.
#[test]
fn read_error_during_recovery_is_an_error_with_read_checks() {
    const NAME: &str = "read_error_during_recovery_is_an_error_with_read_checks";
    open_with_read_errors(
        NAME,
        Change::Remove("DURABLE"),
        "headers",
        "could not be read into memory",
    );
}

/// A clean open reads the frame `DURABLE` names as the log's last with `pread`; a failed read
/// sent it to read the same bytes through the map instead, a `SIGBUS` with or without read
/// checks. The child reads only each segment's first page before the faults.
#[test]
fn read_error_on_a_pread_at_open_is_an_error() {
    const NAME: &str = "read_error_on_a_pread_at_open_is_an_error";
    open_with_read_errors(NAME, Change::Nothing, "headers", "Input/output error");
}

/// A cleanly closed log whose last segment holds bytes after its end, which no clean close
/// leaves (damage): the clean end recorded in `DURABLE` proves wrong, and recovery examines
/// the tail after all. With read checks it trusted the record and read nothing into memory,
/// so a read error in the tail was a `SIGBUS`; a clean end is now taken only once it is seen
/// to hold, and the tail is read into memory before it is examined. The child reads each
/// segment's first page, and the test the pages around the end, before the faults.
#[test]
fn read_error_where_a_clean_end_proves_wrong_is_an_error_with_read_checks() {
    const NAME: &str = "read_error_where_a_clean_end_proves_wrong_is_an_error_with_read_checks";
    let expected = "could not be read into memory";
    open_with_read_errors(NAME, Change::BytesPastTheEnd, "headers", expected);
}

/// The first write after a clean close examines the tail that the open trusted to be zeros
/// (`Writer::leave_clean_end`), through the map: a read error there was a `SIGBUS` with read
/// checks on. The tail is now read into memory first, and the append fails with `Io`. The
/// child reads each segment's first page, and the test the pages around the end (which the
/// open and the append itself touch), before the faults; the child appends after its open.
#[test]
fn read_error_in_the_tail_at_the_first_write_after_a_clean_close_is_an_error() {
    const NAME: &str = "read_error_in_the_tail_at_the_first_write_after_a_clean_close_is_an_error";
    let expected = "could not be read into memory for the first write after a clean close";
    open_with_read_errors(NAME, Change::AppendAfterCleanClose, "headers", expected);
}

/// What a test does to the log before the child opens it, and the pages the test warms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Nothing,
    /// Removes the log's file of that name.
    Remove(&'static str),
    /// Writes bytes just after the log's end; the pages around the end are warmed.
    BytesPastTheEnd,
    /// Nothing, but the pages around the end are warmed, and the open is a writer's that
    /// appends once open (the error expected is the append's).
    AppendAfterCleanClose,
}

/// Builds an event log, changes it as `change` says, and has a child (`test` in this binary)
/// warm the page cache as `warm` says, then open the log with read checks, read-only and as
/// a writer, while every other read of a segment fails with `EIO`: the open must fail with
/// an error that says `expected`.
fn open_with_read_errors(test: &str, change: Change, warm: &str, expected: &str) {
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
    let end = log.end_offset();
    log.close().unwrap();
    let dir = fs.path().join("log");
    let end_in_file = match change {
        Change::Nothing => None,
        Change::Remove(name) => {
            std::fs::remove_file(dir.join(name)).unwrap();
            None
        }
        Change::BytesPastTheEnd => {
            let (segment, at) = position_in_file(&dir, end);
            let file = std::fs::OpenOptions::new().write(true).open(dir.join(&segment)).unwrap();
            std::os::unix::fs::FileExt::write_all_at(&file, &[0xAB; 8], at).unwrap();
            Some((segment, at))
        }
        Change::AppendAfterCleanClose => Some(position_in_file(&dir, end)),
    };
    let appends = change == Change::AppendAfterCleanClose;
    for read_only in [true, false].into_iter().filter(|&read_only| !(read_only && appends)) {
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
        if let Some((segment, at)) = &end_in_file {
            // The pages the open reads with `pread` there: the last frame and what follows.
            let mut pages = vec![0u8; 16 << 10];
            let file = std::fs::File::open(fs.path().join("log").join(segment)).unwrap();
            std::os::unix::fs::FileExt::read_exact_at(&file, &mut pages, at - (8 << 10)).unwrap();
        }
        fs.control().inject(Fault::always(Op::Read, ".seg", libc::EIO));
        writeln!(child.stdin.take().unwrap(), "go").unwrap();
        let status = child.wait().unwrap();
        let said: Vec<String> = lines.map_while(Result::ok).collect();
        assert!(fs.control().faults_fired() > 0, "no read failed");
        assert_eq!(status.signal(), None, "read-only {read_only}: killed ({status}): {said:?}");
        assert!(status.success(), "the child failed: {status}: {said:?}");
        let error = said.iter().find(|line| line.starts_with("open error"));
        let error = if appends {
            assert!(error.is_none(), "the open failed: {said:?}");
            said.iter().find(|line| line.starts_with("append error"))
        } else {
            error
        };
        let error = error.unwrap_or_else(|| panic!("no error: {said:?}"));
        assert!(error.contains(expected), "{error}");
    }
}

/// The name of the segment file that holds log offset `offset` in `dir`, and the offset's
/// position in that file.
fn position_in_file(dir: &std::path::Path, offset: u64) -> (String, u64) {
    let mut bases: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
        .collect();
    bases.sort_unstable();
    let base = bases.into_iter().rfind(|&b| b <= offset).unwrap();
    (format!("{base:020}.seg"), 64 + offset - base)
}

/// The child: warms the page cache, then, once told, opens the event log with read checks,
/// and appends to it if it opened it as a writer.
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
    let mut log = match opened {
        Ok(log) => log,
        Err(err) => return println!("open error: {err}"),
    };
    println!("opened, {} bytes", log.end_offset());
    if !read_only {
        match log.append(&Event::builder("tick").payload(vec![1; 100]).build()) {
            Ok(offset) => println!("appended at {offset}"),
            Err(err) => println!("append error: {err}"),
        }
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
    // `verify` reads every frame for its repair plan first; `replay` opens an event log,
    // whose index catch-up reads them through the maps.
    for command in ["verify", "replay"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_chronicle"))
            .args([command, "--json"])
            .arg(&dir)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&output.stdout);
        let errors = String::from_utf8_lossy(&output.stderr);
        assert!(fs.control().faults_fired() > 0, "no read failed");
        let status = output.status;
        assert_eq!(status.signal(), None, "{command} was killed ({status}): {errors}");
        // Exit 2: the log could not be read (1 is for damage verify found).
        assert_eq!(status.code(), Some(2), "{command}: {said} {errors}");
        assert!(errors.contains("could not be read into memory"), "{command}: {errors}");
        assert!(errors.contains(".seg"), "{command}: the error names no segment: {errors}");
    }
}

/// Set in the child process of [`read_error_in_the_index_file_rebuilds_the_index`]: the log's
/// directory.
const INDEX_CHILD: &str = "CHRONICLE_POWER_CUT_INDEX_CHILD";

/// An event log's index file is read through a map too, and checksummed whole at open: a
/// read error there was a `SIGBUS`, read checks or not. It is now read into memory first,
/// and a file that cannot be read is an unusable index: the open rebuilds it from the log.
/// (The open runs in a child process: a process that dies of a signal while it serves a FUSE
/// filesystem it has files of mapped hangs in its exit.)
#[test]
fn read_error_in_the_index_file_rebuilds_the_index() {
    use std::os::unix::process::ExitStatusExt as _;

    use power_cut::{Fault, Op};
    const NAME: &str = "read_error_in_the_index_file_rebuilds_the_index";
    if let Some(dir) = std::env::var_os(INDEX_CHILD) {
        let log = EventLog::open_read_only(std::path::Path::new(&dir)).unwrap();
        let report = log.index_report();
        println!("loaded {}", report.loaded);
        println!("because {}", report.rebuilt_because.as_deref().unwrap_or_default());
        println!("aggregate 3: {} events", log.load_aggregate(3).unwrap().len());
        return;
    }
    let Some(mut fs) = PowerCutMount::new(NAME) else {
        return;
    };
    let mut log = EventLog::open(fs.path().join("log")).unwrap();
    for i in 0..2000u64 {
        let event = Event::builder("tick").aggregate_id(i % 7).payload(vec![i as u8; 100]);
        log.append(&event.build()).unwrap();
    }
    log.close().unwrap();
    fs.remount(); // nothing of the log in the page cache
    let dir = fs.path().join("log");
    assert!(std::fs::metadata(dir.join("index.chx")).unwrap().len() > 8192);
    fs.control().inject(Fault::always(Op::Read, "index.chx", libc::EIO));
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads", "1"])
        .env(INDEX_CHILD, &dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(fs.control().faults_fired() > 0, "no read failed");
    assert_eq!(output.status.signal(), None, "killed ({}): {said}", output.status);
    assert!(output.status.success(), "the child failed: {}: {said}", output.status);
    assert!(said.contains("loaded false"), "{said}");
    assert!(said.contains("could not be read into memory"), "{said}");
    assert!(said.contains(&format!("aggregate 3: {} events", 2000 / 7 + 1)), "{said}");
}

const SEALED_CHILD: &str = "CHRONICLE_POWER_CUT_SEALED_CHILD";
const SEALED_ROLE: &str = "CHRONICLE_POWER_CUT_SEALED_ROLE";

/// After a writer dies past a roll without syncing, recovery walks the sealed segment that
/// holds the durable point from its start. Read checks read into memory only from the durable
/// point on (where the scan of the last segment starts), so a disk read error before it, in
/// the sealed segment, was a `SIGBUS`. The child warms every header and the sealed segment
/// from the durable point on; every other read of it fails with `EIO`.
#[test]
fn read_error_where_recovery_walks_a_sealed_segment_is_an_error_with_read_checks() {
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::os::unix::process::ExitStatusExt as _;
    use std::process::{Command, Stdio};

    use power_cut::{Fault, Op};
    const NAME: &str =
        "read_error_where_recovery_walks_a_sealed_segment_is_an_error_with_read_checks";
    if let Some(dir) = std::env::var_os(SEALED_CHILD) {
        return sealed_child(std::path::Path::new(&dir));
    }
    let Some(mut fs) = PowerCutMount::new(NAME) else {
        return;
    };
    let child = |dir: &std::path::Path, role: &str| {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.args(["--exact", NAME, "--nocapture", "--test-threads", "1"]);
        command.env(SEALED_CHILD, dir).env(SEALED_ROLE, role);
        command
    };
    // Built on an ordinary directory: a log closed half way into its first segment, and a
    // writer that appends into a second one and dies without a sync.
    let scratch = tempfile::tempdir().unwrap();
    let built = scratch.path().join("log");
    let mut log = Log::open_with(&built, sealed_options()).unwrap();
    for i in 0..500u32 {
        log.append(&[i as u8 | 1; 1000]).unwrap();
    }
    let durable = log.end_offset();
    log.close().unwrap();
    assert!(child(&built, "crash").stdout(Stdio::null()).status().unwrap().success());
    let names: Vec<_> =
        std::fs::read_dir(&built).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.iter().filter(|n| n.to_string_lossy().ends_with(".seg")).count(), 2);
    // Copied onto the FUSE filesystem, whose page cache the remount empties.
    std::fs::create_dir(fs.path().join("log")).unwrap();
    for name in &names {
        std::fs::copy(built.join(name), fs.path().join("log").join(name)).unwrap();
    }
    fs.remount();
    let dir = fs.path().join("log");
    let mut opener = child(&dir, &format!("open {durable}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(opener.stdout.take().unwrap()).lines();
    while !lines.next().expect("the child reads the log").unwrap().contains("warmed") {}
    fs.control().inject(Fault::always(Op::Read, "00000000000000000000.seg", libc::EIO));
    writeln!(opener.stdin.take().unwrap(), "go").unwrap();
    let status = opener.wait().unwrap();
    let said: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(fs.control().faults_fired() > 0, "no read failed");
    assert_eq!(status.signal(), None, "killed ({status}): {said:?}");
    assert!(status.success(), "the child failed: {status}: {said:?}");
    let error = said.iter().find(|line| line.starts_with("open error"));
    let error = error.unwrap_or_else(|| panic!("the open gave no error: {said:?}"));
    assert!(error.contains("could not be read into memory"), "{error}");
}

fn sealed_options() -> Options {
    Options { segment_bytes: 1 << 20, ..Options::default() }
}

/// The children of the test above: `crash` appends past a roll and exits without a sync;
/// `open D` warms the page cache, then, once told, opens the log read-only with read checks.
fn sealed_child(dir: &std::path::Path) {
    use std::io::{BufRead as _, Read as _, Seek as _};
    let role = std::env::var(SEALED_ROLE).unwrap();
    if role == "crash" {
        let mut log = Log::open_with(dir, sealed_options()).unwrap();
        for i in 0..700u32 {
            log.append(&[i as u8 | 2; 1000]).unwrap();
        }
        std::process::exit(0);
    }
    let durable: u64 = role.strip_prefix("open ").unwrap().parse().unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "seg") {
            let mut file = std::fs::File::open(&path).unwrap();
            let mut page = [0u8; 4096];
            file.read_exact(&mut page).unwrap();
            if path.file_name().unwrap() == "00000000000000000000.seg" {
                file.seek(std::io::SeekFrom::Start(64 + durable)).unwrap();
                std::io::copy(&mut file, &mut std::io::sink()).unwrap();
            }
        }
    }
    println!("warmed");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
    let options = Options { read_checks: true, ..sealed_options() };
    match Log::open_read_only_with(dir, options) {
        Ok(log) => println!("opened, {} bytes", log.end_offset()),
        Err(err) => println!("open error: {err}"),
    }
}

/// Set in the child process of [`recovery_with_read_checks_reads_only_what_it_scans`]: the
/// log's directory.
const SCAN_CHILD: &str = "CHRONICLE_POWER_CUT_SCAN_CHILD";

/// Recovery with read checks reads into memory what its scan will read, and no more: the
/// sealed segments before the durable point the last segment's header proves are not scanned
/// (their links are read with `pread`), so they are not read either. A first version read
/// every segment from the recorded durable point, here (no `DURABLE`) the whole log. A log
/// of several segments, its first segment's pages failing with `EIO` except those a plain
/// open reads; the opens with read checks (in a child process, which could die of a signal)
/// must succeed.
#[test]
fn recovery_with_read_checks_reads_only_what_it_scans() {
    use std::os::unix::process::ExitStatusExt as _;

    use power_cut::{Fault, Op};
    const NAME: &str = "recovery_with_read_checks_reads_only_what_it_scans";
    let options = Options { segment_bytes: 1 << 20, ..Options::default() };
    if let Some(dir) = std::env::var_os(SCAN_CHILD) {
        let options = Options { read_checks: true, ..options };
        let read_only = Log::open_read_only_with(std::path::Path::new(&dir), options.clone());
        println!("read-only: {:?}", read_only.map(|log| log.end_offset()));
        let writer = Log::open_with(std::path::Path::new(&dir), options);
        println!("writer: {:?}", writer.map(|log| log.end_offset()));
        return;
    }
    let Some(mut fs) = PowerCutMount::new(NAME) else {
        return;
    };
    let mut log = Log::open_with(fs.path().join("log"), options).unwrap();
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
    let segments = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".seg"))
        .count();
    assert!(segments >= 3, "{segments} segments");
    // What an open reads anyway: headers and links with `pread`, the last segment's scan.
    let end = Log::open_read_only(&dir).unwrap().end_offset();
    fs.control().inject(Fault::always(Op::Read, "00000000000000000000.seg", libc::EIO));
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads", "1"])
        .env(SCAN_CHILD, &dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.signal(), None, "killed ({}): {said}", output.status);
    assert!(said.contains(&format!("read-only: Ok({end})")), "{said}");
    assert!(said.contains(&format!("writer: Ok({end})")), "{said}");
    assert_eq!(fs.control().faults_fired(), 0, "an open read the first segment's data");
}
