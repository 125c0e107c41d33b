//! The Scanner actor: full scans of incomplete types, then incremental scans and id-set
//! reconciliations of complete types on their schedules.
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tracing::{info, warn};

use super::ScanError;
use super::reconcile::reconcile_type;
use super::scan::{
    ScanObserver, ScanOptions, ScanProgress, ScanSummary, scan_type_full, scan_type_incremental,
};
use super::stats::{ScanRun, ScannerStats};
use crate::config::Config;
use crate::db::writer::DbWriterHandle;
use crate::db::{Pools, registry};
use crate::schema::CachedEntity;
use crate::state::CacheState;
use crate::time;
use crate::upstream::{UpstreamClient, backoff_delay};

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
        let run = Run {
            upstream,
            schema: view.schema.clone(),
            reader: self.pools.reader.clone(),
            writer: self.writer.clone(),
            opts: self.opts.clone(),
            stats: self.stats.clone(),
            cache: self.cache.clone(),
            incremental_due,
            reconcile_due,
        };
        ctx.spawn(
            run.run()
                .into_actor(self)
                .map(|result, act, _ctx| act.finished(result)),
        );
    }

    /// A run ended: record it, or schedule the retry with back-off.
    fn finished(&mut self, result: Result<(u64, u64, Duration), ScanError>) {
        self.in_flight = false;
        self.stats.running.store(false, Ordering::Relaxed);
        if let Ok(mut current) = self.stats.current.lock() {
            *current = None;
        }
        match result {
            Ok((types, entities, took)) => {
                self.failures = 0;
                self.stats.actor.handled();
                if let Ok(mut last) = self.stats.last_run.lock() {
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
                    self.stats.actor.error(&err);
                }
                self.failures += 1;
                let delay = backoff_delay(self.config.shotgun.retry_backoff, self.failures);
                let at = Instant::now() + delay;
                self.retry_at = Some(at);
                // The incremental scan that failed is due again after the back-off.
                self.next_incremental = self.next_incremental.min(at);
                self.set_next_run(at);
            }
        }
    }
}

/// One scanner run: what it needs (moved into the future).
struct Run {
    upstream: Rc<UpstreamClient>,
    schema: Arc<crate::schema::CachedSchema>,
    reader: sea_orm::DatabaseConnection,
    writer: DbWriterHandle,
    opts: ScanOptions,
    stats: Arc<ScannerStats>,
    cache: Arc<CacheState>,
    incremental_due: bool,
    reconcile_due: bool,
}

impl Run {
    /// Full scans of incomplete types, then (when due) incremental scans and reconciliations
    /// of complete types. Returns (types scanned, entities written, time taken).
    async fn run(self) -> Result<(u64, u64, Duration), ScanError> {
        let Run {
            upstream,
            schema,
            reader,
            writer,
            opts,
            stats,
            cache,
            incremental_due,
            reconcile_due,
        } = self;
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
            let Some(summary) = per_type(result, "full scan", entity, &stats, &mut failed)? else {
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
                if let Some(rows) = per_type(result, "reconciliation", entity, &stats, &mut failed)?
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

impl Handler<crate::actors::Stop> for Scanner {
    type Result = ();

    fn handle(&mut self, _msg: crate::actors::Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
