//! The usage ledger: one row per AI request the gateway served, kept so that
//! spend survives restarts. The admin API answers `GET /usage` from it, and
//! budgets read back each consumer's spend from it after a restart.
//!
//! # Stores
//! [`UsageStore`] says where the rows go:
//! - a SQLite file (`sqlite.rs`), the default: each gateway keeps its own;
//! - a PostgreSQL database (`postgres.rs`) that several gateways share, so
//!   that one query on any of them sums what all of them served. Each row
//!   there also names the gateway that wrote it (`instance`).
//!
//! # How rows reach the store
//! The request path calls [`UsageLedger::record`], which only queues the row
//! and never waits on the store. One worker owns the connection — a thread
//! for SQLite, a tokio task for PostgreSQL — takes every row queued behind
//! the first (up to [`MAX_BATCH`]) and writes them in one transaction: under
//! load rows are written in batches, at idle each row is committed as it
//! comes.
//!
//! Flushes, queries and close travel down the same queue, so each is handled
//! after every row recorded before it: a query sees everything this gateway
//! recorded before it was called, and a flush resolves once those rows are
//! committed. (Other gateways sharing a PostgreSQL store write on their own
//! schedule.)
//!
//! # Schema versions
//! Each store counts the schema steps it has applied (SQLite's
//! `user_version`; PostgreSQL's `weir_schema` table); opening applies those
//! it has not seen, and a store written by a newer build is refused rather
//! than guessed at.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock, mpsc};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;

pub use postgres::{MAX_QUEUED, PostgresStore, redact_url};
pub use weir_config::usage::UsageStore;

/// Rows returned by a query when the filter sets no limit.
pub const DEFAULT_LIMIT: usize = 100;
/// Most rows one query returns, whatever the filter asks for.
pub const MAX_LIMIT: usize = 10_000;
/// Most rows the writer inserts in one transaction.
pub const MAX_BATCH: usize = 1_000;

/// The columns of a row, in [`UsageRecord`]'s order, in both stores.
const COLUMNS: &str = "time_ms, request_id, consumer, route, target, model, prompt_tokens, completion_tokens, \
     cost, latency_ms, ttft_ms, status, streamed, cached";

/// The key under which requests without a consumer are grouped and counted.
pub const NO_CONSUMER: &str = "-";

pub use weir_observe::UsageRecord;

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
    /// The grouping key as an SQL expression both stores understand.
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

/// A value a filter compares a column with, bound as a statement parameter.
#[derive(Debug, Clone, PartialEq)]
enum Arg {
    Text(String),
    Integer(i64),
}

impl UsageFilter {
    /// The `WHERE` clause (empty when nothing is filtered) and its
    /// arguments; `placeholder(n)` writes the n-th parameter (from 1) in the
    /// store's dialect (`?` or `$n`).
    fn where_clause(&self, placeholder: impl Fn(usize) -> String) -> (String, Vec<Arg>) {
        let mut conditions = Vec::new();
        let mut args = Vec::new();
        if self.consumer.as_deref() == Some(NO_CONSUMER) {
            conditions.push("consumer IS NULL".to_owned());
        }
        let mut compare = |column: &str, arg: Arg| {
            args.push(arg);
            conditions.push(format!("{column} {}", placeholder(args.len())));
        };
        if let Some(consumer) = self.consumer.as_deref().filter(|c| *c != NO_CONSUMER) {
            compare("consumer =", Arg::Text(consumer.to_owned()));
        }
        for (column, value) in [
            ("route =", &self.route),
            ("target =", &self.target),
            ("model =", &self.model),
        ] {
            if let Some(value) = value {
                compare(column, Arg::Text(value.clone()));
            }
        }
        for (column, value) in [("time_ms >=", self.since_ms), ("time_ms <", self.until_ms)] {
            if let Some(value) = value {
                compare(column, Arg::Integer(value));
            }
        }
        if conditions.is_empty() {
            (String::new(), args)
        } else {
            (format!("WHERE {}", conditions.join(" AND ")), args)
        }
    }

    /// The rows a query returns: the filter's limit, clamped.
    fn row_limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT)
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

/// Why the ledger could not do what was asked. Each names the store: the
/// database file, or the URL without its password.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// The directory meant to hold the database file is missing.
    #[error("usage ledger {store}: cannot open database: directory {dir} does not exist")]
    MissingDirectory {
        /// The store.
        store: String,
        /// Its missing parent directory.
        dir: PathBuf,
    },
    /// The file is there but cannot be used as the usage database.
    #[error("usage ledger {store}: {reason}")]
    Unusable {
        /// The store.
        store: String,
        /// Why, e.g. "not a SQLite database".
        reason: String,
    },
    /// SQLite failed at a step named by `what`.
    #[error("usage ledger {store}: {what} failed: {source}")]
    Sqlite {
        /// The store.
        store: String,
        /// The step that failed, e.g. "opening the database" or "query".
        what: &'static str,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The PostgreSQL server could not be reached, or refused the login.
    #[error("usage ledger {store}: cannot connect: {reason}")]
    Connect {
        /// The store.
        store: String,
        /// Why, e.g. "connection refused" or the server's refusal.
        reason: String,
    },
    /// PostgreSQL failed at a step named by `what`.
    #[error("usage ledger {store}: {what} failed: {reason}")]
    Postgres {
        /// The store.
        store: String,
        /// The step that failed, e.g. "migrating the schema" or "query".
        what: &'static str,
        /// What the server or the connection said.
        reason: String,
    },
    /// The connection to PostgreSQL is down; the ledger keeps reconnecting
    /// (and keeps recorded rows until it is back).
    #[error("usage ledger {store}: not connected (reconnecting): {reason}")]
    Unavailable {
        /// The store.
        store: String,
        /// Why the last attempt failed.
        reason: String,
    },
    /// The store was written by a build with a schema this one does not know.
    #[error("usage ledger {store}: schema version {found} is not one this build knows (it knows up to {known})")]
    UnknownSchema {
        /// The store.
        store: String,
        /// The store's schema version.
        found: i64,
        /// The newest version this build knows.
        known: usize,
    },
    /// Rows recorded since the last flush could not be written and are lost.
    #[error("usage ledger {store}: writing {rows} recorded rows failed, they are lost: {reason}")]
    Write {
        /// The store.
        store: String,
        /// How many rows were lost.
        rows: usize,
        /// The last error.
        reason: String,
    },
    /// The writer thread could not be started.
    #[error("usage ledger {store}: starting the writer thread failed: {source}")]
    Spawn {
        /// The store.
        store: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The ledger was closed, or its writer has stopped.
    #[error("usage ledger {store}: closed")]
    Closed {
        /// The store.
        store: String,
    },
}

type Reply<T> = oneshot::Sender<Result<T, UsageError>>;

/// What the writer is asked to do, in the order asked.
enum Command {
    Record(UsageRecord),
    Flush(Reply<()>),
    Query(UsageFilter, Reply<UsageReport>),
    TokensByConsumerSince(i64, Reply<HashMap<String, u64>>),
    Close(Reply<()>),
}

/// Rows that could not be written since the last flush.
struct Lost {
    rows: usize,
    reason: String,
}

/// Counts rows lost until a flush reports them.
#[derive(Default)]
struct LostRows(Option<Lost>);

impl LostRows {
    fn add(&mut self, rows: usize, reason: String) {
        let lost = self.0.get_or_insert(Lost {
            rows: 0,
            reason: String::new(),
        });
        lost.rows += rows;
        lost.reason = reason;
    }

    /// `Ok` if nothing was lost since the last call, else the count.
    fn take(&mut self, store: &str) -> Result<(), UsageError> {
        match self.0.take() {
            None => Ok(()),
            Some(Lost { rows, reason }) => Err(UsageError::Write {
                store: store.to_owned(),
                rows,
                reason,
            }),
        }
    }
}

/// The way to the worker that owns the store's connection.
enum Sender {
    /// SQLite's writer thread.
    Thread(mpsc::Sender<Command>),
    /// PostgreSQL's writer task, behind its bounded queue.
    Task(postgres::Sender),
}

impl Sender {
    /// Hand `command` to the worker; gives it back (boxed: the rare path)
    /// if the worker has stopped.
    fn send(&self, command: Command) -> Result<(), Box<Command>> {
        match self {
            Sender::Thread(sender) => sender
                .send(command)
                .map_err(|mpsc::SendError(command)| Box::new(command)),
            Sender::Task(sender) => sender.send(command),
        }
    }
}

/// The usage ledger. Share it behind an `Arc`. Dropping the last one of a
/// SQLite ledger commits every queued row and waits for the writer thread;
/// a PostgreSQL ledger's task writes what is queued on its own, as long as
/// the runtime runs — call [`UsageLedger::close`] to wait for it.
pub struct UsageLedger {
    store: UsageStore,
    /// `None` once closed. Held for reading while sending, so `close` cannot
    /// slip in between a sender's check and its send.
    commands: RwLock<Option<Sender>>,
    /// SQLite's writer thread.
    writer: Option<JoinHandle<()>>,
}

impl UsageLedger {
    /// Open (or create) a SQLite ledger at `path` and start its writer
    /// thread. The directory must exist.
    pub fn open(path: &Path) -> Result<UsageLedger, UsageError> {
        let store = UsageStore::Sqlite(path.to_owned());
        let (commands, writer) = sqlite::open(path, &store.to_string())?;
        Ok(UsageLedger {
            store,
            commands: RwLock::new(Some(Sender::Thread(commands))),
            writer: Some(writer),
        })
    }

    /// Check, creating and changing nothing, that the ledger `store`
    /// names could be opened (for `weir check`): a SQLite file's directory
    /// exists, and the file, if there, is a database of a schema this
    /// build knows. A PostgreSQL store is not connected to (connecting
    /// brings its schema up to date, a write); its settings were checked
    /// with the config.
    pub fn check_store(store: &UsageStore) -> Result<(), UsageError> {
        match store {
            UsageStore::Sqlite(path) => sqlite::check(path, &store.to_string()),
            UsageStore::Postgres(_) => Ok(()),
        }
    }

    /// Open the ledger `store` names: a SQLite file as [`UsageLedger::open`]
    /// does, or a PostgreSQL database — connect (failing within a few
    /// seconds if the server cannot be reached or refuses the login), bring
    /// its schema up to date and start the task that writes to it. Call it
    /// within a tokio runtime.
    pub async fn open_store(store: &UsageStore) -> Result<UsageLedger, UsageError> {
        match store {
            UsageStore::Sqlite(path) => UsageLedger::open(path),
            UsageStore::Postgres(postgres) => {
                let commands = postgres::open(postgres, MAX_QUEUED).await?;
                Ok(UsageLedger {
                    store: store.clone(),
                    commands: RwLock::new(Some(Sender::Task(commands))),
                    writer: None,
                })
            }
        }
    }

    /// Where the rows are kept.
    pub fn store(&self) -> &UsageStore {
        &self.store
    }

    /// Queue a row for the writer. Never waits on the store. If the ledger
    /// is closed or its writer has stopped, logs a warning naming the
    /// request. (A PostgreSQL ledger whose queue is full drops the row and
    /// counts it; see `postgres.rs`.)
    pub fn record(&self, record: UsageRecord) {
        let commands = self.commands.read().unwrap_or_else(PoisonError::into_inner);
        let refused = match commands.as_ref() {
            None => record,
            Some(sender) => match sender.send(Command::Record(record)).map_err(|command| *command) {
                Ok(()) => return,
                Err(Command::Record(record)) => record,
                Err(_) => return,
            },
        };
        tracing::warn!(
            "usage ledger {}: closed; usage of request {} not recorded",
            self.store,
            refused.request_id
        );
    }

    /// Resolves when every row recorded before the call is committed. Fails
    /// if some of those rows could not be written (they are lost; the error
    /// is reported once). While a PostgreSQL server is away this waits for
    /// it to return.
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

    /// Commit every queued row, close the store and stop the writer.
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
            store: self.store.to_string(),
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
                self.store
            );
        }
    }
}

/// Stores keep counts as signed 64-bit integers; larger ones are clamped.
fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
