//! Reads on SQLite through rusqlite, on the calling thread.
//!
//! sqlx runs each SQLite connection on a worker thread of its own and hands every command and
//! every row across threads; a profile of the reads bench showed those hand-offs (context
//! switches) taking about 85 % of the workers' time, SQLite's own work about 3 %. A cached read
//! is a few microseconds to a few milliseconds of SQLite work, so it runs here directly, on a
//! small pool of read-only connections (`query_only`) with their prepared-statement caches.
//! Writes never go this way: the DbWriter owns its sqlx connection.
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 128;

/// A pool of read-only rusqlite connections on one database file.
pub struct SqliteReads {
    path: PathBuf,
    busy_timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for SqliteReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteReads")
            .field("path", &self.path)
            .field("max_idle", &self.max_idle)
            .finish_non_exhaustive()
    }
}

impl SqliteReads {
    /// Connections are opened on first use; at most `max_idle` are kept between reads.
    pub fn new(path: PathBuf, busy_timeout: Duration, max_idle: usize) -> SqliteReads {
        SqliteReads {
            path,
            busy_timeout,
            max_idle: max_idle.max(1),
            idle: Mutex::new(Vec::new()),
        }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        conn.busy_timeout(self.busy_timeout)?;
        // Readers never write: every mutation goes through the DbWriter.
        conn.pragma_update(None, "query_only", true)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    /// Runs `f` on a pooled connection (opened when none is idle).
    pub fn with<R>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<R>,
    ) -> rusqlite::Result<R> {
        // A poisoned lock only means a panic elsewhere while pushing or popping: the list
        // itself is intact.
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => self.open()?,
        };
        let result = f(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle && conn.is_autocommit() {
            idle.push(conn);
        }
        result
    }
}

/// A compiled statement's bind values for rusqlite; `None` when one has a type the compiler
/// never binds (the caller then uses sqlx).
pub fn values(values: Vec<sea_orm::Value>) -> Option<Vec<rusqlite::types::Value>> {
    use rusqlite::types::Value as R;
    use sea_orm::Value as V;
    values
        .into_iter()
        .map(|v| {
            Some(match v {
                V::Bool(b) => b.map_or(R::Null, |b| R::Integer(i64::from(b))),
                V::TinyInt(i) => i.map_or(R::Null, |i| R::Integer(i.into())),
                V::SmallInt(i) => i.map_or(R::Null, |i| R::Integer(i.into())),
                V::Int(i) => i.map_or(R::Null, |i| R::Integer(i.into())),
                V::BigInt(i) => i.map_or(R::Null, R::Integer),
                V::Unsigned(i) => i.map_or(R::Null, |i| R::Integer(i.into())),
                V::Float(f) => f.map_or(R::Null, |f| R::Real(f.into())),
                V::Double(f) => f.map_or(R::Null, R::Real),
                V::String(s) => s.map_or(R::Null, R::Text),
                _ => return None,
            })
        })
        .collect()
}
