//! The Verifier actor: are locally answered reads what the site would have answered?
//!
//! After a read was answered from the cache, the request handler hands a copy of it (the
//! read's arguments and the exact `results` sent) to [`VerifierHandle::offer`]: every one with
//! `verify.mode = "all"`, a random fraction `verify.sample_rate` with `"sample"`, none with
//! `"off"`. The hand-off never waits: the queue holds `verify.queue_capacity` reads and a read
//! offered to a full queue is dropped (counted).
//!
//! The actor takes one read at a time, re-runs it against the site with sgcache's own
//! credentials (at most `verify.max_requests_per_second` requests to the site, healing
//! included) and compares: the same entities, the same values, the same order where the read
//! had sorts (ties tolerated: entities with equal sort keys may come in any order). The re-run
//! always asks for `updated_at` and the sort fields (stripped again before comparing when the
//! client did not ask for them): a difference on an entity whose site `updated_at` is not
//! older than the cache's answer (minus `verify.changed_since_leeway`) was caused by a change
//! after the answer and is counted as "changed since", not as a mismatch. Differences in which
//! entities a page holds, their order or the total count are forgiven when any entity involved
//! changed since (a change shifts pages).
//!
//! Real mismatches are logged in `sgcache_verification` (the request, a compact diff, the ids),
//! counted per type and field, shown on `/status`, and healed: the entities involved are
//! re-read from the site and written through the DbWriter (entities the site does not know
//! any more are retired). With `verify.quarantine`, a type with `verify.quarantine_after`
//! mismatches is marked incomplete: its reads pass through until the scanner's full rescan
//! completes.
//!
//! While the site is unreachable a failed re-run is counted as an error and the verifier waits
//! `verify.error_backoff` before the next one (reads keep being answered; the queue drops).
//!
//! `sgcache verify --sample N` ([`crate::commands`]) uses [`verify_sample`]: N random cached rows per type,
//! every cached field compared with the site's values.
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use rand::Rng;
use serde_json::{Map, Value as Json, json};
use tokio::sync::mpsc;
use tracing::warn;

use super::ActorStats;
use crate::config::{Config, ShotgunConfig, VerifyConfig, VerifyMode};
use crate::db::reader::rows;
use crate::db::writer::{Apply, DbWriterHandle, EntityStatePatch, WriteOp};
use crate::schema::{CachedEntity, CachedSchema, ColumnLayout};
use crate::state::CacheState;
use crate::time;
use crate::upstream::refresh::{Gone, Refreshed, refresh};
use crate::upstream::{UpstreamClient, UpstreamError};

/// How many recent mismatches `/status` shows.
const RECENT: usize = 20;
/// Longest value shown in a diff (characters); longer ones are cut.
const MAX_SHOWN: usize = 120;

/// One locally answered read to verify.
#[derive(Debug, Clone)]
pub struct VerifyJob {
    pub entity_type: String,
    /// The read's `params[1]`, as the client sent it.
    pub args: Json,
    /// The `results` the client got.
    pub response: Json,
    /// When the cache answered (taken before the query ran).
    pub answered_at: DateTime<Utc>,
}

/// Per-type mismatch figures.
#[derive(Debug, Default, Clone)]
pub struct TypeCounts {
    pub mismatched: u64,
    pub changed_since: u64,
    pub fields: BTreeMap<String, u64>,
}

/// What `/status` shows under `actors.verifier`.
#[derive(Debug, Default)]
pub struct VerifierStats {
    pub actor: ActorStats,
    pub mode: Mutex<Option<VerifyMode>>,
    /// Reads offered by the request handler (after sampling).
    pub offered: AtomicU64,
    /// Reads waiting in the queue.
    pub queued: AtomicU64,
    /// Reads not verified because the queue was full.
    pub dropped: AtomicU64,
    /// Reads re-run against the site and compared.
    pub verified: AtomicU64,
    pub matched: AtomicU64,
    pub changed_since: AtomicU64,
    pub mismatched: AtomicU64,
    /// Rows re-read from the site and rewritten (or retired) after a mismatch.
    pub healed: AtomicU64,
    /// Types marked incomplete after repeated mismatches.
    pub quarantined: AtomicU64,
    /// Pauses after a failed re-run (site unreachable).
    pub backoffs: AtomicU64,
    pub by_type: Mutex<BTreeMap<String, TypeCounts>>,
    pub recent: Mutex<VecDeque<RecentMismatch>>,
}

/// One of the last mismatches (`recent_mismatches`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct RecentMismatch {
    pub at: String,
    pub entity_type: String,
    pub entity_ids: Vec<i64>,
    pub fields: Vec<String>,
    /// The first items of the diff (`{id, field, kind, cache, site}`).
    pub diff: Json,
}

/// Per-type mismatch figures on `/status`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TypeCountsSnapshot {
    pub mismatched: u64,
    pub changed_since: u64,
    pub fields: BTreeMap<String, u64>,
}

/// `/status` → `actors.verifier`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct VerifierSnapshot {
    #[serde(flatten)]
    pub actor: super::ActorSnapshot,
    pub enabled: bool,
    pub mode: VerifyMode,
    pub offered: u64,
    pub queued: u64,
    pub dropped: u64,
    pub verified: u64,
    pub matched: u64,
    pub changed_since: u64,
    pub mismatched: u64,
    pub healed: u64,
    pub quarantined: u64,
    pub backoffs: u64,
    pub by_type: BTreeMap<String, TypeCountsSnapshot>,
    /// Newest first.
    pub recent_mismatches: Vec<RecentMismatch>,
}

impl VerifierStats {
    pub fn snapshot(&self) -> VerifierSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mode = self.mode.lock().ok().and_then(|m| *m).unwrap_or_default();
        let by_type = self
            .by_type
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(t, c)| {
                        let counts = TypeCountsSnapshot {
                            mismatched: c.mismatched,
                            changed_since: c.changed_since,
                            fields: c.fields.clone(),
                        };
                        (t.clone(), counts)
                    })
                    .collect()
            })
            .unwrap_or_default();
        VerifierSnapshot {
            actor: self.actor.snapshot(),
            enabled: mode != VerifyMode::Off,
            mode,
            offered: load(&self.offered),
            queued: load(&self.queued),
            dropped: load(&self.dropped),
            verified: load(&self.verified),
            matched: load(&self.matched),
            changed_since: load(&self.changed_since),
            mismatched: load(&self.mismatched),
            healed: load(&self.healed),
            quarantined: load(&self.quarantined),
            backoffs: load(&self.backoffs),
            by_type,
            recent_mismatches: self
                .recent
                .lock()
                .map(|r| r.iter().rev().cloned().collect())
                .unwrap_or_default(),
        }
    }
}

/// The request handler's side: sampling and the bounded, never-waiting hand-off.
#[derive(Clone, Debug)]
pub struct VerifierHandle {
    mode: VerifyMode,
    sample_rate: f64,
    tx: mpsc::Sender<VerifyJob>,
    stats: Arc<VerifierStats>,
}

impl VerifierHandle {
    /// Should this locally answered read be verified? (Cheap: decide before copying anything.)
    pub fn wants(&self) -> bool {
        match self.mode {
            VerifyMode::Off => false,
            VerifyMode::All => true,
            VerifyMode::Sample => {
                self.sample_rate > 0.0 && rand::rng().random_bool(self.sample_rate.min(1.0))
            }
        }
    }

    /// Queues `job` without waiting; drops it (counted) when the queue is full.
    pub fn offer(&self, job: VerifyJob) {
        self.stats.offered.fetch_add(1, Ordering::Relaxed);
        // Counted before the send: the actor may take it (and decrement) at once.
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send(job).is_err() {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn stats(&self) -> &Arc<VerifierStats> {
        &self.stats
    }
}

pub struct Verifier {
    config: VerifyConfig,
    shotgun: ShotgunConfig,
    rx: Option<mpsc::Receiver<VerifyJob>>,
    writer: DbWriterHandle,
    cache: Arc<CacheState>,
    stats: Arc<VerifierStats>,
    running: Option<SpawnHandle>,
}

impl Verifier {
    /// The actor (not started) and the handle the request handler offers reads to.
    pub fn new(
        config: &Config,
        writer: DbWriterHandle,
        cache: Arc<CacheState>,
        stats: Arc<VerifierStats>,
    ) -> (Verifier, VerifierHandle) {
        let (tx, rx) = mpsc::channel(config.verify.queue_capacity.max(1));
        if let Ok(mut mode) = stats.mode.lock() {
            *mode = Some(config.verify.mode);
        }
        let handle = VerifierHandle {
            mode: config.verify.mode,
            sample_rate: config.verify.sample_rate,
            tx,
            stats: stats.clone(),
        };
        // Verification is best effort: one attempt per request, then `error_backoff`.
        let mut shotgun = config.shotgun.clone();
        shotgun.max_attempts = 1;
        let verifier = Verifier {
            config: config.verify.clone(),
            shotgun,
            rx: Some(rx),
            writer,
            cache,
            stats,
            running: None,
        };
        (verifier, handle)
    }
}

impl Actor for Verifier {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let Some(rx) = self.rx.take() else { return };
        // awc is `!Send`: the client lives on this actor's arbiter.
        let worker = Worker {
            upstream: UpstreamClient::new(&self.shotgun),
            writer: self.writer.clone(),
            cache: self.cache.clone(),
            stats: self.stats.clone(),
            config: self.config.clone(),
            throttle: RefCell::new(Throttle::new(self.config.max_requests_per_second)),
            strikes: RefCell::new(BTreeMap::new()),
        };
        let handle = ctx.spawn(Rc::new(worker).run(rx).into_actor(self));
        self.running = Some(handle);
    }
}

impl Handler<super::Stop> for Verifier {
    type Result = ();

    fn handle(&mut self, _msg: super::Stop, ctx: &mut Self::Context) {
        if let Some(handle) = self.running.take() {
            ctx.cancel_future(handle);
        }
        ctx.stop();
    }
}

/// Spaces the verifier's requests to the site.
struct Throttle {
    gap: Duration,
    next: Instant,
}

impl Throttle {
    fn new(per_second: f64) -> Throttle {
        let per_second = if per_second > 0.0 { per_second } else { 1.0 };
        Throttle {
            gap: Duration::from_secs_f64(1.0 / per_second),
            next: Instant::now(),
        }
    }

    /// How long to wait before the next request (and books it).
    fn book(&mut self) -> Duration {
        let now = Instant::now();
        let at = self.next.max(now);
        self.next = at + self.gap;
        at - now
    }
}

#[derive(Debug, thiserror::Error)]
enum VerifyError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Store(#[from] crate::db::StoreError),
}

struct Worker {
    upstream: UpstreamClient,
    writer: DbWriterHandle,
    cache: Arc<CacheState>,
    stats: Arc<VerifierStats>,
    config: VerifyConfig,
    throttle: RefCell<Throttle>,
    /// Mismatches per type since its last quarantine.
    strikes: RefCell<BTreeMap<String, u32>>,
}

impl Worker {
    async fn run(self: Rc<Self>, mut rx: mpsc::Receiver<VerifyJob>) {
        while let Some(job) = rx.recv().await {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            if let Err(e) = self.verify(job).await {
                warn!(error = %e, "verification failed");
                self.stats.actor.error(&e);
                if matches!(&e, VerifyError::Upstream(u) if u.is_unreachable()) {
                    self.stats.backoffs.fetch_add(1, Ordering::Relaxed);
                    actix_web::rt::time::sleep(self.config.error_backoff).await;
                }
            }
        }
    }

    async fn call(&self, args: Json) -> Result<Json, UpstreamError> {
        let wait = self.throttle.borrow_mut().book();
        if !wait.is_zero() {
            actix_web::rt::time::sleep(wait).await;
        }
        self.upstream.call("read", Some(args)).await
    }

    async fn fetch(
        &self,
        entity: &CachedEntity,
        ids: &BTreeSet<i64>,
    ) -> Result<Refreshed, UpstreamError> {
        if ids.is_empty() {
            return Ok(Refreshed::from_records(&entity.name, [], Vec::new()));
        }
        // A refresh asks once for active rows and once more for the ids not found.
        for _ in 0..2 {
            let wait = self.throttle.borrow_mut().book();
            if !wait.is_zero() {
                actix_web::rt::time::sleep(wait).await;
            }
        }
        refresh(&self.upstream, entity, ids).await
    }

    async fn verify(&self, job: VerifyJob) -> Result<(), VerifyError> {
        let schema = self.cache.view().schema;
        let Some(entity) = schema.types.get(&job.entity_type) else {
            return Ok(());
        };
        let (rerun, added) = rerun_args(&job.args, entity);
        let site = self.call(rerun).await?;
        self.stats.verified.fetch_add(1, Ordering::Relaxed);
        let threshold = job.answered_at
            - chrono::Duration::from_std(self.config.changed_since_leeway).unwrap_or_default();
        let mut cmp = compare(&job.args, &job.response, &site, &added, threshold);
        // Entities the cache returned but the site did not: ask the site about them.
        let unknown = cmp.only_local.clone();
        let refetched = self.fetch(entity, &unknown).await?;
        if !unknown.is_empty() {
            for id in &unknown {
                match refetched.get(*id).map(|(r, _)| is_newer(r, threshold)) {
                    Some(true) => {
                        cmp.changed_ids.insert(*id);
                    }
                    _ => {
                        cmp.findings
                            .push(Finding::entity(*id, "not_in_site_answer"));
                    }
                }
            }
        }
        let outcome = cmp.outcome();
        match outcome {
            Outcome::Matched => {
                self.stats.matched.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::ChangedSince => {
                self.stats.changed_since.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut by_type) = self.stats.by_type.lock() {
                    by_type
                        .entry(job.entity_type.clone())
                        .or_default()
                        .changed_since += 1;
                }
            }
            Outcome::Mismatch(findings) => {
                self.mismatch(entity, &job, findings, refetched).await?;
            }
        }
        self.stats.actor.handled();
        Ok(())
    }

    async fn mismatch(
        &self,
        entity: &CachedEntity,
        job: &VerifyJob,
        findings: Vec<Finding>,
        mut refetched: Refreshed,
    ) -> Result<(), VerifyError> {
        self.stats.mismatched.fetch_add(1, Ordering::Relaxed);
        let ids: BTreeSet<i64> = findings.iter().filter_map(|f| f.id).collect();
        let fields: BTreeSet<String> = findings
            .iter()
            .map(|f| f.field.clone().unwrap_or_else(|| format!("({})", f.kind)))
            .collect();
        if let Ok(mut by_type) = self.stats.by_type.lock() {
            let counts = by_type.entry(job.entity_type.clone()).or_default();
            counts.mismatched += 1;
            for f in &fields {
                *counts.fields.entry(f.clone()).or_default() += 1;
            }
        }
        let diff = Json::Array(findings.iter().map(Finding::to_json).collect());
        warn!(entity_type = %job.entity_type, ids = ?ids, diff = %diff, "verification: the cache's answer differs from the site's");
        if let Ok(mut recent) = self.stats.recent.lock() {
            recent.push_back(RecentMismatch {
                at: time::format(Utc::now()),
                entity_type: job.entity_type.clone(),
                entity_ids: ids.iter().copied().collect(),
                fields: fields.iter().cloned().collect(),
                diff: truncate_list(&diff, 5),
            });
            while recent.len() > RECENT {
                recent.pop_front();
            }
        }
        let log = WriteOp::Verification {
            entity_type: job.entity_type.clone(),
            outcome: "mismatch".to_owned(),
            request: job.args.clone(),
            diff,
            entity_ids: ids.iter().copied().collect(),
        };
        self.writer
            .apply(Apply {
                ops: vec![log],
                checkpoint: None,
            })
            .await?;

        // Heal: the entities involved, re-read whole from the site; rows the site does not
        // have at all any more are retired.
        let missing: BTreeSet<i64> = ids
            .iter()
            .copied()
            .filter(|id| !refetched.found.contains_key(id))
            .collect();
        refetched.merge(self.fetch(entity, &missing).await?);
        let ops = refetched.only(&ids).ops(None, Gone::Retire);
        if !ops.is_empty() {
            let outcome = self
                .writer
                .apply(Apply {
                    ops,
                    checkpoint: None,
                })
                .await?;
            self.stats
                .healed
                .fetch_add(outcome.rows_written, Ordering::Relaxed);
        }

        if self.config.quarantine {
            let strikes = {
                let mut strikes = self.strikes.borrow_mut();
                let n = strikes.entry(job.entity_type.clone()).or_default();
                *n += 1;
                *n
            };
            if strikes >= self.config.quarantine_after {
                self.strikes.borrow_mut().remove(&job.entity_type);
                warn!(entity_type = %job.entity_type, mismatches = strikes,
                      "verification: quarantined; its reads pass through until a full rescan completes");
                let op = WriteOp::EntityState {
                    entity_type: job.entity_type.clone(),
                    patch: EntityStatePatch {
                        complete: Some(false),
                        full_scan_cursor: Some(None),
                        full_scan_started_at: Some(None),
                        ..Default::default()
                    },
                };
                self.writer
                    .apply(Apply {
                        ops: vec![op],
                        checkpoint: None,
                    })
                    .await?;
                self.stats.quarantined.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

/// The read to send to the site: the client's, plus `updated_at` and the sort fields in
/// `return_fields`. Returns the fields added (to strip before comparing).
pub fn rerun_args(args: &Json, entity: &CachedEntity) -> (Json, Vec<String>) {
    let mut rerun = args.clone();
    let mut added = Vec::new();
    let Some(obj) = rerun.as_object_mut() else {
        return (rerun, added);
    };
    let mut fields: Vec<String> = match obj.get("return_fields") {
        Some(Json::Array(a)) => a
            .iter()
            .filter_map(|f| f.as_str().map(str::to_owned))
            .collect(),
        _ => vec!["id".to_owned()],
    };
    let mut wanted: Vec<String> = Vec::new();
    if entity.fields.contains_key("updated_at") {
        wanted.push("updated_at".to_owned());
    }
    wanted.extend(sort_fields(args));
    for w in wanted {
        if !fields.contains(&w) {
            fields.push(w.clone());
            added.push(w);
        }
    }
    obj.insert("return_fields".into(), json!(fields));
    (rerun, added)
}

fn sort_fields(args: &Json) -> Vec<String> {
    args.get("sorts")
        .and_then(Json::as_array)
        .map(|sorts| {
            sorts
                .iter()
                .filter_map(|s| {
                    s.get("field_name")
                        .and_then(Json::as_str)
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn is_newer(record: &Map<String, Json>, threshold: DateTime<Utc>) -> bool {
    record
        .get("updated_at")
        .and_then(Json::as_str)
        .and_then(time::parse)
        // The site's timestamps have whole seconds: compare at that precision.
        .is_some_and(|t| t.timestamp() >= threshold.timestamp())
}

/// One difference between the cache's answer and the site's.
#[derive(Debug, Clone)]
pub struct Finding {
    pub id: Option<i64>,
    pub field: Option<String>,
    pub kind: &'static str,
    pub cache: Json,
    pub site: Json,
}

impl Finding {
    fn entity(id: i64, kind: &'static str) -> Finding {
        Finding {
            id: Some(id),
            field: None,
            kind,
            cache: Json::Null,
            site: Json::Null,
        }
    }

    pub fn to_json(&self) -> Json {
        let mut m = Map::new();
        if let Some(id) = self.id {
            m.insert("id".into(), id.into());
        }
        if let Some(f) = &self.field {
            m.insert("field".into(), f.clone().into());
        }
        m.insert("kind".into(), self.kind.into());
        if self.kind == "value" || !self.cache.is_null() || !self.site.is_null() {
            m.insert("cache".into(), shorten(&self.cache));
            m.insert("site".into(), shorten(&self.site));
        }
        Json::Object(m)
    }
}

fn shorten(v: &Json) -> Json {
    let text = match v {
        Json::String(s) => {
            if s.chars().count() <= MAX_SHOWN {
                return v.clone();
            }
            s.clone()
        }
        _ => {
            let s = v.to_string();
            if s.chars().count() <= MAX_SHOWN {
                return v.clone();
            }
            s
        }
    };
    Json::String(format!(
        "{}...",
        text.chars().take(MAX_SHOWN).collect::<String>()
    ))
}

fn truncate_list(v: &Json, n: usize) -> Json {
    match v {
        Json::Array(a) if a.len() > n => {
            let mut out: Vec<Json> = a[..n].to_vec();
            out.push(json!(format!("... {} more", a.len() - n)));
            Json::Array(out)
        }
        other => other.clone(),
    }
}

/// Values equal as the site means them (numbers compared as numbers).
pub fn same_value(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
                _ => false,
            },
        },
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_value(x, y))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        _ => a == b,
    }
}

#[derive(Debug)]
enum Outcome {
    Matched,
    ChangedSince,
    Mismatch(Vec<Finding>),
}

/// The comparison of one read's two answers.
#[derive(Debug, Default)]
struct Comparison {
    findings: Vec<Finding>,
    /// Entities the site changed after the cache answered.
    changed_ids: BTreeSet<i64>,
    /// Ids the cache returned that the site's answer lacks (decided after asking the site).
    only_local: BTreeSet<i64>,
}

impl Comparison {
    fn outcome(self) -> Outcome {
        // Same entities and values (the site may have changed fields nobody asked for).
        if self.findings.is_empty() {
            return Outcome::Matched;
        }
        let any_changed = !self.changed_ids.is_empty();
        let real: Vec<Finding> = self
            .findings
            .into_iter()
            .filter(|f| match f.id {
                // A page's membership, order and count shift when any entity changed.
                _ if any_changed && f.field.is_none() => false,
                Some(id) => !self.changed_ids.contains(&id),
                None => true,
            })
            .collect();
        if real.is_empty() {
            Outcome::ChangedSince
        } else {
            Outcome::Mismatch(real)
        }
    }
}

fn records(results: &Json) -> Vec<Map<String, Json>> {
    results
        .get("entities")
        .and_then(Json::as_array)
        .map(|a| a.iter().filter_map(|e| e.as_object().cloned()).collect())
        .unwrap_or_default()
}

fn id_of(r: &Map<String, Json>) -> Option<i64> {
    r.get("id").and_then(Json::as_i64)
}

fn compare(
    args: &Json,
    local: &Json,
    site: &Json,
    added: &[String],
    threshold: DateTime<Utc>,
) -> Comparison {
    let mut cmp = Comparison::default();
    let local_records = records(local);
    let site_records = records(site);
    let site_by_id: BTreeMap<i64, &Map<String, Json>> = site_records
        .iter()
        .filter_map(|r| Some((id_of(r)?, r)))
        .collect();
    let local_by_id: BTreeMap<i64, &Map<String, Json>> = local_records
        .iter()
        .filter_map(|r| Some((id_of(r)?, r)))
        .collect();
    for (id, r) in &site_by_id {
        if is_newer(r, threshold) {
            cmp.changed_ids.insert(*id);
        }
    }
    for (id, l) in &local_by_id {
        let Some(s) = site_by_id.get(id) else {
            cmp.only_local.insert(*id);
            continue;
        };
        let keys: BTreeSet<&String> = l
            .keys()
            .chain(s.keys())
            .filter(|k| !added.contains(k))
            .collect();
        for k in keys {
            let lv = l.get(k).unwrap_or(&Json::Null);
            let sv = s.get(k).unwrap_or(&Json::Null);
            if !same_value(lv, sv) {
                cmp.findings.push(Finding {
                    id: Some(*id),
                    field: Some(k.clone()),
                    kind: "value",
                    cache: lv.clone(),
                    site: sv.clone(),
                });
            }
        }
    }
    for id in site_by_id.keys() {
        if !local_by_id.contains_key(id) {
            cmp.findings
                .push(Finding::entity(*id, "missing_from_cache_answer"));
        }
    }
    // Order, where the read had sorts: entities with equal sort keys may come in any order.
    let sorts = sort_fields(args);
    if !sorts.is_empty() {
        let key = |r: &Map<String, Json>| -> Vec<Json> {
            sorts
                .iter()
                .map(|f| r.get(f).cloned().unwrap_or(Json::Null))
                .collect()
        };
        let mut group = BTreeMap::new();
        let mut last: Option<Vec<Json>> = None;
        let mut g = 0usize;
        for r in &site_records {
            let Some(id) = id_of(r) else { continue };
            if !local_by_id.contains_key(&id) {
                continue;
            }
            let k = key(r);
            if let Some(prev) = &last
                && !same_value(&Json::Array(prev.clone()), &Json::Array(k.clone()))
            {
                g += 1;
            }
            last = Some(k);
            group.insert(id, g);
        }
        let mut highest = 0usize;
        for r in &local_records {
            let Some(gi) = id_of(r).and_then(|id| group.get(&id)) else {
                continue;
            };
            if *gi < highest {
                let ids: Vec<i64> = local_records.iter().filter_map(id_of).take(10).collect();
                cmp.findings.push(Finding {
                    id: None,
                    field: None,
                    kind: "order",
                    cache: json!(ids),
                    site: json!(
                        site_records
                            .iter()
                            .filter_map(id_of)
                            .take(10)
                            .collect::<Vec<_>>()
                    ),
                });
                break;
            }
            highest = *gi;
        }
    }
    let count = |v: &Json| {
        v.get("paging_info")
            .and_then(|p| p.get("entity_count"))
            .and_then(Json::as_i64)
    };
    if let (Some(a), Some(b)) = (count(local), count(site))
        && a != b
    {
        cmp.findings.push(Finding {
            id: None,
            field: None,
            kind: "entity_count",
            cache: a.into(),
            site: b.into(),
        });
    }
    cmp
}

// ----- sgcache verify --sample N ------------------------------------------------------------

/// One type's result of `sgcache verify`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SampleReport {
    pub entity_type: String,
    pub checked: u64,
    pub matched: u64,
    pub mismatched: u64,
    /// Mismatching rows per field (`_active`: retirement; `(missing)`: the site lacks the row).
    pub fields: BTreeMap<String, u64>,
    /// Some of the mismatching ids.
    pub ids: Vec<i64>,
}

fn link_key(v: &Json) -> Json {
    match v {
        Json::Object(m) => json!({"type": m.get("type"), "id": m.get("id")}),
        _ => Json::Null,
    }
}

/// Compares `sample` random cached rows of each type with the site.
pub async fn verify_sample(
    upstream: &UpstreamClient,
    db: &sea_orm::DatabaseConnection,
    schema: &CachedSchema,
    sample: u64,
) -> anyhow::Result<Vec<SampleReport>> {
    let mut reports = Vec::new();
    for entity in schema.types.values() {
        let ids = rows::random_ids(db, entity, sample).await?;
        let cached = rows::cached_rows(db, entity, &ids).await?;
        let site = refresh(upstream, entity, &ids.iter().copied().collect()).await?;
        let mut report = SampleReport {
            entity_type: entity.name.clone(),
            ..Default::default()
        };
        for (id, row) in &cached {
            report.checked += 1;
            let mut bad: Vec<String> = Vec::new();
            match site.get(*id) {
                None => bad.push("(missing)".to_owned()),
                Some((record, active)) => {
                    if row.get("_active") != Some(&Json::from(active)) {
                        bad.push("_active".to_owned());
                    }
                    for field in entity.fields.values() {
                        let site_value = record.get(&field.name).cloned().unwrap_or(Json::Null);
                        let expected = match &field.layout {
                            ColumnLayout::Scalar { .. } => site_value,
                            ColumnLayout::Entity { .. } => link_key(&site_value),
                            ColumnLayout::MultiEntity { .. } => Json::Array(
                                site_value
                                    .as_array()
                                    .map(|a| a.iter().map(link_key).collect())
                                    .unwrap_or_default(),
                            ),
                        };
                        let cached_value = row.get(&field.name).cloned().unwrap_or(Json::Null);
                        if !same_value(&cached_value, &expected) {
                            bad.push(field.name.clone());
                        }
                    }
                }
            }
            if bad.is_empty() {
                report.matched += 1;
            } else {
                report.mismatched += 1;
                if report.ids.len() < 20 {
                    report.ids.push(*id);
                }
                for f in bad {
                    *report.fields.entry(f).or_default() += 1;
                }
            }
        }
        reports.push(report);
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        time::parse(s).expect("time")
    }

    #[test]
    fn compares_values_membership_and_order_with_ties() {
        let args = json!({"type": "Shot", "return_fields": ["code", "sg_cut_in"],
                          "sorts": [{"field_name": "sg_cut_in", "direction": "asc"}]});
        let old = "2020-01-01T00:00:00Z";
        let local = json!({"entities": [
            {"type": "Shot", "id": 2, "code": "b", "sg_cut_in": 1},
            {"type": "Shot", "id": 1, "code": "a", "sg_cut_in": 1},
            {"type": "Shot", "id": 3, "code": "c", "sg_cut_in": 2.0}],
            "paging_info": {"entity_count": 3, "has_next_page": false}});
        let site = json!({"entities": [
            {"type": "Shot", "id": 1, "code": "a", "sg_cut_in": 1, "updated_at": old},
            {"type": "Shot", "id": 2, "code": "b", "sg_cut_in": 1, "updated_at": old},
            {"type": "Shot", "id": 3, "code": "c", "sg_cut_in": 2, "updated_at": old}],
            "paging_info": {"entity_count": 3, "has_next_page": false}});
        let added = vec!["updated_at".to_owned()];
        let cmp = compare(&args, &local, &site, &added, t("2021-01-01T00:00:00Z"));
        assert!(matches!(cmp.outcome(), Outcome::Matched));

        let mut bad = site.clone();
        bad["entities"][2]["code"] = json!("x");
        let cmp = compare(&args, &local, &bad, &added, t("2021-01-01T00:00:00Z"));
        let Outcome::Mismatch(f) = cmp.outcome() else {
            panic!("mismatch")
        };
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].field.as_deref(), Some("code"));

        // The same difference, but the site changed the entity after the answer.
        bad["entities"][2]["updated_at"] = json!("2021-06-01T00:00:00Z");
        let cmp = compare(&args, &local, &bad, &added, t("2021-01-01T00:00:00Z"));
        assert!(matches!(cmp.outcome(), Outcome::ChangedSince));

        // Out of order (not a tie).
        let swapped = json!({"entities": [
            {"type": "Shot", "id": 3, "code": "c", "sg_cut_in": 2},
            {"type": "Shot", "id": 1, "code": "a", "sg_cut_in": 1},
            {"type": "Shot", "id": 2, "code": "b", "sg_cut_in": 1}]});
        let cmp = compare(&args, &swapped, &site, &added, t("2021-01-01T00:00:00Z"));
        let Outcome::Mismatch(f) = cmp.outcome() else {
            panic!("order mismatch")
        };
        assert_eq!(f[0].kind, "order");
    }

    #[test]
    fn the_queue_drops_rather_than_grows() {
        let (tx, _rx) = mpsc::channel(1);
        let stats = Arc::new(VerifierStats::default());
        let handle = VerifierHandle {
            mode: VerifyMode::All,
            sample_rate: 0.0,
            tx,
            stats: stats.clone(),
        };
        let job = VerifyJob {
            entity_type: "Shot".into(),
            args: json!({}),
            response: json!({}),
            answered_at: Utc::now(),
        };
        for _ in 0..5 {
            assert!(handle.wants());
            handle.offer(job.clone());
        }
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 4);
        assert_eq!(stats.queued.load(Ordering::Relaxed), 1);
    }
}
