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
//!   So every thread that reads gets its own pool ([`PgReads::pool`]), whose connections it
//!   opens itself.
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use sea_orm::sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sea_orm::sqlx::query::Query;
use sea_orm::sqlx::{self, AssertSqlSafe, Postgres, Row};
use sea_orm::{DbErr, RuntimeErr};
use sea_query_sqlx::SqlxValues;

use super::decode::Cells;
use crate::query::{Dialect, Sql};

/// The page reads' pools, one per thread that reads.
pub struct PgReads {
    options: PgConnectOptions,
    per_thread: u32,
    pools: Mutex<HashMap<ThreadId, PgPool>>,
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
    pub fn new(options: PgConnectOptions, max_connections: u32) -> PgReads {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        PgReads {
            options,
            per_thread: max_connections.div_ceil(cores).max(1),
            pools: Mutex::new(HashMap::new()),
        }
    }

    /// The calling thread's pool (created on its first read).
    pub fn pool(&self) -> PgPool {
        // A poisoned lock only means a panic elsewhere while inserting: the map is intact.
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools
            .entry(std::thread::current().id())
            .or_insert_with(|| {
                PgPoolOptions::new()
                    .max_connections(self.per_thread)
                    .min_connections(0)
                    .connect_lazy_with(self.options.clone())
            })
            .clone()
    }

    /// Closes every thread's pool.
    pub async fn close(&self) {
        let pools: Vec<PgPool> = {
            let mut map = self.pools.lock().unwrap_or_else(|p| p.into_inner());
            map.drain().map(|(_, pool)| pool).collect()
        };
        for pool in pools {
            pool.close().await;
        }
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

fn column_err(i: usize, e: impl std::fmt::Display) -> DbErr {
    DbErr::Custom(format!("column {i}: {e}"))
}

/// The cell `i` decoded as `T`; `None` for NULL, an error for a type `T` does not take.
fn get<'r, T>(row: &'r PgRow, i: usize) -> Result<Option<T>, DbErr>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get::<Option<T>, _>(i).map_err(|e| column_err(i, e))
}

/// The columns read are the ones sgcache's DDL creates (BIGINT, DOUBLE PRECISION, BOOLEAN,
/// TEXT) and expressions over them, decoded as SeaORM's `QueryResult` decoded them.
impl Cells for PgRow {
    fn int(&self, i: usize) -> Result<Option<i64>, DbErr> {
        get(self, i)
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
        Ok(get::<&str>(self, i)?.map(Cow::Borrowed))
    }
}

/// Runs `sql` on `executor` and returns all its rows.
pub async fn fetch_all<'c, E>(executor: E, sql: &Sql) -> Result<Vec<PgRow>, DbErr>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    query(sql).fetch_all(executor).await.map_err(query_err)
}
