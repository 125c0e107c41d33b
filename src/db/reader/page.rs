//! Runs a compiled read on the reader pool and writes the `{"results": ...}` body.
//!
//! Each multi-entity return field is one statement over the page's ids: on SQLite it runs
//! first, over the page's inner query, and the page's rows are then serialised straight to the
//! body as they are read; on PostgreSQL, whose rows are read whole, it runs after the page over
//! the ids read (an index scan). No `serde_json::Value` per entity; all in one read snapshot.
//! A PostgreSQL read by id with no multi-entity field runs on the thread's pipelined
//! connection ([`super::pipelined`]), and on a connection of its own if that fails.
//! The page reads `limit + 1` rows: the extra row only says whether there is a next page. `entity_count` is given only when the
//! client asks for counts (the official client's paging loop asks
//! `return_paging_info_without_counts`); then a page that ends the result tells it
//! (`offset + rows`), and otherwise one `COUNT(*)` of the matching rows does (no sort, no
//! window over the whole result). The count is a statement of its own: like the pages of one
//! `find`, which are separate requests, it may see a write the page did not.
use sea_orm::sqlx::postgres::{PgConnection, PgRow};
use sea_orm::sqlx::{Column, Connection, Row};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, QueryResult, TransactionTrait};
use serde::Serialize;
use serde_json::Value as Json;

use super::decode::{self, Cells, EntityOut, Layout, MultiLinks};
use super::pipelined::Pipeline;
use super::postgres::{self, PgReads};
use super::sqlite::{self, SqliteReads};
use crate::db::Pools;
use crate::query::{CompiledRead, Dialect, select};

/// A locally answered read: the response body and how many entities it holds.
#[derive(Debug)]
pub struct Body {
    /// `{"results": {"entities": [...], "paging_info": {...}}}`, compact.
    pub bytes: Vec<u8>,
    pub entities: usize,
}

/// Runs a compiled read; returns the `results` value
/// `{"entities": [...], "paging_info": {"entity_count": N, "has_next_page": bool}}`
/// (`entity_count` only when counts were asked for).
pub async fn execute(read: &CompiledRead, pools: &Pools) -> Result<Json, DbErr> {
    let body = execute_body(read, pools).await?;
    let mut value: Json = serde_json::from_slice(&body.bytes).map_err(json_err)?;
    Ok(value["results"].take())
}

/// Runs a compiled read; returns the whole response body.
pub async fn execute_body(read: &CompiledRead, pools: &Pools) -> Result<Body, DbErr> {
    if let Some(reads) = &pools.sqlite_reads
        && read.dialect == Dialect::Sqlite
        && let Some(result) = on_sqlite(reads, read)
    {
        return result;
    }
    match &pools.pg_reads {
        Some(reads) => on_postgres(read, reads).await,
        None => on_sqlx(read, &pools.reader).await,
    }
}

fn json_err(e: serde_json::Error) -> DbErr {
    DbErr::Custom(format!("the page's JSON: {e}"))
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

#[derive(Serialize)]
struct Paging {
    #[serde(skip_serializing_if = "Option::is_none")]
    entity_count: Option<i64>,
    has_next_page: bool,
}

/// The body, written entity by entity.
struct BodyWriter<'a> {
    read: &'a CompiledRead,
    multis: &'a [MultiLinks],
    out: Vec<u8>,
    entities: usize,
    /// A row past the page was seen.
    more: bool,
}

impl<'a> BodyWriter<'a> {
    fn new(read: &'a CompiledRead, multis: &'a [MultiLinks]) -> BodyWriter<'a> {
        let mut out = Vec::with_capacity(256 + 128 * limit(read).min(1024));
        out.extend_from_slice(br#"{"results":{"entities":["#);
        BodyWriter {
            read,
            multis,
            out,
            entities: 0,
            more: false,
        }
    }

    /// Writes the entity of `row`; a row past the page only sets `more`.
    fn row<C: Cells>(&mut self, row: &C, layout: &Layout) -> Result<(), DbErr> {
        if self.entities == limit(self.read) {
            self.more = true;
            return Ok(());
        }
        if self.entities > 0 {
            self.out.push(b',');
        }
        let entity = EntityOut {
            row,
            layout,
            entity_type: &self.read.entity_type,
            fields: &self.read.fields,
            multis: self.multis,
        };
        serde_json::to_writer(&mut self.out, &entity).map_err(json_err)?;
        self.entities += 1;
        Ok(())
    }

    /// The count a page tells by itself (see [`count_from_page`]).
    fn own_count(&self) -> Option<i64> {
        count_from_page(self.read, self.entities, self.more)
    }

    /// Whether the count statement must run: counts were asked for and the page does not tell
    /// the count by itself.
    fn needs_count(&self) -> bool {
        self.read.counts && self.own_count().is_none()
    }

    /// Ends the body; `counted` is the count statement's answer when [`Self::needs_count`].
    fn finish(mut self, counted: Option<i64>) -> Result<Body, DbErr> {
        let entity_count = if self.read.counts {
            self.own_count().or(counted)
        } else {
            None
        };
        self.out.extend_from_slice(br#"],"paging_info":"#);
        let paging = Paging {
            entity_count,
            has_next_page: self.more,
        };
        serde_json::to_writer(&mut self.out, &paging).map_err(json_err)?;
        self.out.extend_from_slice(b"}}");
        Ok(Body {
            bytes: self.out,
            entities: self.entities,
        })
    }
}

/// The read on rusqlite; `None` when a bind value has a type rusqlite is not given here.
fn on_sqlite(reads: &SqliteReads, read: &CompiledRead) -> Option<Result<Body, DbErr>> {
    let render = |sql: &crate::query::Sql| {
        let (text, values) = sql.render(Dialect::Sqlite);
        Some((text, sqlite::values(values)?))
    };
    let page = render(&read.page)?;
    let count = if read.counts {
        Some(render(&read.count)?)
    } else {
        None
    };
    let multis = read
        .multis
        .iter()
        .map(|m| render(&m.over_page(&read.ids)))
        .collect::<Option<Vec<_>>>()?;
    let err = |e: rusqlite::Error| DbErr::Custom(format!("SQLite read: {e}"));
    let run = |conn: &rusqlite::Connection| -> Result<Body, DbErr> {
        let mut links = Vec::with_capacity(multis.len());
        for (sql, values) in &multis {
            let mut stmt = conn.prepare_cached(sql).map_err(err)?;
            let mut rows = stmt
                .query(rusqlite::params_from_iter(values.iter()))
                .map_err(err)?;
            let mut found = MultiLinks::new();
            while let Some(row) = rows.next().map_err(err)? {
                decode::add_multi_row(&mut found, row)?;
            }
            links.push(found);
        }
        let mut body = BodyWriter::new(read, &links);
        let (sql, values) = &page;
        let mut stmt = conn.prepare_cached(sql).map_err(err)?;
        let layout = Layout::new(&stmt.column_names(), &read.fields)?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(values.iter()))
            .map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            body.row(row, &layout)?;
        }
        let counted = match &count {
            Some((sql, values)) if body.needs_count() => Some(
                conn.prepare_cached(sql)
                    .and_then(|mut s| {
                        s.query_row(rusqlite::params_from_iter(values.iter()), |r| r.get(0))
                    })
                    .map_err(err)?,
            ),
            _ => None,
        };
        body.finish(counted)
    };
    // The multi-entity statements and the page see one snapshot.
    let snapshot = |conn: &rusqlite::Connection| -> Result<Body, DbErr> {
        if multis.is_empty() {
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

/// The column layout of a result whose first row is `first` (`None` when there are none).
fn layout_of<R>(
    read: &CompiledRead,
    first: Option<&R>,
    names: impl Fn(&R) -> Vec<String>,
) -> Result<Option<Layout>, DbErr> {
    first
        .map(|r| Layout::new(&names(r), &read.fields))
        .transpose()
}

/// The ids of the page's rows (not the row past it).
fn page_ids<C: Cells>(
    read: &CompiledRead,
    rows: &[C],
    layout: Option<&Layout>,
) -> Result<Vec<i64>, DbErr> {
    let Some(layout) = layout else {
        return Ok(Vec::new());
    };
    rows.iter()
        .take(limit(read))
        .filter_map(|r| layout.id(r).transpose())
        .collect()
}

/// The page's rows, read whole, written to a body (the count is the caller's).
fn write_rows<'a, C: Cells>(
    read: &'a CompiledRead,
    links: &'a [MultiLinks],
    rows: &[C],
    layout: Option<&Layout>,
) -> Result<BodyWriter<'a>, DbErr> {
    let mut body = BodyWriter::new(read, links);
    if let Some(layout) = layout {
        for row in rows {
            body.row(row, layout)?;
        }
    }
    Ok(body)
}

/// The read on PostgreSQL: by id on the thread's pipelined connection when it can be
/// (falling back to a connection of its own when that fails), else on a connection of the
/// thread's pool: the page, then (in one snapshot) each multi-entity statement over the
/// page's ids, then the count when one is needed.
async fn on_postgres(read: &CompiledRead, reads: &PgReads) -> Result<Body, DbErr> {
    let pipelines = &reads.pipelines;
    if read.by_id
        && read.multis.is_empty()
        && let Some(pipeline) = pipelines.get().await
    {
        match on_pipeline(read, &pipeline).await {
            Ok(body) => {
                pipelines.count_read();
                return Ok(body);
            }
            Err(e) => {
                tracing::debug!(error = %e, "pipelined read failed; reading on a connection of its own");
                pipelines.count_fallback();
            }
        }
    }
    let mut conn = reads.get().await?;
    let body = on_postgres_conn(read, &mut conn).await?;
    conn.done();
    Ok(body)
}

/// The answer of a `COUNT(*)` statement (no row: 0).
fn count_of<C: Cells>(rows: &[C]) -> Result<Option<i64>, DbErr> {
    match rows.first() {
        Some(r) => r.int(0),
        None => Ok(Some(0)),
    }
}

/// A one-statement read (and its count) on a pipelined connection.
async fn on_pipeline(read: &CompiledRead, pipeline: &Pipeline) -> Result<Body, DbErr> {
    let rows = pipeline.query(&read.page).await?;
    let names = |r: &tokio_postgres::Row| r.columns().iter().map(|c| c.name().to_owned()).collect();
    let layout = layout_of(read, rows.first(), names)?;
    let body = write_rows(read, &[], &rows, layout.as_ref())?;
    let counted = if body.needs_count() {
        count_of(&pipeline.query(&read.count).await?)?
    } else {
        None
    };
    body.finish(counted)
}

async fn on_postgres_conn(read: &CompiledRead, conn: &mut PgConnection) -> Result<Body, DbErr> {
    let names = |r: &PgRow| r.columns().iter().map(|c| c.name().to_owned()).collect();
    let (links, rows, layout) = if read.multis.is_empty() {
        let rows = postgres::fetch_all(&mut *conn, &read.page).await?;
        let layout = layout_of(read, rows.first(), names)?;
        (Vec::new(), rows, layout)
    } else {
        let mut txn = conn
            .begin_with(postgres::BEGIN_SNAPSHOT)
            .await
            .map_err(postgres::query_err)?;
        let rows = postgres::fetch_all(&mut *txn, &read.page).await?;
        let layout = layout_of(read, rows.first(), names)?;
        let ids = page_ids(read, &rows, layout.as_ref())?;
        let mut links = Vec::with_capacity(read.multis.len());
        for m in &read.multis {
            let mut found = MultiLinks::new();
            for row in postgres::fetch_all(&mut *txn, &m.over_ids(&ids)).await? {
                decode::add_multi_row(&mut found, &row)?;
            }
            links.push(found);
        }
        txn.commit().await.map_err(postgres::query_err)?;
        (links, rows, layout)
    };
    let body = write_rows(read, &links, &rows, layout.as_ref())?;
    let counted = if body.needs_count() {
        count_of(&postgres::fetch_all(&mut *conn, &read.count).await?)?
    } else {
        None
    };
    body.finish(counted)
}

/// The read on SeaORM's pool: SQLite when rusqlite cannot take the bind values (PostgreSQL
/// reads go to [`on_postgres`]).
async fn on_sqlx(read: &CompiledRead, db: &DatabaseConnection) -> Result<Body, DbErr> {
    let names = |r: &QueryResult| r.column_names();
    if read.multis.is_empty() {
        let rows = db.query_all_raw(read.page.statement(read.dialect)).await?;
        let layout = layout_of(read, rows.first(), names)?;
        let body = write_rows(read, &[], &rows, layout.as_ref())?;
        return sqlx_finish(read, db, body).await;
    }
    // The multi-entity statements and the page see one snapshot.
    let txn = db.begin().await?;
    let rows = txn.query_all_raw(read.page.statement(read.dialect)).await?;
    let layout = layout_of(read, rows.first(), names)?;
    let mut links = Vec::with_capacity(read.multis.len());
    for m in &read.multis {
        let mut found = MultiLinks::new();
        let statement = m.over_page(&read.ids);
        for row in txn.query_all_raw(statement.statement(read.dialect)).await? {
            decode::add_multi_row(&mut found, &row)?;
        }
        links.push(found);
    }
    txn.commit().await?;
    let body = write_rows(read, &links, &rows, layout.as_ref())?;
    sqlx_finish(read, db, body).await
}

/// The body with its count, counted on SeaORM's pool when the page does not tell it.
async fn sqlx_finish(
    read: &CompiledRead,
    db: &DatabaseConnection,
    body: BodyWriter<'_>,
) -> Result<Body, DbErr> {
    let counted = if body.needs_count() {
        match db.query_one_raw(read.count.statement(read.dialect)).await? {
            Some(r) => Some(r.try_get("", select::TOTAL)?),
            None => Some(0),
        }
    } else {
        None
    };
    body.finish(counted)
}
