//! The poller's figures for `/status` (`actors.event_poller`).
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::actors::ActorStats;

/// Counters by kind (`new`, `change`, `links`, `backref`, `retirement`, `revival`, `schema`,
/// `in_create`, `uncached`, `other`, ...).
pub type KindCounts = BTreeMap<String, u64>;

/// The poller's figures for `/status` (`actors.event_poller`).
#[derive(Debug, Default)]
pub struct EventPollerStats {
    pub actor: ActorStats,
    pub checkpoint: AtomicI64,
    pub newest_event_seen: AtomicI64,
    /// `created_at` (unix seconds) of the newest applied event; 0 = none yet.
    pub newest_applied_created_unix: AtomicI64,
    pub open_gaps: AtomicU64,
    pub missing_declared: AtomicU64,
    pub polls: AtomicU64,
    pub pages: AtomicU64,
    /// Rows re-read because they link to a revived entity.
    pub relinked: AtomicU64,
    /// Revivals whose linking entities were not all re-read (bound reached).
    pub relink_truncated: AtomicU64,
    pub applied: Mutex<KindCounts>,
    pub ignored: Mutex<KindCounts>,
    pub failed: Mutex<KindCounts>,
}

impl EventPollerStats {
    pub(super) fn add(map: &Mutex<KindCounts>, counts: &KindCounts) {
        if let Ok(mut m) = map.lock() {
            for (k, n) in counts {
                *m.entry(k.clone()).or_default() += n;
            }
        }
    }

    pub fn snapshot(&self) -> EventPollerSnapshot {
        let newest = self.newest_applied_created_unix.load(Ordering::Relaxed);
        let counts = |m: &Mutex<KindCounts>| m.lock().map(|m| m.clone()).unwrap_or_default();
        EventPollerSnapshot {
            actor: self.actor.snapshot(),
            checkpoint: self.checkpoint.load(Ordering::Relaxed),
            newest_event_seen: self.newest_event_seen.load(Ordering::Relaxed),
            lag_seconds: (newest > 0).then(|| (chrono::Utc::now().timestamp() - newest).max(0)),
            applied: counts(&self.applied),
            ignored: counts(&self.ignored),
            failed: counts(&self.failed),
            open_gaps: self.open_gaps.load(Ordering::Relaxed),
            missing_declared: self.missing_declared.load(Ordering::Relaxed),
            polls: self.polls.load(Ordering::Relaxed),
            pages: self.pages.load(Ordering::Relaxed),
            relinked: self.relinked.load(Ordering::Relaxed),
            relink_truncated: self.relink_truncated.load(Ordering::Relaxed),
        }
    }
}

/// `/status` → `actors.event_poller`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct EventPollerSnapshot {
    #[serde(flatten)]
    pub actor: crate::actors::ActorSnapshot,
    pub checkpoint: i64,
    pub newest_event_seen: i64,
    /// Age of the newest applied event; `None` before the first.
    pub lag_seconds: Option<i64>,
    pub applied: KindCounts,
    pub ignored: KindCounts,
    pub failed: KindCounts,
    pub open_gaps: u64,
    pub missing_declared: u64,
    pub polls: u64,
    pub pages: u64,
    /// Rows re-read because they link to a revived entity.
    pub relinked: u64,
    /// Revivals whose linking entities were not all re-read (bound reached).
    pub relink_truncated: u64,
}
