//! The election: a task that keeps this instance's role (see [`crate::cluster`]) and starts or
//! stops the leader-only actors ([`LeaderDuties`]) when the role changes.
//!
//! Every tick, a follower tries the leader lock; if another instance holds it, it syncs from the
//! database what the leader applied ([`Follower::sync`]). A leader checks, on the lock session
//! itself, that it still holds the lock; when the session fails or the lock is gone it stops
//! leading at once (the DbWriter's fence already refuses its leader-only writes) and becomes a
//! follower with a fresh session. A graceful stop hands the lock over: the duties stop, their
//! last writes are committed, and closing the session releases the lock for the next leader.
//!
//! Taking the lead, in order: (1) the lock; (2) the fence, which waits for the previous
//! leader's leader-only transactions to end; (3) a barrier through the DbWriter, so that writes
//! queued before this point (sent while following) are refused, not committed under the new
//! term; (4) the role is published (the fence opens for this instance); (5) the leader record
//! (`term` + 1) is written, fenced; (6) the duties start and read their checkpoints, which
//! now include everything the previous leader committed.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::cluster::follow::{Follower, leader_record};
use crate::cluster::pg::{LockError, LockSession};
use crate::cluster::{ClusterState, LEADER_KEY, LeaderRecord, Mode};
use crate::config::Config;
use crate::db::writer::{Apply, DbWriterHandle, WriteOp, load_complete};
use crate::db::{Pools, StoreError};
use crate::state::CacheState;

/// Bound on one query of the lock session; a leader that cannot confirm its lock within it
/// stops leading.
const LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// The leader-only actors: the schema loader (DDL), the event poller and the scanner.
pub trait LeaderDuties: 'static {
    /// Starts them; called once the lead is safely taken.
    fn start(&mut self);
    /// Stops them; resolves when they have stopped (their last messages may still be in the
    /// DbWriter's mailbox).
    fn stop(&mut self) -> impl Future<Output = ()>;
}

/// How often followers try the lock and leaders check it: half the event poll interval,
/// between 100 ms and 1 s, so a takeover starts within one `events.poll_interval`.
pub fn election_tick(config: &Config) -> Duration {
    (config.events.poll_interval / 2).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

#[derive(Debug, thiserror::Error)]
enum PromoteError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Load(#[from] crate::actors::schema_loader::LoadError),
}

/// What the election needs from the daemon.
pub struct ElectionParts<D> {
    pub config: Arc<Config>,
    pub cluster: Arc<ClusterState>,
    pub pools: Pools,
    pub writer: DbWriterHandle,
    pub cache: Arc<CacheState>,
    pub follower: Follower,
    pub duties: D,
}

pub struct Election<D: LeaderDuties> {
    parts: ElectionParts<D>,
    tick: Duration,
    session: Option<LockSession>,
    /// Consecutive failures to reach the database (logged at the first only).
    failures: u32,
}

/// Stops the election (and with it the leader-only actors), handing the lock over.
pub struct ElectionHandle {
    stop: oneshot::Sender<()>,
    done: actix_web::rt::task::JoinHandle<()>,
}

impl ElectionHandle {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.done.await;
    }
}

impl<D: LeaderDuties> Election<D> {
    /// Starts the election on the current arbiter (the duties start actors there).
    pub fn start(parts: ElectionParts<D>) -> ElectionHandle {
        let election = Election {
            tick: election_tick(&parts.config),
            parts,
            session: None,
            failures: 0,
        };
        let (stop, stopped) = oneshot::channel();
        let done = actix_web::rt::spawn(election.run(stopped));
        ElectionHandle { stop, done }
    }

    async fn run(mut self, mut stopped: oneshot::Receiver<()>) {
        if self.parts.cluster.mode == Mode::Single {
            self.parts.duties.start();
            let _ = stopped.await;
            self.parts.duties.stop().await;
            return;
        }
        let mut ticks = actix_web::rt::time::interval(self.tick);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = ticks.tick() => self.step().await,
            }
        }
        self.resign().await;
    }

    async fn step(&mut self) {
        if self.parts.cluster.is_leader() {
            let held = match self.session.as_mut() {
                Some(session) => session.holds_lead().await,
                None => Ok(false),
            };
            match held {
                Ok(true) => {}
                Ok(false) => self.demote("the leader lock is no longer held").await,
                Err(e) => self.demote(&e.to_string()).await,
            }
        } else {
            self.campaign().await;
        }
    }

    /// A follower's tick: try the lock; sync from the database while someone else leads.
    async fn campaign(&mut self) {
        if self.session.is_none() {
            let connect = LockSession::connect(
                &self.parts.pools.reader,
                &self.parts.cluster.instance,
                LOCK_TIMEOUT,
            );
            match connect.await {
                Ok(session) => self.session = Some(session),
                Err(e) => return self.failed("cannot open the lock session", &e),
            }
        }
        let Some(session) = self.session.as_mut() else {
            return;
        };
        match session.try_lead().await {
            Ok(true) => {
                if let Err(e) = self.promote().await {
                    // Not leading after all; the lock goes with the session.
                    self.parts.cluster.follow(false);
                    if let Some(session) = self.session.take() {
                        session.close().await;
                    }
                    self.failed("cannot take the lead", &e);
                }
            }
            Ok(false) => match self.parts.follower.sync(&self.parts.cluster).await {
                Ok(()) => {
                    self.failures = 0;
                    self.parts.cluster.synced();
                }
                Err(e) => {
                    self.parts.cluster.sync_failed(&e);
                    self.failed("cannot sync from the leader's database state", &e);
                }
            },
            Err(e) => {
                self.session = None;
                self.failed("cannot try the leader lock", &e);
            }
        }
    }

    async fn promote(&mut self) -> Result<(), PromoteError> {
        let Some(session) = self.session.as_mut() else {
            return Ok(());
        };
        session.take_fence().await?;
        let parts = &self.parts;
        parts.writer.apply(Apply::default()).await?;
        parts
            .cache
            .set_complete(load_complete(&parts.pools.reader).await?);
        let previous = leader_record(&parts.pools.reader).await?;
        let record = LeaderRecord {
            instance: parts.cluster.instance.clone(),
            since: crate::time::now(),
            term: previous.as_ref().map_or(1, |p| p.term + 1),
        };
        parts.cluster.lead(session.pid());
        let value = serde_json::to_value(&record).unwrap_or_default();
        parts
            .writer
            .apply(Apply {
                ops: vec![WriteOp::SiteInfo {
                    key: LEADER_KEY.to_owned(),
                    value,
                }],
                checkpoint: None,
            })
            .await?;
        info!(
            term = record.term,
            previous = previous.as_ref().map(|p| p.instance.as_str()),
            "this instance now leads: starting the schema loader, the event poller and the scanner"
        );
        parts.cluster.set_leader(Some(record));
        self.failures = 0;
        self.parts.duties.start();
        Ok(())
    }

    async fn demote(&mut self, reason: &str) {
        self.parts.cluster.follow(true);
        warn!(
            reason,
            "this instance lost the lead: stopping the leader-only actors"
        );
        self.parts.duties.stop().await;
        if let Some(session) = self.session.take() {
            session.close().await;
        }
    }

    /// Graceful stop: the duties stop and their last writes commit while the lock is still
    /// held; then closing the session hands the lock to the next instance.
    async fn resign(mut self) {
        if self.parts.cluster.is_leader() {
            self.parts.duties.stop().await;
            if let Err(e) = self.parts.writer.apply(Apply::default()).await {
                warn!(error = %e, "the DbWriter did not drain before the lock was released");
            }
            self.parts.cluster.follow(false);
            info!("stopped leading: the lock is released for another instance");
        }
        if let Some(session) = self.session.take() {
            session.close().await;
        }
    }

    fn failed(&mut self, what: &str, error: &dyn std::fmt::Display) {
        self.failures += 1;
        if self.failures == 1 {
            warn!(error = %error, "{what}; retrying every {}", humantime::format_duration(self.tick));
        } else {
            debug!(error = %error, failures = self.failures, "{what}");
        }
    }
}
