//! The writer task: the one owner of the connection. It batches the rows
//! it is handed, answers queries and flushes in order, and reconnects when
//! the server goes away (see the parent module).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_postgres::Client;

use super::super::{Command, LostRows, MAX_BATCH, Reply, UsageError, UsageRecord};
use super::connection::{self, Connecting, Connection, Dial, insert, query, tokens_by_consumer_since};
use super::{PostgresStore, Queue, breaks_connection, describe, keeps_rows};

/// Time allowed for one statement; a server that takes longer is treated
/// as gone (the connection is dropped and made again).
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long closing waits for an absent server before giving up the rows.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The first wait before reconnecting.
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// The longest wait between reconnection attempts.
const LAST_RETRY: Duration = Duration::from_secs(5);
/// Dropped rows are logged at most this often, summed.
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

/// Start the task writing to `store` over `connection`, taking commands
/// from `commands`.
pub(super) fn start(
    dial: Dial,
    store: &PostgresStore,
    queue: Arc<Queue>,
    connection: Connection,
    commands: mpsc::UnboundedReceiver<Command>,
) {
    let task = Task {
        dial,
        store: store.shown().to_owned(),
        instance: store.instance().to_owned(),
        queue,
        connection: Some(connection),
        down: None,
        retry_at: Instant::now(),
        backoff: FIRST_RETRY,
        pending: VecDeque::new(),
        received: 0,
        settled: 0,
        flushes: Vec::new(),
        lost: LostRows::default(),
        unlogged_drops: 0,
        last_drop_log: None,
    };
    tokio::spawn(task.run(commands));
}

/// What woke the task.
enum Event {
    Command(Option<Command>),
    Connected(Result<Connection, UsageError>),
    Retry,
    Ended(String),
}

/// The writer task's state: the only user of the connection.
struct Task {
    dial: Dial,
    store: String,
    instance: String,
    queue: Arc<Queue>,
    connection: Option<Connection>,
    /// Why the connection is down, while it is.
    down: Option<String>,
    /// When to try connecting again, while down.
    retry_at: Instant,
    backoff: Duration,
    /// Rows received and not yet written, oldest first.
    pending: VecDeque<UsageRecord>,
    /// Rows taken off the queue so far.
    received: u64,
    /// Of those, rows written or given up.
    settled: u64,
    /// Flushes waiting for `settled` to reach their count.
    flushes: Vec<(u64, Reply<()>)>,
    lost: LostRows,
    unlogged_drops: u64,
    last_drop_log: Option<Instant>,
}

impl Task {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut held = None;
        let mut connecting: Option<Connecting> = None;
        let close = loop {
            self.count_dropped(false);
            self.write_pending().await;
            self.settle_flushes();
            let command = match held.take() {
                Some(command) => command,
                None => {
                    let waiting_to_retry = self.connection.is_none() && connecting.is_none();
                    let event = tokio::select! {
                        command = commands.recv() => Event::Command(command),
                        connected = attempt(&mut connecting) => Event::Connected(connected),
                        () = sleep_until(self.retry_at), if waiting_to_retry => Event::Retry,
                        reason = ended(&mut self.connection) => Event::Ended(reason),
                    };
                    match event {
                        Event::Command(Some(command)) => command,
                        Event::Command(None) => break None,
                        Event::Connected(result) => {
                            connecting = None;
                            self.connected(result);
                            continue;
                        }
                        Event::Retry => {
                            connecting = Some(connection::connect(self.dial.clone(), self.store.clone()));
                            continue;
                        }
                        Event::Ended(reason) => {
                            self.disconnect(reason);
                            continue;
                        }
                    }
                }
            };
            match command {
                Command::Record(record) => {
                    self.take(record);
                    // Take every row queued behind it, to write them together.
                    while let Ok(next) = commands.try_recv() {
                        match next {
                            Command::Record(record) => self.take(record),
                            other => {
                                held = Some(other);
                                break;
                            }
                        }
                    }
                }
                Command::Flush(reply) => self.flushes.push((self.received, reply)),
                Command::Query(filter, reply) => {
                    let answer = self.ask("query", |client| Box::pin(query(client, filter))).await;
                    let _ = reply.send(answer);
                }
                Command::TokensByConsumerSince(since_ms, reply) => {
                    let answer = self
                        .ask("summing tokens per consumer", move |client| {
                            Box::pin(tokens_by_consumer_since(client, since_ms))
                        })
                        .await;
                    let _ = reply.send(answer);
                }
                Command::Close(reply) => break Some(reply),
            }
        };
        drop(connecting);
        self.finish(close).await;
    }

    fn take(&mut self, record: UsageRecord) {
        self.pending.push_back(record);
        self.received += 1;
    }

    /// Write every pending row while connected, a batch at a time.
    async fn write_pending(&mut self) {
        while !self.pending.is_empty() {
            let Some(connection) = &self.connection else { return };
            let count = self.pending.len().min(MAX_BATCH);
            let written = timeout(
                STATEMENT_TIMEOUT,
                insert(connection, &self.instance, self.pending.range(..count)),
            )
            .await;
            match written {
                Ok(Ok(_)) => {
                    self.backoff = FIRST_RETRY;
                    self.settle(count);
                }
                Ok(Err(e)) if !keeps_rows(&e) => {
                    let reason = describe(&e);
                    let first = self.pending.front().map(|r| r.request_id.clone()).unwrap_or_default();
                    tracing::error!(
                        "usage ledger {}: writing {count} rows (requests {first}…) failed, they are lost: {reason}",
                        self.store
                    );
                    self.lost.add(count, reason);
                    self.settle(count);
                }
                Ok(Err(e)) => self.disconnect(describe(&e)),
                Err(_) => self.disconnect(format!("no answer within {} s", STATEMENT_TIMEOUT.as_secs())),
            }
        }
    }

    /// The first `count` pending rows are written, or given up.
    fn settle(&mut self, count: usize) {
        self.pending.drain(..count);
        self.settled += count as u64;
        self.queue.waiting.fetch_sub(count, Ordering::AcqRel);
    }

    /// Answer every flush whose rows are all settled.
    fn settle_flushes(&mut self) {
        if !self.flushes.iter().any(|(rows, _)| *rows <= self.settled) {
            return;
        }
        self.count_dropped(true);
        let (done, waiting) = std::mem::take(&mut self.flushes)
            .into_iter()
            .partition::<Vec<_>, _>(|(rows, _)| *rows <= self.settled);
        self.flushes = waiting;
        for (_, reply) in done {
            let _ = reply.send(self.lost.take(&self.store));
        }
    }

    /// Run a query on the connection; fails at once while it is down.
    async fn ask<T>(
        &mut self,
        what: &'static str,
        run: impl FnOnce(&Client) -> Pin<Box<dyn Future<Output = Result<T, tokio_postgres::Error>> + Send + '_>>,
    ) -> Result<T, UsageError> {
        let Some(connection) = &self.connection else {
            return Err(UsageError::Unavailable {
                store: self.store.clone(),
                reason: self.down.clone().unwrap_or_default(),
            });
        };
        let reason = match timeout(STATEMENT_TIMEOUT, run(&connection.client)).await {
            Ok(Ok(answer)) => {
                self.backoff = FIRST_RETRY;
                return Ok(answer);
            }
            Ok(Err(e)) => {
                let reason = describe(&e);
                if breaks_connection(&e) {
                    self.disconnect(reason.clone());
                }
                reason
            }
            Err(_) => {
                let reason = format!("no answer within {} s", STATEMENT_TIMEOUT.as_secs());
                self.disconnect(reason.clone());
                reason
            }
        };
        Err(UsageError::Postgres {
            store: self.store.clone(),
            what,
            reason,
        })
    }

    /// The connection is gone: keep the rows and reconnect after the
    /// current backoff, which doubles until a statement succeeds (so a
    /// server that accepts logins but refuses every write is not hammered).
    fn disconnect(&mut self, reason: String) {
        if self.connection.take().is_some() {
            tracing::warn!(
                "usage ledger {}: connection lost: {reason}; reconnecting, {} rows wait to be written",
                self.store,
                self.pending.len()
            );
        }
        self.down = Some(reason);
        self.schedule_retry();
    }

    fn schedule_retry(&mut self) {
        // Between half and all of the backoff, so gateways spread out.
        let wait = self.backoff.mul_f64(0.5 + fastrand::f64() / 2.0);
        self.retry_at = Instant::now() + wait;
        self.backoff = (self.backoff * 2).min(LAST_RETRY);
    }

    fn connected(&mut self, result: Result<Connection, UsageError>) {
        match result {
            Ok(connection) => {
                tracing::info!(
                    "usage ledger {}: reconnected; writing {} waiting rows",
                    self.store,
                    self.pending.len()
                );
                self.connection = Some(connection);
                self.down = None;
            }
            Err(e) => {
                let reason = match e {
                    UsageError::Connect { reason, .. } => reason,
                    other => other.to_string(),
                };
                if self.down.as_ref() != Some(&reason) {
                    tracing::warn!(
                        "usage ledger {}: cannot reconnect: {reason}; retrying, {} rows wait to be written",
                        self.store,
                        self.pending.len()
                    );
                }
                self.down = Some(reason);
                self.schedule_retry();
            }
        }
    }

    /// Count rows the queue dropped, and log them at most every
    /// [`DROP_LOG_EVERY`] (or now, if `now`).
    fn count_dropped(&mut self, now: bool) {
        let dropped = self.queue.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            self.unlogged_drops += dropped;
            let reason = format!(
                "the queue of {} rows waiting to be written was full",
                self.queue.capacity
            );
            self.lost.add(dropped as usize, reason);
        }
        let due = now || self.last_drop_log.is_none_or(|at| at.elapsed() >= DROP_LOG_EVERY);
        if self.unlogged_drops > 0 && due {
            tracing::error!(
                "usage ledger {}: {} usage rows dropped: {} rows were already waiting to be written{}",
                self.store,
                self.unlogged_drops,
                self.queue.capacity,
                self.down
                    .as_ref()
                    .map(|why| format!(" (not connected: {why})"))
                    .unwrap_or_default()
            );
            self.unlogged_drops = 0;
            self.last_drop_log = Some(Instant::now());
        }
    }

    /// Write what is left, waiting up to [`CLOSE_TIMEOUT`] for an absent
    /// server, then answer `close` (or log) with what was lost.
    async fn finish(mut self, close: Option<Reply<()>>) {
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        loop {
            self.write_pending().await;
            if self.pending.is_empty() || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep_until(self.retry_at.min(deadline)).await;
            if let Ok(result) =
                tokio::time::timeout_at(deadline, connection::connect(self.dial.clone(), self.store.clone())).await
            {
                self.connected(result);
            }
        }
        if !self.pending.is_empty() {
            let count = self.pending.len();
            let reason = format!(
                "closing without a connection: {}",
                self.down.clone().unwrap_or_default()
            );
            tracing::error!(
                "usage ledger {}: {count} rows could not be written, they are lost: {reason}",
                self.store
            );
            self.lost.add(count, reason);
            self.settle(count);
        }
        self.count_dropped(true);
        self.settle_flushes();
        if let Some(connection) = self.connection.take() {
            connection.close().await;
        }
        let result = self.lost.take(&self.store);
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
}

/// Resolves when the connection attempt under way does; never while there
/// is none.
async fn attempt(connecting: &mut Option<Connecting>) -> Result<Connection, UsageError> {
    match connecting {
        Some(connecting) => connecting.await,
        None => std::future::pending().await,
    }
}

/// Resolves with the reason when the connection ends; never while there is
/// none.
async fn ended(connection: &mut Option<Connection>) -> String {
    match connection {
        Some(connection) => (&mut connection.ended)
            .await
            .unwrap_or_else(|_| "the connection ended".to_owned()),
        None => std::future::pending().await,
    }
}
