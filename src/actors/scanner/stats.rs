//! The scanner's figures for `/status` (`actors.scanner`).
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use super::scan::{ScanProgress, ScanSummary};
use crate::actors::ActorStats;
use crate::time;

/// The scanner's figures for `/status` (`actors.scanner`).
#[derive(Debug, Default)]
pub struct ScannerStats {
    pub actor: ActorStats,
    pub running: AtomicBool,
    pub full_scans: AtomicU64,
    pub incremental_scans: AtomicU64,
    /// Id-set reconciliations run, and rows they corrected.
    pub reconciliations: AtomicU64,
    pub reconciled_rows: AtomicU64,
    pub entities_written: AtomicU64,
    pub retries: AtomicU64,
    pub next_run_unix_ms: AtomicI64,
    /// The scan in progress (type, pass, page, scanned, total).
    pub current: Mutex<Option<ScanProgress>>,
    /// The last finished scan of each type.
    pub last: Mutex<BTreeMap<String, ScanSummary>>,
    /// The last whole run (every type).
    pub last_run: Mutex<Option<ScanRun>>,
    /// Types whose last scan failed, retried with their own back-off.
    pub failing: Mutex<BTreeMap<String, TypeFailure>>,
}

/// A type whose last scan failed: the others go on, this one is retried at `retry_at`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TypeFailure {
    /// Failed scans in a row.
    pub failures: u32,
    pub last_error: String,
    pub at: String,
    pub retry_at: Option<String>,
}

/// What the last whole run (every type) did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ScanRun {
    pub finished_at: String,
    pub types: u64,
    pub entities: u64,
    pub seconds: f64,
}

/// `/status` → `actors.scanner`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ScannerSnapshot {
    #[serde(flatten)]
    pub actor: crate::actors::ActorSnapshot,
    pub running: bool,
    pub full_scans: u64,
    pub incremental_scans: u64,
    pub reconciliations: u64,
    pub reconciled_rows: u64,
    pub entities_written: u64,
    pub retries: u64,
    pub next_run_at: Option<String>,
    pub current: Option<ScanProgress>,
    /// The last finished scan of each type.
    pub types: BTreeMap<String, ScanSummary>,
    pub last_run: Option<ScanRun>,
    /// Types whose last scan failed: their last error and when they are retried.
    pub failing_types: BTreeMap<String, TypeFailure>,
}

impl ScannerStats {
    pub fn snapshot(&self) -> ScannerSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ScannerSnapshot {
            actor: self.actor.snapshot(),
            running: self.running.load(Ordering::Relaxed),
            full_scans: load(&self.full_scans),
            incremental_scans: load(&self.incremental_scans),
            reconciliations: load(&self.reconciliations),
            reconciled_rows: load(&self.reconciled_rows),
            entities_written: load(&self.entities_written),
            retries: load(&self.retries),
            next_run_at: time::format_unix_ms(self.next_run_unix_ms.load(Ordering::Relaxed)),
            current: self.current.lock().map(|c| c.clone()).unwrap_or_default(),
            types: self.last.lock().map(|l| l.clone()).unwrap_or_default(),
            last_run: self.last_run.lock().map(|l| l.clone()).unwrap_or_default(),
            failing_types: self.failing.lock().map(|f| f.clone()).unwrap_or_default(),
        }
    }
}
