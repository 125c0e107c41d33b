//! Database access: connection pools, the fixed tables, and the DbWriter actor.
//!
//! Reads use [`Pools::reader`] concurrently. Every mutation goes through the
//! [`writer::DbWriter`] actor, which owns [`Pools::writer`] (one connection on SQLite).
pub mod entities;
pub mod reader;
pub mod registry;
pub mod rules;
pub mod writer;

use std::path::Path;
use std::time::Duration;

use migration::MigratorTrait;
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

use crate::config::DatabaseConfig;
use crate::schema::Backend;

impl Backend {
    /// The backend a database URL names, or a one-line problem.
    pub fn from_url(url: &str) -> Result<Backend, String> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else if url.is_empty() {
            Err("missing: expected sqlite://PATH or postgres://USER@HOST/DB".to_owned())
        } else {
            Err(format!(
                "unsupported scheme in {:?}: expected sqlite://PATH or postgres://USER@HOST/DB",
                crate::config::mask_url_password(url)
            ))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error("cannot create the database directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid data for {entity_type}.{field}: {problem}")]
    InvalidValue {
        entity_type: String,
        field: String,
        problem: String,
    },
    #[error("{0}")]
    Schema(String),
    #[error("the cached schema of {0} changed")]
    SchemaChanged(String),
    #[error("the DbWriter is not running")]
    WriterGone,
    /// A leader-only write (checkpoint, scan cursor, schema) from an instance that does not
    /// hold the leader lock (see `crate::cluster`).
    #[error("this instance is not the leader: leader-only write refused")]
    NotLeader,
}

/// The reader pool and the writer's own connection.
#[derive(Clone, Debug)]
pub struct Pools {
    pub backend: Backend,
    pub reader: DatabaseConnection,
    pub writer: DatabaseConnection,
    /// On SQLite, the page reads' own connections (see [`reader::sqlite`]).
    pub sqlite_reads: Option<std::sync::Arc<reader::sqlite::SqliteReads>>,
    /// On PostgreSQL, the page reads' own pools, one per thread that reads (see
    /// [`reader::postgres`]).
    pub pg_reads: Option<std::sync::Arc<reader::postgres::PgReads>>,
}

impl Pools {
    /// Closes the reader pool and the page reads' pools.
    pub async fn close_readers(&self) {
        if let Some(reads) = &self.pg_reads {
            reads.close().await;
        }
        self.reader.clone().close().await.ok();
    }
}

/// Connects both pools. For SQLite the file (and its directory) is created on first use, in
/// WAL mode with `synchronous=NORMAL` and a busy timeout, so readers never block the writer.
pub async fn connect(config: &DatabaseConfig) -> Result<Pools, StoreError> {
    let backend = Backend::from_url(&config.url).map_err(StoreError::Schema)?;
    if backend == Backend::Sqlite {
        ensure_sqlite_dir(&config.url)?;
    }
    let reader = Database::connect(options(config, backend, config.max_connections)).await?;
    let writer = Database::connect(options(config, backend, 1)).await?;
    let sqlite_reads = sqlite_file(&config.url)
        .filter(|_| backend == Backend::Sqlite)
        .map(|p| {
            std::sync::Arc::new(reader::sqlite::SqliteReads::new(
                p.into(),
                config.busy_timeout,
                config.max_connections as usize,
            ))
        });
    let pg_reads = match backend {
        Backend::Postgres => Some(std::sync::Arc::new(reader::postgres::PgReads::new(
            pg_options(&config.url)?,
            config.max_connections,
            &config.url,
        ))),
        Backend::Sqlite => None,
    };
    Ok(Pools {
        backend,
        reader,
        writer,
        sqlite_reads,
        pg_reads,
    })
}

fn options(config: &DatabaseConfig, backend: Backend, max: u32) -> ConnectOptions {
    let mut opts = ConnectOptions::new(config.url.clone());
    opts.max_connections(max)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false);
    if backend == Backend::Postgres {
        // Cache reads are short OLTP queries; PostgreSQL's JIT only adds latency to them
        // (about 0.5 s on the first reads after a bulk load, while statistics are stale).
        opts.map_sqlx_postgres_opts(|o| o.options([("jit", "off")]));
    }
    if backend == Backend::Sqlite {
        let busy = config.busy_timeout;
        opts.map_sqlx_sqlite_opts(move |o| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            o.create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(busy)
                .foreign_keys(false)
        });
    }
    opts
}

/// The PostgreSQL connection options of the reads (`url`): no JIT (see [`options`]), and
/// joins in the order written (`join_collapse_limit = 1`).
///
/// A page's statement joins the page's rows first, then one `LEFT JOIN` per entity type a
/// returned link can point to (eight for a Task's `entity`, `project` and `step`), and that is
/// the order to run them in. Left to search every order the outer joins allow, the planner
/// spent about 2 ms on such a page, against 0.36 ms with this setting, with the same plan
/// shape and a run of 3–5 ms (`EXPLAIN (ANALYZE, SUMMARY)` on the reads bench's database).
/// Filters compile to `EXISTS` subqueries, not joins, so the inner query is not affected.
fn pg_options(url: &str) -> Result<sea_orm::sqlx::postgres::PgConnectOptions, StoreError> {
    let options: sea_orm::sqlx::postgres::PgConnectOptions = url
        .parse()
        .map_err(|e| StoreError::Schema(format!("database.url: {e}")))?;
    Ok(options.options([("jit", "off"), ("join_collapse_limit", "1")]))
}

/// The file of a `sqlite://PATH` URL (`None` for in-memory databases and other backends).
pub fn sqlite_file(url: &str) -> Option<&Path> {
    let rest = url.strip_prefix("sqlite:")?;
    let path = rest
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| Path::new(path))
}

/// `sqlite://var/sgcache.sqlite` → creates `var/`.
fn ensure_sqlite_dir(url: &str) -> Result<(), StoreError> {
    let Some(path) = sqlite_file(url) else {
        return Ok(());
    };
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

/// Connects both pools and creates or upgrades the fixed tables: what the daemon and every
/// command that touches the database start with.
pub async fn open(config: &DatabaseConfig) -> Result<Pools, StoreError> {
    let pools = connect(config).await?;
    migrate(&pools).await?;
    Ok(pools)
}

/// Creates or upgrades the fixed tables (idempotent). On PostgreSQL, instances starting at
/// the same moment take turns (see [`crate::cluster::pg::serialized`]).
pub async fn migrate(pools: &Pools) -> Result<(), StoreError> {
    crate::cluster::pg::serialized(&pools.reader, async {
        migration::Migrator::up(&pools.writer, None).await?;
        Ok(())
    })
    .await
}
