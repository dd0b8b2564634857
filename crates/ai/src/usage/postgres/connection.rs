//! The connection to PostgreSQL and what is said over it: connecting (with
//! the schema brought up to date), the batched insert, and the queries
//! `GET /usage` and budgets ask.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::timeout;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::super::{Arg, COLUMNS, UsageError, UsageFilter, UsageRecord, UsageReport, UsageTotals, signed};
use super::tls::TlsSettings;
use super::{CONNECT_TIMEOUT, describe};

/// The advisory lock that serializes migrations across gateways.
const SCHEMA_LOCK: i64 = 0x7765_6972_5553_4147;

/// Schema steps; `weir_schema`'s `usage` row counts how many have been
/// applied. Append only: never edit a step that has shipped.
pub(super) const MIGRATIONS: &[&str] = &["CREATE TABLE usage (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        time_ms BIGINT NOT NULL,
        instance TEXT NOT NULL,
        request_id TEXT NOT NULL,
        consumer TEXT,
        route TEXT NOT NULL,
        target TEXT NOT NULL,
        model TEXT NOT NULL,
        prompt_tokens BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL,
        cost DOUBLE PRECISION NOT NULL,
        latency_ms BIGINT NOT NULL,
        ttft_ms BIGINT,
        status BIGINT NOT NULL,
        streamed BOOLEAN NOT NULL,
        cached BOOLEAN NOT NULL
    );
    CREATE INDEX usage_time ON usage (time_ms);
    CREATE INDEX usage_consumer_time ON usage (consumer, time_ms);"];

/// One batch: the instance, then one array per column of [`COLUMNS`].
const INSERT: &str = "INSERT INTO usage (instance, time_ms, request_id, consumer, route, target, model, \
     prompt_tokens, completion_tokens, cost, latency_ms, ttft_ms, status, streamed, cached) \
     SELECT $1::TEXT, * FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[], \
     $8::BIGINT[], $9::BIGINT[], $10::DOUBLE PRECISION[], $11::BIGINT[], $12::BIGINT[], $13::BIGINT[], \
     $14::BOOLEAN[], $15::BOOLEAN[])";

/// A live connection: the client, the prepared insert, and the task that
/// drives the socket.
pub(super) struct Connection {
    pub(super) client: Client,
    insert: Statement,
    /// Says why, when the server closes the connection or it breaks.
    pub(super) ended: oneshot::Receiver<String>,
    driver: Driver,
}

impl Connection {
    /// Say goodbye to the server (dropping the client ends the driver).
    pub(super) async fn close(self) {
        let Connection { client, driver, .. } = self;
        drop(client);
        driver.finish().await;
    }
}

/// The task driving a connection's socket; stopped when dropped, so that a
/// connection given up (timed out, failed to migrate) does not linger.
struct Driver(Option<tokio::task::JoinHandle<()>>);

impl Driver {
    /// Let the driver end on its own for a moment, then stop it.
    async fn finish(mut self) {
        if let Some(handle) = self.0.take() {
            let abort = handle.abort_handle();
            if timeout(Duration::from_secs(1), handle).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}

/// What a connection is made from: the parsed URL and the TLS client
/// built for its `sslmode` (made once, cloned for each reconnection).
#[derive(Clone)]
pub(super) struct Dial {
    pub(super) config: tokio_postgres::Config,
    pub(super) tls: MakeRustlsConnect,
    pub(super) settings: TlsSettings,
}

pub(super) type Connecting = Pin<Box<dyn Future<Output = Result<Connection, UsageError>> + Send>>;

/// Connect and log in, migrate and prepare the insert, within
/// [`CONNECT_TIMEOUT`].
pub(super) fn connect(dial: Dial, store: String) -> Connecting {
    Box::pin(async move {
        let attempt = async {
            let (mut client, connection) =
                dial.config
                    .connect(dial.tls.clone())
                    .await
                    .map_err(|e| UsageError::Connect {
                        store: store.clone(),
                        reason: dial.settings.explain(describe(&e)),
                    })?;
            let (ended, ended_receiver) = oneshot::channel();
            let driver = Driver(Some(tokio::spawn(async move {
                let reason = match connection.await {
                    Ok(()) => "the server closed the connection".to_owned(),
                    Err(e) => describe(&e),
                };
                let _ = ended.send(reason);
            })));
            migrate(&mut client, &store).await?;
            let insert = client.prepare(INSERT).await.map_err(|e| UsageError::Postgres {
                store: store.clone(),
                what: "preparing the insert",
                reason: describe(&e),
            })?;
            Ok(Connection {
                client,
                insert,
                ended: ended_receiver,
                driver,
            })
        };
        match timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(result) => result,
            Err(_) => Err(UsageError::Connect {
                store,
                reason: format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            }),
        }
    })
}

/// Bring the schema up to date in one transaction, holding the advisory
/// lock so that gateways starting together apply each step once.
async fn migrate(client: &mut Client, store: &str) -> Result<(), UsageError> {
    let failed = |e: tokio_postgres::Error| UsageError::Postgres {
        store: store.to_owned(),
        what: "migrating the schema",
        reason: describe(&e),
    };
    let transaction = client.transaction().await.map_err(failed)?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(failed)?;
    transaction
        .batch_execute("CREATE TABLE IF NOT EXISTS weir_schema (name TEXT PRIMARY KEY, version BIGINT NOT NULL)")
        .await
        .map_err(failed)?;
    let found: i64 = match transaction
        .query_opt("SELECT version FROM weir_schema WHERE name = 'usage'", &[])
        .await
        .map_err(failed)?
    {
        Some(row) => row.try_get(0).map_err(failed)?,
        None => 0,
    };
    let applied = usize::try_from(found)
        .ok()
        .filter(|applied| *applied <= MIGRATIONS.len())
        .ok_or_else(|| UsageError::UnknownSchema {
            store: store.to_owned(),
            found,
            known: MIGRATIONS.len(),
        })?;
    if applied == MIGRATIONS.len() {
        return transaction.commit().await.map_err(failed);
    }
    for step in &MIGRATIONS[applied..] {
        transaction.batch_execute(step).await.map_err(failed)?;
    }
    transaction
        .execute(
            "INSERT INTO weir_schema (name, version) VALUES ('usage', $1)
             ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version",
            &[&(MIGRATIONS.len() as i64)],
        )
        .await
        .map_err(failed)?;
    transaction.commit().await.map_err(failed)
}

/// Text for a `TEXT` column: PostgreSQL refuses NUL characters, which
/// would make the whole batch fail, so they become U+FFFD.
fn text(value: &str) -> String {
    if value.contains('\0') {
        value.replace('\0', "\u{FFFD}")
    } else {
        value.to_owned()
    }
}

/// Insert `batch` in one statement (its own transaction).
pub(super) async fn insert<'a>(
    connection: &Connection,
    instance: &str,
    batch: impl Iterator<Item = &'a UsageRecord>,
) -> Result<u64, tokio_postgres::Error> {
    let mut time_ms = Vec::new();
    let mut request_id = Vec::new();
    let mut consumer = Vec::new();
    let mut route = Vec::new();
    let mut target = Vec::new();
    let mut model = Vec::new();
    let mut prompt_tokens = Vec::new();
    let mut completion_tokens = Vec::new();
    let mut cost = Vec::new();
    let mut latency_ms = Vec::new();
    let mut ttft_ms = Vec::new();
    let mut status = Vec::new();
    let mut streamed = Vec::new();
    let mut cached = Vec::new();
    for record in batch {
        time_ms.push(record.time_ms);
        request_id.push(text(&record.request_id));
        consumer.push(record.consumer.as_deref().map(text));
        route.push(text(&record.route));
        target.push(text(&record.target));
        model.push(text(&record.model));
        prompt_tokens.push(signed(record.prompt_tokens));
        completion_tokens.push(signed(record.completion_tokens));
        cost.push(record.cost);
        latency_ms.push(signed(record.latency_ms));
        ttft_ms.push(record.ttft_ms.map(signed));
        status.push(i64::from(record.status));
        streamed.push(record.streamed);
        cached.push(record.cached);
    }
    let instance = text(instance);
    connection
        .client
        .execute(
            &connection.insert,
            &[
                &instance,
                &time_ms,
                &request_id,
                &consumer,
                &route,
                &target,
                &model,
                &prompt_tokens,
                &completion_tokens,
                &cost,
                &latency_ms,
                &ttft_ms,
                &status,
                &streamed,
                &cached,
            ],
        )
        .await
}

/// A count read back: stored signed, never negative when written by Weir.
fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn read_record(row: &Row) -> Result<UsageRecord, tokio_postgres::Error> {
    Ok(UsageRecord {
        time_ms: row.try_get(0)?,
        request_id: row.try_get(1)?,
        consumer: row.try_get(2)?,
        route: row.try_get(3)?,
        target: row.try_get(4)?,
        model: row.try_get(5)?,
        prompt_tokens: unsigned(row.try_get(6)?),
        completion_tokens: unsigned(row.try_get(7)?),
        cost: row.try_get(8)?,
        latency_ms: unsigned(row.try_get(9)?),
        ttft_ms: row.try_get::<_, Option<i64>>(10)?.map(unsigned),
        status: u16::try_from(row.try_get::<_, i64>(11)?).unwrap_or(0),
        streamed: row.try_get(12)?,
        cached: row.try_get(13)?,
    })
}

/// Reads [`SUMS`] from columns `first..first + 4`.
fn read_totals(row: &Row, first: usize) -> Result<UsageTotals, tokio_postgres::Error> {
    Ok(UsageTotals {
        requests: unsigned(row.try_get(first)?),
        prompt_tokens: unsigned(row.try_get(first + 1)?),
        completion_tokens: unsigned(row.try_get(first + 2)?),
        cost: row.try_get(first + 3)?,
    })
}

/// `SUM` over `BIGINT` is `NUMERIC` in PostgreSQL: cast back.
const SUMS: &str = "COUNT(*), COALESCE(SUM(prompt_tokens), 0)::BIGINT, COALESCE(SUM(completion_tokens), 0)::BIGINT, \
     COALESCE(SUM(cost), 0)::DOUBLE PRECISION";

pub(super) async fn query(client: &Client, filter: UsageFilter) -> Result<UsageReport, tokio_postgres::Error> {
    let (conditions, args) = filter.where_clause(|n| format!("${n}"));
    let args: Vec<&(dyn ToSql + Sync)> = args
        .iter()
        .map(|arg| match arg {
            Arg::Text(text) => text as &(dyn ToSql + Sync),
            Arg::Integer(integer) => integer as &(dyn ToSql + Sync),
        })
        .collect();
    let limit = filter.row_limit();

    let rows = client
        .query(
            &format!("SELECT {COLUMNS} FROM usage {conditions} ORDER BY time_ms DESC, id DESC LIMIT {limit}"),
            &args,
        )
        .await?
        .iter()
        .map(read_record)
        .collect::<Result<Vec<_>, _>>()?;

    let totals = read_totals(
        &client
            .query_one(&format!("SELECT {SUMS} FROM usage {conditions}"), &args)
            .await?,
        0,
    )?;

    let groups = match filter.group_by {
        None => Vec::new(),
        Some(group_by) => {
            // Ties go by the key's bytes, as in SQLite, whatever the
            // database's collation.
            let key = group_by.column();
            client
                .query(
                    &format!(
                        "SELECT {key}, {SUMS} FROM usage {conditions} GROUP BY {key} \
                         ORDER BY COALESCE(SUM(cost), 0) DESC, {key} COLLATE \"C\" ASC"
                    ),
                    &args,
                )
                .await?
                .iter()
                .map(|row| Ok((row.try_get(0)?, read_totals(row, 1)?)))
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()?
        }
    };
    Ok(UsageReport { rows, totals, groups })
}

pub(super) async fn tokens_by_consumer_since(
    client: &Client,
    since_ms: i64,
) -> Result<HashMap<String, u64>, tokio_postgres::Error> {
    client
        .query(
            "SELECT COALESCE(consumer, '-'), COALESCE(SUM(prompt_tokens + completion_tokens), 0)::BIGINT
             FROM usage WHERE time_ms >= $1 GROUP BY 1",
            &[&since_ms],
        )
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, unsigned(row.try_get(1)?))))
        .collect()
}
