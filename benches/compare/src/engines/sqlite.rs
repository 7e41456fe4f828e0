//! SQLite (the bundled build, through rusqlite) in WAL mode: one table
//! `log(seq INTEGER PRIMARY KEY, payload BLOB)`, one row per record.
//!
//! Settings: `journal_mode=WAL` with `synchronous=FULL`, the setting under which a commit in
//! WAL mode is durable when it returns (the WAL is fsynced at every commit; with `NORMAL` a
//! commit is only durable after the next checkpoint). `mmap_size` of 1 GiB and a 64 MiB page
//! cache speed up reads; the insert statement is prepared once. Buffered appends are inserts
//! in one transaction, committed at the end; a batch is one transaction.

use std::ops::Range;
use std::path::Path;

use rusqlite::Connection;

use super::{batches, Engine, Res, Writer};
use crate::workload::{Plan, Pool, Verifier};

pub struct Sqlite;

const INSERT: &str = "INSERT INTO log (payload) VALUES (?1)";

fn connect(dir: &Path) -> Res<Connection> {
    let connection = Connection::open(dir.join("log.db"))?;
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
    Ok(connection)
}

pub struct SqliteWriter {
    connection: Connection,
}

impl SqliteWriter {
    fn insert_all(&self, pool: &mut Pool, indexes: Range<u64>) -> Res<()> {
        let mut insert = self.connection.prepare_cached(INSERT)?;
        for index in indexes {
            insert.execute([pool.stamp(index)])?;
        }
        Ok(())
    }

    fn in_transaction(&self, pool: &mut Pool, indexes: Range<u64>) -> Res<()> {
        self.connection.execute_batch("BEGIN")?;
        self.insert_all(pool, indexes)?;
        self.connection.execute_batch("COMMIT")?;
        Ok(())
    }
}

impl Engine for Sqlite {
    const NAME: &'static str = "sqlite-wal";
    const DURABILITY: &'static str = "COMMIT with `journal_mode=WAL`, `synchronous=FULL`: \
        the WAL is fsynced (the bundled build uses fsync, not fdatasync) before COMMIT \
        returns. Reaches the disk. (`synchronous=NORMAL` would not, in WAL mode.)";

    type Writer = SqliteWriter;

    fn create(dir: &Path, _plan: &Plan) -> Res<SqliteWriter> {
        let connection = connect(dir)?;
        connection
            .execute_batch("CREATE TABLE log (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL)")?;
        Ok(SqliteWriter { connection })
    }

    fn reopen(dir: &Path, _plan: &Plan) -> Res<SqliteWriter> {
        let connection = connect(dir)?;
        // Read the schema and the last sequence number, as a writer needs before appending.
        let _last: Option<i64> =
            connection.query_row("SELECT max(seq) FROM log", [], |row| row.get(0))?;
        Ok(SqliteWriter { connection })
    }

    fn replay(dir: &Path, _plan: &Plan, check: &mut Verifier) -> Res<()> {
        let connection = connect(dir)?;
        let mut select = connection.prepare("SELECT payload FROM log ORDER BY seq")?;
        let mut rows = select.query([])?;
        while let Some(row) = rows.next()? {
            check.check(row.get_ref(0)?.as_blob()?);
        }
        Ok(())
    }
}

impl Writer for SqliteWriter {
    fn append_then_sync(&mut self, pool: &mut Pool, indexes: Range<u64>) -> Res<()> {
        self.in_transaction(pool, indexes)
    }

    fn append_each_durable(&mut self, pool: &mut Pool, indexes: Range<u64>) -> Res<()> {
        // Outside an explicit transaction every INSERT is its own durable commit.
        self.insert_all(pool, indexes)
    }

    fn append_batches_durable(
        &mut self,
        pool: &mut Pool,
        indexes: Range<u64>,
        batch: usize,
    ) -> Res<()> {
        for range in batches(indexes, batch) {
            self.in_transaction(pool, range)?;
        }
        Ok(())
    }

    fn close(self) -> Res<()> {
        self.connection.close().map_err(|(_, err)| err)?;
        Ok(())
    }
}
