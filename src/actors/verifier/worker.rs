//! The verifier's worker loop: one queued read at a time, re-run against the site (throttled),
//! compared ([`super::compare`]), then counted, logged, healed through the one refresh path
//! ([`crate::upstream::refresh`]) and, after repeated mismatches, quarantined.
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use tokio::sync::mpsc;
use tracing::warn;

use super::VerifyJob;
use super::compare::{Finding, Outcome, compare, rerun_args};
use super::stats::VerifierStats;
use crate::actors::scanner::reset_full_scan;
use crate::config::{ShotgunConfig, VerifyConfig};
use crate::db::StoreError;
use crate::db::writer::{Apply, ApplyOutcome, DbWriterHandle, WriteOp};
use crate::schema::CachedEntity;
use crate::state::CacheState;
use crate::upstream::refresh::{Gone, Refreshed, refresh};
use crate::upstream::{UpstreamClient, UpstreamError};

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

    /// How long to wait before the next `requests` requests (and books them).
    fn book(&mut self, requests: u32) -> Duration {
        let now = Instant::now();
        let first = self.next.max(now);
        let last = first + self.gap * requests.saturating_sub(1);
        self.next = last + self.gap;
        last - now
    }
}

#[derive(Debug, thiserror::Error)]
enum VerifyError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(super) struct Worker {
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
    pub(super) fn new(
        shotgun: &ShotgunConfig,
        writer: DbWriterHandle,
        cache: Arc<CacheState>,
        stats: Arc<VerifierStats>,
        config: VerifyConfig,
    ) -> Worker {
        Worker {
            upstream: UpstreamClient::new(shotgun),
            writer,
            cache,
            stats,
            throttle: RefCell::new(Throttle::new(config.max_requests_per_second)),
            config,
            strikes: RefCell::new(BTreeMap::new()),
        }
    }

    /// Verifies the queued reads until the queue closes; backs off while the site is
    /// unreachable.
    pub(super) async fn run(self, mut rx: mpsc::Receiver<VerifyJob>) {
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

    /// Waits for the throttle's room for `requests` requests to the site.
    async fn pace(&self, requests: u32) {
        let wait = self.throttle.borrow_mut().book(requests);
        if !wait.is_zero() {
            actix_web::rt::time::sleep(wait).await;
        }
    }

    async fn apply(&self, ops: Vec<WriteOp>) -> Result<ApplyOutcome, StoreError> {
        self.writer
            .apply(Apply {
                ops,
                checkpoint: None,
            })
            .await
    }

    /// What the site has now of `ids` (nothing asked when there are none).
    async fn fetch(
        &self,
        entity: &CachedEntity,
        ids: &BTreeSet<i64>,
    ) -> Result<Refreshed, UpstreamError> {
        if ids.is_empty() {
            return Ok(Refreshed::from_records(&entity.name, [], Vec::new()));
        }
        // A refresh asks once for active rows and once more for the ids not found.
        self.pace(2).await;
        refresh(&self.upstream, entity, ids).await
    }

    async fn verify(&self, job: VerifyJob) -> Result<(), VerifyError> {
        let schema = self.cache.view().schema;
        let Some(entity) = schema.types.get(&job.entity_type) else {
            return Ok(());
        };
        let (rerun, added) = rerun_args(&job.args, entity);
        self.pace(1).await;
        let site = self.upstream.call("read", Some(rerun)).await?;
        self.stats.verified.fetch_add(1, Ordering::Relaxed);
        let threshold = job.answered_at
            - chrono::Duration::from_std(self.config.changed_since_leeway).unwrap_or_default();
        let mut cmp = compare(&job.args, &job.response, &site, &added, threshold);
        // Entities the cache returned but the site did not: ask the site about them.
        let refetched = self.fetch(entity, &cmp.only_local).await?;
        cmp.settle_only_local(&refetched, threshold);
        match cmp.outcome() {
            Outcome::Matched => {
                self.stats.matched.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::ChangedSince => self.stats.count_changed_since(&job.entity_type),
            Outcome::Mismatch(findings) => {
                self.mismatch(entity, &job, findings, refetched).await?;
            }
        }
        self.stats.actor.handled();
        Ok(())
    }

    /// A real mismatch: counted, logged in `sgcache_verification`, healed, and counted towards
    /// the type's quarantine.
    async fn mismatch(
        &self,
        entity: &CachedEntity,
        job: &VerifyJob,
        findings: Vec<Finding>,
        refetched: Refreshed,
    ) -> Result<(), VerifyError> {
        let ids: BTreeSet<i64> = findings.iter().filter_map(|f| f.id).collect();
        let fields: BTreeSet<String> = findings.iter().map(Finding::counted_as).collect();
        let diff = Json::Array(findings.iter().map(Finding::to_json).collect());
        self.stats
            .count_mismatch(&job.entity_type, &ids, &fields, &diff);
        warn!(entity_type = %job.entity_type, ids = ?ids, diff = %diff, "verification: the cache's answer differs from the site's");
        let log = WriteOp::Verification {
            entity_type: job.entity_type.clone(),
            outcome: "mismatch".to_owned(),
            request: job.args.clone(),
            diff,
            entity_ids: ids.iter().copied().collect(),
        };
        self.apply(vec![log]).await?;
        self.heal(entity, &ids, refetched).await?;
        if self.config.quarantine {
            self.strike(&job.entity_type).await?;
        }
        Ok(())
    }

    /// Re-reads the entities involved whole from the site (what `refetched` lacks) and writes
    /// them; rows the site does not have at all any more are retired.
    async fn heal(
        &self,
        entity: &CachedEntity,
        ids: &BTreeSet<i64>,
        mut refetched: Refreshed,
    ) -> Result<(), VerifyError> {
        let missing: BTreeSet<i64> = ids
            .iter()
            .copied()
            .filter(|id| !refetched.found.contains_key(id))
            .collect();
        refetched.merge(self.fetch(entity, &missing).await?);
        let ops = refetched.only(ids).ops(None, Gone::Retire);
        if !ops.is_empty() {
            let outcome = self.apply(ops).await?;
            self.stats
                .healed
                .fetch_add(outcome.rows_written, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Counts a mismatch of `entity_type`; at `quarantine_after` of them the type is marked
    /// incomplete (its reads pass through until a full rescan completes).
    async fn strike(&self, entity_type: &str) -> Result<(), VerifyError> {
        let strikes = {
            let mut strikes = self.strikes.borrow_mut();
            let n = strikes.entry(entity_type.to_owned()).or_default();
            *n += 1;
            *n
        };
        if strikes < self.config.quarantine_after {
            return Ok(());
        }
        self.strikes.borrow_mut().remove(entity_type);
        warn!(
            entity_type,
            mismatches = strikes,
            "verification: quarantined; its reads pass through until a full rescan completes"
        );
        reset_full_scan(&self.writer, entity_type).await?;
        self.stats.quarantined.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_spaces_requests() {
        let mut throttle = Throttle::new(10.0);
        assert!(throttle.book(1).is_zero());
        // The next request waits one gap; a pair after it waits for its second slot.
        let wait = throttle.book(1);
        assert!(wait > Duration::from_millis(50) && wait <= Duration::from_millis(100));
        let wait = throttle.book(2);
        assert!(wait > Duration::from_millis(250) && wait <= Duration::from_millis(300));
        // A rate of zero is read as one request a second.
        let mut slow = Throttle::new(0.0);
        slow.book(1);
        assert!(slow.book(1) > Duration::from_millis(500));
    }
}
