//! SQLite (the bundled build, through rusqlite) as an event store, the usual way: one table
//!
//! ```sql
//! events(position INTEGER PRIMARY KEY, aggregate_id INTEGER, version INTEGER,
//!        event_type TEXT, payload BLOB, UNIQUE(aggregate_id, version))
//! ```
//!
//! whose UNIQUE constraint makes the index that loads use. Settings as in the other
//! workloads (`engines/sqlite.rs`): `journal_mode=WAL`, `synchronous=FULL` (a commit is
//! durable when it returns), 1 GiB `mmap_size`, a 64 MiB page cache; statements are prepared
//! once per connection. Bulk appends are one transaction; a durable batch is a transaction.
//! An expected-version append is `BEGIN IMMEDIATE`, `SELECT max(version)` of the aggregate,
//! and, if it is the expected one, `INSERT` and `COMMIT` (else `ROLLBACK`). Each writing
//! thread has its own connection; `busy_timeout` makes a connection that finds the database
//! locked wait (SQLite's busy handler sleeps and retries) rather than fail.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};

use super::events::{event_type, fill_payload, ReadEvent, Spread, PAYLOAD_BYTES};
use super::store::{Appended, EventStore, SharedStore, Sizing, StoreWriter};
use crate::engines::Res;

const FILE_NAME: &str = "events.db";
const INSERT: &str =
    "INSERT INTO events (aggregate_id, version, event_type, payload) VALUES (?1, ?2, ?3, ?4)";
const LOAD: &str = "SELECT version, event_type, payload FROM events WHERE aggregate_id = ?1 \
                    ORDER BY version";
const CURRENT: &str = "SELECT max(version) FROM events WHERE aggregate_id = ?1";
/// How long a connection waits for another's write lock before giving up with SQLITE_BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

fn connect(dir: &Path) -> Res<Connection> {
    let connection = Connection::open(dir.join(FILE_NAME))?;
    let mode: String = connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("SQLite refused WAL mode: {mode}").into());
    }
    connection.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA mmap_size = 1073741824;
         PRAGMA cache_size = -65536;",
    )?;
    let synchronous: i64 = connection.query_row("PRAGMA synchronous", [], |row| row.get(0))?;
    if synchronous != 2 {
        return Err(format!("SQLite synchronous is {synchronous}, not FULL (2)").into());
    }
    connection.busy_timeout(BUSY_TIMEOUT)?;
    Ok(connection)
}

fn i64_of(value: u64) -> Res<i64> {
    Ok(i64::try_from(value)?)
}

/// Fails unless SQLite answers a load with a search of the UNIQUE constraint's index and no
/// sort: the plan the comparison means to measure.
fn check_load_plan(connection: &Connection) -> Res<()> {
    let mut explain = connection.prepare(&format!("EXPLAIN QUERY PLAN {LOAD}"))?;
    let steps: Vec<String> =
        explain.query_map([0], |row| row.get::<_, String>(3))?.collect::<Result<_, _>>()?;
    let searches_index = steps.len() == 1
        && steps[0].starts_with("SEARCH events USING INDEX")
        && steps[0].contains("(aggregate_id=?)");
    if !searches_index {
        return Err(format!("SQLite's plan for a load is not one index search: {steps:?}").into());
    }
    Ok(())
}

pub struct SqliteStore {
    connection: Connection,
    payload: Vec<u8>,
}

impl SqliteStore {
    fn insert_range(&mut self, spread: &Spread, range: Range<u64>) -> Res<()> {
        let mut insert = self.connection.prepare_cached(INSERT)?;
        for index in range {
            let (aggregate, version) = spread.locate(index);
            fill_payload(&mut self.payload, aggregate, version, 0);
            insert.execute(params![
                i64_of(aggregate)?,
                i64_of(version)?,
                event_type(version),
                &self.payload
            ])?;
        }
        Ok(())
    }

    fn in_transaction(&mut self, spread: &Spread, range: Range<u64>) -> Res<()> {
        self.connection.execute_batch("BEGIN")?;
        self.insert_range(spread, range)?;
        self.connection.execute_batch("COMMIT")?;
        Ok(())
    }
}

fn create_schema(connection: &Connection) -> Res<()> {
    connection.execute_batch(
        "CREATE TABLE events (
             position INTEGER PRIMARY KEY,
             aggregate_id INTEGER NOT NULL,
             version INTEGER NOT NULL,
             event_type TEXT NOT NULL,
             payload BLOB NOT NULL,
             UNIQUE (aggregate_id, version)
         )",
    )?;
    Ok(())
}

impl EventStore for SqliteStore {
    const NAME: &'static str = "sqlite-wal";

    type Writer = SqliteWriter;
    type Shared = SqliteShared;

    fn create(dir: &Path, _sizing: Sizing) -> Res<Self> {
        let connection = connect(dir)?;
        create_schema(&connection)?;
        Ok(SqliteStore { connection, payload: vec![0u8; PAYLOAD_BYTES] })
    }

    fn open(dir: &Path, _sizing: Sizing) -> Res<Self> {
        let connection = connect(dir)?;
        check_load_plan(&connection)?;
        Ok(SqliteStore { connection, payload: vec![0u8; PAYLOAD_BYTES] })
    }

    fn append_then_sync(&mut self, spread: &Spread, range: Range<u64>) -> Res<()> {
        self.in_transaction(spread, range)
    }

    fn append_batches_durable(
        &mut self,
        spread: &Spread,
        range: Range<u64>,
        batch: usize,
    ) -> Res<()> {
        for start in range.clone().step_by(batch) {
            self.in_transaction(spread, start..(start + batch as u64).min(range.end))?;
        }
        Ok(())
    }

    fn load_timed(&mut self, aggregate: u64) -> Res<(Duration, Vec<ReadEvent>)> {
        let id = i64_of(aggregate)?;
        let start = Instant::now();
        let mut load = self.connection.prepare_cached(LOAD)?;
        let rows: Vec<(i64, String, Vec<u8>)> = load
            .query_map([id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let elapsed = start.elapsed();
        let events = rows
            .into_iter()
            .map(|(version, event_type, payload)| {
                Ok(ReadEvent { aggregate, version: u64::try_from(version)?, event_type, payload })
            })
            .collect::<Res<_>>()?;
        Ok((elapsed, events))
    }

    fn close(self) -> Res<()> {
        self.connection.close().map_err(|(_, err)| err)?;
        Ok(())
    }

    fn read_all(dir: &Path, each: &mut dyn FnMut(&ReadEvent)) -> Res<()> {
        let connection = connect(dir)?;
        let mut select = connection.prepare(
            "SELECT aggregate_id, version, event_type, payload FROM events ORDER BY position",
        )?;
        let mut rows = select.query([])?;
        while let Some(row) = rows.next()? {
            each(&ReadEvent {
                aggregate: u64::try_from(row.get::<_, i64>(0)?)?,
                version: u64::try_from(row.get::<_, i64>(1)?)?,
                event_type: row.get(2)?,
                payload: row.get(3)?,
            });
        }
        Ok(())
    }

    fn create_shared(dir: &Path, _sizing: Sizing) -> Res<SqliteShared> {
        let connection = connect(dir)?;
        create_schema(&connection)?;
        Ok(SqliteShared { dir: dir.to_path_buf(), connection })
    }
}

/// The database's path, and the connection that created it (kept open until the end).
pub struct SqliteShared {
    dir: PathBuf,
    connection: Connection,
}

impl SharedStore for SqliteShared {
    type Writer = SqliteWriter;

    fn writer(&self) -> Res<SqliteWriter> {
        Ok(SqliteWriter { connection: connect(&self.dir)?, payload: vec![0u8; PAYLOAD_BYTES] })
    }

    fn syncs(&self) -> Option<u64> {
        None
    }

    fn close(self) -> Res<()> {
        self.connection.close().map_err(|(_, err)| err)?;
        Ok(())
    }
}

pub struct SqliteWriter {
    connection: Connection,
    payload: Vec<u8>,
}

impl SqliteWriter {
    fn try_append(&mut self, aggregate: u64, expected: Option<u64>, writer: u32) -> Res<Appended> {
        let id = i64_of(aggregate)?;
        let current: Option<i64> =
            self.connection.prepare_cached(CURRENT)?.query_row([id], |row| row.get(0))?;
        if current != expected.map(i64_of).transpose()? {
            self.connection.execute_batch("ROLLBACK")?;
            return Ok(Appended::Conflict);
        }
        let version = expected.map_or(0, |v| v + 1);
        fill_payload(&mut self.payload, aggregate, version, writer);
        self.connection.prepare_cached(INSERT)?.execute(params![
            id,
            i64_of(version)?,
            event_type(version),
            &self.payload
        ])?;
        self.connection.execute_batch("COMMIT")?;
        Ok(Appended::Durable)
    }
}

impl StoreWriter for SqliteWriter {
    fn current_version(&mut self, aggregate: u64) -> Res<Option<u64>> {
        let current: Option<i64> = self
            .connection
            .prepare_cached(CURRENT)?
            .query_row([i64_of(aggregate)?], |row| row.get(0))
            .optional()?
            .flatten();
        Ok(current.map(u64::try_from).transpose()?)
    }

    fn append_expecting_durable(
        &mut self,
        aggregate: u64,
        expected: Option<u64>,
        writer: u32,
    ) -> Res<Appended> {
        self.connection.execute_batch("BEGIN IMMEDIATE")?;
        let outcome = self.try_append(aggregate, expected, writer);
        if outcome.is_err() && !self.connection.is_autocommit() {
            // Leave the connection usable; the error is the one reported.
            let _ = self.connection.execute_batch("ROLLBACK");
        }
        outcome
    }

    fn append_durable(&mut self, _aggregate: u64, _version: u64, _writer: u32) -> Res<()> {
        Err("the comparison runs append_sync scaling on Chronicle only".into())
    }
}
