//! The daemon's actors. Each file holds one actor, its messages and its tests.
//! The DbWriter lives in [`crate::db::writer`] beside the store it owns.
pub mod event_poller;
pub mod scanner;
pub mod schema_loader;
pub mod site_info;
pub mod verifier;
pub mod write_back;

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

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

    pub fn error(&self, error: impl ToString) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error.to_string());
        }
        self.touch();
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
