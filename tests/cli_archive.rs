//! The archive subcommands of the `chronicle` tool: `backup`, `verify-backup`, `restore` and
//! `ship`, against a loopback S3 server and a local directory, with their JSON output and exit
//! statuses (0 ok, 1 damage found, 2 usage or access errors).

mod archive_common;

use std::process::{Command, Output};

use archive_common::{append_events, records_in, small_segments, S3Server};
use chronicle::archive::{BackupOptions, Shipper};
use chronicle::EventLog;

fn chronicle(args: &[&str], server: Option<&S3Server>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chronicle"));
    command.args(args);
    if let Some(server) = server {
        for (key, value) in server.options() {
            command.env(key.to_ascii_uppercase(), value);
        }
    }
    command.output().unwrap()
}

fn json(output: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn backup_verify_restore_and_ship_on_s3() {
    let server = S3Server::start();
    let url = server.url("cli");
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let mut log = EventLog::open_with(&log_dir, small_segments()).unwrap();
    append_events(&mut log, 300, 21);
    log.close().unwrap();
    let log_arg = log_dir.to_str().unwrap();

    let out = chronicle(&["backup", log_arg, &url, "--zstd", "3", "--json"], Some(&server));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shipped = json(&out);
    let end = shipped["end_offset"].as_u64().unwrap();
    assert!(end > 0);

    let out = chronicle(&["verify-backup", &url, "--json"], Some(&server));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(json(&out)["problems"].as_array().unwrap().len(), 0);

    let target = dir.path().join("restored");
    let half = (end / 2).to_string();
    let out = chronicle(
        &["restore", &url, target.to_str().unwrap(), "--until-offset", &half, "--json"],
        Some(&server),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let restored_end = json(&out)["end_offset"].as_u64().unwrap();
    let original: Vec<_> =
        records_in(&log_dir).into_iter().filter(|r| r.0 < restored_end).collect();
    assert!(records_in(&target) == original);
    // A second restore into the same, now non-empty, directory is a usage error.
    let out = chronicle(&["restore", &url, target.to_str().unwrap()], Some(&server));
    assert_eq!(out.status.code(), Some(2));

    // `ship --once` with nothing new publishes nothing and exits 0; with a second shipper
    // holding the lease it is refused with exit status 2.
    let out = chronicle(&["ship", log_arg, &url, "--once", "--json"], Some(&server));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&out)["segments_shipped"].as_u64(), Some(0));
    let options = BackupOptions { store_options: server.options(), ..BackupOptions::default() };
    let holder = Shipper::new(&url, options).unwrap();
    let out = chronicle(&["ship", log_arg, &url, "--once"], Some(&server));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another shipper holds the lease"));
    holder.release().unwrap();
}

#[test]
fn verify_backup_exits_1_on_damage_and_restore_names_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let backup = dir.path().join("backup");
    let mut log = EventLog::open_with(&log_dir, small_segments()).unwrap();
    append_events(&mut log, 200, 22);
    log.close().unwrap();
    let url = format!("file://{}", backup.display());
    let out = chronicle(&["backup", log_dir.to_str().unwrap(), &url], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = chronicle(&["verify-backup", &url], None);
    assert_eq!(out.status.code(), Some(0));

    let piece = std::fs::read_dir(backup.join("segments")).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&piece).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&piece, bytes).unwrap();
    let name = piece.file_name().unwrap().to_string_lossy().to_string();
    let out = chronicle(&["verify-backup", &url], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&name));
    let target = dir.path().join("restored");
    let out = chronicle(&["restore", &url, target.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&name));
    assert!(!target.exists());

    // Usage errors: both points at once; no backup at all.
    let out = chronicle(&["restore", &url, "x", "--until-offset", "8", "--until-ms", "1"], None);
    assert_eq!(out.status.code(), Some(2));
    let empty = format!("file://{}", dir.path().join("nothing").display());
    let out = chronicle(&["verify-backup", &empty], None);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn every_archive_subcommand_has_an_example() {
    for command in ["backup", "verify-backup", "restore", "ship"] {
        let out = chronicle(&[command, "--help"], None);
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains(&format!("chronicle {command} ")), "{command}: {help}");
        assert!(help.contains("Exit status"), "{command}");
    }
}
