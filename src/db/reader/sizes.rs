//! How big the cache is: rows per cached table and the database's size on disk.
use sea_orm::{ConnectionTrait, DbErr, Statement};

use super::decode;
use crate::db::Pools;
use crate::schema::Backend;

/// `(active, total)` rows of the cached table `table`.
pub async fn table_rows(pools: &Pools, table: &str) -> Result<(u64, u64), DbErr> {
    let db = &pools.reader;
    let sql = format!(
        "SELECT COALESCE(SUM(CASE WHEN _active THEN 1 ELSE 0 END), 0) AS active, \
         COUNT(*) AS total FROM \"{}\"",
        table.replace('"', "\"\"")
    );
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?;
    let count = |column| -> Result<u64, DbErr> {
        Ok(match &row {
            Some(r) => decode::get_named::<i64>(r, column)?.unwrap_or(0).max(0) as u64,
            None => 0,
        })
    };
    Ok((count("active")?, count("total")?))
}

/// The database's size in bytes (SQLite: pages × page size; PostgreSQL: `pg_database_size`).
pub async fn database_bytes(pools: &Pools) -> Result<Option<u64>, DbErr> {
    let sql = match pools.backend {
        Backend::Sqlite => {
            "SELECT page_count * page_size AS bytes FROM pragma_page_count(), pragma_page_size()"
        }
        Backend::Postgres => "SELECT pg_database_size(current_database()) AS bytes",
    };
    let db = &pools.reader;
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?;
    Ok(match row {
        Some(r) => decode::get_named::<i64>(&r, "bytes")?.map(|b| b.max(0) as u64),
        None => None,
    })
}
