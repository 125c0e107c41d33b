//! Reads on PostgreSQL through sqlx directly, on a small pool per thread that reads.
//!
//! * **Rows.** SeaORM hands rows back as `QueryResult`s whose text cells decode into owned
//!   `String`s; a page of 500 Tasks is ~8,000 cells. Here rows are `PgRow`s read by column
//!   index and text is borrowed from the row, as in the bench's raw-driver floor. The statements
//!   and their bind values are the ones SeaORM would send (`SqlxValues`), so the answers are
//!   the same.
//! * **A pool per thread.** Each HTTP worker is a single-threaded runtime, and a connection's
//!   socket belongs to the runtime that opened it: a worker using a connection another thread
//!   opened is woken through that thread's event loop, one more thread wake-up per round trip.
//!   So every thread that reads gets its own pool ([`PgReads::get`]), whose connections it
//!   opens itself.
//! * **No round trip but the read's.** sqlx's pool tests a connection with a round trip to the
//!   server before handing it out, and again, in a task of its own, when it is given back: two
//!   pings per find by id, which halved the rate the raw driver reaches (28–34k against
//!   59–62k rows by primary key per second on 16 tasks, measured on this stack). The pools here
//!   are deadpool's, and a connection is given out again only if the read that had it finished
//!   ([`ReadConn::done`]); one that failed or was cancelled half way is dropped and replaced.
//!   A connection that broke while idle fails its next read, which is then passed through to
//!   the site, and is dropped.
use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use sea_orm::sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sea_orm::sqlx::query::Query;
use sea_orm::sqlx::{self, AssertSqlSafe, ConnectOptions, Connection, Postgres, Row};
use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr};
use sea_query_sqlx::SqlxValues;

use super::decode::{Cells, column_err};
use super::pipelined::Pipelines;
use crate::query::{Dialect, Sql};

/// How long a read waits for a connection of its thread's pool, or for a new one to open
/// (as SeaORM's pool waits).
const WAIT: Duration = Duration::from_secs(30);
pub(super) const CONNECT: Duration = Duration::from_secs(10);

/// A pooled connection and whether the read that had it last finished cleanly.
pub struct ReadConn {
    conn: PgConnection,
    clean: bool,
}

impl ReadConn {
    /// The read that holds this connection finished: it may be given out again.
    pub fn done(&mut self) {
        self.clean = true;
    }
}

impl Deref for ReadConn {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl DerefMut for ReadConn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

/// Opens connections; takes one back only when its read finished.
pub struct Opener(PgConnectOptions);

impl managed::Manager for Opener {
    type Type = ReadConn;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<ReadConn, sqlx::Error> {
        // Handed out at once: not clean until its read is done.
        Ok(ReadConn {
            conn: self.0.connect().await?,
            clean: false,
        })
    }

    async fn recycle(&self, conn: &mut ReadConn, _: &Metrics) -> RecycleResult<sqlx::Error> {
        if !conn.clean {
            return Err(RecycleError::message(
                "a read failed or was cancelled on this connection",
            ));
        }
        conn.clean = false;
        Ok(())
    }
}

type Pool = managed::Pool<Opener>;

/// A connection of the calling thread's pool, for one read: call [`ReadConn::done`] when the
/// read finished, or the connection is not used again.
pub type Pooled = managed::Object<Opener>;

/// The page reads' pools, one per thread that reads.
pub struct PgReads {
    /// Reads by id, on one pipelined connection per thread.
    pub pipelines: Pipelines,
    options: PgConnectOptions,
    per_thread: usize,
    pools: Mutex<HashMap<ThreadId, Pool>>,
}

impl std::fmt::Debug for PgReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgReads")
            .field("per_thread", &self.per_thread)
            .finish_non_exhaustive()
    }
}

impl PgReads {
    /// Pools of `max_connections / cores` connections (at least one) per thread, the HTTP
    /// workers' default count being the number of cores; connections are opened on first use.
    pub fn new(options: PgConnectOptions, max_connections: u32, url: &str) -> PgReads {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        PgReads {
            pipelines: Pipelines::new(&options, url),
            options,
            per_thread: max_connections.div_ceil(cores).max(1) as usize,
            pools: Mutex::new(HashMap::new()),
        }
    }

    /// A connection of the calling thread's pool (the pool is made on the thread's first read).
    pub async fn get(&self) -> Result<Pooled, DbErr> {
        self.pool()?.get().await.map_err(pool_err)
    }

    fn pool(&self) -> Result<Pool, DbErr> {
        // A poisoned lock only means a panic elsewhere while inserting: the map is intact.
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        let thread = std::thread::current().id();
        if let Some(pool) = pools.get(&thread) {
            return Ok(pool.clone());
        }
        let pool = Pool::builder(Opener(self.options.clone()))
            .max_size(self.per_thread)
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(WAIT))
            .create_timeout(Some(CONNECT))
            .build()
            .map_err(|e| DbErr::Custom(format!("the read pool: {e}")))?;
        pools.insert(thread, pool.clone());
        Ok(pool)
    }

    /// Closes every thread's pool and its idle connections.
    pub async fn close(&self) {
        self.pipelines.close();
        let pools: Vec<Pool> = {
            let mut map = self.pools.lock().unwrap_or_else(|p| p.into_inner());
            map.drain().map(|(_, pool)| pool).collect()
        };
        for pool in pools {
            let idle = pool.retain(|_, _| false).removed;
            pool.close();
            for conn in idle {
                conn.conn.close().await.ok();
            }
        }
    }
}

/// A pool's failure to give a connection, as SeaORM's pool reports it.
fn pool_err(e: managed::PoolError<sqlx::Error>) -> DbErr {
    use managed::PoolError;
    match e {
        PoolError::Timeout(_) => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        PoolError::Closed => DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
        PoolError::Backend(e) => DbErr::Conn(RuntimeErr::SqlxError(Arc::new(e))),
        other => DbErr::Custom(format!("the read pool: {other}")),
    }
}

/// The transaction of a read that runs more than one statement: one snapshot, in one round
/// trip (SeaORM's `begin_with_config` sends `BEGIN` and `SET TRANSACTION` apart).
pub const BEGIN_SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// A compiled statement as a sqlx query, bound as SeaORM binds it.
pub fn query(sql: &Sql) -> Query<'static, Postgres, SqlxValues> {
    let (text, values) = sql.render(Dialect::Postgres);
    sqlx::query_with(
        AssertSqlSafe(text),
        SqlxValues(sea_orm::sea_query::Values(values)),
    )
}

/// A sqlx error as SeaORM reports a failed query.
pub fn query_err(e: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(e)))
}

/// The cell `i` decoded as `T`; `None` for NULL, an error for a type `T` does not take.
fn get<'r, T>(row: &'r PgRow, i: usize) -> Result<Option<T>, DbErr>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get::<Option<T>, _>(i).map_err(|e| column_err(i, e))
}

/// The cell `i` decoded as `T` without sqlx's check of the value's type against `T` (a copy
/// of the type's description per cell: a tenth of the daemon's time on a page of 500 Tasks),
/// for the integer and text columns sgcache's own DDL makes. Tests (debug builds) still check
/// the column's type.
fn get_unchecked<'r, T>(row: &'r PgRow, i: usize) -> Result<Option<T>, DbErr>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    debug_assert!(
        row.columns()
            .get(i)
            .is_none_or(|c| T::compatible(sqlx::Column::type_info(c))),
        "column {i} is not a {}",
        std::any::type_name::<T>()
    );
    row.try_get_unchecked::<Option<T>, _>(i)
        .map_err(|e| column_err(i, e))
}

/// The columns read are the ones sgcache's DDL creates (BIGINT, DOUBLE PRECISION, BOOLEAN,
/// TEXT) and expressions over them, decoded as SeaORM's `QueryResult` decoded them.
impl Cells for PgRow {
    fn int(&self, i: usize) -> Result<Option<i64>, DbErr> {
        get_unchecked(self, i)
    }
    fn float(&self, i: usize) -> Result<Option<f64>, DbErr> {
        match get::<f64>(self, i) {
            Ok(v) => Ok(v),
            Err(_) => Ok(self.int(i)?.map(|v| v as f64)),
        }
    }
    fn boolean(&self, i: usize) -> Result<Option<bool>, DbErr> {
        match get::<bool>(self, i) {
            Ok(v) => Ok(v),
            Err(_) => Ok(self.int(i)?.map(|v| v != 0)),
        }
    }
    fn text(&self, i: usize) -> Result<Option<Cow<'_, str>>, DbErr> {
        Ok(get_unchecked::<&str>(self, i)?.map(Cow::Borrowed))
    }
}

/// Runs `sql` on `executor` and returns all its rows.
pub async fn fetch_all<'c, E>(executor: E, sql: &Sql) -> Result<Vec<PgRow>, DbErr>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    query(sql).fetch_all(executor).await.map_err(query_err)
}
