//! The PostgreSQL side of the election: advisory locks in sgcache's own key space.
//!
//! Keys are pairs `(CLASS, n)` (the two-`int4` form: `pg_locks` shows them as
//! `classid = CLASS, objid = n, objsubid = 2`), scoped to the current database:
//! - [`LEADER`]: held by the leader, session-level, on its dedicated [`LockSession`].
//! - [`FENCE`]: taken shared by every leader-only transaction ([`fence`]), exclusively (and at
//!   once released) by a new leader before it starts leading ([`LockSession::take_fence`]).
//! - [`DDL`]: serializes migrations ([`serialized`]) and schema DDL ([`ddl_lock`]) across
//!   instances started at the same moment (two concurrent `CREATE TABLE`s of one name fail on
//!   PostgreSQL's catalog indexes).
use std::future::Future;
use std::time::Duration;

use sea_orm::sqlx::postgres::PgConnectOptions;
use sea_orm::sqlx::{self, Connection, PgConnection};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use super::Fence;
use crate::db::StoreError;

/// "SGCA": sgcache's advisory-lock class.
pub const CLASS: i32 = 0x5347_4341;
pub const LEADER: i32 = 1;
pub const FENCE: i32 = 2;
pub const DDL: i32 = 3;

/// Whether the session `$3` holds the advisory lock `($1, $2)` in this database.
const HOLDS_SQL: &str = "SELECT EXISTS (SELECT 1 FROM pg_locks \
     WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
     AND classid = $1::int4::oid AND objid = $2::int4::oid AND objsubid = 2 \
     AND granted AND pid = $3) AS held";

/// PostgreSQL's limit on `application_name` (NAMEDATALEN - 1).
const MAX_APPLICATION_NAME: usize = 63;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("lock session: {0}")]
    Db(#[from] sqlx::Error),
    #[error("lock session: no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
}

/// A dedicated connection (never from a pool, so never recycled behind our back) that holds
/// the leader lock while this instance leads. The lock dies with the connection.
pub struct LockSession {
    conn: PgConnection,
    pid: i32,
    timeout: Duration,
}

impl LockSession {
    /// Opens the session with `pool`'s connect options, named `sgcache <instance>` in
    /// `pg_stat_activity`, with server-side TCP keepalives so that the server drops the
    /// session (and the lock) within ~15 s when the leader's host vanishes. Each query on it
    /// fails after `timeout` (a leader that cannot confirm its lock stops leading).
    pub async fn connect(
        pool: &DatabaseConnection,
        instance: &str,
        timeout: Duration,
    ) -> Result<LockSession, LockError> {
        let name = application_name(instance);
        let options: PgConnectOptions = (*pool.get_postgres_connection_pool().connect_options())
            .clone()
            .application_name(&name)
            .options([
                ("tcp_keepalives_idle", "5"),
                ("tcp_keepalives_interval", "2"),
                ("tcp_keepalives_count", "3"),
            ]);
        let mut conn = within(timeout, PgConnection::connect_with(&options)).await?;
        let pid: i32 = within(
            timeout,
            sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut conn),
        )
        .await?;
        Ok(LockSession { conn, pid, timeout })
    }

    /// The server process of this session (what [`fence`] checks).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Takes the leader lock if nobody holds it; never waits.
    pub async fn try_lead(&mut self) -> Result<bool, LockError> {
        let query = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(CLASS)
            .bind(LEADER)
            .fetch_one(&mut self.conn);
        within(self.timeout, query).await
    }

    /// Whether this session still holds the leader lock (a query on the session itself: an
    /// error means the connection, hence the lock, is gone).
    pub async fn holds_lead(&mut self) -> Result<bool, LockError> {
        let query = sqlx::query_scalar(HOLDS_SQL)
            .bind(CLASS)
            .bind(LEADER)
            .bind(self.pid)
            .fetch_one(&mut self.conn);
        within(self.timeout, query).await
    }

    /// Waits until no leader-only transaction of a previous leader is running (they hold the
    /// fence shared), then lets the fence go. Unbounded on purpose: such a transaction either
    /// commits or rolls back, and the new leader must not read checkpoints before it does.
    pub async fn take_fence(&mut self) -> Result<(), LockError> {
        sqlx::query("SELECT pg_advisory_lock($1, $2)")
            .bind(CLASS)
            .bind(FENCE)
            .execute(&mut self.conn)
            .await?;
        let unlock = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
            .bind(CLASS)
            .bind(FENCE)
            .execute(&mut self.conn);
        within(self.timeout, unlock).await?;
        Ok(())
    }

    /// Ends the session: every lock it holds is released with it.
    pub async fn close(self) {
        let timeout = self.timeout;
        let _ = within(timeout, async { self.conn.close().await }).await;
    }
}

async fn within<T, F>(timeout: Duration, fut: F) -> Result<T, LockError>
where
    F: Future<Output = Result<T, sqlx::Error>>,
{
    match actix_web::rt::time::timeout(timeout, fut).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(LockError::Timeout(timeout)),
    }
}

/// `sgcache <instance>`, cut to PostgreSQL's limit on a character boundary.
fn application_name(instance: &str) -> String {
    let mut name = format!("sgcache {instance}");
    while name.len() > MAX_APPLICATION_NAME {
        name.pop();
    }
    name
}

fn statement(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// First statement of a leader-only transaction on `tx`: takes the fence shared, then checks
/// that the lock session `pid` still holds the leader lock. Both last until the transaction
/// ends, so a new leader's [`LockSession::take_fence`] waits for this transaction.
pub async fn fence<C: ConnectionTrait>(tx: &C, fence: Fence) -> Result<(), StoreError> {
    let pid = match fence {
        Fence::Open => return Ok(()),
        Fence::Closed => return Err(StoreError::NotLeader),
        Fence::Session(pid) => pid,
    };
    tx.execute_raw(statement(
        "SELECT pg_advisory_xact_lock_shared($1, $2)",
        vec![CLASS.into(), FENCE.into()],
    ))
    .await?;
    let row = tx
        .query_one_raw(statement(
            HOLDS_SQL,
            vec![CLASS.into(), LEADER.into(), pid.into()],
        ))
        .await?;
    let held: bool = match row {
        Some(row) => row.try_get("", "held")?,
        None => false,
    };
    if held {
        Ok(())
    } else {
        Err(StoreError::NotLeader)
    }
}

/// Serializes schema DDL with migrations and with other instances' DDL: the lock lasts until
/// the transaction `tx` ends. A no-op on SQLite (one instance per file).
pub async fn ddl_lock<C: ConnectionTrait>(tx: &C) -> Result<(), StoreError> {
    if tx.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    tx.execute_raw(statement(
        "SELECT pg_advisory_xact_lock($1, $2)",
        vec![CLASS.into(), DDL.into()],
    ))
    .await?;
    Ok(())
}

fn db_err(e: sqlx::Error) -> StoreError {
    StoreError::Db(sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(
        std::sync::Arc::new(e),
    )))
}

/// Runs `work` (migrations) while holding the DDL lock on a connection of `pool`, so N
/// instances starting at once migrate one after the other; the others wait. A no-op wrapper
/// on SQLite. `work` must not need a connection of `pool` (migrations use the writer's).
pub async fn serialized<T, F>(pool: &DatabaseConnection, work: F) -> Result<T, StoreError>
where
    F: Future<Output = Result<T, StoreError>>,
{
    if pool.get_database_backend() != DbBackend::Postgres {
        return work.await;
    }
    let mut conn = pool
        .get_postgres_connection_pool()
        .acquire()
        .await
        .map_err(db_err)?;
    sqlx::query("SELECT pg_advisory_lock($1, $2)")
        .bind(CLASS)
        .bind(DDL)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    let result = work.await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
        .bind(CLASS)
        .bind(DDL)
        .execute(&mut *conn)
        .await;
    if unlocked.is_err() {
        // Never hand a connection that may still hold the lock back to the pool.
        drop(conn.detach());
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_name_fits_postgres_limit() {
        assert_eq!(
            application_name("h:1:127.0.0.1:80"),
            "sgcache h:1:127.0.0.1:80"
        );
        let long = format!("{}:1:0.0.0.0:8010", "é".repeat(60));
        let name = application_name(&long);
        assert!(name.len() <= MAX_APPLICATION_NAME);
        assert!(name.starts_with("sgcache éé"));
    }

    #[test]
    fn class_is_sgca() {
        assert_eq!(CLASS.to_be_bytes(), *b"SGCA");
    }
}
