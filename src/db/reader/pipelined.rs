//! PostgreSQL reads by primary key on one pipelined connection per thread.
//!
//! A find by id is one short statement. On a connection of its own, each costs a wake-up of
//! that connection's PostgreSQL backend and a write and a read on its socket; under load, with
//! a backend per concurrent read, those wake-ups are most of the CPU a find by id costs on both
//! sides. tokio-postgres writes the statements of all the reads a thread has in flight on its
//! one connection together, and reads their answers together, so one backend wakes once for
//! many of them.
//!
//! A statement waits for the statements sent before it on the same connection, so only reads
//! that are cheap by construction come here: filtered by primary key (`id is` / `id in`, see
//! [`crate::api3::filters::FilterNode::pins_ids`]) and in one statement (no multi-entity
//! return field, whose rows need a snapshot shared with the page's). Every other read takes a
//! connection of its own ([`super::postgres`]), and so does a read whose pipelined attempt
//! failed. Connections that require TLS, or that cannot be opened with what the URL and
//! `PGPASSWORD` give (a `.pgpass` password), are not pipelined: their reads all take
//! connections of their own.
//!
//! A read that waits for a lock (a DbWriter transaction that changes the table's columns holds
//! one until it commits) would hold up every read sent after it on the same connection, reads
//! of other tables included. So pipelined connections wait at most [`LOCK_WAIT`] for a lock:
//! a read that gives up is run again on a connection of its own, where it waits as any other
//! read does, and the reads behind it go on.
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use hashlink::LruCache;
use sea_orm::DbErr;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgSslMode};
use sea_query_postgres::{PostgresValue, PostgresValues};
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

use super::decode::{Cells, column_err};
use super::postgres::CONNECT;
use crate::query::{Dialect, Sql};

/// How long a thread whose pipelined connection could not be opened sends its reads to
/// connections of their own before it tries again.
const RETRY: Duration = Duration::from_secs(5);
/// Prepared statements kept per connection (sqlx keeps 100 per connection).
const STATEMENTS: usize = 256;
/// How long a pipelined read waits for a lock before it is run on a connection of its own
/// (PostgreSQL's `lock_timeout`, in milliseconds).
const LOCK_WAIT: &str = "100";

/// One pipelined connection per thread that reads by id.
pub struct Pipelines {
    /// `None`: the connection requires TLS; nothing is pipelined.
    config: Option<Config>,
    threads: Mutex<HashMap<ThreadId, Slot>>,
    reads: AtomicU64,
    fallbacks: AtomicU64,
}

enum Slot {
    /// Being opened by a read on this thread; the thread's other reads do not wait for it.
    Opening,
    Open(Arc<Pipeline>),
    /// Opening failed at this instant.
    Failed(Instant),
}

/// A thread's pipelined connection and its prepared statements.
pub struct Pipeline {
    client: Client,
    statements: Mutex<LruCache<String, Statement>>,
}

impl std::fmt::Debug for Pipelines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipelines")
            .field("on", &self.config.is_some())
            .finish_non_exhaustive()
    }
}

/// The tokio-postgres configuration of sqlx's `options`; `None` when it requires TLS.
fn config(options: &PgConnectOptions, password: Option<String>) -> Option<Config> {
    if matches!(
        options.get_ssl_mode(),
        PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull
    ) {
        return None;
    }
    let mut config = Config::new();
    match options.get_socket() {
        Some(dir) => config.host_path(dir),
        None if options.get_host().starts_with('/') => config.host_path(options.get_host()),
        None => config.host(options.get_host()),
    };
    config
        .port(options.get_port())
        .user(options.get_username())
        .ssl_mode(tokio_postgres::config::SslMode::Disable)
        .connect_timeout(CONNECT);
    if let Some(db) = options.get_database() {
        config.dbname(db);
    }
    if let Some(name) = options.get_application_name() {
        config.application_name(name);
    }
    let lock_wait = format!("-c lock_timeout={LOCK_WAIT}");
    match options.get_options() {
        Some(opts) => config.options(format!("{opts} {lock_wait}")),
        None => config.options(lock_wait),
    };
    if let Some(password) = password {
        config.password(password);
    }
    Some(config)
}

/// The password of a `postgres://` URL, else `PGPASSWORD` (as sqlx takes it).
fn password(url: &str) -> Option<String> {
    let from_url = url::Url::parse(url).ok().and_then(|u| {
        u.password().map(|p| {
            percent_encoding::percent_decode_str(p)
                .decode_utf8_lossy()
                .into_owned()
        })
    });
    from_url.or_else(|| std::env::var("PGPASSWORD").ok())
}

impl Pipelines {
    /// Pipelines on the server of `options` (the reader's), with the password of `url`.
    pub fn new(options: &PgConnectOptions, url: &str) -> Pipelines {
        Pipelines {
            config: config(options, password(url)),
            threads: Mutex::new(HashMap::new()),
            reads: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
        }
    }

    /// Reads answered on a pipelined connection.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Reads sent to a pipelined connection that failed there and were run again on a
    /// connection of their own.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    pub(super) fn count_read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_fallback(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<ThreadId, Slot>> {
        self.threads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This thread's pipelined connection, opened on first use (its connection task runs on
    /// this thread's runtime). `None` when nothing is pipelined, while it is being opened, or
    /// when opening it failed less than [`RETRY`] ago.
    pub async fn get(&self) -> Option<Arc<Pipeline>> {
        let config = self.config.as_ref()?;
        let thread = std::thread::current().id();
        {
            let mut slots = self.slots();
            match slots.get(&thread) {
                Some(Slot::Open(p)) if !p.client.is_closed() => return Some(p.clone()),
                Some(Slot::Failed(at)) if at.elapsed() < RETRY => return None,
                Some(Slot::Opening) => return None,
                _ => {}
            }
            slots.insert(thread, Slot::Opening);
        }
        // A read cancelled while it opens the connection would leave the slot `Opening`; the
        // guard clears it.
        let mut opening = Opening {
            pipelines: self,
            thread,
            done: false,
        };
        let slot = match config.connect(NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "pipelined read connection ended");
                    }
                });
                Slot::Open(Arc::new(Pipeline {
                    client,
                    statements: Mutex::new(LruCache::new(STATEMENTS)),
                }))
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "cannot open a pipelined read connection; reads by id take connections of \
                     their own for {}",
                    humantime::format_duration(RETRY)
                );
                Slot::Failed(Instant::now())
            }
        };
        let pipeline = match &slot {
            Slot::Open(p) => Some(p.clone()),
            _ => None,
        };
        self.slots().insert(thread, slot);
        opening.done = true;
        pipeline
    }

    /// Drops every thread's connection (each closes once its last read is done).
    pub fn close(&self) {
        self.slots().clear();
    }
}

/// Clears a thread's `Opening` slot unless the opening read finished.
struct Opening<'a> {
    pipelines: &'a Pipelines,
    thread: ThreadId,
    done: bool,
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut slots = self.pipelines.slots();
            if matches!(slots.get(&self.thread), Some(Slot::Opening)) {
                slots.remove(&self.thread);
            }
        }
    }
}

impl Pipeline {
    /// Runs `sql` and returns all its rows. The statement is prepared once per connection,
    /// with the bind values' own types (as sqlx prepares it); a failed statement is prepared
    /// again next time.
    pub async fn query(&self, sql: &Sql) -> Result<Vec<Row>, DbErr> {
        let (text, values) = sql.render(Dialect::Postgres);
        let values = PostgresValues(values.into_iter().map(PostgresValue).collect());
        let types = values.as_types();
        let cached = self.lock_statements().get(&text).cloned();
        let statement = match cached {
            Some(s) if s.params() == types.as_slice() => s,
            _ => {
                let s = self
                    .client
                    .prepare_typed(&text, &types)
                    .await
                    .map_err(query_err)?;
                self.lock_statements().insert(text.clone(), s.clone());
                s
            }
        };
        let rows = self.client.query(&statement, &values.as_params()).await;
        rows.map_err(|e| {
            self.lock_statements().remove(&text);
            query_err(e)
        })
    }

    fn lock_statements(&self) -> std::sync::MutexGuard<'_, LruCache<String, Statement>> {
        self.statements.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The error with PostgreSQL's own message (tokio-postgres displays a server error as
/// `db error` and keeps the message in its source).
fn query_err(e: tokio_postgres::Error) -> DbErr {
    match e.as_db_error() {
        Some(db) => DbErr::Custom(format!(
            "pipelined PostgreSQL read: {} ({})",
            db.message(),
            db.code().code()
        )),
        None => DbErr::Custom(format!("pipelined PostgreSQL read: {e}")),
    }
}

/// The columns read are the ones sgcache's DDL creates (BIGINT, DOUBLE PRECISION, BOOLEAN,
/// TEXT) and expressions over them, decoded as [`Cells for PgRow`](super::postgres) decodes
/// them; an INTEGER expression reads as a BIGINT.
impl Cells for Row {
    fn int(&self, i: usize) -> Result<Option<i64>, DbErr> {
        match self.try_get::<_, Option<i64>>(i) {
            Ok(v) => Ok(v),
            Err(e) => match self.try_get::<_, Option<i32>>(i) {
                Ok(v) => Ok(v.map(i64::from)),
                Err(_) => Err(column_err(i, e)),
            },
        }
    }
    fn float(&self, i: usize) -> Result<Option<f64>, DbErr> {
        match self.try_get::<_, Option<f64>>(i) {
            Ok(v) => Ok(v),
            Err(_) => Ok(self.int(i)?.map(|v| v as f64)),
        }
    }
    fn boolean(&self, i: usize) -> Result<Option<bool>, DbErr> {
        match self.try_get::<_, Option<bool>>(i) {
            Ok(v) => Ok(v),
            Err(_) => Ok(self.int(i)?.map(|v| v != 0)),
        }
    }
    fn text(&self, i: usize) -> Result<Option<Cow<'_, str>>, DbErr> {
        self.try_get::<_, Option<&str>>(i)
            .map(|v| v.map(Cow::Borrowed))
            .map_err(|e| column_err(i, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str) -> PgConnectOptions {
        url.parse().expect("URL")
    }

    #[test]
    fn the_password_comes_from_the_url_decoded() {
        assert_eq!(
            password("postgres://u:p%40ss@db/x").as_deref(),
            Some("p@ss")
        );
    }

    #[test]
    fn tls_required_turns_pipelining_off() {
        for mode in ["require", "verify-ca", "verify-full"] {
            let url = format!("postgres://u@db/x?sslmode={mode}");
            assert!(config(&options(&url), None).is_none(), "{mode}");
        }
        for mode in ["disable", "prefer", "allow"] {
            let url = format!("postgres://u@db/x?sslmode={mode}");
            assert!(config(&options(&url), None).is_some(), "{mode}");
        }
    }

    #[test]
    fn a_socket_directory_is_the_host() {
        let c = config(
            &options("postgres://root@localhost/postgres?host=/var/run/postgresql"),
            None,
        )
        .expect("config");
        assert_eq!(
            c.get_hosts(),
            [tokio_postgres::config::Host::Unix(
                "/var/run/postgresql".into()
            )]
        );
        assert_eq!(c.get_dbname(), Some("postgres"));
        assert_eq!(c.get_user(), Some("root"));
        assert_eq!(c.get_options(), Some("-c lock_timeout=100"));
        // The reads' own session settings carry over, the lock wait after them.
        let c = config(
            &options("postgres://u@db/x").options([("jit", "off")]),
            None,
        )
        .expect("config");
        assert_eq!(c.get_options(), Some("-c jit=off -c lock_timeout=100"));
        let c = config(&options("postgres://a@db.example:6543/x"), None).expect("config");
        assert_eq!(
            c.get_hosts(),
            [tokio_postgres::config::Host::Tcp("db.example".into())]
        );
        assert_eq!(c.get_ports(), [6543]);
    }
}
