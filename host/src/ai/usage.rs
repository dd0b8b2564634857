//! The usage ledger: one row per AI request the gateway served, kept in a
//! SQLite file so that spend survives restarts. The admin API answers
//! `GET /usage` from it, and budgets read back each consumer's spend from it
//! after a restart.
//!
//! # How rows reach the disk
//! One writer thread owns the `rusqlite::Connection`. The request path calls
//! [`UsageLedger::record`], which only pushes the row onto a channel and never
//! waits on the disk. The writer takes every row queued behind the first (up
//! to [`MAX_BATCH`]) and inserts them in one transaction: under load rows are
//! written in batches, at idle each row is committed as it comes.
//!
//! Flushes, queries and close travel down the same channel, so each is handled
//! after every row recorded before it: a query sees everything recorded before
//! it was called, and a flush resolves once those rows are committed.
//!
//! # Durability
//! WAL journal with `synchronous = NORMAL`: a committed row survives the
//! process crashing; a power cut may lose the last few transactions. Rows
//! still queued when the process is killed are lost; a clean shutdown —
//! [`UsageLedger::close`], or dropping the ledger — commits them first.
//!
//! # Schema versions
//! The schema version is SQLite's `user_version`. [`MIGRATIONS`] lists the
//! steps from an empty file; opening applies those the file has not seen, and
//! a file written by a newer build is refused rather than guessed at.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, Row, params, params_from_iter};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// Rows returned by a query when the filter sets no limit.
pub const DEFAULT_LIMIT: usize = 100;
/// Most rows one query returns, whatever the filter asks for.
pub const MAX_LIMIT: usize = 10_000;
/// Most rows the writer inserts in one transaction.
pub const MAX_BATCH: usize = 1_000;
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

const COLUMNS: &str = "time_ms, request_id, consumer, route, target, model, prompt_tokens, completion_tokens, \
     cost, latency_ms, ttft_ms, status, streamed, cached";

/// The key under which requests without a consumer are grouped and counted.
pub const NO_CONSUMER: &str = "-";

/// One AI request the gateway served.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// When the request arrived, in Unix milliseconds.
    pub time_ms: i64,
    /// The gateway's id for the request.
    pub request_id: String,
    /// Who made it, when the request was authenticated.
    pub consumer: Option<String>,
    /// The route that served it.
    pub route: String,
    /// The target (provider) it was sent to.
    pub target: String,
    /// The model that answered.
    pub model: String,
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens in the completion.
    pub completion_tokens: u64,
    /// What the request cost, in the currency of the configured prices.
    pub cost: f64,
    /// From arrival to the last byte of the answer.
    pub latency_ms: u64,
    /// Time to first token, for streamed answers.
    pub ttft_ms: Option<u64>,
    /// The HTTP status answered.
    pub status: u16,
    /// Whether the answer was streamed.
    pub streamed: bool,
    /// Whether the answer came from the cache.
    pub cached: bool,
}

/// The key a report's groups are formed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// One group per consumer; requests without one form the group `-`.
    Consumer,
    /// One group per route.
    Route,
    /// One group per target.
    Target,
    /// One group per model.
    Model,
}

impl GroupBy {
    fn column(self) -> &'static str {
        match self {
            GroupBy::Consumer => "COALESCE(consumer, '-')",
            GroupBy::Route => "route",
            GroupBy::Target => "target",
            GroupBy::Model => "model",
        }
    }
}

/// Which rows a query covers; every field set narrows it. Deserializes from
/// the query string of `GET /usage`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageFilter {
    /// Only this consumer; `-` selects requests without one.
    pub consumer: Option<String>,
    /// Only this route.
    pub route: Option<String>,
    /// Only this target.
    pub target: Option<String>,
    /// Only this model.
    pub model: Option<String>,
    /// Only requests that arrived at or after this time (Unix ms).
    pub since_ms: Option<i64>,
    /// Only requests that arrived before this time (Unix ms).
    pub until_ms: Option<i64>,
    /// Rows returned: [`DEFAULT_LIMIT`] when unset, at most [`MAX_LIMIT`].
    /// Totals and groups always cover every matching row.
    pub limit: Option<usize>,
    /// Also sum the matching rows per key.
    pub group_by: Option<GroupBy>,
}

impl UsageFilter {
    /// The `WHERE` clause (empty when nothing is filtered) and its arguments.
    fn where_clause(&self) -> (String, Vec<Value>) {
        let mut conditions = Vec::new();
        let mut args = Vec::new();
        match self.consumer.as_deref() {
            Some(NO_CONSUMER) => conditions.push("consumer IS NULL"),
            Some(consumer) => {
                conditions.push("consumer = ?");
                args.push(Value::Text(consumer.to_owned()));
            }
            None => {}
        }
        for (column, value) in [
            ("route = ?", &self.route),
            ("target = ?", &self.target),
            ("model = ?", &self.model),
        ] {
            if let Some(value) = value {
                conditions.push(column);
                args.push(Value::Text(value.clone()));
            }
        }
        for (column, value) in [("time_ms >= ?", self.since_ms), ("time_ms < ?", self.until_ms)] {
            if let Some(value) = value {
                conditions.push(column);
                args.push(Value::Integer(value));
            }
        }
        if conditions.is_empty() {
            (String::new(), args)
        } else {
            (format!("WHERE {}", conditions.join(" AND ")), args)
        }
    }
}

/// Sums over a set of rows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UsageTotals {
    /// How many requests.
    pub requests: u64,
    /// Their prompt tokens.
    pub prompt_tokens: u64,
    /// Their completion tokens.
    pub completion_tokens: u64,
    /// Their cost.
    pub cost: f64,
}

/// What a query answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UsageReport {
    /// The matching rows, newest first, at most the filter's limit.
    pub rows: Vec<UsageRecord>,
    /// Sums over every matching row, not only those returned.
    pub totals: UsageTotals,
    /// With `group_by`: sums per key, largest cost first (ties by key).
    pub groups: Vec<(String, UsageTotals)>,
}

/// Why the ledger could not do what was asked. Each names the database file.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// The directory meant to hold the database file is missing.
    #[error("usage ledger {path}: cannot open database: directory {dir} does not exist")]
    MissingDirectory {
        /// The database file.
        path: PathBuf,
        /// Its missing parent directory.
        dir: PathBuf,
    },
    /// SQLite failed at a step named by `what`.
    #[error("usage ledger {path}: {what} failed: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The step that failed, e.g. "opening the database" or "query".
        what: &'static str,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The file was written by a build with a schema this one does not know.
    #[error("usage ledger {path}: schema version {found} is not one this build knows (it knows up to {known})")]
    UnknownSchema {
        /// The database file.
        path: PathBuf,
        /// The file's `user_version`.
        found: i64,
        /// The newest version this build knows.
        known: usize,
    },
    /// Rows recorded since the last flush could not be written and are lost.
    #[error("usage ledger {path}: writing {rows} recorded rows failed, they are lost: {reason}")]
    Write {
        /// The database file.
        path: PathBuf,
        /// How many rows were lost.
        rows: usize,
        /// The last SQLite error.
        reason: String,
    },
    /// The writer thread could not be started.
    #[error("usage ledger {path}: starting the writer thread failed: {source}")]
    Spawn {
        /// The database file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The ledger was closed, or its writer thread has stopped.
    #[error("usage ledger {path}: closed")]
    Closed {
        /// The database file.
        path: PathBuf,
    },
}

type Reply<T> = oneshot::Sender<Result<T, UsageError>>;

/// What the writer thread is asked to do, in the order asked.
enum Command {
    Record(UsageRecord),
    Flush(Reply<()>),
    Query(UsageFilter, Reply<UsageReport>),
    TokensByConsumerSince(i64, Reply<HashMap<String, u64>>),
    Close(Reply<()>),
}

/// The usage ledger. Share it behind an `Arc`; dropping the last one commits
/// every queued row and waits for the writer thread to finish.
pub struct UsageLedger {
    path: PathBuf,
    /// `None` once closed. Held for reading while sending, so `close` cannot
    /// slip in between a sender's check and its send.
    commands: RwLock<Option<mpsc::Sender<Command>>>,
    writer: Option<JoinHandle<()>>,
}

impl UsageLedger {
    /// Open (or create) the ledger at `path` and start its writer thread.
    /// The directory must exist.
    pub fn open(path: &Path) -> Result<UsageLedger, UsageError> {
        let sqlite = |what| {
            move |source| UsageError::Sqlite {
                path: path.to_owned(),
                what,
                source,
            }
        };
        let mut connection = Connection::open(path).map_err(|source| {
            match path.parent().filter(|dir| !dir.as_os_str().is_empty() && !dir.exists()) {
                Some(dir) => UsageError::MissingDirectory {
                    path: path.to_owned(),
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
            tracing::warn!(
                "usage ledger {}: journal mode is {journal}, not WAL; writes may block readers",
                path.display()
            );
        }
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(sqlite("setting synchronous = NORMAL"))?;
        migrate(&mut connection, path)?;

        let (commands, receiver) = mpsc::channel();
        let writer = Writer {
            connection,
            path: path.to_owned(),
            lost: None,
        };
        let handle = std::thread::Builder::new()
            .name("weir-usage-ledger".into())
            .spawn(move || writer.run(receiver))
            .map_err(|source| UsageError::Spawn {
                path: path.to_owned(),
                source,
            })?;
        Ok(UsageLedger {
            path: path.to_owned(),
            commands: RwLock::new(Some(commands)),
            writer: Some(handle),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queue a row for the writer. Never waits on the disk. If the ledger is
    /// closed or its writer has stopped, logs a warning naming the request.
    pub fn record(&self, record: UsageRecord) {
        let commands = self.commands.read().unwrap_or_else(PoisonError::into_inner);
        let refused = match commands.as_ref() {
            None => record,
            Some(sender) => match sender.send(Command::Record(record)) {
                Ok(()) => return,
                Err(mpsc::SendError(Command::Record(record))) => record,
                Err(mpsc::SendError(_)) => return,
            },
        };
        tracing::warn!(
            "usage ledger {}: closed; usage of request {} not recorded",
            self.path.display(),
            refused.request_id
        );
    }

    /// Resolves when every row recorded before the call is committed. Fails
    /// if some of those rows could not be written (they are lost; the error
    /// is reported once).
    pub async fn flush(&self) -> Result<(), UsageError> {
        self.ask(Command::Flush).await
    }

    /// Rows, totals and groups matching `filter`, over every row recorded
    /// before the call.
    pub async fn query(&self, filter: UsageFilter) -> Result<UsageReport, UsageError> {
        self.ask(|reply| Command::Query(filter, reply)).await
    }

    /// Prompt plus completion tokens per consumer (`-` for requests without
    /// one) over requests that arrived at or after `since_ms`: what budgets
    /// restore after a restart.
    pub async fn tokens_by_consumer_since(&self, since_ms: i64) -> Result<HashMap<String, u64>, UsageError> {
        self.ask(|reply| Command::TokensByConsumerSince(since_ms, reply)).await
    }

    /// Commit every queued row, close the database and stop the writer.
    /// Later `record` calls only warn; later queries fail with `Closed`.
    /// Closing twice is harmless.
    pub async fn close(&self) -> Result<(), UsageError> {
        let sender = self.commands.write().unwrap_or_else(PoisonError::into_inner).take();
        let Some(sender) = sender else {
            return Ok(());
        };
        let (reply, answer) = oneshot::channel();
        let sent = sender.send(Command::Close(reply));
        drop(sender);
        if sent.is_err() {
            return Err(self.closed());
        }
        answer.await.unwrap_or_else(|_| Err(self.closed()))
    }

    async fn ask<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, UsageError> {
        let (reply, answer) = oneshot::channel();
        {
            let commands = self.commands.read().unwrap_or_else(PoisonError::into_inner);
            let sender = commands.as_ref().ok_or_else(|| self.closed())?;
            sender.send(command(reply)).map_err(|_| self.closed())?;
        }
        answer.await.unwrap_or_else(|_| Err(self.closed()))
    }

    fn closed(&self) -> UsageError {
        UsageError::Closed {
            path: self.path.clone(),
        }
    }
}

impl Drop for UsageLedger {
    fn drop(&mut self) {
        // Hanging up lets the writer drain the queue, commit it and exit.
        drop(self.commands.get_mut().unwrap_or_else(PoisonError::into_inner).take());
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!(
                "usage ledger {}: the writer thread panicked; queued rows may be lost",
                self.path.display()
            );
        }
    }
}

/// Bring the schema up to date, one transaction per step.
fn migrate(connection: &mut Connection, path: &Path) -> Result<(), UsageError> {
    let sqlite = |what| {
        move |source| UsageError::Sqlite {
            path: path.to_owned(),
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
            path: path.to_owned(),
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

/// Rows that could not be written since the last flush.
struct Lost {
    rows: usize,
    reason: String,
}

/// The writer thread's state: the only user of the connection.
struct Writer {
    connection: Connection,
    path: PathBuf,
    lost: Option<Lost>,
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
                    let _ = reply.send(self.take_lost());
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
                self.path.display(),
                batch.len()
            );
            let lost = self.lost.get_or_insert(Lost {
                rows: 0,
                reason: String::new(),
            });
            lost.rows += batch.len();
            lost.reason = e.to_string();
        }
        batch.clear();
    }

    fn take_lost(&mut self) -> Result<(), UsageError> {
        match self.lost.take() {
            None => Ok(()),
            Some(Lost { rows, reason }) => Err(UsageError::Write {
                path: self.path.clone(),
                rows,
                reason,
            }),
        }
    }

    fn error(&self, what: &'static str, source: rusqlite::Error) -> UsageError {
        UsageError::Sqlite {
            path: self.path.clone(),
            what,
            source,
        }
    }

    /// Report rows lost since the last flush, then close the database.
    fn finish(mut self) -> Result<(), UsageError> {
        let lost = self.take_lost();
        let path = self.path;
        self.connection.close().map_err(|(_, source)| UsageError::Sqlite {
            path,
            what: "closing the database",
            source,
        })?;
        lost
    }
}

/// SQLite integers are signed; counts beyond `i64::MAX` are clamped.
fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
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
    let (conditions, args) = filter.where_clause();
    let limit = filter.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);

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
    use std::sync::Arc;

    use super::*;

    fn ledger(dir: &tempfile::TempDir) -> UsageLedger {
        UsageLedger::open(&dir.path().join("usage.db")).expect("open ledger")
    }

    /// A served request: `consumer` may be `None`. Costs are multiples of
    /// 1/1024 so that sums are exact.
    fn request(time_ms: i64, consumer: Option<&str>, route: &str, model: &str, tokens: u64) -> UsageRecord {
        UsageRecord {
            time_ms,
            request_id: format!("req-{time_ms}"),
            consumer: consumer.map(str::to_owned),
            route: route.to_owned(),
            target: format!("{model}-provider"),
            model: model.to_owned(),
            prompt_tokens: tokens,
            completion_tokens: tokens * 2,
            cost: (tokens * 3) as f64 / 1024.0,
            latency_ms: 120,
            ttft_ms: Some(30),
            status: 200,
            streamed: true,
            cached: false,
        }
    }

    fn ids(report: &UsageReport) -> Vec<i64> {
        report.rows.iter().map(|row| row.time_ms).collect()
    }

    /// Five requests: alice ×2, bob ×2, one without a consumer.
    fn record_five(ledger: &UsageLedger) {
        ledger.record(request(1, Some("alice"), "chat", "gpt", 100));
        ledger.record(request(2, Some("bob"), "chat", "claude", 200));
        ledger.record(request(3, Some("alice"), "embed", "gpt", 300));
        ledger.record(request(4, None, "chat", "gpt", 400));
        ledger.record(request(5, Some("bob"), "embed", "claude", 500));
    }

    #[tokio::test]
    async fn each_filter_narrows_the_rows_and_totals() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(&dir);
        record_five(&ledger);
        let query = |filter: UsageFilter| ledger.query(filter);

        let all = query(UsageFilter::default()).await.unwrap();
        assert_eq!(ids(&all), [5, 4, 3, 2, 1], "newest first");
        assert_eq!(
            all.totals,
            UsageTotals {
                requests: 5,
                prompt_tokens: 1500,
                completion_tokens: 3000,
                cost: 4500.0 / 1024.0
            }
        );
        assert_eq!(
            all.rows[1],
            request(4, None, "chat", "gpt", 400),
            "every field round-trips"
        );

        let by = |f: fn(&mut UsageFilter)| {
            let mut filter = UsageFilter::default();
            f(&mut filter);
            filter
        };
        let alice = query(by(|f| f.consumer = Some("alice".into()))).await.unwrap();
        assert_eq!(ids(&alice), [3, 1]);
        assert_eq!(alice.totals.prompt_tokens, 400);
        let anonymous = query(by(|f| f.consumer = Some("-".into()))).await.unwrap();
        assert_eq!(ids(&anonymous), [4]);
        let embed = query(by(|f| f.route = Some("embed".into()))).await.unwrap();
        assert_eq!(ids(&embed), [5, 3]);
        let claude_target = query(by(|f| f.target = Some("claude-provider".into()))).await.unwrap();
        assert_eq!(ids(&claude_target), [5, 2]);
        let gpt = query(by(|f| f.model = Some("gpt".into()))).await.unwrap();
        assert_eq!(ids(&gpt), [4, 3, 1]);
        let window = query(by(|f| {
            f.since_ms = Some(2);
            f.until_ms = Some(4)
        }))
        .await
        .unwrap();
        assert_eq!(ids(&window), [3, 2], "since is inclusive, until exclusive");
        assert_eq!(window.totals.requests, 2);
        let combined = query(by(|f| {
            f.consumer = Some("bob".into());
            f.route = Some("chat".into())
        }))
        .await
        .unwrap();
        assert_eq!(ids(&combined), [2]);
        let nothing = query(by(|f| f.model = Some("none".into()))).await.unwrap();
        assert!(nothing.rows.is_empty());
        assert_eq!(nothing.totals, UsageTotals::default());
    }

    #[tokio::test]
    async fn group_by_sums_per_key_largest_cost_first() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(&dir);
        record_five(&ledger);
        let grouped = |group_by| {
            ledger.query(UsageFilter {
                group_by: Some(group_by),
                ..UsageFilter::default()
            })
        };
        let keys = |report: &UsageReport| report.groups.iter().map(|(key, _)| key.clone()).collect::<Vec<_>>();

        let consumers = grouped(GroupBy::Consumer).await.unwrap();
        // alice and the anonymous requests tie on cost; ties go by key.
        assert_eq!(keys(&consumers), ["bob", "-", "alice"]);
        assert_eq!(
            consumers.groups[0].1,
            UsageTotals {
                requests: 2,
                prompt_tokens: 700,
                completion_tokens: 1400,
                cost: 2100.0 / 1024.0
            }
        );
        assert_eq!(consumers.groups[1].1.requests, 1);
        assert_eq!(keys(&grouped(GroupBy::Route).await.unwrap()), ["embed", "chat"]);
        assert_eq!(
            keys(&grouped(GroupBy::Target).await.unwrap()),
            ["gpt-provider", "claude-provider"]
        );
        let models = grouped(GroupBy::Model).await.unwrap();
        assert_eq!(keys(&models), ["gpt", "claude"]);
        assert_eq!(models.groups[0].1.requests, 3);
        assert!(ledger.query(UsageFilter::default()).await.unwrap().groups.is_empty());
    }

    #[tokio::test]
    async fn limit_caps_rows_but_totals_cover_every_match() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(&dir);
        for time in 0..250 {
            ledger.record(request(time, Some("alice"), "chat", "gpt", 10));
        }
        let default = ledger.query(UsageFilter::default()).await.unwrap();
        assert_eq!(default.rows.len(), DEFAULT_LIMIT);
        assert_eq!(default.rows[0].time_ms, 249);
        assert_eq!(default.totals.requests, 250);
        assert_eq!(default.totals.prompt_tokens, 2500);
        let three = ledger
            .query(UsageFilter {
                limit: Some(3),
                group_by: Some(GroupBy::Consumer),
                ..UsageFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(ids(&three), [249, 248, 247]);
        assert_eq!(three.totals.requests, 250);
        assert_eq!(three.groups[0].1.requests, 250);
        let huge = ledger
            .query(UsageFilter {
                limit: Some(usize::MAX),
                ..UsageFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(huge.rows.len(), 250, "a huge limit is clamped, not an error");
    }

    #[tokio::test]
    async fn rows_survive_close_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let first = ledger(&dir);
        record_five(&first);
        first.close().await.unwrap();
        first.close().await.unwrap();
        first.record(request(6, Some("alice"), "chat", "gpt", 1));
        assert!(matches!(first.flush().await, Err(UsageError::Closed { .. })));
        drop(first);

        let second = ledger(&dir);
        let report = second.query(UsageFilter::default()).await.unwrap();
        assert_eq!(
            ids(&report),
            [5, 4, 3, 2, 1],
            "the row recorded after close is not there"
        );
        second.record(request(7, Some("alice"), "chat", "gpt", 1));
        assert_eq!(second.query(UsageFilter::default()).await.unwrap().totals.requests, 6);
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ten_thousand_records_from_eight_threads_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Arc::new(ledger(&dir));
        std::thread::scope(|scope| {
            for thread in 0..8 {
                let ledger = &ledger;
                scope.spawn(move || {
                    for i in 0..1_250 {
                        let consumer = format!("consumer-{thread}");
                        ledger.record(request(thread * 10_000 + i, Some(&consumer), "chat", "gpt", 1));
                    }
                });
            }
        });
        ledger.flush().await.unwrap();
        let report = ledger
            .query(UsageFilter {
                limit: Some(MAX_LIMIT),
                group_by: Some(GroupBy::Consumer),
                ..UsageFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(report.totals.requests, 10_000);
        assert_eq!(report.rows.len(), 10_000);
        assert_eq!(report.groups.len(), 8);
        assert!(report.groups.iter().all(|(_, totals)| totals.requests == 1_250));
        ledger.close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_query_while_recording_sees_every_row_recorded_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Arc::new(ledger(&dir));
        let writer = {
            let ledger = ledger.clone();
            std::thread::spawn(move || {
                for time in 0..20_000 {
                    ledger.record(request(time, Some("alice"), "chat", "gpt", 1));
                }
            })
        };
        let mut seen = 0;
        while !writer.is_finished() {
            let report = ledger.query(UsageFilter::default()).await.unwrap();
            assert!(report.totals.requests >= seen, "counts only grow");
            seen = report.totals.requests;
        }
        writer.join().unwrap();
        // Recorded before this call, so this query must see all of them.
        let report = ledger.query(UsageFilter::default()).await.unwrap();
        assert_eq!(report.totals.requests, 20_000);
    }

    #[tokio::test]
    async fn tokens_by_consumer_since_sums_prompt_and_completion() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(&dir);
        record_five(&ledger);
        let spent = ledger.tokens_by_consumer_since(2).await.unwrap();
        assert_eq!(
            spent,
            HashMap::from([("bob".into(), 2100), ("alice".into(), 900), ("-".into(), 1200)])
        );
        assert!(ledger.tokens_by_consumer_since(100).await.unwrap().is_empty());
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

    #[test]
    fn filter_reads_query_keys_and_refuses_unknown_ones() {
        let filter: UsageFilter = serde_json::from_value(serde_json::json!({
            "consumer": "alice", "route": "chat", "target": "openai", "model": "gpt",
            "since_ms": 1, "until_ms": 2, "limit": 10, "group_by": "model"
        }))
        .unwrap();
        assert_eq!(filter.group_by, Some(GroupBy::Model));
        assert_eq!(filter.limit, Some(10));
        let unknown = serde_json::from_value::<UsageFilter>(serde_json::json!({ "customer": "alice" }));
        assert!(unknown.unwrap_err().to_string().contains("customer"));
        assert!(serde_json::from_value::<UsageFilter>(serde_json::json!({ "group_by": "colour" })).is_err());
    }

    #[tokio::test]
    async fn report_serializes_as_json() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(&dir);
        ledger.record(request(1, None, "chat", "gpt", 10));
        let report = ledger
            .query(UsageFilter {
                group_by: Some(GroupBy::Consumer),
                ..UsageFilter::default()
            })
            .await
            .unwrap();
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["rows"][0]["consumer"], serde_json::Value::Null);
        assert_eq!(json["totals"]["requests"], 1);
        assert_eq!(json["groups"][0][0], "-");
    }
}
