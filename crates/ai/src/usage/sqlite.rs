//! The SQLite usage store: a file of this gateway's own, written by one
//! thread that owns the `rusqlite::Connection`.
//!
//! # Durability
//! WAL journal with `synchronous = NORMAL`: a committed row survives the
//! process crashing; a power cut may lose the last few transactions. Rows
//! still queued when the process is killed are lost; a clean shutdown —
//! `UsageLedger::close`, or dropping the ledger — commits them first.
//!
//! # Schema versions
//! The schema version is SQLite's `user_version`. [`MIGRATIONS`] lists the
//! steps from an empty file; opening applies those the file has not seen, and
//! a file written by a newer build is refused.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, Row, params, params_from_iter};

use super::{
    Arg, COLUMNS, Command, LostRows, MAX_BATCH, UsageError, UsageFilter, UsageRecord, UsageReport, UsageTotals, signed,
};

/// How long a statement waits for a lock held by another connection to the
/// same file (another process, or a reader) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema steps; the file's `user_version` counts how many have been applied.
/// Append only: never edit a step that has shipped.
const MIGRATIONS: &[&str] = &["CREATE TABLE IF NOT EXISTS usage (
        id INTEGER PRIMARY KEY,
        time_ms INTEGER NOT NULL,
        request_id TEXT NOT NULL,
        consumer TEXT,
        route TEXT NOT NULL,
        target TEXT NOT NULL,
        model TEXT NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        cost REAL NOT NULL,
        latency_ms INTEGER NOT NULL,
        ttft_ms INTEGER,
        status INTEGER NOT NULL,
        streamed INTEGER NOT NULL,
        cached INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS usage_time ON usage (time_ms);
    CREATE INDEX IF NOT EXISTS usage_consumer_time ON usage (consumer, time_ms);"];

/// The bytes every SQLite database file starts with.
const HEADER_MAGIC: &[u8] = b"SQLite format 3\0";

/// The length of a SQLite database file's header, which holds
/// `user_version` as a big-endian `i32` at [`USER_VERSION_AT`].
const HEADER_LEN: usize = 100;

/// Where `user_version` (the schema version) sits in the header.
const USER_VERSION_AT: usize = 60;

/// Check, creating and changing nothing, that the database at `path`
/// (called `store` in errors) could be opened: either it does not exist
/// yet and its directory does, or it is empty, or it is a SQLite database
/// whose schema version this build knows. Only the file's header is read;
/// no lock is taken, so a gateway writing to it is not disturbed.
pub(super) fn check(path: &Path, store: &str) -> Result<(), UsageError> {
    use std::io::Read;
    let unusable = |reason: String| UsageError::Unusable {
        store: store.to_owned(),
        reason,
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return match path.parent().filter(|dir| !dir.as_os_str().is_empty() && !dir.is_dir()) {
                Some(dir) => Err(UsageError::MissingDirectory {
                    store: store.to_owned(),
                    dir: dir.to_owned(),
                }),
                None => Ok(()),
            };
        }
        Err(e) => return Err(unusable(format!("cannot read it: {e}"))),
    };
    // Opening a FIFO would wait for a writer; a database is a regular file.
    if !meta.is_file() {
        return Err(unusable("not a regular file".into()));
    }
    let mut header = Vec::with_capacity(HEADER_LEN);
    std::fs::File::open(path)
        .and_then(|file| file.take(HEADER_LEN as u64).read_to_end(&mut header))
        .map_err(|e| unusable(format!("cannot read it: {e}")))?;
    if header.is_empty() {
        // SQLite takes an empty file as an empty database.
        return Ok(());
    }
    if header.len() < HEADER_LEN || !header.starts_with(HEADER_MAGIC) {
        return Err(unusable("not a SQLite database".into()));
    }
    let mut version = [0u8; 4];
    version.copy_from_slice(&header[USER_VERSION_AT..USER_VERSION_AT + 4]);
    let found = i64::from(i32::from_be_bytes(version));
    match usize::try_from(found) {
        Ok(applied) if applied <= MIGRATIONS.len() => Ok(()),
        _ => Err(UsageError::UnknownSchema {
            store: store.to_owned(),
            found,
            known: MIGRATIONS.len(),
        }),
    }
}

/// Open (or create) the database at `path` (called `store` in errors),
/// bring its schema up to date and start the writer thread.
pub(super) fn open(path: &Path, store: &str) -> Result<(mpsc::Sender<Command>, JoinHandle<()>), UsageError> {
    let sqlite = |what| {
        move |source| UsageError::Sqlite {
            store: store.to_owned(),
            what,
            source,
        }
    };
    let mut connection = Connection::open(path).map_err(|source| {
        match path.parent().filter(|dir| !dir.as_os_str().is_empty() && !dir.exists()) {
            Some(dir) => UsageError::MissingDirectory {
                store: store.to_owned(),
                dir: dir.to_owned(),
            },
            None => sqlite("opening the database")(source),
        }
    })?;
    connection
        .busy_timeout(BUSY_TIMEOUT)
        .map_err(sqlite("setting the busy timeout"))?;
    let journal: String = connection
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(sqlite("switching to the WAL journal"))?;
    if !journal.eq_ignore_ascii_case("wal") {
        tracing::warn!("usage ledger {store}: journal mode is {journal}, not WAL; writes may block readers");
    }
    connection
        .pragma_update(None, "synchronous", "NORMAL")
        .map_err(sqlite("setting synchronous = NORMAL"))?;
    migrate(&mut connection, store)?;

    let (commands, receiver) = mpsc::channel();
    let writer = Writer {
        connection,
        store: store.to_owned(),
        lost: LostRows::default(),
    };
    let handle = std::thread::Builder::new()
        .name("weir-usage-ledger".into())
        .spawn(move || writer.run(receiver))
        .map_err(|source| UsageError::Spawn {
            store: store.to_owned(),
            source,
        })?;
    Ok((commands, handle))
}

/// Bring the schema up to date, one transaction per step.
fn migrate(connection: &mut Connection, store: &str) -> Result<(), UsageError> {
    let sqlite = |what| {
        move |source| UsageError::Sqlite {
            store: store.to_owned(),
            what,
            source,
        }
    };
    let found: i64 = connection
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(sqlite("reading the schema version"))?;
    let applied = usize::try_from(found)
        .ok()
        .filter(|applied| *applied <= MIGRATIONS.len())
        .ok_or_else(|| UsageError::UnknownSchema {
            store: store.to_owned(),
            found,
            known: MIGRATIONS.len(),
        })?;
    for (index, step) in MIGRATIONS.iter().enumerate().skip(applied) {
        let transaction = connection.transaction().map_err(sqlite("migrating the schema"))?;
        transaction
            .execute_batch(step)
            .map_err(sqlite("migrating the schema"))?;
        transaction
            .pragma_update(None, "user_version", index + 1)
            .map_err(sqlite("migrating the schema"))?;
        transaction.commit().map_err(sqlite("migrating the schema"))?;
    }
    Ok(())
}

/// The writer thread's state: the only user of the connection.
struct Writer {
    connection: Connection,
    store: String,
    lost: LostRows,
}

impl Writer {
    fn run(mut self, commands: mpsc::Receiver<Command>) {
        let mut batch = Vec::new();
        // `recv` fails once every sender is gone and the queue is empty.
        let close = loop {
            let Ok(first) = commands.recv() else { break None };
            let command = match first {
                Command::Record(record) => {
                    batch.push(record);
                    let mut next = None;
                    while batch.len() < MAX_BATCH {
                        match commands.try_recv() {
                            Ok(Command::Record(record)) => batch.push(record),
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.write(&mut batch);
                    match next {
                        Some(command) => command,
                        None => continue,
                    }
                }
                other => other,
            };
            match command {
                Command::Record(_) => unreachable!("records are batched above"),
                Command::Flush(reply) => {
                    let _ = reply.send(self.lost.take(&self.store));
                }
                Command::Query(filter, reply) => {
                    let answer = query(&self.connection, &filter).map_err(|e| self.error("query", e));
                    let _ = reply.send(answer);
                }
                Command::TokensByConsumerSince(since_ms, reply) => {
                    let answer = tokens_by_consumer_since(&self.connection, since_ms)
                        .map_err(|e| self.error("summing tokens per consumer", e));
                    let _ = reply.send(answer);
                }
                Command::Close(reply) => break Some(reply),
            }
        };
        let result = self.finish();
        match close {
            Some(reply) => {
                let _ = reply.send(result);
            }
            None => {
                if let Err(e) = result {
                    tracing::error!("{e}");
                }
            }
        }
    }

    /// Insert `batch` in one transaction and empty it. A failure is logged
    /// and kept for the next flush to report.
    fn write(&mut self, batch: &mut Vec<UsageRecord>) {
        if let Err(e) = insert(&mut self.connection, batch) {
            let first = batch.first().map(|record| record.request_id.as_str()).unwrap_or("");
            tracing::error!(
                "usage ledger {}: writing {} rows (requests {first}…) failed, they are lost: {e}",
                self.store,
                batch.len()
            );
            self.lost.add(batch.len(), e.to_string());
        }
        batch.clear();
    }

    fn error(&self, what: &'static str, source: rusqlite::Error) -> UsageError {
        UsageError::Sqlite {
            store: self.store.clone(),
            what,
            source,
        }
    }

    /// Report rows lost since the last flush, then close the database.
    fn finish(mut self) -> Result<(), UsageError> {
        let lost = self.lost.take(&self.store);
        let store = self.store;
        self.connection.close().map_err(|(_, source)| UsageError::Sqlite {
            store,
            what: "closing the database",
            source,
        })?;
        lost
    }
}

fn insert(connection: &mut Connection, batch: &[UsageRecord]) -> rusqlite::Result<()> {
    let transaction = connection.transaction()?;
    {
        let mut statement = transaction.prepare_cached(&format!(
            "INSERT INTO usage ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))?;
        for record in batch {
            statement.execute(params![
                record.time_ms,
                record.request_id,
                record.consumer,
                record.route,
                record.target,
                record.model,
                signed(record.prompt_tokens),
                signed(record.completion_tokens),
                record.cost,
                signed(record.latency_ms),
                record.ttft_ms.map(signed),
                record.status,
                record.streamed,
                record.cached,
            ])?;
        }
    }
    transaction.commit()
}

fn read_record(row: &Row<'_>) -> rusqlite::Result<UsageRecord> {
    Ok(UsageRecord {
        time_ms: row.get(0)?,
        request_id: row.get(1)?,
        consumer: row.get(2)?,
        route: row.get(3)?,
        target: row.get(4)?,
        model: row.get(5)?,
        prompt_tokens: row.get(6)?,
        completion_tokens: row.get(7)?,
        cost: row.get(8)?,
        latency_ms: row.get(9)?,
        ttft_ms: row.get(10)?,
        status: row.get(11)?,
        streamed: row.get(12)?,
        cached: row.get(13)?,
    })
}

/// Reads `COUNT(*), SUM(prompt), SUM(completion), TOTAL(cost)` from columns
/// `first..first + 4`.
fn read_totals(row: &Row<'_>, first: usize) -> rusqlite::Result<UsageTotals> {
    Ok(UsageTotals {
        requests: row.get(first)?,
        prompt_tokens: row.get(first + 1)?,
        completion_tokens: row.get(first + 2)?,
        cost: row.get(first + 3)?,
    })
}

const SUMS: &str = "COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), TOTAL(cost)";

fn query(connection: &Connection, filter: &UsageFilter) -> rusqlite::Result<UsageReport> {
    let (conditions, args) = filter.where_clause(|_| "?".to_owned());
    let args: Vec<Value> = args
        .into_iter()
        .map(|arg| match arg {
            Arg::Text(text) => Value::Text(text),
            Arg::Integer(integer) => Value::Integer(integer),
        })
        .collect();
    let limit = filter.row_limit();

    let mut statement = connection.prepare(&format!(
        "SELECT {COLUMNS} FROM usage {conditions} ORDER BY time_ms DESC, id DESC LIMIT {limit}"
    ))?;
    let rows = statement
        .query_map(params_from_iter(&args), read_record)?
        .collect::<rusqlite::Result<Vec<_>>>()?;

    let totals = connection.query_row(
        &format!("SELECT {SUMS} FROM usage {conditions}"),
        params_from_iter(&args),
        |row| read_totals(row, 0),
    )?;

    let groups = match filter.group_by {
        None => Vec::new(),
        Some(group_by) => {
            let key = group_by.column();
            let mut statement = connection.prepare(&format!(
                "SELECT {key}, {SUMS} FROM usage {conditions} GROUP BY 1 ORDER BY TOTAL(cost) DESC, 1 ASC"
            ))?;
            statement
                .query_map(params_from_iter(&args), |row| Ok((row.get(0)?, read_totals(row, 1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?
        }
    };
    Ok(UsageReport { rows, totals, groups })
}

fn tokens_by_consumer_since(connection: &Connection, since_ms: i64) -> rusqlite::Result<HashMap<String, u64>> {
    let mut statement = connection.prepare_cached(
        "SELECT COALESCE(consumer, '-'), COALESCE(SUM(prompt_tokens + completion_tokens), 0)
         FROM usage WHERE time_ms >= ? GROUP BY 1",
    )?;
    statement
        .query_map([since_ms], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{checks, request};
    use super::super::{UsageFilter, UsageLedger, UsageStore};
    use super::*;

    fn store(dir: &tempfile::TempDir) -> UsageStore {
        UsageStore::Sqlite(dir.path().join("usage.db"))
    }

    fn ledger(dir: &tempfile::TempDir) -> UsageLedger {
        UsageLedger::open(&dir.path().join("usage.db")).expect("open ledger")
    }

    #[tokio::test]
    async fn each_filter_narrows_the_rows_and_totals() {
        let dir = tempfile::tempdir().unwrap();
        checks::each_filter_narrows_the_rows_and_totals(&store(&dir)).await;
    }

    #[tokio::test]
    async fn group_by_sums_per_key_largest_cost_first() {
        let dir = tempfile::tempdir().unwrap();
        checks::group_by_sums_per_key_largest_cost_first(&store(&dir)).await;
    }

    #[tokio::test]
    async fn limit_caps_rows_but_totals_cover_every_match() {
        let dir = tempfile::tempdir().unwrap();
        checks::limit_caps_rows_but_totals_cover_every_match(&store(&dir)).await;
    }

    #[tokio::test]
    async fn rows_survive_close_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        checks::rows_survive_close_and_reopen(&store(&dir)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ten_thousand_records_from_eight_threads_all_land() {
        let dir = tempfile::tempdir().unwrap();
        checks::ten_thousand_records_from_eight_threads_all_land(&store(&dir)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_query_while_recording_sees_every_row_recorded_before_it() {
        let dir = tempfile::tempdir().unwrap();
        checks::a_query_while_recording_sees_every_row_recorded_before_it(&store(&dir)).await;
    }

    #[tokio::test]
    async fn tokens_by_consumer_since_sums_prompt_and_completion() {
        let dir = tempfile::tempdir().unwrap();
        checks::tokens_by_consumer_since_sums_prompt_and_completion(&store(&dir)).await;
    }

    #[tokio::test]
    async fn report_serializes_as_json() {
        let dir = tempfile::tempdir().unwrap();
        checks::report_serializes_as_json(&store(&dir)).await;
    }

    #[test]
    fn dropping_without_close_commits_every_queued_row() {
        let dir = tempfile::tempdir().unwrap();
        {
            let ledger = ledger(&dir);
            for time in 0..5_000 {
                ledger.record(request(time, Some("alice"), "chat", "gpt", 1));
            }
        }
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let reopened = ledger(&dir);
        let report = runtime.block_on(reopened.query(UsageFilter::default())).unwrap();
        assert_eq!(report.totals.requests, 5_000);
    }

    #[test]
    fn opening_in_a_missing_directory_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("usage.db");
        let Err(error) = UsageLedger::open(&path) else {
            panic!("opened a ledger in a missing directory");
        };
        let message = error.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("does not exist"), "{message}");
    }

    #[test]
    fn a_file_from_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        drop(UsageLedger::open(&path).unwrap());
        let connection = Connection::open(&path).unwrap();
        connection.pragma_update(None, "user_version", 99).unwrap();
        drop(connection);
        let Err(error) = UsageLedger::open(&path) else {
            panic!("opened a file from a newer schema");
        };
        assert!(matches!(error, UsageError::UnknownSchema { found: 99, .. }), "{error}");
        assert!(error.to_string().contains(&path.display().to_string()));
    }
}
