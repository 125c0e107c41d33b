//! Scanning one type: pages read by id (`id > cursor`), written through the DbWriter with the
//! scan's bookkeeping; full scans (resumable) and incremental scans (`updated_at` window).
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json, json};
use tracing::{info, warn};

use super::ScanError;
use crate::config::{Config, ScannerConfig};
use crate::db::StoreError;
use crate::db::entities::entity_state;
use crate::db::writer::{Apply, ApplyOutcome, DbWriterHandle, EntityStatePatch, WriteOp};
use crate::schema::CachedEntity;
use crate::time;
use crate::upstream::fetch::{Condition, ReadArgs, entities_of};
use crate::upstream::refresh;
use crate::upstream::{UpstreamClient, backoff_delay};

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

impl ScanProgress {
    /// A page of `n` entities was written.
    fn written(&mut self, n: u64, observer: &mut dyn ScanObserver) {
        self.page += 1;
        self.scanned += n;
        observer.progress(self);
    }
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

/// Attempts at one page (each already retried by the upstream client) before the scan of the
/// type gives up for this run: the scanner goes on with the other types and retries this one
/// later with back-off, from the same page.
pub const PAGE_ATTEMPTS: u32 = 4;

/// Reads one page, retrying transient failures (same page) up to [`PAGE_ATTEMPTS`] times.
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
            Err(err) if err.is_transient() && attempt + 1 < PAGE_ATTEMPTS => {
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

/// When a full scan started: now, or for a resumed scan its original start time (the
/// checkpoint must cover everything changed since the first page was read).
fn full_scan_start(state: &entity_state::Model) -> String {
    state
        .full_scan_started_at
        .clone()
        .filter(|_| state.full_scan_cursor.is_some())
        .unwrap_or_else(time::now)
}

/// Fails when the type's cached field set changed since the scan began (see
/// [`ScanError::SchemaChanged`]).
fn check_schema(entity: &CachedEntity, observer: &mut dyn ScanObserver) -> Result<(), ScanError> {
    if observer.schema_changed(entity) {
        return Err(ScanError::SchemaChanged(entity.name.clone()));
    }
    Ok(())
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
    let started_at = full_scan_start(state);
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
                progress.written(n, observer);
                page?
            }
            None => fetch.await?,
        };
        if let Some(remaining) = page.remaining {
            // Rows already written plus this query's rows; the retired pass adds its own.
            progress.total = Some(progress.scanned + remaining);
        }
        if !page.records.is_empty() {
            check_schema(entity, observer)?;
            let n = page.records.len() as u64;
            last_id = page.last_id;
            let ops = full_page_ops(entity, page.records, pass, last_id, &started_at);
            let apply = writer.apply(Apply {
                ops,
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
        progress.written(n, observer);
    }
    check_schema(entity, observer)?;
    finish_full_scan(writer, entity, started_at).await?;
    progress.total = Some(progress.scanned);
    observer.progress(&progress);
    Ok(summary(entity, &progress, started, retries))
}

/// Where an incremental scan starts: `checkpoint − leeway`, or `now − since` without a
/// (readable) checkpoint.
pub fn incremental_after(
    checkpoint: Option<&str>,
    opts: &ScanOptions,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let leeway = chrono::Duration::from_std(opts.leeway).unwrap_or_default();
    let since = chrono::Duration::from_std(opts.since).unwrap_or_default();
    checkpoint
        .and_then(time::parse)
        .map(|c| c - leeway)
        .unwrap_or(now - since)
}

/// An incremental scan's filters: `updated_at` after `after`, and the project restriction.
fn incremental_conditions(
    entity: &CachedEntity,
    opts: &ScanOptions,
    after: DateTime<Utc>,
) -> Vec<Condition> {
    let changed = Condition::new("updated_at", "greater_than", json!([time::format(after)]));
    std::iter::once(changed)
        .chain(project_condition(entity, &opts.projects))
        .collect()
}

/// The end of an incremental scan: the checkpoint (and the last scan) move to its start.
fn checkpoint_op(entity: &CachedEntity, start_at: &str) -> WriteOp {
    let patch = EntityStatePatch {
        scan_checkpoint: Some(Some(start_at.to_owned())),
        last_scan_at: Some(Some(start_at.to_owned())),
        ..Default::default()
    };
    state_op(entity, patch)
}

/// What a scan did, from its progress.
fn summary(
    entity: &CachedEntity,
    progress: &ScanProgress,
    started: Instant,
    retries: u64,
) -> ScanSummary {
    ScanSummary {
        entity_type: entity.name.clone(),
        kind: progress.kind,
        entities: progress.scanned,
        pages: progress.page,
        seconds: started.elapsed().as_secs_f64(),
        retries,
    }
}

/// One full-scan page's Apply: the schema guard, the upsert, and the new cursor.
fn full_page_ops(
    entity: &CachedEntity,
    records: Vec<Map<String, Json>>,
    pass: Pass,
    last_id: i64,
    started_at: &str,
) -> Vec<WriteOp> {
    let patch = EntityStatePatch {
        full_scan_cursor: Some(Some(encode_cursor(pass, last_id))),
        full_scan_started_at: Some(Some(started_at.to_owned())),
        ..Default::default()
    };
    vec![
        expect_schema(entity),
        upsert(entity, records, pass),
        state_op(entity, patch),
    ]
}

/// The last Apply of a full scan: the type is complete, the incremental checkpoint is the
/// scan's start time.
async fn finish_full_scan(
    writer: &DbWriterHandle,
    entity: &CachedEntity,
    started_at: String,
) -> Result<(), StoreError> {
    let now = time::now();
    let patch = EntityStatePatch {
        complete: Some(true),
        full_scan_cursor: Some(None),
        full_scan_started_at: Some(Some(started_at.clone())),
        last_full_scan_at: Some(Some(now.clone())),
        scan_checkpoint: Some(Some(started_at)),
        last_scan_at: Some(Some(now)),
    };
    writer
        .apply(Apply {
            ops: vec![
                expect_schema(entity),
                state_op(entity, patch),
                WriteOp::Analyze {
                    entity_type: entity.name.clone(),
                },
            ],
            checkpoint: None,
        })
        .await
        .map(|_| ())
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
    let extra = incremental_conditions(entity, opts, incremental_after(checkpoint, opts, start));
    let mut progress = ScanProgress {
        entity_type: entity.name.clone(),
        kind: "incremental",
        ..Default::default()
    };
    let mut retries = 0;
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
            check_schema(entity, observer)?;
            let n = page.records.len() as u64;
            last_id = page.last_id;
            let mut ops = vec![expect_schema(entity), upsert(entity, page.records, pass)];
            let last = pass == Pass::Retired && !page.has_next;
            if last {
                ops.push(checkpoint_op(entity, &start_at));
                finished = true;
            }
            writer
                .apply(Apply {
                    ops,
                    checkpoint: None,
                })
                .await?;
            progress.written(n, observer);
            if !page.has_next {
                break;
            }
        }
    }
    if !finished {
        writer
            .apply(Apply {
                ops: vec![expect_schema(entity), checkpoint_op(entity, &start_at)],
                checkpoint: None,
            })
            .await?;
    }
    Ok(summary(entity, &progress, started, retries))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shot() -> CachedEntity {
        let schema = crate::actors::fixture::schema(&["Shot"]);
        schema.types.get("Shot").cloned().expect("Shot")
    }

    fn opts() -> ScanOptions {
        ScanOptions {
            page_size: 50,
            projects: vec![],
            leeway: Duration::from_secs(60),
            since: Duration::from_secs(3600),
            backoff: Duration::from_millis(10),
        }
    }

    #[test]
    fn the_cursor_encodes_pass_and_last_id() {
        assert_eq!(decode_cursor(None), (Pass::Active, 0));
        for (pass, id) in [
            (Pass::Active, 0),
            (Pass::Active, 41),
            (Pass::Retired, 0),
            (Pass::Retired, 7),
        ] {
            assert_eq!(decode_cursor(Some(encode_cursor(pass, id))), (pass, id));
        }
        assert_eq!(encode_cursor(Pass::Retired, 0), -1);
        assert_eq!(decode_cursor(Some(-1)), (Pass::Retired, 0));
    }

    #[test]
    fn a_page_request_reads_every_cached_field_after_the_cursor() {
        let entity = shot();
        let project = project_condition(&entity, &[3]);
        assert!(project.is_some(), "Shot has a project field");
        let extra: Vec<Condition> = project.into_iter().collect();
        let args = page_request(&entity, Pass::Retired, 41, &extra, 50);
        assert_eq!(args["type"], "Shot");
        assert_eq!(args["return_only"], "retired");
        assert_eq!(args["return_paging_info"], true);
        assert_eq!(
            args["paging"],
            json!({"entities_per_page": 50, "current_page": 1})
        );
        assert_eq!(
            args["sorts"],
            json!([{"field_name": "id", "direction": "asc"}])
        );
        assert_eq!(
            args["filters"]["conditions"],
            json!([
                {"path": "id", "relation": "greater_than", "values": [41]},
                {"path": "project", "relation": "in", "values": [{"type": "Project", "id": 3}]},
            ])
        );
        let fields: Vec<&str> = args["return_fields"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(Json::as_str)
            .collect();
        assert_eq!(fields.len(), entity.fields.len());
        assert!(fields.contains(&"code") && fields.contains(&"id"));
        // No restriction without projects.
        assert!(project_condition(&entity, &[]).is_none());
    }

    #[test]
    fn the_incremental_window_starts_at_checkpoint_minus_leeway() {
        let now = time::parse("2026-01-02T00:00:00Z").expect("time");
        let after = incremental_after(Some("2026-01-01T12:00:00Z"), &opts(), now);
        assert_eq!(time::format(after), "2026-01-01T11:59:00Z");
        // No (or an unreadable) checkpoint: `since` back from now.
        for checkpoint in [None, Some("yesterday")] {
            let after = incremental_after(checkpoint, &opts(), now);
            assert_eq!(time::format(after), "2026-01-01T23:00:00Z");
        }
    }
}
