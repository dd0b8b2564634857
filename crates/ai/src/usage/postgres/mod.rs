//! The PostgreSQL usage store: one database several gateways share, so that
//! `GET /usage` on any of them sums what all of them served.
//!
//! # The writer task
//! One tokio task owns the connection. `UsageLedger::record` puts the row
//! on the task's queue and returns; at most [`MAX_QUEUED`] rows wait there
//! unwritten. A row recorded when the queue is full is dropped and counted:
//! the task logs the count (summed, at most every 10 s) and the next
//! flush reports those rows as lost. The request path never waits.
//!
//! The task writes the rows it holds in batches of up to `MAX_BATCH`, each
//! one `INSERT … SELECT … FROM UNNEST(…)` statement — one round trip, and
//! one transaction, per batch.
//!
//! # When the server goes away
//! A write that fails because the connection broke, the server is shutting
//! down or short of resources, or the table is missing keeps its rows: the
//! task drops the connection and reconnects with backoff
//! (100 ms doubling to 5 s, jittered so that gateways
//! do not retry in step), then writes the waiting rows in order. It also
//! notices a connection that breaks while idle and reconnects at once.
//! Meanwhile queries fail at once with `UsageError::Unavailable`, flushes
//! wait, and rows queue up to the bound. Closing waits up to 5 s for the
//! server and reports what it could not write.
//!
//! A batch the server refuses for what it holds (a data or constraint
//! error) would be refused again: it is dropped, logged and reported as
//! lost, as SQLite does. If the connection breaks after the server
//! committed a batch but before its answer arrived, the batch is written
//! again: that narrow window can count a batch twice.
//!
//! # Schema
//! `weir_schema (name, version)` holds a row `usage` counting the steps of
//! `MIGRATIONS` applied. Every connect applies the missing steps in one
//! transaction that holds an advisory lock, so gateways starting together
//! do not race, and refuses a database whose version is newer than this
//! build knows. The `usage` table has SQLite's columns as `BIGINT`,
//! `TEXT`, `DOUBLE PRECISION` and `BOOLEAN`, plus `instance`: the gateway
//! that wrote the row — `[ai] usage_instance` if set, else `HOSTNAME:PID`.
//!
//! # TLS
//! The URL's `sslmode` (libpq's values, `prefer` by default) and `[ai]
//! usage_db_ca` decide whether the connection is encrypted and which
//! certificates are trusted; see `tls.rs`. The rustls client is built once
//! when the ledger opens and reused by every reconnection.
//!
//! The task lives in `writer.rs`; the connection, the schema and the SQL in
//! `connection.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Command, UsageError};

mod connection;
mod tls;
mod writer;

/// Most rows waiting to be written (in the queue and in the task) before
/// further rows are dropped: about 30 MB of rows, or some minutes of heavy
/// traffic while the server is away.
pub const MAX_QUEUED: usize = 100_000;
/// Time allowed to connect, log in and bring the schema up to date.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub use weir_config::usage::{PostgresStore, redact_url};

/// What an error from tokio-postgres says, for a person: the server's
/// message for a refusal, else the failure and its cause.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    match std::error::Error::source(e) {
        Some(source) => format!("{e}: {source}"),
        None => e.to_string(),
    }
}

/// Whether a failed write should keep its rows and try again on a new
/// connection: yes unless the server refused the rows themselves (data
/// exceptions, integrity violations) or the statement could not be built.
fn keeps_rows(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        Some(code) => !matches!(&code.code()[..2], "22" | "23"),
        None => e.is_closed(),
    }
}

/// Whether the connection is no use after `e`.
fn breaks_connection(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        // Connection exceptions, operator intervention, resources.
        Some(code) => matches!(&code.code()[..2], "08" | "57" | "53"),
        None => e.is_closed(),
    }
}

/// The rows handed to the task and not yet written, against the bound.
struct Queue {
    waiting: AtomicUsize,
    dropped: AtomicU64,
    capacity: usize,
}

/// The way to the writer task.
pub(super) struct Sender {
    commands: mpsc::UnboundedSender<Command>,
    queue: Arc<Queue>,
}

impl Sender {
    /// Hand `command` to the task; gives it back if the task has stopped.
    /// A row that would pass the queue's bound is dropped and counted.
    pub(super) fn send(&self, command: Command) -> Result<(), Box<Command>> {
        let record = matches!(command, Command::Record(_));
        if record {
            let capacity = self.queue.capacity;
            let admitted = self
                .queue
                .waiting
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |waiting| {
                    (waiting < capacity).then_some(waiting + 1)
                })
                .is_ok();
            if !admitted {
                self.queue.dropped.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        }
        self.commands.send(command).map_err(|mpsc::error::SendError(command)| {
            if record {
                self.queue.waiting.fetch_sub(1, Ordering::AcqRel);
            }
            Box::new(command)
        })
    }
}

/// Connect to `store`, bring its schema up to date and start the writer
/// task, whose queue holds at most `capacity` unwritten rows.
pub(super) async fn open(store: &PostgresStore, capacity: usize) -> Result<Sender, UsageError> {
    let mut config: tokio_postgres::Config = store.url().parse().map_err(|e| UsageError::Connect {
        store: store.shown().to_owned(),
        reason: describe(&e),
    })?;
    config.connect_timeout(CONNECT_TIMEOUT);
    if config.get_application_name().is_none() {
        config.application_name("weir");
    }
    let tls = tls::connector(store.tls()).map_err(|reason| UsageError::Connect {
        store: store.shown().to_owned(),
        reason,
    })?;
    let dial = connection::Dial {
        config,
        tls,
        settings: store.tls().clone(),
    };
    let connection = connection::connect(dial.clone(), store.shown().to_owned()).await?;
    let (commands, receiver) = mpsc::unbounded_channel();
    let queue = Arc::new(Queue {
        waiting: AtomicUsize::new(0),
        dropped: AtomicU64::new(0),
        capacity,
    });
    writer::start(dial, store, queue.clone(), connection, receiver);
    Ok(Sender { commands, queue })
}

/// The PostgreSQL server the integration tests use, for these tests too.
#[cfg(test)]
use weir_testing::postgres as test_server;

#[cfg(test)]
mod tests {
    use std::sync::RwLock;

    use super::super::tests::{checks, request};
    use super::super::{UsageLedger, UsageStore};
    use super::*;
    use weir_config::usage::SslMode;

    use super::test_server::PostgresServer;

    fn store(url: &str) -> UsageStore {
        UsageStore::Postgres(PostgresStore::new(url, "test-instance", None).expect("store"))
    }

    /// A ledger on `store` whose queue holds at most `capacity` rows.
    async fn ledger_with_capacity(store: &UsageStore, capacity: usize) -> UsageLedger {
        let UsageStore::Postgres(postgres) = store else {
            panic!("not a PostgreSQL store")
        };
        let sender = open(postgres, capacity).await.expect("open ledger");
        UsageLedger {
            store: store.clone(),
            commands: RwLock::new(Some(super::super::Sender::Task(sender))),
            writer: None,
        }
    }

    #[test]
    fn redact_url_hides_the_password_wherever_it_is() {
        for (url, shown) in [
            ("postgres://weir:pw@db:5432/usage", "postgres://weir:***@db:5432/usage"),
            ("postgresql://weir@db/usage", "postgresql://weir@db/usage"),
            ("postgres://db/usage", "postgres://db/usage"),
            // tokio-postgres ends the user information at the first `@`.
            ("postgres://weir:p/a?s:s@db/usage", "postgres://weir:***@db/usage"),
            (
                "postgres://db/usage?user=weir&password=pw&sslmode=disable",
                "postgres://db/usage?user=weir&password=***&sslmode=disable",
            ),
            ("usage.db", "usage.db"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn a_bad_url_is_refused_without_its_password() {
        for url in [
            "postgres://weir:hunter2@db:notaport/usage",
            "postgres://weir:hunter2@db/usage?sslmode=allow",
            "postgres://weir:hunter2@db/usage?bogus=1",
        ] {
            let error = PostgresStore::new(url, "a", None).expect_err(url);
            assert!(error.contains("weir:***@db"), "{error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
        let error = PostgresStore::new(
            "postgres://weir:hunter2@db/usage?sslmode=disable",
            "a",
            Some("ca.pem".into()),
        )
        .unwrap_err();
        assert!(
            error.contains("ai.usage_db_ca") && !error.contains("hunter2"),
            "{error}"
        );
        let store = PostgresStore::new("postgres://weir:hunter2@db/usage?sslmode=verify-full", "a", None).unwrap();
        assert_eq!(store.ssl_mode(), SslMode::VerifyFull);
        let store = PostgresStore::new("postgres://weir:hunter2@db/usage", "a", None).unwrap();
        assert!(!format!("{store:?}").contains("hunter2"));
        assert!(!format!("{:?}", UsageStore::Postgres(store.clone())).contains("hunter2"));
        assert_eq!(UsageStore::Postgres(store).to_string(), "postgres://weir:***@db/usage");
        assert!(PostgresStore::default_instance().ends_with(&format!(":{}", std::process::id())));
    }

    /// The checks every store passes, each on a fresh database of one
    /// server: the same filters, groups, limits and ordering as SQLite.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_postgres_store_answers_every_check_like_sqlite() {
        let server = PostgresServer::start().await;
        let mut next = 0;
        let mut fresh = async || {
            next += 1;
            store(&server.create_database(&format!("check{next}")).await)
        };
        checks::each_filter_narrows_the_rows_and_totals(&fresh().await).await;
        checks::group_by_sums_per_key_largest_cost_first(&fresh().await).await;
        checks::limit_caps_rows_but_totals_cover_every_match(&fresh().await).await;
        checks::rows_survive_close_and_reopen(&fresh().await).await;
        checks::ten_thousand_records_from_eight_threads_all_land(&fresh().await).await;
        checks::a_query_while_recording_sees_every_row_recorded_before_it(&fresh().await).await;
        checks::tokens_by_consumer_since_sums_prompt_and_completion(&fresh().await).await;
        checks::report_serializes_as_json(&fresh().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gateways_opening_an_empty_database_together_migrate_it_once() {
        let server = PostgresServer::start().await;
        let store = store(&server.create_database("usage").await);
        let ledgers = futures_util::future::join_all((0..4).map(|_| UsageLedger::open_store(&store))).await;
        let ledgers: Vec<UsageLedger> = ledgers.into_iter().map(|l| l.expect("open")).collect();
        for (i, ledger) in ledgers.iter().enumerate() {
            ledger.record(request(i as i64, Some("alice"), "chat", "gpt", 1));
            ledger.flush().await.unwrap();
        }
        let report = ledgers[0].query(Default::default()).await.unwrap();
        assert_eq!(report.totals.requests, 4);
        let client = server.client("usage").await;
        let row = client
            .query_one(
                "SELECT version, (SELECT COUNT(DISTINCT instance) FROM usage) FROM weir_schema WHERE name = 'usage'",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), connection::MIGRATIONS.len() as i64);
        assert_eq!(row.get::<_, i64>(1), 1, "every row names the instance");
        for ledger in ledgers {
            ledger.close().await.unwrap();
        }
    }

    #[tokio::test]
    async fn the_url_can_put_the_tables_in_a_schema_of_their_own() {
        let server = PostgresServer::start().await;
        let url = server.create_database("shared").await;
        let client = server.client("shared").await;
        client.batch_execute("CREATE SCHEMA weir").await.unwrap();
        let ledger = UsageLedger::open_store(&store(&format!("{url}?options=-csearch_path%3Dweir")))
            .await
            .unwrap();
        ledger.record(request(1, Some("alice"), "chat", "gpt", 1));
        ledger.close().await.unwrap();
        let row = client.query_one("SELECT COUNT(*) FROM weir.usage", &[]).await.unwrap();
        assert_eq!(row.get::<_, i64>(0), 1);
        let public = client
            .query_one("SELECT to_regclass('public.usage') IS NULL", &[])
            .await
            .unwrap();
        assert!(public.get::<_, bool>(0), "nothing was created in public");
    }

    #[tokio::test]
    async fn a_database_from_a_newer_schema_is_refused() {
        let server = PostgresServer::start().await;
        let url = server.create_database("usage").await;
        UsageLedger::open_store(&store(&url))
            .await
            .unwrap()
            .close()
            .await
            .unwrap();
        let client = server.client("usage").await;
        client
            .execute("UPDATE weir_schema SET version = 99 WHERE name = 'usage'", &[])
            .await
            .unwrap();
        let Err(error) = UsageLedger::open_store(&store(&url)).await else {
            panic!("opened a database from a newer schema");
        };
        assert!(matches!(error, UsageError::UnknownSchema { found: 99, .. }), "{error}");
        let message = error.to_string();
        assert!(message.contains(&redact_url(&url)), "{message}");
        assert!(!message.contains(PostgresServer::PASSWORD), "{message}");
    }

    #[tokio::test]
    async fn a_refused_login_or_an_absent_server_fails_to_open_quickly_without_the_password() {
        let mut server = PostgresServer::start().await;
        let url = server.url("postgres").replace(PostgresServer::PASSWORD, "wrong-pw");
        let Err(error) = UsageLedger::open_store(&store(&url)).await else {
            panic!("logged in with a wrong password");
        };
        let message = error.to_string();
        assert!(matches!(error, UsageError::Connect { .. }), "{message}");
        assert!(message.contains("password authentication failed"), "{message}");
        assert!(!message.contains("wrong-pw"), "{message}");

        let url = server.url("postgres");
        server.stop();
        let started = std::time::Instant::now();
        let Err(error) = UsageLedger::open_store(&store(&url)).await else {
            panic!("opened a ledger on a stopped server");
        };
        assert!(started.elapsed() < CONNECT_TIMEOUT + Duration::from_secs(1));
        let message = error.to_string();
        assert!(message.contains("refused"), "{message}");
        assert!(message.contains(&redact_url(&url)), "{message}");
        assert!(!message.contains(PostgresServer::PASSWORD), "{message}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rows_recorded_while_the_server_is_down_land_after_it_returns() {
        let mut server = PostgresServer::start().await;
        let store = store(&server.create_database("usage").await);
        let ledger = UsageLedger::open_store(&store).await.unwrap();
        ledger.record(request(0, Some("alice"), "chat", "gpt", 1));
        ledger.flush().await.unwrap();

        server.stop();
        for time in 1..=500 {
            ledger.record(request(time, Some("bob"), "chat", "gpt", 1));
        }
        let Err(error) = ledger.query(Default::default()).await else {
            panic!("a query succeeded with the server down");
        };
        assert!(matches!(error, UsageError::Unavailable { .. }), "{error}");
        assert!(
            tokio::time::timeout(Duration::from_millis(200), ledger.flush())
                .await
                .is_err(),
            "a flush cannot finish while the server is down"
        );

        server.start_again().await;
        ledger.flush().await.unwrap();
        let report = ledger.query(Default::default()).await.unwrap();
        assert_eq!(report.totals.requests, 501);
        assert_eq!(report.rows[0].time_ms, 500);
        ledger.record(request(501, Some("bob"), "chat", "gpt", 1));
        ledger.close().await.unwrap();
        let client = server.client("usage").await;
        let row = client
            .query_one("SELECT COUNT(*), MIN(instance), MAX(instance) FROM usage", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), 502);
        assert_eq!(row.get::<_, String>(1), "test-instance");
        assert_eq!(row.get::<_, String>(2), "test-instance");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rows_past_the_queue_bound_are_dropped_counted_and_reported() {
        let mut server = PostgresServer::start().await;
        let store = store(&server.create_database("usage").await);
        let ledger = ledger_with_capacity(&store, 10).await;
        server.stop();
        for time in 0..25 {
            ledger.record(request(time, Some("alice"), "chat", "gpt", 1));
        }
        server.start_again().await;
        let Err(error) = ledger.flush().await else {
            panic!("a flush after dropped rows reported nothing");
        };
        assert!(matches!(error, UsageError::Write { rows: 15, .. }), "{error}");
        assert!(error.to_string().contains("queue of 10 rows"), "{error}");
        ledger.flush().await.expect("reported once");
        let report = ledger.query(Default::default()).await.unwrap();
        assert_eq!(report.totals.requests, 10);
        assert_eq!(
            report.rows.last().map(|r| r.time_ms),
            Some(0),
            "the first ten were kept"
        );
        ledger.close().await.unwrap();
    }
}
