//! Several sgcache instances on one database: which of them follows the site.
//!
//! Every instance serves reads, pass-through, files and the write-back of the writes it
//! forwarded. Exactly one instance, the **leader**, applies schema DDL, polls the event log,
//! runs the scanner and moves every checkpoint and cursor. The others are **followers**: they
//! pick up from the database what the leader applied (see [`follow`]) and try to take the lead
//! every tick.
//!
//! - On PostgreSQL the leader is whoever holds a session-level advisory lock on a dedicated
//!   connection ([`pg::LockSession`]): the lock dies with that connection, so a killed leader
//!   loses it at once and a follower takes it on its next try.
//! - On SQLite there is one instance: a second `serve` on the same file refuses to start
//!   ([`file_lock::InstanceLock`]), and the one that runs is the leader from the start.
//!
//! **Fencing** (no split brain): a leader whose lock connection died may still have writes in
//! flight. Every leader-only transaction (a checkpoint, a scan cursor, schema DDL) first takes
//! a shared transaction-level advisory lock (the *fence*) and checks, inside the transaction,
//! that this instance's lock session still holds the leader lock ([`pg::fence`]). A new leader
//! takes the fence exclusively once before it starts leading, which waits for any such
//! transaction of the old leader to end: so either the old leader's checkpoint commit is
//! fully visible to the new leader before it reads the checkpoint, or it fails its check and
//! rolls back. Nothing is applied twice and nothing is skipped.
pub mod file_lock;
pub mod follow;
pub mod pg;

use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::db::writer::{Apply, EntityStatePatch, WriteOp};
use crate::time;

/// The `sgcache_site_info` key under which the leader records itself when it takes the lead.
pub const LEADER_KEY: &str = "sgcache.leader";

/// How this process relates to other instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No election: SQLite (one instance per file) and the CLI commands. Always the leader.
    Single,
    /// PostgreSQL: the advisory-lock election decides.
    Elected,
}

/// What the DbWriter must do before a leader-only transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fence {
    /// Single mode: nothing to check.
    Open,
    /// Leading: check inside the transaction that the lock session `pid` still holds the lock.
    Session(i32),
    /// Not leading: refuse the transaction.
    Closed,
}

/// The leader as recorded in the database (`sgcache_site_info`, key [`LEADER_KEY`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    /// `host:pid:bind` of the leader.
    pub instance: String,
    /// When it took the lead (canonical timestamp).
    pub since: String,
    /// 1 for the first leader of a database, +1 at every takeover.
    pub term: i64,
}

impl LeaderRecord {
    /// Leadership changes since the first leader of this database.
    pub fn takeovers(&self) -> i64 {
        (self.term - 1).max(0)
    }
}

/// The role of this instance, shared (atomics) by the election task, the DbWriter's fence,
/// `/status` and `/metrics`.
#[derive(Debug)]
pub struct ClusterState {
    /// `host:pid:bind`: how this instance is named to the others.
    pub instance: String,
    pub mode: Mode,
    /// The backend pid of the lock session while this instance leads, 0 otherwise.
    lock_pid: AtomicI32,
    /// When this instance took the lead (unix ms), 0 when following.
    leading_since_ms: AtomicI64,
    /// Times this instance took the lead.
    elections_won: AtomicU64,
    /// Times this instance lost the lead without stopping (its lock connection died).
    leadership_lost: AtomicU64,
    /// The leader as last seen in the database (followers) or as recorded (leader).
    leader: Mutex<Option<LeaderRecord>>,
    /// A follower's syncs from the database ([`follow::Follower::sync`]).
    sync: Mutex<SyncRecord>,
}

/// How a follower's syncs from the database went: a follower whose syncs fail keeps serving
/// the schema, complete types and rules of its last good one.
#[derive(Clone, Debug, Default)]
struct SyncRecord {
    at: Option<String>,
    failures: u64,
    error: Option<String>,
}

impl ClusterState {
    /// One instance, always the leader (SQLite, CLI commands).
    pub fn single(instance: String) -> ClusterState {
        let state = ClusterState::new(instance, Mode::Single);
        state.leading_since_ms.store(now_ms(), Ordering::Relaxed);
        state
    }

    /// An instance in an election; a follower until it wins.
    pub fn elected(instance: String) -> ClusterState {
        ClusterState::new(instance, Mode::Elected)
    }

    fn new(instance: String, mode: Mode) -> ClusterState {
        ClusterState {
            instance,
            mode,
            lock_pid: AtomicI32::new(0),
            leading_since_ms: AtomicI64::new(0),
            elections_won: AtomicU64::new(0),
            leadership_lost: AtomicU64::new(0),
            leader: Mutex::new(None),
            sync: Mutex::new(SyncRecord::default()),
        }
    }

    /// A follower's sync from the database succeeded.
    pub fn synced(&self) {
        if let Ok(mut sync) = self.sync.lock() {
            *sync = SyncRecord {
                at: Some(time::now()),
                failures: 0,
                error: None,
            };
        }
    }

    /// A follower's sync from the database failed with `error`.
    pub fn sync_failed(&self, error: &dyn std::fmt::Display) {
        if let Ok(mut sync) = self.sync.lock() {
            sync.failures += 1;
            sync.error = Some(error.to_string());
        }
    }

    fn sync_record(&self) -> SyncRecord {
        self.sync.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn is_leader(&self) -> bool {
        self.mode == Mode::Single || self.lock_pid.load(Ordering::Acquire) != 0
    }

    pub fn fence(&self) -> Fence {
        match (self.mode, self.lock_pid.load(Ordering::Acquire)) {
            (Mode::Single, _) => Fence::Open,
            (Mode::Elected, 0) => Fence::Closed,
            (Mode::Elected, pid) => Fence::Session(pid),
        }
    }

    /// This instance now leads through the lock session `pid` (after the fence handover).
    pub fn lead(&self, pid: i32) {
        self.leading_since_ms.store(now_ms(), Ordering::Relaxed);
        self.elections_won.fetch_add(1, Ordering::Relaxed);
        self.lock_pid.store(pid, Ordering::Release);
    }

    /// This instance no longer leads; `lost` when the lock went away on its own.
    pub fn follow(&self, lost: bool) {
        if self.lock_pid.swap(0, Ordering::AcqRel) != 0 && lost {
            self.leadership_lost.fetch_add(1, Ordering::Relaxed);
        }
        self.leading_since_ms.store(0, Ordering::Relaxed);
    }

    pub fn set_leader(&self, record: Option<LeaderRecord>) {
        if let Ok(mut leader) = self.leader.lock() {
            *leader = record;
        }
    }

    pub fn leader(&self) -> Option<LeaderRecord> {
        self.leader.lock().ok().and_then(|l| l.clone())
    }

    pub fn elections_won(&self) -> u64 {
        self.elections_won.load(Ordering::Relaxed)
    }

    pub fn leadership_lost(&self) -> u64 {
        self.leadership_lost.load(Ordering::Relaxed)
    }

    /// When this instance took the lead, while it leads.
    pub fn leading_since(&self) -> Option<String> {
        let ms = self.leading_since_ms.load(Ordering::Relaxed);
        (ms > 0 && self.is_leader())
            .then(|| chrono::DateTime::from_timestamp_millis(ms).map(time::format))
            .flatten()
    }

    pub fn role(&self) -> &'static str {
        if self.is_leader() {
            "leader"
        } else {
            "follower"
        }
    }

    /// `/status` → `cluster`.
    pub fn snapshot(&self) -> ClusterStatus {
        let recorded = self.leader();
        let sync = self.sync_record();
        let single = self.mode == Mode::Single;
        let (leader, leader_since) = match (single, &recorded) {
            (true, _) => (Some(self.instance.clone()), self.leading_since()),
            (false, Some(r)) => (Some(r.instance.clone()), Some(r.since.clone())),
            (false, None) => (None, None),
        };
        ClusterStatus {
            mode: if single { "single" } else { "elected" },
            role: self.role(),
            instance: self.instance.clone(),
            leader,
            leader_since,
            leading_since: self.leading_since(),
            term: recorded.as_ref().map(|r| r.term),
            takeovers: recorded.as_ref().map_or(0, LeaderRecord::takeovers),
            elections_won: self.elections_won(),
            leadership_lost: self.leadership_lost(),
            synced_at: sync.at,
            sync_failures: sync.failures,
            sync_error: sync.error,
        }
    }
}

/// `/status` → `cluster` (README: [Running several instances](../../README.md#running-several-instances)).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClusterStatus {
    /// `single` (SQLite: one instance) or `elected` (PostgreSQL).
    pub mode: &'static str,
    /// `leader` or `follower`.
    pub role: &'static str,
    /// This instance, `host:pid:bind`.
    pub instance: String,
    /// The leader as recorded when it took the lead.
    pub leader: Option<String>,
    pub leader_since: Option<String>,
    /// When this instance took the lead, while it leads.
    pub leading_since: Option<String>,
    /// Leadership terms of this database (1 for the first leader).
    pub term: Option<i64>,
    /// Leadership changes after the first leader of this database.
    pub takeovers: i64,
    /// Times this instance took the lead.
    pub elections_won: u64,
    /// Times this instance lost the lead while running (its lock connection died).
    pub leadership_lost: u64,
    /// The last time this instance, following, took the leader's schema, complete types and
    /// rules from the database (`None`: never, or always the leader).
    pub synced_at: Option<String>,
    /// Syncs from the database that failed since the last one that worked.
    pub sync_failures: u64,
    /// Why the last of those failed.
    pub sync_error: Option<String>,
}

/// Whether `apply` must come from the leader: it moves the event checkpoint, a scan cursor
/// or the scanner's bookkeeping, or records the leader. Marking a type incomplete is allowed
/// to anyone (it only makes reads pass through until the leader rescans it: the verifier's
/// quarantine); entity rows are not leader-only (newer `updated_at` wins, on any instance).
pub fn leader_only(apply: &Apply) -> bool {
    // "Incomplete, scan again from the start" (the full scan's resume point may be reset).
    let invalidation = |patch: &EntityStatePatch| {
        patch.complete == Some(false)
            && matches!(patch.full_scan_cursor, None | Some(None))
            && matches!(patch.full_scan_started_at, None | Some(None))
            && patch.last_full_scan_at.is_none()
            && patch.scan_checkpoint.is_none()
            && patch.last_scan_at.is_none()
    };
    apply.checkpoint.is_some()
        || apply.ops.iter().any(|op| match op {
            WriteOp::EntityState { patch, .. } => !invalidation(patch),
            WriteOp::SiteInfo { key, .. } => key == LEADER_KEY,
            _ => false,
        })
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `host:pid:bind`, e.g. `render-07:4242:0.0.0.0:8010`.
pub fn instance_id(bind: std::net::SocketAddr) -> String {
    format!("{}:{}:{bind}", hostname(), std::process::id())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_mode_always_leads_with_an_open_fence() {
        let state = ClusterState::single("h:1:127.0.0.1:8010".into());
        assert!(state.is_leader());
        assert_eq!(state.fence(), Fence::Open);
        state.follow(true);
        assert!(state.is_leader(), "single mode cannot lose the lead");
        assert_eq!(state.snapshot().role, "leader");
        assert_eq!(
            state.snapshot().leader.as_deref(),
            Some("h:1:127.0.0.1:8010")
        );
    }

    #[test]
    fn elected_mode_fences_by_lock_session() {
        let state = ClusterState::elected("h:1:127.0.0.1:8010".into());
        assert!(!state.is_leader());
        assert_eq!(state.fence(), Fence::Closed);
        state.lead(4242);
        assert_eq!(state.fence(), Fence::Session(4242));
        assert!(state.leading_since().is_some());
        state.follow(true);
        assert_eq!(state.fence(), Fence::Closed);
        assert_eq!(state.leadership_lost(), 1);
        state.follow(true);
        assert_eq!(state.leadership_lost(), 1, "only a real loss counts");
        assert_eq!(state.elections_won(), 1);
        assert!(state.leading_since().is_none());
    }

    #[test]
    fn takeovers_count_terms_after_the_first() {
        let state = ClusterState::elected("b".into());
        state.set_leader(Some(LeaderRecord {
            instance: "a".into(),
            since: "2026-12-01T04:00:00Z".into(),
            term: 3,
        }));
        let snap = state.snapshot();
        assert_eq!(snap.role, "follower");
        assert_eq!(snap.leader.as_deref(), Some("a"));
        assert_eq!(snap.leader_since.as_deref(), Some("2026-12-01T04:00:00Z"));
        assert_eq!(snap.takeovers, 2);
    }

    #[test]
    fn checkpoints_cursors_and_the_leader_record_are_leader_only() {
        use crate::db::writer::Checkpoint;
        let state = |patch| WriteOp::EntityState {
            entity_type: "Shot".into(),
            patch,
        };
        let apply = |ops| Apply {
            ops,
            checkpoint: None,
        };
        assert!(!leader_only(&apply(vec![])));
        let upsert = WriteOp::SetActive {
            entity_type: "Shot".into(),
            id: 1,
            active: false,
            event_id: None,
        };
        assert!(!leader_only(&apply(vec![upsert])));
        let quarantine = EntityStatePatch {
            complete: Some(false),
            full_scan_cursor: Some(None),
            full_scan_started_at: Some(None),
            ..Default::default()
        };
        assert!(!leader_only(&apply(vec![state(quarantine)])));
        let cursor = EntityStatePatch {
            full_scan_cursor: Some(Some(500)),
            ..Default::default()
        };
        assert!(leader_only(&apply(vec![state(cursor)])));
        let completed = EntityStatePatch {
            complete: Some(true),
            ..Default::default()
        };
        assert!(leader_only(&apply(vec![state(completed)])));
        let info = |key: &str| WriteOp::SiteInfo {
            key: key.into(),
            value: serde_json::Value::Null,
        };
        assert!(!leader_only(&apply(vec![info("info")])));
        assert!(leader_only(&apply(vec![info(LEADER_KEY)])));
        let checkpoint = Apply {
            ops: vec![],
            checkpoint: Some(Checkpoint::Events {
                last_event_id: 7,
                open_gaps: serde_json::Value::Null,
            }),
        };
        assert!(leader_only(&checkpoint));
    }

    #[test]
    fn instance_id_names_host_pid_and_bind() {
        let id = instance_id("127.0.0.1:8010".parse().expect("addr"));
        assert!(id.ends_with(&format!(":{}:127.0.0.1:8010", std::process::id())));
    }
}
