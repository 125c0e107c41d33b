//! The DbWriter actor: the one place where the database is mutated.
//!
//! It runs on its own Arbiter. Its handlers return [`AtomicResponse`], so exactly one
//! transaction is open at a time and messages are applied in arrival order. Callers use
//! [`DbWriterHandle`] (which `send`s, so a full mailbox pushes back on them). A message is
//! applied in one transaction; on a database error the transaction is retried with back-off
//! (bounded), and if it still fails the error goes back to the sender: nothing accepted is
//! dropped silently. `/status` reads [`WriterStats`] (atomics), never the mailbox.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use actix::prelude::*;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query, Value};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};
use serde_json::{Map, Value as Json};
use tracing::{debug, warn};

use super::StoreError;
use super::entities::{
    entity_state, event_cursor, schema_field, schema_snapshot, site_info, verification,
};
use crate::schema::{
    Backend, CachedEntity, CachedField, CachedSchema, ColumnLayout, DdlPlan, values,
};
use crate::state::CacheState;
use crate::time;

/// Rows per multi-row INSERT are limited by the bind-parameter cap (32,766 on SQLite).
const MAX_BIND_PARAMS: usize = 30_000;
/// Ids per `IN (...)` lookup.
const ID_CHUNK: usize = 500;

/// How an upsert treats rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpsertMode {
    /// Records carry the full cached field set: insert new rows, update existing ones.
    Full,
    /// Records carry some fields only: update existing rows, never create a row from them.
    UpdateOnly,
}

/// One change inside an [`Apply`] transaction.
#[derive(Clone, Debug)]
pub enum WriteOp {
    /// Entity records in wire form (`{"type", "id", field: value, ...}`). A record older than
    /// the stored row (by `updated_at`) is skipped, so older data never overwrites newer.
    Upsert {
        entity_type: String,
        records: Vec<Map<String, Json>>,
        mode: UpsertMode,
        /// Sets `_active` on the written rows (scans know whether they read retired rows).
        active: Option<bool>,
        /// The event this change comes from: recorded in `_last_log_event_id`, and a row that
        /// already reflects a later event is not changed.
        event_id: Option<i64>,
    },
    /// Retire (`false`) or revive (`true`) a row.
    SetActive {
        entity_type: String,
        id: i64,
        active: bool,
        event_id: Option<i64>,
    },
    /// Add and remove links of one multi-entity field of one row (event-log style).
    Links {
        entity_type: String,
        id: i64,
        field: String,
        added: Vec<(String, i64)>,
        removed: Vec<(String, i64)>,
    },
    /// Scanner bookkeeping for one type.
    EntityState {
        entity_type: String,
        patch: EntityStatePatch,
    },
    /// A site fact kept across restarts (e.g. the `info` reply).
    SiteInfo { key: String, value: Json },
    /// Fails the whole message unless `entity_type`'s cached field set still has `signature`
    /// ([`CachedEntity::signature`]): a scan page read under an older schema must not land
    /// after a schema change (checked here, where schema changes are applied, so no race).
    ExpectSchema {
        entity_type: String,
        signature: String,
    },
    /// A row of the verification log (`sgcache_verification`): a read whose cached answer
    /// differed from the site's.
    Verification {
        entity_type: String,
        outcome: String,
        request: Json,
        diff: Json,
        entity_ids: Vec<i64>,
    },
}

/// Fields of `sgcache_entity_state` to change; `None` leaves a column alone.
#[derive(Clone, Debug, Default)]
pub struct EntityStatePatch {
    pub complete: Option<bool>,
    pub full_scan_cursor: Option<Option<i64>>,
    pub full_scan_started_at: Option<Option<String>>,
    pub last_full_scan_at: Option<Option<String>>,
    pub scan_checkpoint: Option<Option<String>>,
    pub last_scan_at: Option<Option<String>>,
}

/// A checkpoint moved in the same transaction as the changes it covers.
#[derive(Clone, Debug)]
pub enum Checkpoint {
    Events {
        last_event_id: i64,
        /// JSON of the open gaps (ids not seen yet below `last_event_id`).
        open_gaps: Json,
    },
}

/// Apply `ops` and move `checkpoint`, all in one transaction.
#[derive(Message, Debug, Default)]
#[rtype(result = "Result<ApplyOutcome, StoreError>")]
pub struct Apply {
    pub ops: Vec<WriteOp>,
    pub checkpoint: Option<Checkpoint>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Rows inserted or updated (entity rows and association rows are counted separately).
    pub rows_written: u64,
    pub links_written: u64,
    /// Records not applied because the stored row is newer.
    pub skipped_older: u64,
    /// Rows an update or retire/revive named that the cache does not have.
    pub missing: Vec<(String, i64)>,
}

/// Create/alter the cache tables for `desired` and record it in the schema registry.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), StoreError>")]
pub struct ApplySchema {
    pub plan: DdlPlan,
    pub desired: CachedSchema,
    pub snapshot: Option<NewSnapshot>,
}

#[derive(Clone, Debug)]
pub struct NewSnapshot {
    pub source: String,
    pub digest: String,
    pub schema_read: String,
    pub schema_entity_read: Option<String>,
}

/// The DbWriter's figures, shared with `/status`.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub queued: AtomicI64,
    pub messages: AtomicU64,
    pub transactions: AtomicU64,
    pub rows: AtomicU64,
    pub errors: AtomicU64,
    pub retries: AtomicU64,
    pub last_commit_unix_ms: AtomicI64,
    pub last_error: std::sync::Mutex<Option<String>>,
}

impl WriterStats {
    pub fn snapshot(&self) -> WriterSnapshot {
        let last_commit = self.last_commit_unix_ms.load(Ordering::Relaxed);
        WriterSnapshot {
            mailbox_depth: std::cmp::max(self.queued.load(Ordering::Relaxed), 0),
            messages: self.messages.load(Ordering::Relaxed),
            transactions: self.transactions.load(Ordering::Relaxed),
            rows_written: self.rows.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            last_commit_at: time::format_unix_ms(last_commit),
            last_error: self
                .last_error
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default(),
            last_commit_unix_ms: last_commit,
        }
    }
}

/// `/status` → `actors.db_writer`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct WriterSnapshot {
    pub mailbox_depth: i64,
    pub messages: u64,
    pub transactions: u64,
    pub rows_written: u64,
    pub errors: u64,
    pub retries: u64,
    pub last_commit_at: Option<String>,
    pub last_error: Option<String>,
    /// For `/metrics` (unix ms; 0 = never).
    #[serde(skip)]
    pub last_commit_unix_ms: i64,
}

pub struct DbWriter {
    db: DatabaseConnection,
    backend: Backend,
    state: Arc<CacheState>,
    stats: Arc<WriterStats>,
    max_attempts: u32,
}

impl Actor for DbWriter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
    }
}

/// The address of the DbWriter plus its figures; cheap to clone, `Send`.
#[derive(Clone)]
pub struct DbWriterHandle {
    addr: Addr<DbWriter>,
    stats: Arc<WriterStats>,
}

impl DbWriterHandle {
    /// Starts the DbWriter on its own Arbiter.
    pub fn start(
        db: DatabaseConnection,
        backend: Backend,
        state: Arc<CacheState>,
    ) -> (DbWriterHandle, Arbiter) {
        let stats = Arc::new(WriterStats::default());
        let arbiter = Arbiter::new();
        let actor_stats = stats.clone();
        let addr = DbWriter::start_in_arbiter(&arbiter.handle(), move |_| DbWriter {
            db,
            backend,
            state,
            stats: actor_stats,
            max_attempts: 4,
        });
        (DbWriterHandle { addr, stats }, arbiter)
    }

    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }

    pub async fn apply(&self, msg: Apply) -> Result<ApplyOutcome, StoreError> {
        self.send(msg).await?
    }

    pub async fn apply_schema(&self, msg: ApplySchema) -> Result<(), StoreError> {
        self.send(msg).await?
    }

    async fn send<M>(&self, msg: M) -> Result<M::Result, StoreError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        DbWriter: Handler<M>,
    {
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        let result = self.addr.send(msg).await;
        self.stats.queued.fetch_sub(1, Ordering::Relaxed);
        result.map_err(|_| StoreError::WriterGone)
    }
}

fn db_backend(backend: Backend) -> DbBackend {
    match backend {
        Backend::Sqlite => DbBackend::Sqlite,
        Backend::Postgres => DbBackend::Postgres,
    }
}

async fn begin(
    db: &DatabaseConnection,
    backend: Backend,
) -> Result<DatabaseTransaction, StoreError> {
    let options = TransactionOptions {
        // BEGIN IMMEDIATE takes the write lock up front (waiting up to busy_timeout), so a
        // second writer process (e.g. `sgcache scan` beside the daemon) cannot deadlock us.
        sqlite_transaction_mode: (backend == Backend::Sqlite)
            .then_some(SqliteTransactionMode::Immediate),
        ..Default::default()
    };
    Ok(db.begin_with_options(options).await?)
}

/// Errors worth retrying: anything from the database itself. Bad input is not retried.
fn retryable(err: &StoreError) -> bool {
    matches!(err, StoreError::Db(_))
}

impl DbWriter {
    fn record_result<T>(&self, result: &Result<T, StoreError>, rows: u64) {
        self.stats.messages.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(_) => {
                self.stats.transactions.fetch_add(1, Ordering::Relaxed);
                self.stats.rows.fetch_add(rows, Ordering::Relaxed);
                self.stats
                    .last_commit_unix_ms
                    .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut last) = self.stats.last_error.lock() {
                    *last = Some(e.to_string());
                }
            }
        }
    }
}

/// Runs `attempt` in a fresh transaction until it commits, at most `max_attempts` times.
macro_rules! with_retry {
    ($db:expr, $backend:expr, $stats:expr, $max:expr, |$tx:ident| $body:expr) => {{
        let mut attempt = 1u32;
        loop {
            let result = async {
                let $tx = begin(&$db, $backend).await?;
                let value = $body;
                $tx.commit().await?;
                Ok::<_, StoreError>(value)
            }
            .await;
            match result {
                Err(err) if attempt < $max && retryable(&err) => {
                    $stats.retries.fetch_add(1, Ordering::Relaxed);
                    let delay = Duration::from_millis(50 * 2u64.pow(attempt));
                    warn!(error = %err, attempt, delay_ms = delay.as_millis() as u64, "db write failed, retrying");
                    actix_web::rt::time::sleep(delay).await;
                    attempt += 1;
                }
                other => break other,
            }
        }
    }};
}

impl Handler<Apply> for DbWriter {
    type Result = AtomicResponse<Self, Result<ApplyOutcome, StoreError>>;

    fn handle(&mut self, msg: Apply, _ctx: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        let backend = self.backend;
        let schema = self.state.view().schema;
        let stats = self.stats.clone();
        let max = self.max_attempts;
        let touches_state = msg
            .ops
            .iter()
            .any(|op| matches!(op, WriteOp::EntityState { .. }));
        let fut = async move {
            let result = with_retry!(db, backend, stats, max, |tx| {
                apply_ops(&tx, &schema, &msg).await?
            });
            let complete = if touches_state && result.is_ok() {
                Some(load_complete(&db).await)
            } else {
                None
            };
            (result, complete)
        };
        AtomicResponse::new(Box::pin(fut.into_actor(self).map(
            |(result, complete), act, _| {
                let rows = result
                    .as_ref()
                    .map(|o| o.rows_written + o.links_written)
                    .unwrap_or(0);
                act.record_result(&result, rows);
                if let Some(Ok(complete)) = complete {
                    act.state.set_complete(complete);
                }
                result
            },
        )))
    }
}

impl Handler<ApplySchema> for DbWriter {
    type Result = AtomicResponse<Self, Result<(), StoreError>>;

    fn handle(&mut self, msg: ApplySchema, _ctx: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        let backend = self.backend;
        let stats = self.stats.clone();
        let max = self.max_attempts;
        let fut = async move {
            let result = with_retry!(db, backend, stats, max, |tx| {
                apply_schema(&tx, backend, &msg).await?
            });
            let complete = match &result {
                Ok(()) => Some(load_complete(&db).await),
                Err(_) => None,
            };
            (result, complete, msg.desired)
        };
        AtomicResponse::new(Box::pin(fut.into_actor(self).map(
            |(result, complete, desired), act, _| {
                act.record_result(&result, 0);
                if result.is_ok() {
                    act.state.set_schema(Arc::new(desired));
                }
                if let Some(Ok(complete)) = complete {
                    act.state.set_complete(complete);
                }
                result
            },
        )))
    }
}

/// Types that are cached and complete, from `sgcache_entity_state`.
pub async fn load_complete<C: ConnectionTrait>(db: &C) -> Result<BTreeSet<String>, StoreError> {
    let rows = entity_state::Entity::find()
        .filter(entity_state::Column::Cached.eq(true))
        .filter(entity_state::Column::Complete.eq(true))
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|r| r.entity_type).collect())
}

async fn apply_schema(
    tx: &DatabaseTransaction,
    backend: Backend,
    msg: &ApplySchema,
) -> Result<(), StoreError> {
    let db_backend = db_backend(backend);
    for sql in &msg.plan.statements {
        debug!(sql = %sql, "ddl");
        tx.execute_raw(Statement::from_string(db_backend, sql.clone()))
            .await?;
    }
    let now = time::now();
    // The registry mirrors the columns that now exist: rewrite the rows of every desired type,
    // and forget the dropped fields.
    let mut touched: BTreeSet<&str> = msg.desired.types.keys().map(String::as_str).collect();
    touched.extend(msg.plan.dropped.iter().map(|(t, _)| t.as_str()));
    schema_field::Entity::delete_many()
        .filter(schema_field::Column::EntityType.is_in(touched.iter().copied()))
        .exec(tx)
        .await?;
    let mut registry_rows = Vec::new();
    for entity in msg.desired.types.values() {
        for field in entity.fields.values() {
            registry_rows.push(schema_field::ActiveModel {
                entity_type: Set(entity.name.clone()),
                field_name: Set(field.name.clone()),
                data_type: Set(field.data_type.clone()),
                layout_signature: Set(field.layout_signature()),
                applied_at: Set(now.clone()),
            });
        }
    }
    for chunk in registry_rows.chunks(1000) {
        schema_field::Entity::insert_many(chunk.to_vec())
            .exec(tx)
            .await?;
    }

    let existing: HashMap<String, entity_state::Model> = entity_state::Entity::find()
        .all(tx)
        .await?
        .into_iter()
        .map(|m| (m.entity_type.clone(), m))
        .collect();
    for entity in msg.desired.types.values() {
        let signature = entity.signature();
        let invalidated = msg.plan.new_types.contains(&entity.name)
            || msg.plan.changed_types.contains(&entity.name);
        match existing.get(&entity.name) {
            None => {
                entity_state::ActiveModel {
                    entity_type: Set(entity.name.clone()),
                    table_name: Set(entity.table.clone()),
                    cached: Set(true),
                    complete: Set(false),
                    selection_signature: Set(signature),
                    full_scan_cursor: Set(None),
                    full_scan_started_at: Set(None),
                    last_full_scan_at: Set(None),
                    scan_checkpoint: Set(None),
                    last_scan_at: Set(None),
                    updated_at: Set(now.clone()),
                }
                .insert(tx)
                .await?;
            }
            Some(old) => {
                let mut row: entity_state::ActiveModel = old.clone().into();
                row.cached = Set(true);
                row.table_name = Set(entity.table.clone());
                // A type that was not cached, or whose fields changed, must be scanned again
                // in full before its reads are answered locally.
                if invalidated || !old.cached || old.selection_signature != signature {
                    row.complete = Set(false);
                    row.full_scan_cursor = Set(None);
                    row.full_scan_started_at = Set(None);
                }
                row.selection_signature = Set(signature);
                row.updated_at = Set(now.clone());
                row.update(tx).await?;
            }
        }
    }
    for (name, old) in &existing {
        if old.cached && !msg.desired.types.contains_key(name) {
            let mut row: entity_state::ActiveModel = old.clone().into();
            row.cached = Set(false);
            row.complete = Set(false);
            row.updated_at = Set(now.clone());
            row.update(tx).await?;
        }
    }

    if let Some(snapshot) = &msg.snapshot {
        schema_snapshot::ActiveModel {
            fetched_at: Set(now.clone()),
            source: Set(snapshot.source.clone()),
            digest: Set(snapshot.digest.clone()),
            schema_read: Set(snapshot.schema_read.clone()),
            schema_entity_read: Set(snapshot.schema_entity_read.clone()),
            ..Default::default()
        }
        .insert(tx)
        .await?;
        // Keep the newest few snapshots only.
        let keep: Vec<i64> = schema_snapshot::Entity::find()
            .order_by_desc(schema_snapshot::Column::Id)
            .limit(5)
            .all(tx)
            .await?
            .into_iter()
            .map(|m| m.id)
            .collect();
        schema_snapshot::Entity::delete_many()
            .filter(schema_snapshot::Column::Id.is_not_in(keep))
            .exec(tx)
            .await?;
    }
    Ok(())
}

async fn apply_ops(
    tx: &DatabaseTransaction,
    schema: &CachedSchema,
    msg: &Apply,
) -> Result<ApplyOutcome, StoreError> {
    let mut outcome = ApplyOutcome::default();
    let now = time::now();
    for op in &msg.ops {
        match op {
            WriteOp::Upsert {
                entity_type,
                records,
                mode,
                active,
                event_id,
            } => {
                let entity = cached_entity(schema, entity_type)?;
                upsert(
                    tx,
                    entity,
                    records,
                    *mode,
                    *active,
                    *event_id,
                    &now,
                    &mut outcome,
                )
                .await?;
            }
            WriteOp::SetActive {
                entity_type,
                id,
                active,
                event_id,
            } => {
                let entity = cached_entity(schema, entity_type)?;
                let mut update = Query::update();
                update
                    .table(Alias::new(&entity.table))
                    .value(Alias::new("_active"), *active)
                    .value(Alias::new("_cache_updated_at"), now.clone())
                    .and_where(Expr::col(Alias::new("id")).eq(*id));
                if let Some(event_id) = event_id {
                    update.value(Alias::new("_last_log_event_id"), *event_id);
                }
                let result = tx.execute(&update).await?;
                if result.rows_affected() == 0 {
                    outcome.missing.push((entity_type.clone(), *id));
                } else {
                    outcome.rows_written += 1;
                }
            }
            WriteOp::Links {
                entity_type,
                id,
                field,
                added,
                removed,
            } => {
                let entity = cached_entity(schema, entity_type)?;
                let Some(table) = entity.fields.get(field).and_then(|f| match &f.layout {
                    ColumnLayout::MultiEntity { table } => Some(table.clone()),
                    _ => None,
                }) else {
                    return Err(StoreError::InvalidValue {
                        entity_type: entity_type.clone(),
                        field: field.clone(),
                        problem: "not a cached multi-entity field".to_owned(),
                    });
                };
                let exists = row_exists(tx, entity, *id).await?;
                if !exists {
                    outcome.missing.push((entity_type.clone(), *id));
                    continue;
                }
                for (child_type, child_id) in removed {
                    let delete = Query::delete()
                        .from_table(Alias::new(&table))
                        .and_where(Expr::col(Alias::new("parent_id")).eq(*id))
                        .and_where(Expr::col(Alias::new("child_type")).eq(child_type.clone()))
                        .and_where(Expr::col(Alias::new("child_id")).eq(*child_id))
                        .to_owned();
                    tx.execute(&delete).await?;
                }
                if !added.is_empty() {
                    let next = next_position(tx, &table, *id).await?;
                    let rows: Vec<(i64, String, i64, i64)> = added
                        .iter()
                        .enumerate()
                        .map(|(i, (t, c))| (*id, t.clone(), *c, next + i as i64))
                        .collect();
                    outcome.links_written += insert_links(tx, &table, &rows, true).await?;
                }
            }
            WriteOp::EntityState { entity_type, patch } => {
                let Some(old) = entity_state::Entity::find_by_id(entity_type.clone())
                    .one(tx)
                    .await?
                else {
                    return Err(StoreError::Schema(format!(
                        "{entity_type} is not a cached type"
                    )));
                };
                let mut row: entity_state::ActiveModel = old.into();
                if let Some(v) = patch.complete {
                    row.complete = Set(v);
                }
                if let Some(v) = &patch.full_scan_cursor {
                    row.full_scan_cursor = Set(*v);
                }
                if let Some(v) = &patch.full_scan_started_at {
                    row.full_scan_started_at = Set(v.clone());
                }
                if let Some(v) = &patch.last_full_scan_at {
                    row.last_full_scan_at = Set(v.clone());
                }
                if let Some(v) = &patch.scan_checkpoint {
                    row.scan_checkpoint = Set(v.clone());
                }
                if let Some(v) = &patch.last_scan_at {
                    row.last_scan_at = Set(v.clone());
                }
                row.updated_at = Set(now.clone());
                row.update(tx).await?;
            }
            WriteOp::ExpectSchema {
                entity_type,
                signature,
            } => {
                if schema
                    .types
                    .get(entity_type)
                    .map(CachedEntity::signature)
                    .as_ref()
                    != Some(signature)
                {
                    return Err(StoreError::SchemaChanged(entity_type.clone()));
                }
            }
            WriteOp::SiteInfo { key, value } => {
                let row = site_info::ActiveModel {
                    key: Set(key.clone()),
                    value: Set(value.to_string()),
                    fetched_at: Set(now.clone()),
                };
                site_info::Entity::insert(row)
                    .on_conflict(
                        OnConflict::column(site_info::Column::Key)
                            .update_columns([
                                site_info::Column::Value,
                                site_info::Column::FetchedAt,
                            ])
                            .to_owned(),
                    )
                    .exec(tx)
                    .await?;
            }
            WriteOp::Verification {
                entity_type,
                outcome,
                request,
                diff,
                entity_ids,
            } => {
                verification::ActiveModel {
                    created_at: Set(now.clone()),
                    entity_type: Set(entity_type.clone()),
                    outcome: Set(outcome.clone()),
                    request: Set(request.to_string()),
                    diff: Set(diff.to_string()),
                    entity_ids: Set(Json::from(entity_ids.clone()).to_string()),
                    ..Default::default()
                }
                .insert(tx)
                .await?;
            }
        }
    }
    if let Some(Checkpoint::Events {
        last_event_id,
        open_gaps,
    }) = &msg.checkpoint
    {
        let row = event_cursor::ActiveModel {
            name: Set("events".to_owned()),
            last_event_id: Set(*last_event_id),
            open_gaps: Set(open_gaps.to_string()),
            updated_at: Set(now.clone()),
        };
        event_cursor::Entity::insert(row)
            .on_conflict(
                OnConflict::column(event_cursor::Column::Name)
                    .update_columns([
                        event_cursor::Column::LastEventId,
                        event_cursor::Column::OpenGaps,
                        event_cursor::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec(tx)
            .await?;
    }
    Ok(outcome)
}

fn cached_entity<'a>(
    schema: &'a CachedSchema,
    entity_type: &str,
) -> Result<&'a CachedEntity, StoreError> {
    schema
        .types
        .get(entity_type)
        .ok_or_else(|| StoreError::Schema(format!("{entity_type} is not a cached type")))
}

/// One record turned into columns and link lists.
struct PreparedRow {
    id: i64,
    updated_at: Option<String>,
    columns: Vec<(String, Value)>,
    links: Vec<(String, Vec<(String, i64)>)>,
}

fn invalid(entity: &CachedEntity, field: &str, problem: impl ToString) -> StoreError {
    StoreError::InvalidValue {
        entity_type: entity.name.clone(),
        field: field.to_owned(),
        problem: problem.to_string(),
    }
}

fn prepare(entity: &CachedEntity, record: &Map<String, Json>) -> Result<PreparedRow, StoreError> {
    let id = record
        .get("id")
        .and_then(Json::as_i64)
        .ok_or_else(|| invalid(entity, "id", "missing or not an integer"))?;
    let mut row = PreparedRow {
        id,
        updated_at: None,
        columns: Vec::new(),
        links: Vec::new(),
    };
    for (name, value) in record {
        if name == "id" || name == "type" {
            continue;
        }
        // Fields the cache does not keep (and deep `a.B.c` keys) are ignored.
        let Some(field) = entity.fields.get(name) else {
            continue;
        };
        push_field(entity, field, value, &mut row)?;
    }
    row.updated_at = record
        .get("updated_at")
        .and_then(Json::as_str)
        .map(str::to_owned);
    Ok(row)
}

fn push_field(
    entity: &CachedEntity,
    field: &CachedField,
    value: &Json,
    row: &mut PreparedRow,
) -> Result<(), StoreError> {
    match &field.layout {
        ColumnLayout::Scalar { column, .. } => {
            let v =
                values::scalar_value(field, value).map_err(|e| invalid(entity, &field.name, e))?;
            row.columns.push((column.clone(), v));
        }
        ColumnLayout::Entity {
            type_column,
            id_column,
        } => {
            let link = values::entity_value(value).map_err(|e| invalid(entity, &field.name, e))?;
            let (t, i) = match link {
                Some((t, i)) => (Some(t), Some(i)),
                None => (None, None),
            };
            row.columns.push((type_column.clone(), Value::String(t)));
            row.columns.push((id_column.clone(), Value::BigInt(i)));
        }
        ColumnLayout::MultiEntity { table } => {
            let links =
                values::multi_entity_value(value).map_err(|e| invalid(entity, &field.name, e))?;
            row.links.push((table.clone(), links));
        }
    }
    Ok(())
}

async fn existing_versions(
    tx: &DatabaseTransaction,
    entity: &CachedEntity,
    ids: &[i64],
) -> Result<HashMap<i64, (Option<String>, Option<i64>)>, StoreError> {
    let mut found = HashMap::new();
    let has_updated_at = entity.fields.contains_key("updated_at");
    for chunk in ids.chunks(ID_CHUNK) {
        let mut select = Query::select();
        select
            .from(Alias::new(&entity.table))
            .column(Alias::new("id"))
            .column(Alias::new("_last_log_event_id"))
            .and_where(Expr::col(Alias::new("id")).is_in(chunk.iter().copied()));
        if has_updated_at {
            select.column(Alias::new("updated_at"));
        }
        for row in tx.query_all(&select).await? {
            let id: i64 = row.try_get("", "id")?;
            let updated_at: Option<String> = if has_updated_at {
                row.try_get("", "updated_at")?
            } else {
                None
            };
            let event: Option<i64> = row.try_get("", "_last_log_event_id")?;
            found.insert(id, (updated_at, event));
        }
    }
    Ok(found)
}

async fn row_exists(
    tx: &DatabaseTransaction,
    entity: &CachedEntity,
    id: i64,
) -> Result<bool, StoreError> {
    Ok(!existing_versions(tx, entity, &[id]).await?.is_empty())
}

#[allow(clippy::too_many_arguments)] // one call site; the arguments are the op's fields
async fn upsert(
    tx: &DatabaseTransaction,
    entity: &CachedEntity,
    records: &[Map<String, Json>],
    mode: UpsertMode,
    active: Option<bool>,
    event_id: Option<i64>,
    now: &str,
    outcome: &mut ApplyOutcome,
) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let prepared = records
        .iter()
        .map(|r| prepare(entity, r))
        .collect::<Result<Vec<_>, _>>()?;
    let ids: Vec<i64> = prepared.iter().map(|r| r.id).collect();
    let existing = existing_versions(tx, entity, &ids).await?;

    let mut rows = Vec::with_capacity(prepared.len());
    for row in prepared {
        match existing.get(&row.id) {
            Some((stored_updated_at, stored_event)) => {
                let older = matches!((&row.updated_at, stored_updated_at), (Some(new), Some(old)) if new < old);
                let older_event =
                    matches!((event_id, stored_event), (Some(new), Some(old)) if new < *old);
                if older || older_event {
                    outcome.skipped_older += 1;
                    continue;
                }
            }
            None if mode == UpsertMode::UpdateOnly => {
                outcome.missing.push((entity.name.clone(), row.id));
                continue;
            }
            None => {}
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Ok(());
    }

    // Bookkeeping columns.
    let mut extra: Vec<(String, Value)> =
        vec![("_cache_updated_at".to_owned(), now.to_owned().into())];
    if let Some(active) = active {
        extra.push(("_active".to_owned(), active.into()));
    }
    if let Some(event_id) = event_id {
        extra.push(("_last_log_event_id".to_owned(), event_id.into()));
    }

    match mode {
        UpsertMode::Full => {
            // Group rows by their column set so each group is one multi-row INSERT.
            let mut groups: BTreeMap<Vec<String>, Vec<&PreparedRow>> = BTreeMap::new();
            for row in &rows {
                groups
                    .entry(row.columns.iter().map(|(c, _)| c.clone()).collect())
                    .or_default()
                    .push(row);
            }
            for (columns, group) in groups {
                let mut all_columns = vec!["id".to_owned(), "_cache_created_at".to_owned()];
                all_columns.extend(extra.iter().map(|(c, _)| c.clone()));
                all_columns.extend(columns.iter().cloned());
                let per_chunk = (MAX_BIND_PARAMS / all_columns.len()).max(1);
                let update_columns: Vec<Alias> = all_columns
                    .iter()
                    .filter(|c| *c != "id" && *c != "_cache_created_at")
                    .map(Alias::new)
                    .collect();
                for chunk in group.chunks(per_chunk) {
                    let mut insert = Query::insert();
                    insert
                        .into_table(Alias::new(&entity.table))
                        .columns(all_columns.iter().map(Alias::new));
                    for row in chunk {
                        let mut values: Vec<Expr> = vec![row.id.into(), now.to_owned().into()];
                        values.extend(extra.iter().map(|(_, v)| Expr::val(v.clone())));
                        values.extend(row.columns.iter().map(|(_, v)| Expr::val(v.clone())));
                        insert
                            .values(values)
                            .map_err(|e| StoreError::Schema(format!("building insert: {e}")))?;
                    }
                    let mut on_conflict = OnConflict::column(Alias::new("id"));
                    if update_columns.is_empty() {
                        on_conflict.do_nothing();
                    } else {
                        on_conflict.update_columns(update_columns.clone());
                    }
                    insert.on_conflict(on_conflict);
                    tx.execute(&insert).await?;
                    outcome.rows_written += chunk.len() as u64;
                }
            }
        }
        UpsertMode::UpdateOnly => {
            for row in &rows {
                if row.columns.is_empty()
                    && row.links.is_empty()
                    && active.is_none()
                    && event_id.is_none()
                {
                    continue;
                }
                let mut update = Query::update();
                update.table(Alias::new(&entity.table));
                for (c, v) in extra.iter().chain(row.columns.iter()) {
                    update.value(Alias::new(c), v.clone());
                }
                update.and_where(Expr::col(Alias::new("id")).eq(row.id));
                tx.execute(&update).await?;
                outcome.rows_written += 1;
            }
        }
    }

    // Multi-entity associations: the record's list replaces the stored set.
    let mut by_table: BTreeMap<&str, Vec<&PreparedRow>> = BTreeMap::new();
    for row in &rows {
        for (table, _) in &row.links {
            by_table.entry(table.as_str()).or_default().push(row);
        }
    }
    for (table, parents) in by_table {
        for chunk in parents.chunks(ID_CHUNK) {
            let delete = Query::delete()
                .from_table(Alias::new(table))
                .and_where(Expr::col(Alias::new("parent_id")).is_in(chunk.iter().map(|r| r.id)))
                .to_owned();
            tx.execute(&delete).await?;
        }
        let mut links = Vec::new();
        for row in parents {
            for (t, list) in &row.links {
                if t == table {
                    // Duplicates in one list would violate the key; the first position wins.
                    let mut seen = BTreeSet::new();
                    for (child_type, child_id) in list {
                        if seen.insert((child_type.as_str(), *child_id)) {
                            links.push((
                                row.id,
                                child_type.clone(),
                                *child_id,
                                seen.len() as i64 - 1,
                            ));
                        }
                    }
                }
            }
        }
        outcome.links_written += insert_links(tx, table, &links, false).await?;
    }
    Ok(())
}

async fn next_position(
    tx: &DatabaseTransaction,
    table: &str,
    parent: i64,
) -> Result<i64, StoreError> {
    let select = Query::select()
        .expr_as(
            Expr::col(Alias::new("position")).max(),
            Alias::new("max_position"),
        )
        .from(Alias::new(table))
        .and_where(Expr::col(Alias::new("parent_id")).eq(parent))
        .to_owned();
    let row = tx.query_one(&select).await?;
    // `position` is an INTEGER column: INT4 on PostgreSQL.
    let max: Option<i32> = match row {
        Some(row) => row.try_get("", "max_position")?,
        None => None,
    };
    Ok(max.map_or(0, |m| i64::from(m) + 1))
}

/// Inserts association rows `(parent_id, child_type, child_id, position)`.
async fn insert_links(
    tx: &DatabaseTransaction,
    table: &str,
    rows: &[(i64, String, i64, i64)],
    ignore_existing: bool,
) -> Result<u64, StoreError> {
    let mut written = 0;
    for chunk in rows.chunks(MAX_BIND_PARAMS / 4) {
        let mut insert = Query::insert();
        insert.into_table(Alias::new(table)).columns([
            Alias::new("parent_id"),
            Alias::new("child_type"),
            Alias::new("child_id"),
            Alias::new("position"),
        ]);
        for (parent, child_type, child_id, position) in chunk {
            insert
                .values([
                    (*parent).into(),
                    child_type.clone().into(),
                    (*child_id).into(),
                    (*position).into(),
                ])
                .map_err(|e| StoreError::Schema(format!("building insert: {e}")))?;
        }
        if ignore_existing {
            insert.on_conflict(
                OnConflict::columns([
                    Alias::new("parent_id"),
                    Alias::new("child_type"),
                    Alias::new("child_id"),
                ])
                .do_nothing()
                .to_owned(),
            );
        }
        let result = tx.execute(&insert).await?;
        written += result.rows_affected();
    }
    Ok(written)
}
