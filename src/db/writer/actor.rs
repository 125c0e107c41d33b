//! The DbWriter actor: the one place where the database is mutated.
//!
//! It runs on its own Arbiter. Its handlers return [`AtomicResponse`], so exactly one
//! transaction is open at a time and messages are applied in arrival order. Callers use
//! [`DbWriterHandle`] (which `send`s, so a full mailbox pushes back on them). A message is
//! applied in one transaction; on a database error the transaction is retried with back-off
//! (bounded), and if it still fails the error goes back to the sender: nothing accepted is
//! dropped silently. `/status` reads [`WriterStats`] (atomics), never the mailbox.
use crate::query::rules::{Rule, RuleState};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use actix::prelude::*;
use sea_orm::{
    DatabaseConnection, DatabaseTransaction, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
};
use serde_json::{Map, Value as Json};
use tracing::warn;

use super::StoreError;
use super::ops::apply_ops;
use super::registry::{apply_schema, load_complete};
use crate::cluster::{self, ClusterState, leader_only};
use crate::schema::{Backend, CachedSchema, DdlPlan, UncachedMark};
use crate::state::CacheState;
use crate::time;

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
    /// A calibrated rule's new state (`sgcache_rule`); the shared view follows after commit.
    Rule { rule: Rule, state: RuleState },
    /// Refreshes the query planner's statistics of one type's tables (its table and its
    /// association tables): sent when a full scan has bulk-loaded the type. Without them
    /// PostgreSQL plans the first reads blind (autovacuum may be minutes away, or off): a page of
    /// 500 Tasks was measured at 224 ms before `ANALYZE` and 5 ms after.
    Analyze { entity_type: String },
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
    /// Fields this message left uncached: the site sent a value the cache cannot store
    /// ([`crate::schema::marks`]); the records were written without them.
    pub uncached: Vec<UncachedMark>,
}

/// Create/alter the cache tables for `desired` and record it in the schema registry. Gives
/// the schema now served: `desired` without the fields marks leave uncached.
#[derive(Message, Debug)]
#[rtype(result = "Result<CachedSchema, StoreError>")]
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
    /// This instance's role: leader-only writes are fenced (see [`crate::cluster`]).
    cluster: Arc<ClusterState>,
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
    /// Starts the DbWriter of the only instance (SQLite, CLI commands) on its own Arbiter.
    pub fn start(
        db: DatabaseConnection,
        backend: Backend,
        state: Arc<CacheState>,
    ) -> (DbWriterHandle, Arbiter) {
        let cluster = Arc::new(ClusterState::single("local".to_owned()));
        DbWriterHandle::start_in_cluster(db, backend, state, cluster)
    }

    /// Starts a DbWriter whose leader-only writes need `cluster`'s lead.
    pub fn start_in_cluster(
        db: DatabaseConnection,
        backend: Backend,
        state: Arc<CacheState>,
        cluster: Arc<ClusterState>,
    ) -> (DbWriterHandle, Arbiter) {
        let stats = Arc::new(WriterStats::default());
        let arbiter = Arbiter::new();
        let actor_stats = stats.clone();
        let addr = DbWriter::start_in_arbiter(&arbiter.handle(), move |_| DbWriter {
            db,
            backend,
            state,
            cluster,
            stats: actor_stats,
            max_attempts: 4,
        });
        (DbWriterHandle { addr, stats }, arbiter)
    }

    /// Whether the actor is still running (its Arbiter alive, not stopped).
    pub fn is_alive(&self) -> bool {
        self.addr.connected()
    }

    /// Stops the DbWriter after the messages already in its mailbox.
    pub async fn stop(&self) {
        let _ = self.addr.send(crate::actors::Stop).await;
    }

    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }

    pub async fn apply(&self, msg: Apply) -> Result<ApplyOutcome, StoreError> {
        self.send(msg).await?
    }

    pub async fn apply_schema(&self, msg: ApplySchema) -> Result<CachedSchema, StoreError> {
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
    /// Publishes the schema without the fields `marks` left uncached (committed), and logs
    /// each problem once: the mark is stored, so the field is not written again.
    fn leave_uncached(&self, schema: &CachedSchema, marks: &[UncachedMark]) {
        for mark in marks {
            warn!(
                entity_type = %mark.entity_type,
                field = %mark.field,
                value_kind = %mark.value_kind,
                error = %mark.problem,
                "the site sent a value the cache cannot store: the field is left uncached for this type"
            );
        }
        let mut served = schema.clone();
        served.apply_marks(marks.iter().cloned());
        self.state.set_schema(Arc::new(served));
    }

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

impl Handler<crate::actors::Stop> for DbWriter {
    type Result = ();

    fn handle(&mut self, _msg: crate::actors::Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
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
        let rules: Vec<(Rule, RuleState)> = msg
            .ops
            .iter()
            .filter_map(|op| match op {
                WriteOp::Rule { rule, state } => Some((*rule, state.clone())),
                _ => None,
            })
            .collect();
        let fence = leader_only(&msg).then(|| self.cluster.fence());
        let fut = async move {
            let result = with_retry!(db, backend, stats, max, |tx| {
                if let Some(fence) = fence {
                    cluster::pg::fence(&tx, fence).await?;
                }
                apply_ops(&tx, &schema, &msg).await?
            });
            let complete = if touches_state && result.is_ok() {
                Some(load_complete(&db).await)
            } else {
                None
            };
            (result, complete, schema)
        };
        AtomicResponse::new(Box::pin(fut.into_actor(self).map(
            |(result, complete, schema), act, _| {
                let rows = result
                    .as_ref()
                    .map(|o| o.rows_written + o.links_written)
                    .unwrap_or(0);
                act.record_result(&result, rows);
                if let Ok(outcome) = &result
                    && !outcome.uncached.is_empty()
                {
                    act.leave_uncached(&schema, &outcome.uncached);
                }
                if let Some(Ok(complete)) = complete {
                    act.state.set_complete(complete);
                }
                if result.is_ok() {
                    for (rule, state) in rules {
                        act.state.set_rule(rule, state);
                    }
                }
                result
            },
        )))
    }
}

impl Handler<ApplySchema> for DbWriter {
    type Result = AtomicResponse<Self, Result<CachedSchema, StoreError>>;

    fn handle(&mut self, msg: ApplySchema, _ctx: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        let backend = self.backend;
        let stats = self.stats.clone();
        let max = self.max_attempts;
        let fence = self.cluster.fence();
        let fut = async move {
            let result = with_retry!(db, backend, stats, max, |tx| {
                cluster::pg::fence(&tx, fence).await?;
                cluster::pg::ddl_lock(&tx).await?;
                apply_schema(&tx, backend, &msg).await?
            });
            let complete = match &result {
                Ok(_) => Some(load_complete(&db).await),
                Err(_) => None,
            };
            (result, complete)
        };
        AtomicResponse::new(Box::pin(fut.into_actor(self).map(
            |(result, complete), act, _| {
                act.record_result(&result, 0);
                if let Ok(served) = &result {
                    act.state.set_schema(Arc::new(served.clone()));
                }
                if let Some(Ok(complete)) = complete {
                    act.state.set_complete(complete);
                }
                result
            },
        )))
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, Statement};
    use serde_json::json;

    use super::super::test_support::shot_schema;
    use super::*;
    use crate::config::DatabaseConfig;
    use crate::db::{self, Pools, registry};
    use crate::schema::{AppliedSchema, plan_ddl};

    struct Fixture {
        _dir: tempfile::TempDir,
        pools: Pools,
        state: Arc<CacheState>,
        writer: DbWriterHandle,
        _arbiter: Arbiter,
    }

    /// A migrated temporary SQLite database with the `Shot` table, and a DbWriter on it.
    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = DatabaseConfig {
            url: format!("sqlite://{}", dir.path().join("w.sqlite").display()),
            ..DatabaseConfig::default()
        };
        let pools = db::connect(&config).await.expect("connect");
        db::migrate(&pools).await.expect("migrate");
        let state = CacheState::new();
        let (writer, arbiter) =
            DbWriterHandle::start(pools.writer.clone(), pools.backend, state.clone());
        let desired = shot_schema();
        let plan = plan_ddl(&desired, &AppliedSchema::default(), Backend::Sqlite);
        writer
            .apply_schema(ApplySchema {
                plan,
                desired,
                snapshot: None,
            })
            .await
            .expect("schema");
        Fixture {
            _dir: dir,
            pools,
            state,
            writer,
            _arbiter: arbiter,
        }
    }

    fn shot(id: i64, code: &str, updated_at: &str) -> Map<String, Json> {
        json!({"type": "Shot", "id": id, "code": code, "updated_at": updated_at,
               "assets": [{"type": "Asset", "id": id}]})
        .as_object()
        .cloned()
        .expect("object")
    }

    fn upsert(records: Vec<Map<String, Json>>) -> WriteOp {
        WriteOp::Upsert {
            entity_type: "Shot".into(),
            records,
            mode: UpsertMode::Full,
            active: Some(true),
            event_id: None,
        }
    }

    /// `(id, code, _active)` of every row, by id.
    async fn rows(pools: &Pools) -> Vec<(i64, String, bool)> {
        let stmt = Statement::from_string(
            pools.reader.get_database_backend(),
            "SELECT id, code, _active FROM shot ORDER BY id",
        );
        let mut out = Vec::new();
        for row in pools.reader.query_all_raw(stmt).await.expect("select") {
            out.push((
                row.try_get::<i64>("", "id").expect("id"),
                row.try_get::<String>("", "code").expect("code"),
                row.try_get::<bool>("", "_active").expect("active"),
            ));
        }
        out
    }

    #[actix_web::test]
    async fn newer_wins_retire_and_checkpoint_commit_together() {
        let f = fixture().await;
        let outcome = f
            .writer
            .apply(Apply {
                ops: vec![upsert(vec![
                    shot(1, "a", "2024-01-02T00:00:00Z"),
                    shot(2, "b", "2024-01-02T00:00:00Z"),
                ])],
                checkpoint: None,
            })
            .await
            .expect("apply");
        assert_eq!((outcome.rows_written, outcome.links_written), (2, 2));

        // An older copy of 1 loses, a newer copy of 2 wins, 2 is retired, 9 is missing; the
        // checkpoint moves in the same transaction.
        let outcome = f
            .writer
            .apply(Apply {
                ops: vec![
                    upsert(vec![
                        shot(1, "a-old", "2024-01-01T00:00:00Z"),
                        shot(2, "b-new", "2024-01-03T00:00:00Z"),
                    ]),
                    WriteOp::SetActive {
                        entity_type: "Shot".into(),
                        id: 2,
                        active: false,
                        event_id: Some(42),
                    },
                    WriteOp::SetActive {
                        entity_type: "Shot".into(),
                        id: 9,
                        active: false,
                        event_id: Some(42),
                    },
                ],
                checkpoint: Some(Checkpoint::Events {
                    last_event_id: 42,
                    open_gaps: json!([40]),
                }),
            })
            .await
            .expect("apply");
        assert_eq!(outcome.skipped_older, 1);
        assert_eq!(outcome.missing, [("Shot".to_owned(), 9)]);
        assert_eq!(
            rows(&f.pools).await,
            [(1, "a".to_owned(), true), (2, "b-new".to_owned(), false)]
        );
        let cursor = registry::event_cursor(&f.pools.reader)
            .await
            .expect("cursor")
            .expect("a cursor row");
        assert_eq!(
            (cursor.last_event_id, cursor.open_gaps.as_str()),
            (42, "[40]")
        );
        let stats = f.writer.stats();
        assert_eq!(stats.transactions.load(Ordering::Relaxed), 3);
        assert_eq!(stats.errors.load(Ordering::Relaxed), 0);
    }

    #[actix_web::test]
    async fn a_value_that_cannot_be_stored_leaves_its_field_uncached_and_the_rows_are_written() {
        let f = fixture().await;
        let mut bad = shot(2, "b", "2024-01-01T00:00:00Z");
        bad.insert("code".into(), json!({"not": "text"}));
        let outcome = f
            .writer
            .apply(Apply {
                ops: vec![
                    upsert(vec![shot(1, "a", "2024-01-01T00:00:00Z"), bad]),
                    // A later op of the same message no longer writes the field.
                    upsert(vec![shot(3, "c", "2024-01-01T00:00:00Z")]),
                ],
                checkpoint: None,
            })
            .await
            .expect("written without the field");
        assert_eq!(outcome.rows_written, 3);
        assert_eq!(outcome.uncached.len(), 1);
        let mark = &outcome.uncached[0];
        assert_eq!(
            (mark.field.as_str(), mark.value_kind.as_str()),
            ("code", "object")
        );
        // Published at once, stored for a restart, and kept by the next schema apply.
        let served = f.state.view().schema;
        assert!(served.field("Shot", "code").is_none());
        assert!(served.field("Shot", "updated_at").is_some());
        assert_eq!(
            registry::uncached_marks(&f.pools.reader)
                .await
                .expect("marks")
                .len(),
            1
        );
        let desired = shot_schema();
        let applied = registry::load_applied(&f.pools.reader)
            .await
            .expect("applied");
        let plan = plan_ddl(&desired, &applied, Backend::Sqlite);
        let returned = f
            .writer
            .apply_schema(ApplySchema {
                plan,
                desired,
                snapshot: None,
            })
            .await
            .expect("schema");
        let served = f.state.view().schema;
        assert_eq!(*served, returned, "the caller gets the schema served");
        assert_eq!(served.uncached_marks().count(), 1);
        assert!(served.field("Shot", "code").is_none());
        assert_eq!(f.writer.stats().errors.load(Ordering::Relaxed), 0);
    }

    #[actix_web::test]
    async fn a_bad_op_fails_the_whole_message_and_loses_nothing() {
        let f = fixture().await;
        f.writer
            .apply(Apply {
                ops: vec![upsert(vec![shot(1, "a", "2024-01-01T00:00:00Z")])],
                checkpoint: Some(Checkpoint::Events {
                    last_event_id: 10,
                    open_gaps: json!([]),
                }),
            })
            .await
            .expect("apply");
        // A good upsert, then a record with a bad value: nothing of the message is applied,
        // the checkpoint does not move, and the error names the field.
        let mut bad = shot(3, "c", "2024-01-01T00:00:00Z");
        bad.insert("updated_at".into(), json!("not a time"));
        let err = f
            .writer
            .apply(Apply {
                ops: vec![
                    upsert(vec![shot(2, "b", "2024-01-01T00:00:00Z")]),
                    upsert(vec![bad]),
                ],
                checkpoint: Some(Checkpoint::Events {
                    last_event_id: 20,
                    open_gaps: json!([]),
                }),
            })
            .await
            .expect_err("rejected");
        assert!(
            matches!(err, StoreError::InvalidValue { ref field, .. } if field == "updated_at"),
            "{err}"
        );
        // Bad input is not retried; an op naming an uncached type fails the same way.
        let err = f
            .writer
            .apply(Apply {
                ops: vec![WriteOp::SetActive {
                    entity_type: "Asset".into(),
                    id: 1,
                    active: false,
                    event_id: None,
                }],
                checkpoint: None,
            })
            .await
            .expect_err("not cached");
        assert!(matches!(err, StoreError::Schema(_)), "{err}");
        assert_eq!(rows(&f.pools).await, [(1, "a".to_owned(), true)]);
        let cursor = registry::event_cursor(&f.pools.reader)
            .await
            .expect("cursor")
            .expect("a cursor row");
        assert_eq!(cursor.last_event_id, 10);
        let stats = f.writer.stats();
        assert_eq!(stats.errors.load(Ordering::Relaxed), 2);
        assert_eq!(stats.retries.load(Ordering::Relaxed), 0);
        // The writer still works after the failures.
        f.writer
            .apply(Apply {
                ops: vec![upsert(vec![shot(2, "b", "2024-01-01T00:00:00Z")])],
                checkpoint: None,
            })
            .await
            .expect("apply after failures");
        assert_eq!(rows(&f.pools).await.len(), 2);
    }
}
