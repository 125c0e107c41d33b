//! The Scanner: full scans that fill a cached type, and incremental scans that catch what the
//! event stream misses (writes by scripts without events, see the API notes §9.6).
//!
//! The scanning itself is in plain async functions, [`scan_type_full`] and
//! [`scan_type_incremental`], shared by the [`Scanner`] actor (daemon) and `sgcache scan` (CLI).
//!
//! **Full scan** (types not `complete`): keyset paging on `id` (`id > cursor`, sorted by id),
//! every cached field, first `return_only: "active"`, then `return_only: "retired"`. Each page
//! is one [`Apply`]: the upsert (with `_active` set by the pass) plus the new cursor, so an
//! interrupted scan resumes after a restart from the last page written.
//!
//! The cursor (`sgcache_entity_state.full_scan_cursor`) encodes the pass as well as the last
//! id written: `c >= 0` means "active pass, last id `c`"; `c < 0` means "active pass done,
//! retired pass, last id `-c - 1`" (so `-1` is the start of the retired pass).
//! `full_scan_started_at` holds the start time of the scan (kept across resumes); when both
//! passes are done the type becomes `complete` and `scan_checkpoint` is set to that start time,
//! so the incremental scans pick up everything changed while the full scan ran.
//!
//! **Incremental scan** (complete types, every `scanner.interval`): `updated_at >
//! checkpoint − scanner.leeway` (or `now − scanner.since` without a checkpoint), active and
//! retired, paged by id, every cached field. The checkpoint moves to this scan's start time in
//! the last Apply. A failed incremental scan leaves the checkpoint alone, so it is redone.
//! A retirement that does not bump `updated_at` is not seen by these scans (an id-set
//! reconciliation is needed for that; not done here).
//!
//! **Project restriction** (`scanner.projects` non-empty): types that have a `project` field
//! are scanned with `project in [Project N, ...]` added to the filters; types without one
//! (e.g. `Project`, `HumanUser`) are scanned whole. Such a cache holds only those projects'
//! rows of project-scoped types: the read path must only answer reads restricted to those
//! projects locally (decided with the read path).
//!
//! Failures: transient site errors (unreachable, 5xx, 429, timeouts) are retried for the same
//! page with [`backoff_delay`], forever, never skipping a page; each is counted in the stats.
//! Faults and database errors end the run with an error; the actor retries later with
//! back-off and the full scan resumes from its stored cursor.
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use sea_orm::DatabaseConnection;
use serde_json::{Map, Value as Json, json};
use tracing::{info, warn};

use super::ActorStats;
use crate::config::{Config, ScannerConfig};
use crate::db::entities::entity_state;
use crate::db::writer::{Apply, ApplyOutcome, DbWriterHandle, EntityStatePatch, WriteOp};
use crate::db::{Pools, StoreError, registry};
use crate::schema::CachedEntity;
use crate::state::CacheState;
use crate::time;
use crate::upstream::fetch::{self, Condition, ReadArgs, entities_of};
use crate::upstream::refresh::{self, Gone, refresh};
use crate::upstream::{UpstreamClient, UpstreamError, backoff_delay};

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Store(StoreError),
    /// The cached field set of the type changed while it was being scanned: the rows written
    /// so far lack the new fields, so the scan stops (the schema change reset its cursor).
    #[error("the cached schema of {0} changed during the scan")]
    SchemaChanged(String),
    #[error("unexpected read reply for {entity_type}: {problem}")]
    Reply {
        entity_type: String,
        problem: String,
    },
}

impl From<StoreError> for ScanError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::SchemaChanged(entity_type) => ScanError::SchemaChanged(entity_type),
            other => ScanError::Store(other),
        }
    }
}

impl ScanError {
    /// A problem of one type (a fault, a bad reply, a schema change), not of the site or the
    /// database as a whole: the daemon goes on with the other types.
    pub fn is_per_type(&self) -> bool {
        matches!(
            self,
            ScanError::Upstream(UpstreamError::Fault { .. })
                | ScanError::Reply { .. }
                | ScanError::SchemaChanged(_)
        )
    }
}

/// `return_only` of one pass (`active`, then `retired`).
pub use crate::upstream::fetch::ReturnOnly as Pass;

/// `full_scan_cursor` → (pass, last id written). See the module docs.
pub fn decode_cursor(cursor: Option<i64>) -> (Pass, i64) {
    match cursor {
        None => (Pass::Active, 0),
        Some(c) if c >= 0 => (Pass::Active, c),
        Some(c) => (Pass::Retired, -(c + 1)),
    }
}

/// (pass, last id written) → `full_scan_cursor`.
pub fn encode_cursor(pass: Pass, last_id: i64) -> i64 {
    match pass {
        Pass::Active => last_id,
        Pass::Retired => -last_id - 1,
    }
}

/// What a scan needs from the configuration.
#[derive(Clone, Debug)]
pub struct ScanOptions {
    pub page_size: u32,
    /// Project ids (empty = all projects).
    pub projects: Vec<i64>,
    pub leeway: Duration,
    pub since: Duration,
    /// Base of the back-off between retries of a page.
    pub backoff: Duration,
}

impl ScanOptions {
    pub fn from_config(config: &Config) -> ScanOptions {
        let s: &ScannerConfig = &config.scanner;
        ScanOptions {
            page_size: s.page_size.max(1),
            projects: s.projects.clone(),
            leeway: s.leeway,
            since: s.since,
            backoff: config.shotgun.retry_backoff.max(Duration::from_millis(10)),
        }
    }
}

/// Where a running scan is.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ScanProgress {
    pub entity_type: String,
    /// `full` or `incremental`.
    pub kind: &'static str,
    pub pass: &'static str,
    pub page: u64,
    /// Entities written by this run of the scan.
    pub scanned: u64,
    /// Entities this run will have written when done, from `paging_info.entity_count`.
    pub total: Option<u64>,
}

/// What one scan of one type did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ScanSummary {
    pub entity_type: String,
    pub kind: &'static str,
    pub entities: u64,
    pub pages: u64,
    pub seconds: f64,
    /// Page requests that failed and were retried.
    pub retries: u64,
}

/// Told about progress and retried failures (the actor's stats, the CLI's progress bars).
pub trait ScanObserver {
    fn progress(&mut self, _progress: &ScanProgress) {}
    fn retrying(&mut self, _error: &ScanError, _delay: Duration) {}
    /// Asked before each page is written: has the cached schema of `entity` changed since the
    /// scan started? (The daemon's schema loader may apply a new schema at any time.)
    fn schema_changed(&mut self, _entity: &CachedEntity) -> bool {
        false
    }
}

/// An observer that ignores everything.
pub struct NoObserver;
impl ScanObserver for NoObserver {}

/// `project in [...]` for types that have a `project` field, when projects are restricted.
pub fn project_condition(entity: &CachedEntity, projects: &[i64]) -> Option<Condition> {
    if projects.is_empty() || !entity.fields.contains_key("project") {
        return None;
    }
    let links: Vec<Json> = projects
        .iter()
        .map(|id| json!({"type": "Project", "id": id}))
        .collect();
    Some(Condition::new("project", "in", Json::Array(links)))
}

/// The `read` arguments of one page: `id > after_id` and `extra` conditions, sorted by id.
pub fn page_request(
    entity: &CachedEntity,
    pass: Pass,
    after_id: i64,
    extra: &[Condition],
    page_size: u32,
) -> Json {
    ReadArgs::whole(entity)
        .filter("id", "greater_than", json!([after_id]))
        .conditions(extra)
        .return_only(pass)
        .page(page_size, 1)
        .paging_info(true)
        .build()
}

/// A page's write through the DbWriter, running while the next page is fetched.
type PendingApply<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<ApplyOutcome, StoreError>> + 'a>>;

/// One page as read from the site.
struct Page {
    records: Vec<Map<String, Json>>,
    last_id: i64,
    /// Matching rows from this page on (`entity_count`), if the site said.
    remaining: Option<u64>,
    has_next: bool,
}

/// Reads one page, retrying transient failures (same page) until it succeeds.
async fn read_page(
    upstream: &UpstreamClient,
    args: Json,
    entity_type: &str,
    opts: &ScanOptions,
    observer: &mut dyn ScanObserver,
    retries: &mut u64,
) -> Result<Page, ScanError> {
    let page_size = opts.page_size as usize;
    let mut attempt = 0u32;
    let mut reply = loop {
        match upstream.call("read", Some(args.clone())).await {
            Ok(reply) => break reply,
            Err(err) if err.is_transient() => {
                attempt += 1;
                *retries += 1;
                let delay = backoff_delay(opts.backoff, attempt);
                let err = ScanError::Upstream(err);
                warn!(entity_type, error = %err, delay_ms = delay.as_millis() as u64, "scan page failed, retrying");
                observer.retrying(&err, delay);
                actix_web::rt::time::sleep(delay).await;
            }
            Err(err) => return Err(err.into()),
        }
    };
    let bad = |problem: &str| ScanError::Reply {
        entity_type: entity_type.to_owned(),
        problem: problem.to_owned(),
    };
    let records = entities_of(&mut reply).map_err(|e| bad(&e.to_string()))?;
    let mut last_id = 0;
    for record in &records {
        let id = record
            .get("id")
            .and_then(Json::as_i64)
            .ok_or_else(|| bad("an entity has no integer id"))?;
        last_id = last_id.max(id);
    }
    let paging = reply.get("paging_info");
    let remaining = paging
        .and_then(|p| p.get("entity_count"))
        .and_then(Json::as_u64);
    let has_next = paging
        .and_then(|p| p.get("has_next_page"))
        .and_then(Json::as_bool)
        .unwrap_or(records.len() >= page_size);
    let has_next = has_next && !records.is_empty();
    Ok(Page {
        records,
        last_id,
        remaining,
        has_next,
    })
}

fn upsert(entity: &CachedEntity, records: Vec<Map<String, Json>>, pass: Pass) -> WriteOp {
    refresh::upsert(&entity.name, records, pass == Pass::Active, None)
}

/// The guard that makes a page's Apply fail if the type's schema changed since it was read.
fn expect_schema(entity: &CachedEntity) -> WriteOp {
    WriteOp::ExpectSchema {
        entity_type: entity.name.clone(),
        signature: entity.signature(),
    }
}

fn state_op(entity: &CachedEntity, patch: EntityStatePatch) -> WriteOp {
    WriteOp::EntityState {
        entity_type: entity.name.clone(),
        patch,
    }
}

/// Full scan of one type, resuming from `state` (its `sgcache_entity_state` row: cursor and
/// start time). Ends with the type `complete`.
pub async fn scan_type_full(
    upstream: &UpstreamClient,
    writer: &DbWriterHandle,
    entity: &CachedEntity,
    state: &entity_state::Model,
    opts: &ScanOptions,
    observer: &mut dyn ScanObserver,
) -> Result<ScanSummary, ScanError> {
    let started = Instant::now();
    // A resumed scan keeps its original start time: the checkpoint must cover everything
    // changed since the first page was read.
    let started_at = state
        .full_scan_started_at
        .clone()
        .filter(|_| state.full_scan_cursor.is_some())
        .unwrap_or_else(time::now);
    let (mut pass, mut last_id) = decode_cursor(state.full_scan_cursor);
    let extra: Vec<Condition> = project_condition(entity, &opts.projects)
        .into_iter()
        .collect();
    let mut progress = ScanProgress {
        entity_type: entity.name.clone(),
        kind: "full",
        pass: pass.name(),
        ..Default::default()
    };
    let mut retries = 0;
    info!(entity_type = %entity.name, pass = pass.name(), after_id = last_id, "full scan");
    // The page just read is written while the next one is fetched: the scan takes about the
    // longer of the two instead of their sum. At most one write is in flight, so writes stay in
    // order, and the stored cursor only ever names pages that are committed.
    let mut in_flight: Option<(PendingApply<'_>, u64)> = None;
    loop {
        let args = page_request(entity, pass, last_id, &extra, opts.page_size);
        let fetch = read_page(upstream, args, &entity.name, opts, observer, &mut retries);
        let page = match in_flight.take() {
            Some((apply, n)) => {
                let (applied, page) = futures_util::join!(apply, fetch);
                applied?;
                progress.page += 1;
                progress.scanned += n;
                observer.progress(&progress);
                page?
            }
            None => fetch.await?,
        };
        if let Some(remaining) = page.remaining {
            // Rows already written plus this query's rows; the retired pass adds its own.
            progress.total = Some(progress.scanned + remaining);
        }
        if !page.records.is_empty() {
            if observer.schema_changed(entity) {
                return Err(ScanError::SchemaChanged(entity.name.clone()));
            }
            let n = page.records.len() as u64;
            last_id = page.last_id;
            let apply = writer.apply(Apply {
                ops: vec![
                    expect_schema(entity),
                    upsert(entity, page.records, pass),
                    state_op(
                        entity,
                        EntityStatePatch {
                            full_scan_cursor: Some(Some(encode_cursor(pass, last_id))),
                            full_scan_started_at: Some(Some(started_at.clone())),
                            ..Default::default()
                        },
                    ),
                ],
                checkpoint: None,
            });
            in_flight = Some((Box::pin(apply), n));
        }
        if page.has_next {
            continue;
        }
        match pass {
            Pass::Active => {
                pass = Pass::Retired;
                last_id = 0;
                progress.pass = pass.name();
            }
            Pass::Retired => break,
        }
    }
    if let Some((apply, n)) = in_flight {
        apply.await?;
        progress.page += 1;
        progress.scanned += n;
        observer.progress(&progress);
    }
    if observer.schema_changed(entity) {
        return Err(ScanError::SchemaChanged(entity.name.clone()));
    }
    let now = time::now();
    writer
        .apply(Apply {
            ops: vec![
                expect_schema(entity),
                state_op(
                    entity,
                    EntityStatePatch {
                        complete: Some(true),
                        full_scan_cursor: Some(None),
                        full_scan_started_at: Some(Some(started_at.clone())),
                        last_full_scan_at: Some(Some(now.clone())),
                        scan_checkpoint: Some(Some(started_at)),
                        last_scan_at: Some(Some(now)),
                    },
                ),
            ],
            checkpoint: None,
        })
        .await?;
    progress.total = Some(progress.scanned);
    observer.progress(&progress);
    Ok(ScanSummary {
        entity_type: entity.name.clone(),
        kind: "full",
        entities: progress.scanned,
        pages: progress.page,
        seconds: started.elapsed().as_secs_f64(),
        retries,
    })
}

/// Incremental scan of one type: rows with `updated_at` after `checkpoint − leeway` (or
/// `now − since` without a checkpoint), active and retired. Moves the checkpoint to the scan's
/// start time in its last Apply.
pub async fn scan_type_incremental(
    upstream: &UpstreamClient,
    writer: &DbWriterHandle,
    entity: &CachedEntity,
    checkpoint: Option<&str>,
    opts: &ScanOptions,
    observer: &mut dyn ScanObserver,
) -> Result<ScanSummary, ScanError> {
    let started = Instant::now();
    let start = chrono::Utc::now();
    let start_at = time::format(start);
    let leeway = chrono::Duration::from_std(opts.leeway).unwrap_or_default();
    let since = chrono::Duration::from_std(opts.since).unwrap_or_default();
    let after = checkpoint
        .and_then(time::parse)
        .map(|c| c - leeway)
        .unwrap_or(start - since);
    let mut extra = vec![Condition::new(
        "updated_at",
        "greater_than",
        json!([time::format(after)]),
    )];
    extra.extend(project_condition(entity, &opts.projects));
    let mut progress = ScanProgress {
        entity_type: entity.name.clone(),
        kind: "incremental",
        ..Default::default()
    };
    let mut retries = 0;
    let finish = |start_at: &str| {
        state_op(
            entity,
            EntityStatePatch {
                scan_checkpoint: Some(Some(start_at.to_owned())),
                last_scan_at: Some(Some(start_at.to_owned())),
                ..Default::default()
            },
        )
    };
    let mut finished = false;
    for pass in [Pass::Active, Pass::Retired] {
        progress.pass = pass.name();
        let mut last_id = 0;
        loop {
            let args = page_request(entity, pass, last_id, &extra, opts.page_size);
            let page =
                read_page(upstream, args, &entity.name, opts, observer, &mut retries).await?;
            if let Some(remaining) = page.remaining {
                progress.total = Some(progress.scanned + remaining);
            }
            if page.records.is_empty() {
                break;
            }
            if observer.schema_changed(entity) {
                return Err(ScanError::SchemaChanged(entity.name.clone()));
            }
            let n = page.records.len() as u64;
            last_id = page.last_id;
            let mut ops = vec![expect_schema(entity), upsert(entity, page.records, pass)];
            let last = pass == Pass::Retired && !page.has_next;
            if last {
                ops.push(finish(&start_at));
                finished = true;
            }
            writer
                .apply(Apply {
                    ops,
                    checkpoint: None,
                })
                .await?;
            progress.page += 1;
            progress.scanned += n;
            observer.progress(&progress);
            if !page.has_next {
                break;
            }
        }
    }
    if !finished {
        writer
            .apply(Apply {
                ops: vec![expect_schema(entity), finish(&start_at)],
                checkpoint: None,
            })
            .await?;
    }
    Ok(ScanSummary {
        entity_type: entity.name.clone(),
        kind: "incremental",
        entities: progress.scanned,
        pages: progress.page,
        seconds: started.elapsed().as_secs_f64(),
        retries,
    })
}

/// Compares the ids of `entity`'s active rows with the site's active ids and corrects the rows
/// the site no longer has active: a script that generates no events can retire an entity
/// without moving its `updated_at`, so neither the event log nor incremental scans see it.
/// The differing rows are read whole (retired ones come back retired); ids the site does not
/// have at all are retired. Returns how many rows were corrected.
pub async fn reconcile_type(
    upstream: &UpstreamClient,
    writer: &DbWriterHandle,
    reader: &DatabaseConnection,
    entity: &CachedEntity,
    opts: &ScanOptions,
) -> Result<u64, ScanError> {
    let extra: Vec<Condition> = project_condition(entity, &opts.projects)
        .into_iter()
        .collect();
    let mut site_ids = BTreeSet::new();
    let mut last_id = 0;
    loop {
        let args = ReadArgs::new(&entity.name)
            .filter("id", "greater_than", json!([last_id]))
            .conditions(&extra)
            .page(opts.page_size, 1);
        let records = fetch::read(upstream, args).await?;
        for id in records
            .iter()
            .filter_map(|r| r.get("id").and_then(Json::as_i64))
        {
            site_ids.insert(id);
            last_id = std::cmp::max(last_id, id);
        }
        if records.len() < opts.page_size as usize {
            break;
        }
    }
    let stale: BTreeSet<i64> = crate::db::reader::rows::active_ids(reader, entity)
        .await
        .map_err(StoreError::from)?
        .into_iter()
        .filter(|id| !site_ids.contains(id))
        .collect();
    if stale.is_empty() {
        return Ok(0);
    }
    let ops = refresh(upstream, entity, &stale)
        .await?
        .ops(None, Gone::Retire);
    writer
        .apply(Apply {
            ops,
            checkpoint: None,
        })
        .await?;
    info!(entity_type = %entity.name, rows = stale.len(), "reconciled active ids with the site");
    Ok(stale.len() as u64)
}

/// Marks `entity_type` incomplete and forgets its full-scan cursor (restart from scratch).
pub async fn reset_full_scan(writer: &DbWriterHandle, entity_type: &str) -> Result<(), StoreError> {
    writer
        .apply(Apply {
            ops: vec![WriteOp::EntityState {
                entity_type: entity_type.to_owned(),
                patch: EntityStatePatch {
                    complete: Some(false),
                    full_scan_cursor: Some(None),
                    full_scan_started_at: Some(None),
                    ..Default::default()
                },
            }],
            checkpoint: None,
        })
        .await
        .map(|_| ())
}

// ---------------------------------------------------------------------------------------------
// The actor.

/// The scanner's figures for `/status` (`actors.scanner`).
#[derive(Debug, Default)]
pub struct ScannerStats {
    pub actor: ActorStats,
    pub running: AtomicBool,
    pub full_scans: AtomicU64,
    pub incremental_scans: AtomicU64,
    /// Id-set reconciliations run, and rows they corrected.
    pub reconciliations: AtomicU64,
    pub reconciled_rows: AtomicU64,
    pub entities_written: AtomicU64,
    pub retries: AtomicU64,
    pub next_run_unix_ms: AtomicI64,
    /// The scan in progress (type, pass, page, scanned, total).
    pub current: Mutex<Option<ScanProgress>>,
    /// The last finished scan of each type.
    pub last: Mutex<BTreeMap<String, ScanSummary>>,
    /// The last whole run (every type).
    pub last_run: Mutex<Option<ScanRun>>,
}

/// What the last whole run (every type) did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ScanRun {
    pub finished_at: String,
    pub types: u64,
    pub entities: u64,
    pub seconds: f64,
}

/// `/status` → `actors.scanner`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ScannerSnapshot {
    #[serde(flatten)]
    pub actor: super::ActorSnapshot,
    pub running: bool,
    pub full_scans: u64,
    pub incremental_scans: u64,
    pub reconciliations: u64,
    pub reconciled_rows: u64,
    pub entities_written: u64,
    pub retries: u64,
    pub next_run_at: Option<String>,
    pub current: Option<ScanProgress>,
    /// The last finished scan of each type.
    pub types: BTreeMap<String, ScanSummary>,
    pub last_run: Option<ScanRun>,
}

impl ScannerStats {
    pub fn snapshot(&self) -> ScannerSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ScannerSnapshot {
            actor: self.actor.snapshot(),
            running: self.running.load(Ordering::Relaxed),
            full_scans: load(&self.full_scans),
            incremental_scans: load(&self.incremental_scans),
            reconciliations: load(&self.reconciliations),
            reconciled_rows: load(&self.reconciled_rows),
            entities_written: load(&self.entities_written),
            retries: load(&self.retries),
            next_run_at: time::format_unix_ms(self.next_run_unix_ms.load(Ordering::Relaxed)),
            current: self.current.lock().map(|c| c.clone()).unwrap_or_default(),
            types: self.last.lock().map(|l| l.clone()).unwrap_or_default(),
            last_run: self.last_run.lock().map(|l| l.clone()).unwrap_or_default(),
        }
    }
}

struct StatsObserver(Arc<ScannerStats>, Arc<CacheState>);

impl ScanObserver for StatsObserver {
    fn progress(&mut self, progress: &ScanProgress) {
        self.0.actor.touch();
        if let Ok(mut current) = self.0.current.lock() {
            *current = Some(progress.clone());
        }
    }

    fn retrying(&mut self, error: &ScanError, _delay: Duration) {
        self.0.retries.fetch_add(1, Ordering::Relaxed);
        self.0.actor.error(error);
    }

    fn schema_changed(&mut self, entity: &CachedEntity) -> bool {
        self.1.view().schema.types.get(&entity.name) != Some(entity)
    }
}

/// Sorts the result of one type's step in a scanner run: `Ok(Some(value))` on success;
/// `Ok(None)` after recording a failure of that type alone (a fault, a bad reply, a schema
/// change: the run goes on with the next type, and ends as failed); `Err` for a failure of
/// the site or the database as a whole, which ends the run.
fn per_type<T>(
    result: Result<T, ScanError>,
    step: &str,
    entity: &CachedEntity,
    stats: &ScannerStats,
    failed: &mut Option<ScanError>,
) -> Result<Option<T>, ScanError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(err) if err.is_per_type() => {
            warn!(entity_type = %entity.name, error = %err, "{step} failed; next type");
            stats.actor.error(&err);
            failed.get_or_insert(err);
            Ok(None)
        }
        Err(err) => Err(err),
    }
}

/// Runs full scans of incomplete types (one type at a time) and, every `scanner.interval`,
/// incremental scans of complete types. Waits for the schema to be loaded.
pub struct Scanner {
    config: Arc<Config>,
    pools: Pools,
    writer: DbWriterHandle,
    cache: Arc<CacheState>,
    upstream: Option<Rc<UpstreamClient>>,
    stats: Arc<ScannerStats>,
    opts: ScanOptions,
    in_flight: bool,
    next_incremental: Instant,
    next_reconcile: Instant,
    retry_at: Option<Instant>,
    failures: u32,
}

impl Scanner {
    pub fn new(
        config: Arc<Config>,
        pools: Pools,
        writer: DbWriterHandle,
        cache: Arc<CacheState>,
        stats: Arc<ScannerStats>,
    ) -> Scanner {
        let upstream = UpstreamClient::configured(&config.shotgun).map(Rc::new);
        let next_reconcile = Instant::now() + config.scanner.reconcile_interval;
        Scanner {
            next_reconcile,
            opts: ScanOptions::from_config(&config),
            config,
            pools,
            writer,
            cache,
            upstream,
            stats,
            in_flight: false,
            next_incremental: Instant::now(),
            retry_at: None,
            failures: 0,
        }
    }

    fn set_next_run(&self, at: Instant) {
        let ms = chrono::Utc::now().timestamp_millis()
            + at.saturating_duration_since(Instant::now()).as_millis() as i64;
        self.stats.next_run_unix_ms.store(ms, Ordering::Relaxed);
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let Some(upstream) = self.upstream.clone() else {
            return;
        };
        let now = Instant::now();
        if self.in_flight {
            if now >= self.next_incremental {
                self.stats
                    .actor
                    .skipped_ticks
                    .fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        if self.retry_at.is_some_and(|at| now < at) {
            return;
        }
        let view = self.cache.view();
        if view.schema.types.is_empty() {
            return;
        }
        let incomplete = view.schema.types.keys().any(|t| !view.complete.contains(t));
        let incremental_due = now >= self.next_incremental;
        if !incomplete && !incremental_due {
            return;
        }
        if incremental_due {
            self.next_incremental = now + self.config.scanner.interval;
            self.set_next_run(self.next_incremental);
        }
        let reconcile_due = incremental_due && now >= self.next_reconcile;
        if reconcile_due {
            self.next_reconcile = now + self.config.scanner.reconcile_interval;
        }
        self.in_flight = true;
        self.retry_at = None;
        self.stats.running.store(true, Ordering::Relaxed);
        let schema = view.schema.clone();
        let reader = self.pools.reader.clone();
        let writer = self.writer.clone();
        let opts = self.opts.clone();
        let stats = self.stats.clone();
        let cache = self.cache.clone();
        let fut = async move {
            let started = Instant::now();
            let states = registry::entity_states(&reader).await?;
            let mut observer = StatsObserver(stats.clone(), cache);
            let mut entities = 0u64;
            let mut types = 0u64;
            // A fault on one type does not stop the others; the run still ends as failed
            // (and is retried with back-off).
            let mut failed: Option<ScanError> = None;
            // Full scans first, one type at a time.
            for state in states.iter().filter(|s| s.cached && !s.complete) {
                let Some(entity) = schema.types.get(&state.entity_type) else {
                    continue;
                };
                let result =
                    scan_type_full(&upstream, &writer, entity, state, &opts, &mut observer).await;
                let Some(summary) = per_type(result, "full scan", entity, &stats, &mut failed)?
                else {
                    continue;
                };
                info!(entity_type = %summary.entity_type, entities = summary.entities, seconds = summary.seconds, "full scan done");
                record_summary(&stats, &summary);
                stats.full_scans.fetch_add(1, Ordering::Relaxed);
                entities += summary.entities;
                types += 1;
            }
            if incremental_due {
                for state in states.iter().filter(|s| s.cached && s.complete) {
                    let Some(entity) = schema.types.get(&state.entity_type) else {
                        continue;
                    };
                    let checkpoint = state.scan_checkpoint.as_deref();
                    let result = scan_type_incremental(
                        &upstream,
                        &writer,
                        entity,
                        checkpoint,
                        &opts,
                        &mut observer,
                    )
                    .await;
                    let Some(summary) =
                        per_type(result, "incremental scan", entity, &stats, &mut failed)?
                    else {
                        continue;
                    };
                    record_summary(&stats, &summary);
                    stats.incremental_scans.fetch_add(1, Ordering::Relaxed);
                    entities += summary.entities;
                    types += 1;
                }
            }
            if reconcile_due {
                for state in states.iter().filter(|s| s.cached && s.complete) {
                    let Some(entity) = schema.types.get(&state.entity_type) else {
                        continue;
                    };
                    let result = reconcile_type(&upstream, &writer, &reader, entity, &opts).await;
                    if let Some(rows) =
                        per_type(result, "reconciliation", entity, &stats, &mut failed)?
                    {
                        stats.reconciled_rows.fetch_add(rows, Ordering::Relaxed);
                    }
                }
                stats.reconciliations.fetch_add(1, Ordering::Relaxed);
            }
            match failed {
                Some(err) => Err(err),
                None => Ok::<_, ScanError>((types, entities, started.elapsed())),
            }
        };
        ctx.spawn(fut.into_actor(self).map(|result, act, _ctx| {
            act.in_flight = false;
            act.stats.running.store(false, Ordering::Relaxed);
            if let Ok(mut current) = act.stats.current.lock() {
                *current = None;
            }
            match result {
                Ok((types, entities, took)) => {
                    act.failures = 0;
                    act.stats.actor.handled();
                    if let Ok(mut last) = act.stats.last_run.lock() {
                        *last = Some(ScanRun {
                            finished_at: time::now(),
                            types,
                            entities,
                            seconds: took.as_secs_f64(),
                        });
                    }
                }
                Err(err) => {
                    warn!(error = %err, "scan failed");
                    if !err.is_per_type() {
                        // Per-type errors were recorded when they happened.
                        act.stats.actor.error(&err);
                    }
                    act.failures += 1;
                    let delay = backoff_delay(act.config.shotgun.retry_backoff, act.failures);
                    let at = Instant::now() + delay;
                    act.retry_at = Some(at);
                    // The incremental scan that failed is due again after the back-off.
                    act.next_incremental = act.next_incremental.min(at);
                    act.set_next_run(at);
                }
            }
        }));
    }
}

fn record_summary(stats: &ScannerStats, summary: &ScanSummary) {
    stats
        .entities_written
        .fetch_add(summary.entities, Ordering::Relaxed);
    if let Ok(mut last) = stats.last.lock() {
        last.insert(summary.entity_type.clone(), summary.clone());
    }
}

impl Actor for Scanner {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let poll = self.config.scanner.interval.min(Duration::from_millis(500));
        self.tick(ctx);
        ctx.run_interval(poll, |act, ctx| act.tick(ctx));
    }
}

impl Handler<super::Stop> for Scanner {
    type Result = ();

    fn handle(&mut self, _msg: super::Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// `sgcache scan`: the same scans in the foreground, with a progress bar per type.

struct BarObserver(indicatif::ProgressBar);

impl ScanObserver for BarObserver {
    fn progress(&mut self, progress: &ScanProgress) {
        if let Some(total) = progress.total {
            self.0.set_length(total);
        }
        self.0.set_position(progress.scanned);
        self.0
            .set_message(format!("{} pass, page {}", progress.pass, progress.page));
    }

    fn retrying(&mut self, error: &ScanError, delay: Duration) {
        self.0.println(format!(
            "warning: {error}; retrying the same page in {:.1}s",
            delay.as_secs_f64()
        ));
    }
}

/// `sgcache scan [--full] [--types A,B] [--projects 1,2]`: connects and migrates the database,
/// loads the schema like `sgcache schema fetch`, then scans the chosen types (default: every
/// cached type). Incomplete types get a full scan resuming from their stored cursor; with
/// `--full`, complete types are first marked incomplete and scanned from scratch. Without
/// `--full`, complete types get an incremental scan. Prints a summary per type.
pub async fn run_scan_command(
    config: &Config,
    full: bool,
    types: &[String],
    projects: &[i64],
) -> anyhow::Result<Vec<ScanSummary>> {
    use crate::actors::schema_loader::{apply_schema, fetch_schema};

    let pools = crate::db::connect(&config.database).await?;
    crate::db::migrate(&pools).await?;
    let upstream = UpstreamClient::new(&config.shotgun);
    let src = fetch_schema(config, Some(&upstream)).await?;
    let (writer, arbiter) =
        DbWriterHandle::start(pools.writer.clone(), pools.backend, CacheState::new());
    let result = async {
        let applied = apply_schema(&src, config, &pools, &writer).await?;
        let schema = applied.cached;
        for ty in types {
            if !schema.types.contains_key(ty) {
                anyhow::bail!(
                    "{ty} is not a cached type (cached: {})",
                    schema.types.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
        }
        let mut opts = ScanOptions::from_config(config);
        if !projects.is_empty() {
            opts.projects = projects.to_vec();
        }
        let chosen: Vec<&CachedEntity> = schema
            .types
            .values()
            .filter(|e| types.is_empty() || types.contains(&e.name))
            .collect();
        let mut summaries = Vec::new();
        for entity in chosen {
            let mut state = registry::entity_states(&pools.reader)
                .await?
                .into_iter()
                .find(|s| s.entity_type == entity.name)
                .ok_or_else(|| anyhow::anyhow!("no scan state for {}", entity.name))?;
            if full && state.complete {
                reset_full_scan(&writer, &entity.name).await?;
                state.complete = false;
                state.full_scan_cursor = None;
                state.full_scan_started_at = None;
            }
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix:>16} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(entity.name.clone());
            let mut observer = BarObserver(bar.clone());
            let summary = if state.complete {
                scan_type_incremental(
                    &upstream,
                    &writer,
                    entity,
                    state.scan_checkpoint.as_deref(),
                    &opts,
                    &mut observer,
                )
                .await?
            } else {
                scan_type_full(&upstream, &writer, entity, &state, &opts, &mut observer).await?
            };
            bar.finish();
            summaries.push(summary);
        }
        Ok(summaries)
    }
    .await;
    arbiter.stop();
    pools.reader.close().await.ok();
    let summaries = result?;
    println!(
        "{:<24} {:<12} {:>10} {:>8} {:>10} {:>12}",
        "type", "scan", "entities", "pages", "seconds", "entities/s"
    );
    let (mut entities, mut seconds) = (0u64, 0f64);
    for s in &summaries {
        println!(
            "{:<24} {:<12} {:>10} {:>8} {:>10.1} {:>12.0}",
            s.entity_type,
            s.kind,
            s.entities,
            s.pages,
            s.seconds,
            s.entities as f64 / s.seconds.max(1e-3)
        );
        entities += s.entities;
        seconds += s.seconds;
    }
    println!(
        "{:<24} {:<12} {:>10} {:>8} {:>10.1} {:>12.0}",
        "total",
        "",
        entities,
        summaries.iter().map(|s| s.pages).sum::<u64>(),
        seconds,
        entities as f64 / seconds.max(1e-3)
    );
    Ok(summaries)
}
