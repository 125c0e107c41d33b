//! Runs a compiled read on the reader pool and shapes the `results` value.
//!
//! The page statement reads `limit + 1` rows: the extra row only says whether there is a next
//! page. `entity_count` is given only when the client asks for counts (the official client's
//! paging loop asks `return_paging_info_without_counts`); then a page that ends the result
//! tells it (`offset + rows`), and otherwise one `COUNT(*)` of the matching rows does (no sort,
//! no window over the whole result). The count is a second statement: like the pages of one
//! `find`, which are separate requests, it may see a write the page did not.
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use serde_json::{Map, Value as Json};

use super::decode::{self, Layout};
use super::sqlite::{self, SqliteReads};
use crate::db::Pools;
use crate::query::{CompiledRead, Dialect, select};

/// Runs a compiled read; returns the `results` value
/// `{"entities": [...], "paging_info": {"entity_count": N, "has_next_page": bool}}`
/// (`entity_count` only when counts were asked for).
pub async fn execute(read: &CompiledRead, pools: &Pools) -> Result<Json, DbErr> {
    if let Some(reads) = &pools.sqlite_reads
        && read.dialect == Dialect::Sqlite
        && let Some(result) = on_sqlite(reads, read)
    {
        return result;
    }
    on_sqlx(read, &pools.reader).await
}

fn limit(read: &CompiledRead) -> usize {
    read.entities_per_page as usize
}

fn offset(read: &CompiledRead) -> i64 {
    i64::from(read.current_page.saturating_sub(1)) * i64::from(read.entities_per_page)
}

/// The count a page tells by itself: it ends the result, and is not past its end.
fn count_from_page(read: &CompiledRead, rows: usize, more: bool) -> Option<i64> {
    let off = offset(read);
    (!more && (rows > 0 || off == 0)).then(|| off + rows as i64)
}

fn results(entities: Vec<Json>, more: bool, count: Option<i64>) -> Json {
    let mut paging = Map::with_capacity(2);
    if let Some(n) = count {
        paging.insert("entity_count".into(), Json::from(n));
    }
    paging.insert("has_next_page".into(), Json::Bool(more));
    let mut out = Map::with_capacity(2);
    out.insert("entities".into(), Json::Array(entities));
    out.insert("paging_info".into(), Json::Object(paging));
    Json::Object(out)
}

/// The read on rusqlite; `None` when a bind value has a type rusqlite is not given here.
fn on_sqlite(reads: &SqliteReads, read: &CompiledRead) -> Option<Result<Json, DbErr>> {
    let (sql, values) = read.page.render(Dialect::Sqlite);
    let values = sqlite::values(values)?;
    let count = match read.counts {
        true => {
            let (sql, values) = read.count.render(Dialect::Sqlite);
            Some((sql, sqlite::values(values)?))
        }
        false => None,
    };
    let run = |conn: &rusqlite::Connection| -> Result<Json, DbErr> {
        let err = |e: rusqlite::Error| DbErr::Custom(format!("SQLite read: {e}"));
        let mut stmt = conn.prepare_cached(&sql).map_err(err)?;
        let layout = Layout::new(&stmt.column_names(), &read.fields)?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(values.iter()))
            .map_err(err)?;
        let mut entities = Vec::with_capacity(limit(read).min(1024));
        let mut more = false;
        while let Some(row) = rows.next().map_err(err)? {
            if entities.len() == limit(read) {
                more = true;
                break;
            }
            entities.push(decode::entity(
                row,
                &layout,
                &read.entity_type,
                &read.fields,
            )?);
        }
        let total = match (&count, count_from_page(read, entities.len(), more)) {
            (None, _) => None,
            (Some(_), Some(n)) => Some(n),
            (Some((sql, values)), None) => Some(
                conn.prepare_cached(sql)
                    .and_then(|mut s| {
                        s.query_row(rusqlite::params_from_iter(values.iter()), |r| r.get(0))
                    })
                    .map_err(err)?,
            ),
        };
        Ok(results(entities, more, total))
    };
    Some(
        reads
            .with(|conn| Ok(run(conn)))
            .unwrap_or_else(|e| Err(DbErr::Custom(format!("SQLite read connection: {e}")))),
    )
}

/// The read on SeaORM's pool (PostgreSQL; SQLite when rusqlite cannot take the values).
async fn on_sqlx(read: &CompiledRead, db: &DatabaseConnection) -> Result<Json, DbErr> {
    let mut rows = db.query_all_raw(read.page.statement(read.dialect)).await?;
    let more = rows.len() > limit(read);
    rows.truncate(limit(read));
    let entities = match rows.first() {
        Some(first) => {
            let layout = Layout::new(&first.column_names(), &read.fields)?;
            rows.iter()
                .map(|r| decode::entity(r, &layout, &read.entity_type, &read.fields))
                .collect::<Result<Vec<_>, _>>()?
        }
        None => Vec::new(),
    };
    let total = match (read.counts, count_from_page(read, entities.len(), more)) {
        (false, _) => None,
        (true, Some(n)) => Some(n),
        (true, None) => match db.query_one_raw(read.count.statement(read.dialect)).await? {
            Some(r) => Some(r.try_get("", select::TOTAL)?),
            None => Some(0),
        },
    };
    Ok(results(entities, more, total))
}
