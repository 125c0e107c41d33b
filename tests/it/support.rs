//! Test fixtures: databases on both backends, configs, and an in-process daemon.
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::BTreeMap;

use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use serde_json::{Value, json};
use sgcache::actors::schema_loader::{Applied, apply_schema, fetch_schema};
use sgcache::config::{Config, Secret};
use sgcache::db::writer::DbWriterHandle;
use sgcache::db::{self, Pools};
use sgcache::schema::{CachedSchema, ColumnLayout, SqlType};
use sgcache::state::CacheState;

pub use sgcache_mock_site::MockSite;

pub const FIXTURE_SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/schema_read.json"
);
pub const FIXTURE_ENTITY_SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/schema_entity_read.json"
);

/// A fresh, empty database for one test. SQLite: a file in a temporary directory.
/// PostgreSQL: a new database named `sgcache_test_*`, dropped when this value is dropped.
pub struct TestDb {
    pub url: String,
    pub backend: DbBackend,
    _dir: Option<tempfile::TempDir>,
    pg_drop: Option<(String, String)>,
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("var/cache.sqlite").display());
        TestDb {
            url,
            backend: DbBackend::Sqlite,
            _dir: Some(dir),
            pg_drop: None,
        }
    }

    /// `SGCACHE_TEST_PG_URL` names an admin connection, e.g.
    /// `postgres://root@localhost/postgres?host=/var/run/postgresql`.
    pub async fn postgres(admin_url: &str) -> TestDb {
        let name = format!("sgcache_test_{}_{}", std::process::id(), rand_suffix());
        let admin = Database::connect(admin_url)
            .await
            .expect("connect to SGCACHE_TEST_PG_URL");
        admin
            .execute_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("CREATE DATABASE \"{name}\""),
            ))
            .await
            .expect("create test database");
        admin.close().await.ok();
        let url = replace_db_name(admin_url, &name);
        TestDb {
            url,
            backend: DbBackend::Postgres,
            _dir: None,
            pg_drop: Some((admin_url.to_owned(), name)),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.pg_drop.take() {
            // Dropping needs a runtime of its own: this may run outside any.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    if let Ok(admin) = Database::connect(&admin_url).await {
                        let _ = admin
                            .execute_raw(Statement::from_string(
                                DbBackend::Postgres,
                                format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                            ))
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    nanos * 1000 + COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// `postgres://u@h/postgres?x=y` → `postgres://u@h/NAME?x=y`.
fn replace_db_name(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let base = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// The PostgreSQL admin URL, or `None` (with a loud note) when the PostgreSQL half is skipped.
pub fn pg_url() -> Option<String> {
    match std::env::var("SGCACHE_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("NOTE: SGCACHE_TEST_PG_URL is not set: PostgreSQL half of this test SKIPPED");
            None
        }
    }
}

/// One fresh database per backend under test.
pub async fn databases() -> Vec<TestDb> {
    let mut dbs = vec![TestDb::sqlite()];
    if let Some(url) = pg_url() {
        dbs.push(TestDb::postgres(&url).await);
    }
    dbs
}

/// A config for tests: the fixture schema file, short intervals, the mock's credentials.
pub fn test_config(db: &TestDb, site: Option<&MockSite>) -> Config {
    let mut config = Config::default();
    config.database.url = db.url.clone();
    config.database.max_connections = 4;
    config.server.bind = "127.0.0.1:0".to_owned();
    config.server.workers = 1;
    if let Some(site) = site {
        config.shotgun.url = Some(site.url().parse().expect("the mock site URL"));
    }
    config.shotgun.script_name = "sgcache".to_owned();
    config.shotgun.api_key = Secret::new("test-key");
    config.shotgun.retry_backoff = Duration::from_millis(20);
    config.shotgun.timeout = Duration::from_secs(5);
    config.schema.include = vec![
        "Project".into(),
        "Sequence".into(),
        "Shot".into(),
        "Asset".into(),
        "Task".into(),
        "Step".into(),
        "HumanUser".into(),
    ];
    config.schema.refresh_interval = Duration::from_secs(3600);
    // The mock site's default rules, vouched for: no probe requests in the other tests.
    config.calibration.enabled = false;
    config.calibration.pinned = sgcache::query::rules::Rules::assumed()
        .pinned()
        .into_iter()
        .collect();
    config
}

pub fn fixture_schema_config(config: &mut Config) {
    config.schema.file = Some(PathBuf::from(FIXTURE_SCHEMA));
    config.schema.entity_file = Some(PathBuf::from(FIXTURE_ENTITY_SCHEMA));
}

/// The fixture schema with `HumanUser.email_inbox_general` given a boolean default, written
/// under `dir`: sgcache makes its column NOT NULL, and the site's `null`s cannot be stored.
pub fn not_null_checkbox_schema(dir: &Path) -> PathBuf {
    let mut schema: Value =
        serde_json::from_str(include_str!("../fixtures/schema_read.json")).expect("json");
    schema["HumanUser"]["email_inbox_general"]["properties"]["default_value"]["value"] =
        json!(false);
    let path = dir.join("schema_read.json");
    std::fs::write(&path, schema.to_string()).expect("write schema");
    path
}

/// A cache without a daemon: the database migrated, a DbWriter running, and the schema of
/// `config`'s schema files applied.
pub struct SchemaApplied {
    pub pools: Pools,
    pub writer: DbWriterHandle,
    pub arbiter: actix::Arbiter,
    pub applied: Applied,
}

pub async fn apply_config_schema(config: &Config) -> SchemaApplied {
    let pools = db::connect(&config.database).await.expect("connect");
    db::migrate(&pools).await.expect("migrate");
    let (writer, arbiter) =
        DbWriterHandle::start(pools.writer.clone(), pools.backend, CacheState::new());
    let src = fetch_schema(config, None).await.expect("schema");
    let applied = apply_schema(&src, config, &pools, &writer)
        .await
        .expect("apply");
    SchemaApplied {
        pools,
        writer,
        arbiter,
        applied,
    }
}

/// [`apply_config_schema`] of the fixture schema.
pub async fn fixture_schema_applied(db: &TestDb) -> SchemaApplied {
    let mut config = test_config(db, None);
    fixture_schema_config(&mut config);
    apply_config_schema(&config).await
}

pub fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

/// Polls `check` every 20 ms until it returns `Some`, failing after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_explained(within, what, || {
        let checked = check();
        async move { checked.await.ok_or_else(String::new) }
    })
    .await
}

/// [`eventually`] of a `check` that says what it saw instead (`Err`): the failure after
/// `within` shows the last of those.
pub async fn eventually_explained<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        let seen = match check().await {
            Ok(v) => return v,
            Err(seen) => seen,
        };
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}{}{seen}",
            if seen.is_empty() { "" } else { "\n" }
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Column names of a table, on either backend.
pub async fn columns<C: ConnectionTrait>(db: &C, table: &str) -> Vec<String> {
    let sql = match db.get_database_backend() {
        DbBackend::Sqlite => format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid"),
        _ => format!(
            "SELECT column_name AS name FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = '{table}' ORDER BY ordinal_position"
        ),
    };
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("list columns")
        .into_iter()
        .map(|r| r.try_get::<String>("", "name").expect("name"))
        .collect()
}

/// Table names, on either backend.
pub async fn tables<C: ConnectionTrait>(db: &C) -> Vec<String> {
    let sql = match db.get_database_backend() {
        DbBackend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name".to_owned()
        }
        _ => "SELECT table_name AS name FROM information_schema.tables \
              WHERE table_schema = current_schema() ORDER BY table_name"
            .to_owned(),
    };
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("list tables")
        .into_iter()
        .map(|r| r.try_get::<String>("", "name").expect("name"))
        .collect()
}

/// Nullability of a column (true = NULL allowed).
pub async fn nullable<C: ConnectionTrait>(db: &C, table: &str, column: &str) -> bool {
    let sql = match db.get_database_backend() {
        DbBackend::Sqlite => format!(
            "SELECT \"notnull\" AS nn FROM pragma_table_info('{table}') WHERE name = '{column}'"
        ),
        _ => format!(
            "SELECT CASE WHEN is_nullable = 'YES' THEN 0 ELSE 1 END AS nn FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = '{table}' AND column_name = '{column}'"
        ),
    };
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("query")
        .unwrap_or_else(|| panic!("no column {table}.{column}"));
    let nn: i32 = row.try_get("", "nn").expect("nn");
    nn == 0
}

fn decode(row: &sea_orm::QueryResult, column: &str, sql: SqlType) -> Value {
    let get = |r: Result<Option<Value>, sea_orm::DbErr>| {
        r.unwrap_or_else(|e| panic!("column {column}: {e}"))
            .unwrap_or(Value::Null)
    };
    match sql {
        SqlType::Text => get(row
            .try_get::<Option<String>>("", column)
            .map(|v| v.map(Value::from))),
        SqlType::BigInt => get(row
            .try_get::<Option<i64>>("", column)
            .map(|v| v.map(Value::from))),
        SqlType::Double => get(row
            .try_get::<Option<f64>>("", column)
            .map(|v| v.map(Value::from))),
        SqlType::Boolean => get(row
            .try_get::<Option<bool>>("", column)
            .map(|v| v.map(Value::from))),
    }
}

fn link_key(v: &Value) -> Value {
    if v.is_null() {
        return Value::Null;
    }
    json!({"type": v["type"], "id": v["id"]})
}

/// Rows of one type by id: every cached field (links as `{type, id}`), and `_active`.
pub type Rows = BTreeMap<i64, BTreeMap<String, Value>>;

/// Ids of the active rows of every cached type that a link field of `ty` may point to.
async fn live_targets(
    pools: &Pools,
    schema: &CachedSchema,
    ty: &str,
) -> std::collections::BTreeSet<(String, i64)> {
    let entity = schema.entity(ty).expect("cached type");
    let backend = pools.reader.get_database_backend();
    let mut out = std::collections::BTreeSet::new();
    let targets: std::collections::BTreeSet<&String> = entity
        .fields
        .values()
        .flat_map(|f| f.valid_types.iter())
        .collect();
    for target in targets {
        let Some(te) = schema.entity(target) else {
            continue;
        };
        let sql = format!("SELECT id FROM \"{}\" WHERE \"_active\"", te.table);
        for row in pools
            .reader
            .query_all_raw(Statement::from_string(backend, sql))
            .await
            .expect("select active ids")
        {
            out.insert((target.clone(), row.try_get::<i64>("", "id").expect("id")));
        }
    }
    out
}

/// Every cached row of `ty` (cached fields, `_active`, multi-entity lists in order), as reads
/// see it: a link to an entity that is not active in the cache reads as absent.
pub async fn cache_rows(pools: &Pools, schema: &CachedSchema, ty: &str) -> Rows {
    let live = live_targets(pools, schema, ty).await;
    let is_live = |v: &Value| {
        v["type"]
            .as_str()
            .zip(v["id"].as_i64())
            .is_some_and(|(t, i)| live.contains(&(t.to_owned(), i)))
    };
    let mut rows = stored_rows(pools, schema, ty).await;
    for row in rows.values_mut() {
        for v in row.values_mut() {
            match v {
                Value::Object(_) if !is_live(v) => *v = Value::Null,
                Value::Array(a) => a.retain(is_live),
                _ => {}
            }
        }
    }
    rows
}

/// Every stored row of `ty` (cached fields, `_active`, multi-entity lists in order).
pub async fn stored_rows(pools: &Pools, schema: &CachedSchema, ty: &str) -> Rows {
    let entity = schema.entity(ty).expect("cached type");
    let reader = &pools.reader;
    let backend = reader.get_database_backend();
    let q = |sql: String| Statement::from_string(backend, sql);
    let rows = reader
        .query_all_raw(q(format!("SELECT * FROM \"{}\" ORDER BY id", entity.table)))
        .await
        .expect("select rows");
    let mut cached = Rows::new();
    for row in &rows {
        let id: i64 = row.try_get("", "id").expect("id");
        let mut fields = BTreeMap::new();
        let active: bool = row.try_get("", "_active").expect("_active");
        fields.insert("_active".to_owned(), Value::from(active));
        for field in entity.fields.values() {
            let value = match &field.layout {
                ColumnLayout::Scalar { column, sql, .. } => decode(row, column, *sql),
                ColumnLayout::Entity {
                    type_column,
                    id_column,
                } => {
                    let t = decode(row, type_column, SqlType::Text);
                    let i = decode(row, id_column, SqlType::BigInt);
                    if t.is_null() {
                        Value::Null
                    } else {
                        json!({"type": t, "id": i})
                    }
                }
                ColumnLayout::MultiEntity { .. } => Value::Array(Vec::new()),
            };
            fields.insert(field.name.clone(), value);
        }
        cached.insert(id, fields);
    }
    for field in entity.fields.values() {
        let ColumnLayout::MultiEntity { table } = &field.layout else {
            continue;
        };
        let links = reader
            .query_all_raw(q(format!(
                "SELECT parent_id, child_type, child_id FROM \"{table}\" ORDER BY parent_id, position"
            )))
            .await
            .expect("select links");
        for link in links {
            let parent: i64 = link.try_get("", "parent_id").expect("parent_id");
            let t: String = link.try_get("", "child_type").expect("child_type");
            let i: i64 = link.try_get("", "child_id").expect("child_id");
            if let Some(row) = cached.get_mut(&parent) {
                row.get_mut(&field.name)
                    .and_then(Value::as_array_mut)
                    .expect("list")
                    .push(json!({"type": t, "id": i}));
            }
        }
    }
    cached
}

/// The site's rows of `ty` in the same shape.
pub fn site_rows(site: &MockSite, schema: &CachedSchema, ty: &str) -> Rows {
    let entity = schema.entity(ty).expect("cached type");
    let mut out = Rows::new();
    for record in site.entities(ty) {
        let id = record["id"].as_i64().expect("id");
        let mut fields = BTreeMap::new();
        let retired = record["_retired"].as_bool().unwrap_or(false);
        fields.insert("_active".to_owned(), Value::from(!retired));
        for field in entity.fields.values() {
            let site_value = record.get(&field.name).cloned().unwrap_or(Value::Null);
            let expected = match &field.layout {
                ColumnLayout::Scalar { .. } => site_value,
                ColumnLayout::Entity { .. } => link_key(&site_value),
                ColumnLayout::MultiEntity { .. } => Value::Array(
                    site_value
                        .as_array()
                        .map(|a| a.iter().map(link_key).collect())
                        .unwrap_or_default(),
                ),
            };
            fields.insert(field.name.clone(), expected);
        }
        out.insert(id, fields);
    }
    out
}

/// The first difference between the cache and the site over `types`, if any.
pub async fn first_difference(
    pools: &Pools,
    schema: &CachedSchema,
    site: &MockSite,
    types: &[&str],
) -> Option<String> {
    for ty in types {
        let cached = cache_rows(pools, schema, ty).await;
        let expected = site_rows(site, schema, ty);
        if cached != expected {
            for (id, row) in &expected {
                match cached.get(id) {
                    None => return Some(format!("{ty} {id} missing from the cache")),
                    Some(c) if c != row => {
                        for (k, v) in row {
                            if c.get(k) != Some(v) {
                                return Some(format!(
                                    "{ty} {id}.{k}: cache {:?}, site {v}",
                                    c.get(k)
                                ));
                            }
                        }
                    }
                    _ => {}
                }
            }
            return Some(format!("{ty}: extra rows in the cache"));
        }
    }
    None
}

/// Every cached column and association row of `ty` equals the site's data, and `_active`
/// matches the site's retirement flag.
pub async fn assert_cache_matches_site(
    pools: &Pools,
    schema: &CachedSchema,
    site: &MockSite,
    ty: &str,
) {
    if let Some(difference) = first_difference(pools, schema, site, &[ty]).await {
        panic!("cache differs from the site: {difference}");
    }
}

/// `GET /status` of an in-process daemon.
pub async fn status_of(daemon: &sgcache::Daemon) -> Value {
    let url = format!("{}/status", daemon.url());
    let mut response = awc::Client::default()
        .get(&url)
        .send()
        .await
        .expect("GET /status");
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.json().limit(10 << 20).await.expect("JSON")
}

/// `/status` says types are cached and every one is complete.
pub fn every_type_complete(status: &Value) -> bool {
    let cached = status["schema"]["cached_types"].as_u64().unwrap_or(0);
    cached > 0 && status["schema"]["complete_types"].as_u64() == Some(cached)
}

/// Waits until every cached type is complete and the scanner's run has ended; returns `/status`.
pub async fn wait_primed(daemon: &sgcache::Daemon, within: Duration) -> Value {
    eventually(within, "every cached type complete", || async {
        let status = status_of(daemon).await;
        let loaded = status["schema"]["loaded"] == true;
        // The scanner's own figures are updated when its run ends.
        let idle = status["actors"]["scanner"]["running"] == false;
        (loaded && every_type_complete(&status) && idle).then_some(status)
    })
    .await
}

/// Reads through `read` until the reply equals `want` (the site's), for up to 20 s while
/// events land; fails naming `what`.
pub async fn until_equal<F, Fut>(want: &Value, what: &str, mut read: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = read().await;
        if got == *want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}\n  sgcache {got}\n  site    {want}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `/status`: no client request was passed through but for the `allowed` reasons; fails
/// naming `what`.
pub async fn assert_answered_locally(daemon: &sgcache::Daemon, allowed: &[&str], what: &str) {
    let reasons = status_of(daemon).await["requests"]["pass_through_reasons"].clone();
    assert!(
        reasons
            .as_object()
            .expect("pass_through_reasons")
            .iter()
            .all(|(reason, n)| allowed.contains(&reason.as_str()) || n == 0),
        "{what}: every read was answered locally: {reasons}"
    );
}

/// `/status`: how many client requests sgcache passed through for `reason`.
pub fn passed_through(status: &Value, reason: &str) -> u64 {
    status["requests"]["pass_through_reasons"][reason]
        .as_u64()
        .unwrap_or(0)
}

/// Posts `method` with `args` to `base` (sgcache or the site) with the mock site's
/// credentials; the reply.
pub async fn api3(base: &str, method: &str, args: &Value) -> Value {
    let body = json!({
        "method_name": method,
        "params": [{"script_name": "sgcache", "script_key": "test-key"}, args],
    });
    let mut response = awc::Client::default()
        .post(format!("{base}/api3/json"))
        .send_json(&body)
        .await
        .expect("POST api3");
    response.json().limit(16 << 20).await.expect("api3 JSON")
}

/// [`api3`] of a `read`.
pub async fn api3_read(base: &str, args: &Value) -> Value {
    api3(base, "read", args).await
}

/// A typed `/status` section as the JSON `/status` serves.
pub fn json_of(section: impl serde::Serialize) -> Value {
    serde_json::to_value(section).expect("a status section serialises")
}
