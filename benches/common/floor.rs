//! Hand-written floors for the reads bench: the best SQL for the same answer on the raw driver
//! (rusqlite on SQLite, on the calling thread; sqlx's `PgConnection` on PostgreSQL, taken from
//! a list of idle connections with no test round trip (sqlx's pool pings each connection it
//! hands out and each it is given back); prepared statements cached, rows decoded by column
//! index and borrowed, on sqlx without a per-cell type check (`get_unchecked`, as sgcache
//! decodes the columns its own DDL made)), serialised straight to JSON bytes. Nothing of
//! sgcache is used here.
//!
//! * find by id: the row by primary key; on PostgreSQL also on one pipelined tokio-postgres
//!   connection that all concurrent finds share (the better of the two is the floor).
//! * a page of Tasks: one SELECT that picks the page's ids in an inner query (`ORDER BY id
//!   LIMIT/OFFSET`, literals on SQLite, which re-prepares a cached statement with a bound LIMIT)
//!   and LEFT JOINs the link names for those rows only (a link whose target is retired reads as
//!   `null`), and ONE batched query for the page's multi-entity rows
//!   (on SQLite selected by the page's ORDER BY/LIMIT and run first, so that each page row is
//!   serialised while it is read; `= ANY($1)` with the page's ids on PostgreSQL), merged by id;
//!   `has_next_page` from `limit + 1` rows, no count (the client's paging loop asks without
//!   counts). Links resolve through every type the schema allows the field (`Task.entity`:
//!   Asset, Element, Scene, Sequence, Shot, Project; `task_assignees`: HumanUser, Group), not
//!   only those the bench's data holds: SQL written for the schema must also answer right
//!   once a Task links to an Element. (A `UNION ALL` of one inner join per target type for the
//!   assignees was slower on both backends: 0.76 against 0.59 ms on SQLite, 0.59 against
//!   0.50 ms on PostgreSQL, 500 Tasks.)
use std::collections::HashMap;
use std::io::Write;
use std::sync::{LazyLock, Mutex};

use rusqlite::Connection;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgConnection};
use sea_orm::sqlx::{self, ColumnIndex, ConnectOptions as _, Connection as _, Decode, Row, Type};
use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer as _};

/// `SGCACHE_BENCH_FLOOR_SNAPSHOT` is set: PostgreSQL's page floor reads in one `REPEATABLE READ`
/// snapshot, as sgcache's page does (read once, not on every page).
pub static IN_SNAPSHOT: LazyLock<bool> =
    LazyLock::new(|| std::env::var_os("SGCACHE_BENCH_FLOOR_SNAPSHOT").is_some());

/// A pool of the raw driver on the bench database.
pub enum FloorDb {
    /// The database file and idle connections (used on the calling thread).
    Sqlite(String, Mutex<Vec<Connection>>),
    /// The database URL and idle connections (a new one opened when none is idle), and one
    /// pipelined tokio-postgres connection with the find by id prepared (opened on first use).
    Postgres(String, Mutex<Vec<PgConnection>>, Box<Pipelined>),
}

/// One tokio-postgres connection on which concurrent finds by id are pipelined.
type Pipelined = tokio::sync::OnceCell<(tokio_postgres::Client, tokio_postgres::Statement)>;

#[derive(Serialize)]
struct Link<'a> {
    #[serde(rename = "type")]
    ty: &'a str,
    id: i64,
    name: Option<&'a str>,
}

const SHOT_BY_ID_SQLITE: &str =
    r#"SELECT "id", "code", "sg_status_list" FROM "shot" WHERE "id" = ?1 AND "_active""#;
const SHOT_BY_ID_PG: &str =
    r#"SELECT "id", "code", "sg_status_list" FROM "shot" WHERE "id" = $1 AND "_active""#;

/// Entity link columns: `(type, id of an active target, its name)`. The page's ids come from an
/// inner query (`task_page_head!() LIMIT … OFFSET … task_page_tail!()`), the joins run for the
/// page's rows only.
macro_rules! task_page_head {
    () => {
        r#"SELECT t."id", t."content", t."sg_status_list",
  t."entity__type", COALESCE(e1."id", e2."id", e3."id", e4."id", e5."id", e6."id"),
  COALESCE(e1."code", e2."code", e3."code", e4."name", e5."code", e6."code"),
  t."project__type", p."id", p."name",
  t."step__type", s."id", s."code",
  t."start_date", t."due_date", t."duration", t."updated_at"
FROM (SELECT "id" FROM "task" WHERE "_active" ORDER BY "id" LIMIT "#
    };
}

macro_rules! task_page_tail {
    () => {
        r#") pg JOIN "task" t ON t."id" = pg."id"
LEFT JOIN "shot" e1 ON t."entity__type" = 'Shot' AND e1."id" = t."entity__id" AND e1."_active"
LEFT JOIN "asset" e2 ON t."entity__type" = 'Asset' AND e2."id" = t."entity__id" AND e2."_active"
LEFT JOIN "sequence" e3 ON t."entity__type" = 'Sequence' AND e3."id" = t."entity__id" AND e3."_active"
LEFT JOIN "project" e4 ON t."entity__type" = 'Project' AND e4."id" = t."entity__id" AND e4."_active"
LEFT JOIN "element" e5 ON t."entity__type" = 'Element' AND e5."id" = t."entity__id" AND e5."_active"
LEFT JOIN "scene" e6 ON t."entity__type" = 'Scene' AND e6."id" = t."entity__id" AND e6."_active"
LEFT JOIN "project" p ON t."project__type" = 'Project' AND p."id" = t."project__id" AND p."_active"
LEFT JOIN "step" s ON t."step__type" = 'Step' AND s."id" = t."step__id" AND s."_active"
ORDER BY t."id""#
    };
}

const ASSIGNEES_SQLITE: &str = r#"SELECT m."parent_id", m."child_type", COALESCE(h."id", g."id"), COALESCE(h."name", g."code")
FROM "task_task_assignees" m
LEFT JOIN "humanuser" h ON m."child_type" = 'HumanUser' AND h."id" = m."child_id" AND h."_active"
LEFT JOIN "group" g ON m."child_type" = 'Group' AND g."id" = m."child_id" AND g."_active"
WHERE COALESCE(h."id", g."id") IS NOT NULL AND m."parent_id" IN (SELECT "id" FROM "task" WHERE "_active" ORDER BY "id" LIMIT {limit} OFFSET {offset})
ORDER BY m."parent_id", m."position""#;
const ASSIGNEES_PG: &str = r#"SELECT m."parent_id", m."child_type", COALESCE(h."id", g."id"), COALESCE(h."name", g."code")
FROM "task_task_assignees" m
LEFT JOIN "humanuser" h ON m."child_type" = 'HumanUser' AND h."id" = m."child_id" AND h."_active"
LEFT JOIN "group" g ON m."child_type" = 'Group' AND g."id" = m."child_id" AND g."_active"
WHERE COALESCE(h."id", g."id") IS NOT NULL AND m."parent_id" = ANY($1)
ORDER BY m."parent_id", m."position""#;

fn link<'r, R: Row>(row: &'r R, i: usize) -> Option<Link<'r>>
where
    usize: ColumnIndex<R>,
    Option<&'r str>: Decode<'r, R::Database> + Type<R::Database>,
    Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
{
    let ty: Option<&str> = row.get_unchecked(i);
    let id: Option<i64> = row.get_unchecked(i + 1);
    Some(Link {
        ty: ty?,
        id: id?,
        name: row.get_unchecked(i + 2),
    })
}

/// `{"results": {"entities": [...], "paging_info": {...}}}` for a page of Tasks.
fn encode_tasks<'r, R: Row>(
    rows: &'r [R],
    multi: &'r [R],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), serde_json::Error>
where
    usize: ColumnIndex<R>,
    Option<&'r str>: Decode<'r, R::Database> + Type<R::Database>,
    &'r str: Decode<'r, R::Database> + Type<R::Database>,
    Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let mut entities = Vec::with_capacity(rows.len().min(limit));
    let mut m = 0;
    for row in rows.iter().take(limit) {
        let id: i64 = row.get_unchecked(0);
        let mut assignees = Vec::new();
        while m < multi.len() && multi[m].get_unchecked::<i64, _>(0) < id {
            m += 1;
        }
        while m < multi.len() && multi[m].get_unchecked::<i64, _>(0) == id {
            let r = &multi[m];
            assignees.push(Link {
                ty: r.get_unchecked(1),
                id: r.get_unchecked(2),
                name: r.get_unchecked(3),
            });
            m += 1;
        }
        entities.push(TaskOut {
            ty: "Task",
            id,
            content: row.get_unchecked(1),
            sg_status_list: row.get_unchecked(2),
            entity: link(row, 3),
            project: link(row, 6),
            step: link(row, 9),
            task_assignees: assignees,
            start_date: row.get_unchecked(12),
            due_date: row.get_unchecked(13),
            duration: row.get_unchecked(14),
            updated_at: row.get_unchecked(15),
        });
    }
    let results = Results {
        entities,
        paging_info: Paging {
            entity_count: None,
            has_next_page: rows.len() > limit,
        },
    };
    serde_json::to_writer(out, &Envelope { results })
}

#[derive(Serialize)]
struct TaskOut<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    id: i64,
    content: Option<&'a str>,
    sg_status_list: Option<&'a str>,
    entity: Option<Link<'a>>,
    project: Option<Link<'a>>,
    step: Option<Link<'a>>,
    task_assignees: Vec<Link<'a>>,
    start_date: Option<&'a str>,
    due_date: Option<&'a str>,
    duration: Option<i64>,
    updated_at: Option<&'a str>,
}

#[derive(Serialize)]
struct ShotOut<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    id: i64,
    code: Option<&'a str>,
    sg_status_list: Option<&'a str>,
}

#[derive(Serialize)]
struct Paging {
    #[serde(skip_serializing_if = "Option::is_none")]
    entity_count: Option<i64>,
    has_next_page: bool,
}

#[derive(Serialize)]
struct Envelope<T> {
    results: T,
}

#[derive(Serialize)]
struct Results<T> {
    entities: Vec<T>,
    paging_info: Paging,
}

fn encode_shot<'r, R: Row>(row: Option<&'r R>, out: &mut Vec<u8>) -> Result<(), serde_json::Error>
where
    usize: ColumnIndex<R>,
    Option<&'r str>: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let entities: Vec<ShotOut<'_>> = row
        .map(|r| ShotOut {
            ty: "Shot",
            id: r.get_unchecked(0),
            code: r.get_unchecked(1),
            sg_status_list: r.get_unchecked(2),
        })
        .into_iter()
        .collect();
    write_shots(entities, out)
}

/// The find-by-id answer: the entities found, their count, no next page.
fn write_shots(entities: Vec<ShotOut<'_>>, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let n = entities.len() as i64;
    let results = Results {
        entities,
        paging_info: Paging {
            entity_count: Some(n),
            has_next_page: false,
        },
    };
    serde_json::to_writer(out, &Envelope { results })
}

impl FloorDb {
    /// The raw driver on the bench database `url` (the daemon's URL form).
    pub async fn connect(url: &str) -> FloorDb {
        match url.strip_prefix("sqlite://") {
            Some(path) => FloorDb::Sqlite(path.to_owned(), Mutex::new(Vec::new())),
            None => FloorDb::Postgres(
                url.to_owned(),
                Mutex::new(Vec::new()),
                Box::new(tokio::sync::OnceCell::new()),
            ),
        }
    }

    /// The find-by-id answer for Shot `id` (`code`, `sg_status_list`), as JSON bytes.
    pub async fn shot_by_id(&self, id: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        match self {
            FloorDb::Sqlite(path, idle) => with_sqlite(path, idle, |c| {
                let mut stmt = c.prepare_cached(SHOT_BY_ID_SQLITE).expect("prepare");
                let mut rows = stmt.query([id]).expect("floor query");
                let row = rows.next().expect("step");
                let entities: Vec<ShotOut<'_>> = row
                    .map(|r| ShotOut {
                        ty: "Shot",
                        id: r.get(0).expect("id"),
                        code: text(r, 1),
                        sg_status_list: text(r, 2),
                    })
                    .into_iter()
                    .collect();
                write_shots(entities, &mut out)
            }),
            FloorDb::Postgres(url, idle, _) => {
                let mut c = pg_conn(url, idle).await;
                let row = sqlx::query(SHOT_BY_ID_PG)
                    .bind(id)
                    .fetch_optional(&mut c)
                    .await
                    .expect("floor query");
                idle.lock().expect("lock").push(c);
                encode_shot(row.as_ref(), &mut out)
            }
        }
        .expect("encode");
        out
    }

    /// The find-by-id answer on the one pipelined connection (PostgreSQL; `None` on SQLite,
    /// whose reads run on the calling thread).
    pub async fn shot_by_id_pipelined(&self, id: i64) -> Option<Vec<u8>> {
        let FloorDb::Postgres(url, _, pipelined) = self else {
            return None;
        };
        let (client, statement) = pipelined
            .get_or_init(|| async {
                let options: PgConnectOptions = url.parse().expect("floor: PostgreSQL URL");
                let mut config = tokio_postgres::Config::new();
                match options.get_socket() {
                    Some(dir) => config.host_path(dir),
                    None => config.host(options.get_host()),
                };
                config
                    .port(options.get_port())
                    .user(options.get_username())
                    .dbname(options.get_database().unwrap_or("postgres"))
                    .options("-c jit=off");
                let (client, connection) = config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .expect("floor: connect PostgreSQL (pipelined)");
                tokio::spawn(connection);
                let statement = client
                    .prepare_typed(SHOT_BY_ID_PG, &[tokio_postgres::types::Type::INT8])
                    .await
                    .expect("prepare");
                (client, statement)
            })
            .await;
        let rows = client.query(statement, &[&id]).await.expect("floor query");
        let entities: Vec<ShotOut<'_>> = rows
            .iter()
            .map(|r| ShotOut {
                ty: "Shot",
                id: r.get(0),
                code: r.get(1),
                sg_status_list: r.get(2),
            })
            .collect();
        let mut out = Vec::with_capacity(256);
        write_shots(entities, &mut out).expect("encode");
        Some(out)
    }

    /// Page `page` (1-based) of `per_page` active Tasks by id with the bench's 10 fields, as
    /// JSON bytes.
    pub async fn task_page(&self, page: u32, per_page: u32) -> Vec<u8> {
        let limit = per_page as usize;
        let offset = i64::from(page.saturating_sub(1)) * i64::from(per_page);
        let mut out = Vec::with_capacity(limit * 512);
        match self {
            FloorDb::Sqlite(path, idle) => {
                with_sqlite(path, idle, |c| sqlite_tasks(c, limit, offset, &mut out))
            }
            FloorDb::Postgres(url, idle, _) => {
                let mut c = pg_conn(url, idle).await;
                let snap = *IN_SNAPSHOT;
                if snap {
                    sqlx::raw_sql(sqlx::AssertSqlSafe(
                        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                    ))
                    .execute(&mut c)
                    .await
                    .expect("begin");
                }
                let rows = sqlx::query(concat!(
                    task_page_head!(),
                    "$1 OFFSET $2",
                    task_page_tail!()
                ))
                .bind(limit as i64 + 1)
                .bind(offset)
                .fetch_all(&mut c)
                .await
                .expect("floor page");
                let ids: Vec<i64> = rows
                    .iter()
                    .take(limit)
                    .map(|r| r.get_unchecked(0))
                    .collect();
                let multi = sqlx::query(ASSIGNEES_PG)
                    .bind(ids)
                    .fetch_all(&mut c)
                    .await
                    .expect("floor multi");
                if snap {
                    sqlx::raw_sql(sqlx::AssertSqlSafe("COMMIT"))
                        .execute(&mut c)
                        .await
                        .expect("commit");
                }
                idle.lock().expect("lock").push(c);
                encode_tasks(&rows, &multi, limit, &mut out)
            }
        }
        .expect("encode");
        out
    }

    pub async fn close(self) {
        match self {
            FloorDb::Sqlite(..) => {}
            FloorDb::Postgres(_, idle, _) => {
                let conns = std::mem::take(&mut *idle.lock().expect("lock"));
                for c in conns {
                    c.close().await.ok();
                }
            }
        }
    }
}

/// An idle PostgreSQL connection, or a new one (no JIT, joins in the order written: as the
/// daemon's reads).
async fn pg_conn(url: &str, idle: &Mutex<Vec<PgConnection>>) -> PgConnection {
    let pooled = idle.lock().expect("lock").pop();
    match pooled {
        Some(c) => c,
        None => url
            .parse::<PgConnectOptions>()
            .expect("floor: PostgreSQL URL")
            .options([("jit", "off"), ("join_collapse_limit", "1")])
            .connect()
            .await
            .expect("floor: connect PostgreSQL"),
    }
}

fn with_sqlite<R>(
    path: &str,
    idle: &Mutex<Vec<Connection>>,
    f: impl FnOnce(&Connection) -> R,
) -> R {
    let pooled = idle.lock().expect("lock").pop();
    let conn = pooled.unwrap_or_else(|| {
        let c = Connection::open(path).expect("floor: open SQLite");
        c.set_prepared_statement_cache_capacity(16);
        c
    });
    let r = f(&conn);
    idle.lock().expect("lock").push(conn);
    r
}

fn text<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> Option<&'r str> {
    row.get_ref(i)
        .expect("column")
        .as_str_or_null()
        .expect("text")
}

fn sqlite_link<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> Option<Link<'r>> {
    Some(Link {
        ty: text(row, i)?,
        id: row.get::<_, Option<i64>>(i + 1).expect("id")?,
        name: text(row, i + 2),
    })
}

/// The page of Tasks on rusqlite: the assignees of the page first (owned, by Task id), then
/// each page row serialised while it is the current row.
fn sqlite_tasks(
    c: &Connection,
    limit: usize,
    offset: i64,
    out: &mut Vec<u8>,
) -> Result<(), serde_json::Error> {
    let mut assignees: HashMap<i64, Vec<(String, i64, Option<String>)>> = HashMap::new();
    // LIMIT and OFFSET as literals: SQLite re-prepares a cached statement with a bound LIMIT.
    let sql = ASSIGNEES_SQLITE
        .replace("{limit}", &limit.to_string())
        .replace("{offset}", &offset.to_string());
    let mut stmt = c.prepare_cached(&sql).expect("prepare");
    let mut rows = stmt.query([]).expect("assignees");
    while let Some(r) = rows.next().expect("step") {
        assignees
            .entry(r.get(0).expect("parent"))
            .or_default()
            .push((
                r.get(1).expect("type"),
                r.get(2).expect("id"),
                r.get(3).expect("name"),
            ));
    }
    let sql = format!(
        "{}{} OFFSET {offset}{}",
        task_page_head!(),
        limit + 1,
        task_page_tail!()
    );
    let mut stmt = c.prepare_cached(&sql).expect("prepare");
    let mut rows = stmt.query([]).expect("page");
    out.extend_from_slice(br#"{"results":{"entities":"#);
    let mut ser = serde_json::Serializer::new(&mut *out);
    let mut seq = ser.serialize_seq(None)?;
    let mut n = 0;
    let mut more = false;
    while let Some(row) = rows.next().expect("step") {
        if n == limit {
            more = true;
            break;
        }
        n += 1;
        let id: i64 = row.get(0).expect("id");
        let links = assignees.get(&id).map_or(&[][..], Vec::as_slice);
        seq.serialize_element(&TaskOut {
            ty: "Task",
            id,
            content: text(row, 1),
            sg_status_list: text(row, 2),
            entity: sqlite_link(row, 3),
            project: sqlite_link(row, 6),
            step: sqlite_link(row, 9),
            task_assignees: links
                .iter()
                .map(|(ty, id, name)| Link {
                    ty,
                    id: *id,
                    name: name.as_deref(),
                })
                .collect(),
            start_date: text(row, 12),
            due_date: text(row, 13),
            duration: row.get(14).expect("duration"),
            updated_at: text(row, 15),
        })?;
    }
    seq.end()?;
    write!(out, r#","paging_info":{{"has_next_page":{more}}}}}}}"#).expect("write");
    Ok(())
}
