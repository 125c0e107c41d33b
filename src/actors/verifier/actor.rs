//! The Verifier actor (it owns the worker loop on its arbiter) and the request handler's
//! [`VerifierHandle`]: sampling and the bounded, never-waiting hand-off.
use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix::prelude::*;
use rand::Rng;
use tokio::sync::mpsc;

use super::VerifyJob;
use super::stats::VerifierStats;
use super::worker::Worker;
use crate::actors::Stop;
use crate::config::{Config, ShotgunConfig, VerifyConfig, VerifyMode};
use crate::db::writer::DbWriterHandle;
use crate::state::CacheState;

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
        // awc is `!Send`: the worker's client lives on this actor's arbiter.
        let worker = Worker::new(
            &self.shotgun,
            self.writer.clone(),
            self.cache.clone(),
            self.stats.clone(),
            self.config.clone(),
        );
        let handle = ctx.spawn(worker.run(rx).into_actor(self));
        self.running = Some(handle);
    }
}

impl Handler<Stop> for Verifier {
    type Result = ();

    fn handle(&mut self, _msg: Stop, ctx: &mut Self::Context) {
        if let Some(handle) = self.running.take() {
            ctx.cancel_future(handle);
        }
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;

    use super::*;

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
