//! The Scanner actor: full scans of incomplete types, then incremental scans and id-set
//! reconciliations of complete types on their schedules.
use std::collections::{BTreeMap, BTreeSet};
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
use super::stats::{ScanRun, ScannerStats, TypeFailure};
use crate::actors::tick::{Parts, Runs};
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

/// What one scanner run did: totals, and how each type's steps ended.
#[derive(Debug, Default)]
struct RunReport {
    types: u64,
    entities: u64,
    /// Types a step failed for in this run, with the error.
    failed: BTreeMap<String, String>,
    /// Types whose steps in this run all succeeded.
    succeeded: BTreeSet<String>,
}

impl RunReport {
    /// Sorts the result of one type's step: `Ok(Some(value))` on success; `Ok(None)` after
    /// recording a failure of that type alone (the run goes on with the next type, and this
    /// one is retried with its own back-off; a schema change is not a failure: the type is
    /// scanned again under the new schema at the next tick); `Err` for a failure of the
    /// database, which ends the run.
    fn per_type<T>(
        &mut self,
        result: Result<T, ScanError>,
        step: &str,
        entity: &CachedEntity,
        stats: &ScannerStats,
    ) -> Result<Option<T>, ScanError> {
        let name = &entity.name;
        match result {
            Ok(value) => {
                if !self.failed.contains_key(name) {
                    self.succeeded.insert(name.clone());
                }
                Ok(Some(value))
            }
            Err(ScanError::SchemaChanged(_)) => {
                info!(entity_type = %name, "{step} stopped: the cached schema of the type changed; it is scanned again");
                Ok(None)
            }
            Err(err) if err.is_per_type() => {
                warn!(entity_type = %name, error = %err, "{step} failed; the other types go on, this one is retried later");
                stats.actor.error(&err);
                self.succeeded.remove(name);
                self.failed.insert(name.clone(), err.to_string());
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }
}

/// Runs full scans of incomplete types (one type at a time) and, every `scanner.interval`,
/// incremental scans of complete types. Waits for the schema to be loaded.
pub struct Scanner {
    parts: Parts,
    upstream: Option<Rc<UpstreamClient>>,
    stats: Arc<ScannerStats>,
    opts: ScanOptions,
    runs: Runs,
    next_incremental: Instant,
    next_reconcile: Instant,
    retry_at: Option<Instant>,
    /// Types whose last scan failed: (failures in a row, when to try again).
    type_retry: BTreeMap<String, (u32, Instant)>,
}

impl Scanner {
    pub fn new(
        config: Arc<Config>,
        pools: Pools,
        writer: DbWriterHandle,
        cache: Arc<CacheState>,
        stats: Arc<ScannerStats>,
    ) -> Scanner {
        let parts = Parts::new(config, pools, writer, cache);
        Scanner {
            next_reconcile: Instant::now() + parts.config.scanner.reconcile_interval,
            opts: ScanOptions::from_config(&parts.config),
            upstream: parts.site_client(),
            parts,
            stats,
            runs: Runs::default(),
            next_incremental: Instant::now(),
            retry_at: None,
            type_retry: BTreeMap::new(),
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
        // While a run is in flight, a tick counts as skipped when an incremental scan was due.
        let due = now >= self.next_incremental;
        if self.runs.skip(&self.stats.actor, due) {
            return;
        }
        if self.retry_at.is_some_and(|at| now < at) {
            return;
        }
        let view = self.parts.cache.view();
        if view.schema.types.is_empty() {
            return;
        }
        // Types waiting out their back-off are left alone; the others go on.
        let waiting: BTreeSet<String> = self
            .type_retry
            .iter()
            .filter(|(_, (_, at))| now < *at)
            .map(|(t, _)| t.clone())
            .collect();
        let incomplete = view
            .schema
            .types
            .keys()
            .any(|t| !view.complete.contains(t) && !waiting.contains(t));
        let incremental_due = now >= self.next_incremental;
        if !incomplete && !incremental_due {
            return;
        }
        if incremental_due {
            self.next_incremental = now + self.parts.config.scanner.interval;
            self.set_next_run(self.next_incremental);
        }
        let reconcile_due = incremental_due && now >= self.next_reconcile;
        if reconcile_due {
            self.next_reconcile = now + self.parts.config.scanner.reconcile_interval;
        }
        self.runs.start();
        self.retry_at = None;
        self.stats.running.store(true, Ordering::Relaxed);
        let run = Run {
            upstream,
            schema: view.schema.clone(),
            reader: self.parts.pools.reader.clone(),
            writer: self.parts.writer.clone(),
            opts: self.opts.clone(),
            stats: self.stats.clone(),
            cache: self.parts.cache.clone(),
            incremental_due,
            reconcile_due,
            waiting,
        };
        ctx.spawn(
            run.run()
                .into_actor(self)
                .map(|result, act, _ctx| act.finished(result)),
        );
    }

    /// A run ended: record it and each type's outcome, or schedule the retry with back-off.
    fn finished(&mut self, result: Result<(RunReport, Duration), ScanError>) {
        self.runs.end();
        self.stats.running.store(false, Ordering::Relaxed);
        if let Ok(mut current) = self.stats.current.lock() {
            *current = None;
        }
        match result {
            Ok((report, took)) => {
                self.runs.succeeded();
                self.stats.actor.handled();
                if let Ok(mut last) = self.stats.last_run.lock() {
                    *last = Some(ScanRun {
                        finished_at: time::now(),
                        types: report.types,
                        entities: report.entities,
                        seconds: took.as_secs_f64(),
                    });
                }
                self.record_types(report);
            }
            Err(err) => {
                warn!(error = %err, "scan failed");
                self.stats.actor.error(&err);
                let delay = self.runs.failed(self.parts.config.shotgun.retry_backoff);
                let at = Instant::now() + delay;
                self.retry_at = Some(at);
                // The incremental scan that failed is due again after the back-off.
                self.next_incremental = self.next_incremental.min(at);
                self.set_next_run(at);
            }
        }
    }

    /// Types that succeeded leave the failing list; types that failed get their own back-off
    /// (their incremental scan is due again when it ends).
    fn record_types(&mut self, report: RunReport) {
        let Ok(mut failing) = self.stats.failing.lock() else {
            return;
        };
        for entity_type in &report.succeeded {
            self.type_retry.remove(entity_type);
            failing.remove(entity_type);
        }
        for (entity_type, error) in report.failed {
            let failures = self.type_retry.get(&entity_type).map_or(0, |(n, _)| *n) + 1;
            let delay = backoff_delay(self.parts.config.shotgun.retry_backoff, failures);
            let at = Instant::now() + delay;
            self.next_incremental = self.next_incremental.min(at);
            self.type_retry.insert(entity_type.clone(), (failures, at));
            let retry_ms = chrono::Utc::now().timestamp_millis() + delay.as_millis() as i64;
            let failure = TypeFailure {
                failures,
                last_error: error,
                at: time::now(),
                retry_at: time::format_unix_ms(retry_ms),
            };
            failing.insert(entity_type, failure);
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
    /// Types waiting out the back-off of their last failure: not scanned in this run.
    waiting: BTreeSet<String>,
}

impl Run {
    /// Full scans of incomplete types (one at a time), then (when due) incremental scans and
    /// reconciliations of complete types. A type that fails is recorded and the run goes on.
    async fn run(self) -> Result<(RunReport, Duration), ScanError> {
        let started = Instant::now();
        let states = registry::entity_states(&self.reader).await?;
        let mut observer = StatsObserver(self.stats.clone(), self.cache.clone());
        let mut report = RunReport::default();
        let scanned = |complete: bool| {
            states
                .iter()
                .filter(move |s| s.cached && s.complete == complete)
                .filter(|s| !self.waiting.contains(&s.entity_type))
                .filter_map(|s| Some((s, self.schema.types.get(&s.entity_type)?)))
        };
        for (state, entity) in scanned(false) {
            let result = scan_type_full(
                &self.upstream,
                &self.writer,
                entity,
                state,
                &self.opts,
                &mut observer,
            )
            .await;
            if let Some(summary) = report.per_type(result, "full scan", entity, &self.stats)? {
                info!(entity_type = %summary.entity_type, entities = summary.entities, seconds = summary.seconds, "full scan done");
                self.stats.full_scans.fetch_add(1, Ordering::Relaxed);
                self.record(&mut report, &summary);
            }
        }
        if self.incremental_due {
            for (state, entity) in scanned(true) {
                let checkpoint = state.scan_checkpoint.as_deref();
                let result = scan_type_incremental(
                    &self.upstream,
                    &self.writer,
                    entity,
                    checkpoint,
                    &self.opts,
                    &mut observer,
                )
                .await;
                let step = "incremental scan";
                if let Some(summary) = report.per_type(result, step, entity, &self.stats)? {
                    self.stats.incremental_scans.fetch_add(1, Ordering::Relaxed);
                    self.record(&mut report, &summary);
                }
            }
        }
        if self.reconcile_due {
            for (_, entity) in scanned(true) {
                let result = reconcile_type(
                    &self.upstream,
                    &self.writer,
                    &self.reader,
                    entity,
                    &self.opts,
                )
                .await;
                if let Some(rows) =
                    report.per_type(result, "reconciliation", entity, &self.stats)?
                {
                    self.stats
                        .reconciled_rows
                        .fetch_add(rows, Ordering::Relaxed);
                }
            }
            self.stats.reconciliations.fetch_add(1, Ordering::Relaxed);
        }
        Ok((report, started.elapsed()))
    }

    fn record(&self, report: &mut RunReport, summary: &ScanSummary) {
        record_summary(&self.stats, summary);
        report.entities += summary.entities;
        report.types += 1;
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
        let interval = self.parts.config.scanner.interval;
        let poll = interval.min(Duration::from_millis(500));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::StoreError;
    use crate::db::writer::test_support::shot_entity;
    use crate::upstream::UpstreamError;

    #[test]
    fn a_failing_type_is_recorded_and_the_run_goes_on() {
        let stats = ScannerStats::default();
        let shot = shot_entity();
        let mut report = RunReport::default();
        let down = Err::<(), _>(ScanError::Upstream(UpstreamError::Transport("down".into())));
        assert!(matches!(
            report.per_type(down, "full scan", &shot, &stats),
            Ok(None)
        ));
        // A later success of the same type in the run does not clear the failure.
        assert!(matches!(
            report.per_type(Ok(1), "reconciliation", &shot, &stats),
            Ok(Some(1))
        ));
        assert!(report.failed["Shot"].contains("down"));
        assert!(report.succeeded.is_empty());
        // A schema change is not a failure: the type is scanned again at the next tick.
        let mut report = RunReport::default();
        let changed = Err::<(), _>(ScanError::SchemaChanged("Shot".into()));
        assert!(matches!(
            report.per_type(changed, "full scan", &shot, &stats),
            Ok(None)
        ));
        assert!(report.failed.is_empty() && report.succeeded.is_empty());
        // The database failing ends the run.
        let gone = Err::<(), _>(ScanError::from(StoreError::WriterGone));
        assert!(report.per_type(gone, "full scan", &shot, &stats).is_err());
        assert!(matches!(
            report.per_type(Ok(()), "full scan", &shot, &stats),
            Ok(Some(()))
        ));
        assert!(report.succeeded.contains("Shot"));
    }
}
