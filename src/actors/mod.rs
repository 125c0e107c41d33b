//! The daemon's actors. Each file holds one actor, its messages and its tests.
//! The DbWriter lives in [`crate::db::writer`] beside the store it owns.
pub mod calibrator;
pub mod event_poller;
#[cfg(test)]
pub(crate) mod fixture;
pub mod leader;
pub mod leader_duties;
pub mod scanner;
pub mod schema_loader;
pub mod site_info;
pub mod tick;
pub mod verifier;
pub mod write_back;

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use actix::Message;
use serde::Serialize;

use crate::time;

/// Stops a long-running actor at shutdown (work in progress is dropped: every actor commits
/// its state through the DbWriter so that a stop at any point loses nothing).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

/// Figures every actor reports on `/status`: shared atomics, so reading them never waits
/// behind a busy actor.
#[derive(Debug, Default)]
pub struct ActorStats {
    /// Where [`ActorStats::error`] also reports (set once by the daemon).
    supervisor: OnceLock<(&'static str, Supervisor)>,
    pub handled: AtomicU64,
    pub errors: AtomicU64,
    pub skipped_ticks: AtomicU64,
    pub last_activity_unix_ms: AtomicI64,
    pub last_error: Mutex<Option<String>>,
}

impl ActorStats {
    pub fn handled(&self) {
        self.handled.fetch_add(1, Ordering::Relaxed);
        self.touch();
    }

    /// Counts a recoverable failure (the actor retries) and reports it to the supervisor.
    pub fn error(&self, error: impl ToString) {
        let error = error.to_string();
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error.clone());
        }
        if let Some((actor, supervisor)) = self.supervisor.get() {
            supervisor.report(ActorFailure::new(actor, error, false));
        }
        self.touch();
    }

    /// Reports this actor's failures to `supervisor` under `actor` (the first call wins).
    pub fn supervise(&self, actor: &'static str, supervisor: &Supervisor) {
        let _ = self.supervisor.set((actor, supervisor.clone()));
    }

    pub fn touch(&self) {
        self.last_activity_unix_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ActorSnapshot {
        let last = self.last_activity_unix_ms.load(Ordering::Relaxed);
        ActorSnapshot {
            handled: self.handled.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            skipped_ticks: self.skipped_ticks.load(Ordering::Relaxed),
            last_activity_at: time::format_unix_ms(last),
            last_error: self
                .last_error
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default(),
            last_activity_unix_ms: last,
        }
    }
}

/// [`ActorStats`] at one instant: the common part of each actor's `/status` section.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ActorSnapshot {
    pub handled: u64,
    pub errors: u64,
    pub skipped_ticks: u64,
    pub last_activity_at: Option<String>,
    pub last_error: Option<String>,
    /// For `/metrics` (unix ms; 0 = never).
    #[serde(skip)]
    pub last_activity_unix_ms: i64,
}

/// A failure an actor reports to the daemon: recoverable (the actor retries on its own) or
/// fatal (the daemon cannot go on: it stops with this error).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ActorFailure {
    pub actor: &'static str,
    pub error: String,
    pub fatal: bool,
    pub at: String,
}

impl ActorFailure {
    pub fn new(actor: &'static str, error: impl ToString, fatal: bool) -> ActorFailure {
        ActorFailure {
            actor,
            error: error.to_string(),
            fatal,
            at: time::now(),
        }
    }
}

/// Failures kept for `/status`.
const RECENT_FAILURES: usize = 10;

/// Where actors report failures; the daemon waits on [`Supervisor::fatal`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Supervisor {
    inner: Arc<SupervisorInner>,
}

#[derive(Debug)]
struct SupervisorInner {
    recent: Mutex<VecDeque<ActorFailure>>,
    fatal: tokio::sync::watch::Sender<Option<ActorFailure>>,
    stopping: AtomicBool,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor {
            inner: Arc::new(SupervisorInner {
                recent: Mutex::new(VecDeque::new()),
                fatal: tokio::sync::watch::Sender::new(None),
                stopping: AtomicBool::new(false),
            }),
        }
    }
}

impl Supervisor {
    pub fn report(&self, failure: ActorFailure) {
        if self.is_stopping() {
            // Parts failing while the daemon stops on purpose (a stopped DbWriter, closed
            // pools) are consequences of the stop, not failures.
            return;
        }
        if failure.fatal {
            tracing::error!(actor = failure.actor, error = %failure.error, "fatal failure");
            // The first fatal failure is the one the daemon stops with.
            self.inner.fatal.send_if_modified(|slot| {
                let first = slot.is_none();
                if first {
                    *slot = Some(failure.clone());
                }
                first
            });
        }
        if let Ok(mut recent) = self.inner.recent.lock() {
            if recent.len() == RECENT_FAILURES {
                recent.pop_front();
            }
            recent.push_back(failure);
        }
    }

    /// The last failures, oldest first.
    pub fn recent(&self) -> Vec<ActorFailure> {
        self.inner
            .recent
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Resolves with the first fatal failure.
    pub async fn fatal(&self) -> ActorFailure {
        let mut rx = self.inner.fatal.subscribe();
        loop {
            if let Some(failure) = rx.borrow_and_update().clone() {
                return failure;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// The daemon is stopping on purpose: parts going away are not failures.
    pub fn set_stopping(&self) {
        self.inner.stopping.store(true, Ordering::Relaxed);
    }

    pub fn is_stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::Relaxed)
    }
}
