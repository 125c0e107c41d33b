//! Runs a compiled read on the reader pool and shapes the `results` value.
//!
//! The page statement reads `limit + 1` rows: the extra row only says whether there is a next
//! page. Each multi-entity return field is then one statement over the page's ids, in the same
//! read transaction as the page (one snapshot). `entity_count` is given only when the client
//! asks for counts (the official client's paging loop asks
//! `return_paging_info_without_counts`); then a page that ends the result tells it
//! (`offset + rows`), and otherwise one `COUNT(*)` of the matching rows does (no sort, no
//! window over the whole result). The count is a statement of its own: like the pages of one
//! `find`, which are separate requests, it may see a write the page did not.
use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseConnection, DbErr, IsolationLevel, TransactionTrait,
};
use serde_json::{Map, Value as Json};

use super::decode::{self, Layout, MultiRow};
use super::sqlite::{self, SqliteReads};
use crate::db::Pools;
use crate::query::{CompiledRead, Decode, Dialect, Sql, select};

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

/// Each multi-entity field's statement over the page's ids, with its output key.
fn multi_statements<'r>(
    read: &'r CompiledRead,
    entities: &[Json],
) -> impl Iterator<Item = (&'r str, Sql)> + 'r {
    let ids: Vec<i64> = entities.iter().filter_map(|e| e["id"].as_i64()).collect();
    read.fields.iter().filter_map(move |f| match f.decode {
        Decode::Multi { index } => Some((
            f.key.as_str(),
            read.multis[index].statement(read.dialect, &ids),
        )),
        _ => None,
    })
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
    let err = |e: rusqlite::Error| DbErr::Custom(format!("SQLite read: {e}"));
    let rows = |conn: &rusqlite::Connection, sql: &str, values: &[rusqlite::types::Value]| {
        let mut stmt = conn.prepare_cached(sql).map_err(err)?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(values.iter()))
            .map_err(err)?;
        let mut out: Vec<MultiRow> = Vec::new();
        while let Some(row) = rows.next().map_err(err)? {
            out.push(decode::multi_row(row)?);
        }
        Ok::<_, DbErr>(out)
    };
    let page = |conn: &rusqlite::Connection| -> Result<(Vec<Json>, bool), DbErr> {
        let mut stmt = conn.prepare_cached(&sql).map_err(err)?;
        let layout = Layout::new(&stmt.column_names(), &read.fields)?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(values.iter()))
            .map_err(err)?;
        let mut entities = Vec::with_capacity(limit(read).min(1024));
        while let Some(row) = rows.next().map_err(err)? {
            if entities.len() == limit(read) {
                return Ok((entities, true));
            }
            entities.push(decode::entity(
                row,
                &layout,
                &read.entity_type,
                &read.fields,
            )?);
        }
        Ok((entities, false))
    };
    let run = |conn: &rusqlite::Connection| -> Result<Json, DbErr> {
        let (mut entities, more) = page(conn)?;
        for (key, statement) in multi_statements(read, &entities).collect::<Vec<_>>() {
            let (sql, values) = statement.render(Dialect::Sqlite);
            let values = sqlite::values(values)
                .ok_or_else(|| DbErr::Custom("multi-entity ids: unexpected bind".into()))?;
            decode::fill_multi(&mut entities, key, rows(conn, &sql, &values)?);
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
    // The page and its multi-entity statements see one snapshot.
    let snapshot = |conn: &rusqlite::Connection| -> Result<Json, DbErr> {
        if read.multis.is_empty() {
            return run(conn);
        }
        conn.execute_batch("BEGIN").map_err(err)?;
        let out = run(conn);
        conn.execute_batch(if out.is_ok() { "COMMIT" } else { "ROLLBACK" })
            .map_err(err)?;
        out
    };
    Some(
        reads
            .with(|conn| Ok(snapshot(conn)))
            .unwrap_or_else(|e| Err(DbErr::Custom(format!("SQLite read connection: {e}")))),
    )
}

/// The read on SeaORM's pool (PostgreSQL; SQLite when rusqlite cannot take the values).
async fn on_sqlx(read: &CompiledRead, db: &DatabaseConnection) -> Result<Json, DbErr> {
    let (entities, more) = if read.multis.is_empty() {
        page_on(read, db).await?
    } else {
        // The page and its multi-entity statements see one snapshot.
        let txn = db
            .begin_with_config(
                Some(IsolationLevel::RepeatableRead),
                Some(AccessMode::ReadOnly),
            )
            .await?;
        let (mut entities, more) = page_on(read, &txn).await?;
        for (key, statement) in multi_statements(read, &entities).collect::<Vec<_>>() {
            let rows = txn
                .query_all_raw(statement.statement(read.dialect))
                .await?
                .iter()
                .map(decode::multi_row)
                .collect::<Result<Vec<_>, _>>()?;
            decode::fill_multi(&mut entities, key, rows);
        }
        txn.commit().await?;
        (entities, more)
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

/// The page's entities (multi-entity fields still empty) and whether there is a next page.
async fn page_on(
    read: &CompiledRead,
    db: &impl ConnectionTrait,
) -> Result<(Vec<Json>, bool), DbErr> {
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
    Ok((entities, more))
}
