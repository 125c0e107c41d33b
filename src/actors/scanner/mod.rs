//! The Scanner: full scans that fill a cached type, and incremental scans that catch what the
//! event stream misses (writes by scripts without events, see the API notes §9.6).
//!
//! The scanning itself is in plain async functions, [`scan_type_full`] and
//! [`scan_type_incremental`], shared by the [`Scanner`] actor (daemon) and `sgcache scan` (CLI).
//!
//! Files: [`scan`] (pages, cursors, full and incremental scans), [`reconcile`] (id-set
//! reconciliation), [`actor`] (the schedule and the per-type error decision), [`stats`]
//! (`/status` figures) (`sgcache scan` is in `crate::commands`).
//!
//! **Full scan** (types not `complete`): keyset paging on `id` (`id > cursor`, sorted by id),
//! every cached field, first `return_only: "active"`, then `return_only: "retired"`. Each page
//! is one [`Apply`]: the upsert (with `_active` set by the pass) plus the new cursor, so an
//! interrupted scan resumes after a restart from the last page written.
//!
//! The cursor (`sgcache_entity_state.full_scan_cursor`) encodes the pass as well as the last
//! id written: `c >= 0` means "active pass, last id `c`"; `c < 0` means "active pass done,
//! retired pass, last id `-c - 1`" (so `-1` is the start of the retired pass).
//! `full_scan_started_at` holds the start time of the scan (kept across resumes); when both
//! passes are done the type becomes `complete` and `scan_checkpoint` is set to that start time,
//! so the incremental scans pick up everything changed while the full scan ran.
//!
//! **Incremental scan** (complete types, every `scanner.interval`): `updated_at >
//! checkpoint − scanner.leeway` (or `now − scanner.since` without a checkpoint), active and
//! retired, paged by id, every cached field. The checkpoint moves to this scan's start time in
//! the last Apply. A failed incremental scan leaves the checkpoint alone, so it is redone.
//! A retirement that does not bump `updated_at` is not seen by these scans (an id-set
//! reconciliation is needed for that; not done here).
//!
//! **Project restriction** (`scanner.projects` non-empty): types that have a `project` field
//! are scanned with `project in [Project N, ...]` added to the filters; types without one
//! (e.g. `Project`, `HumanUser`) are scanned whole. Such a cache holds only those projects'
//! rows of project-scoped types: the read path must only answer reads restricted to those
//! projects locally (decided with the read path).
//!
//! Failures: transient site errors (unreachable, 5xx, 429, timeouts) are retried for the same
//! page with [`backoff_delay`] ([`scan::PAGE_ATTEMPTS`] times), never skipping a page; each is
//! counted in the stats. A failure of one type (the site keeps failing its pages, a fault, a
//! bad reply, a record the cache cannot take) ends that type's scan for this run only: the
//! other types go on, and the failing one is retried with its own back-off (`/status` →
//! `actors.scanner.failing_types`), resuming from its stored cursor. A value the cache cannot
//! store does not even fail the page: the DbWriter leaves that field uncached
//! ([`crate::schema::marks`]) and the scan goes on without it. Database errors end the run;
//! the actor retries it later with back-off.
pub mod actor;
pub mod reconcile;
pub mod scan;
mod stats;

pub use actor::Scanner;
pub use reconcile::{reconcile_type, reset_full_scan};
pub use scan::{
    NoObserver, Pass, ScanObserver, ScanOptions, ScanProgress, ScanSummary, decode_cursor,
    encode_cursor, page_request, project_condition, scan_type_full, scan_type_incremental,
};
pub use stats::{ScanRun, ScannerSnapshot, ScannerStats, TypeFailure};

use crate::db::StoreError;
use crate::upstream::UpstreamError;

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Store(StoreError),
    /// The cached field set of the type changed while it was being scanned: the rows written
    /// so far lack the new fields, so the scan stops (the schema change reset its cursor).
    #[error("the cached schema of {0} changed during the scan")]
    SchemaChanged(String),
    #[error("unexpected read reply for {entity_type}: {problem}")]
    Reply {
        entity_type: String,
        problem: String,
    },
}

impl From<StoreError> for ScanError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::SchemaChanged(entity_type) => ScanError::SchemaChanged(entity_type),
            other => ScanError::Store(other),
        }
    }
}

impl ScanError {
    /// A problem met while scanning one type (anything the site answered or failed to
    /// answer, a record the cache rejects, a schema change), not of the database as a whole:
    /// the daemon goes on with the other types and retries this one later.
    pub fn is_per_type(&self) -> bool {
        match self {
            ScanError::Upstream(_) | ScanError::Reply { .. } | ScanError::SchemaChanged(_) => true,
            ScanError::Store(err) => matches!(err, StoreError::InvalidValue { .. }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_bad_replies_and_schema_changes_are_per_type() {
        let fault = ScanError::Upstream(UpstreamError::Fault {
            code: Some(103),
            message: "no such field".into(),
        });
        assert!(fault.is_per_type());
        assert!(ScanError::SchemaChanged("Shot".into()).is_per_type());
        let bad = ScanError::Reply {
            entity_type: "Shot".into(),
            problem: "no entities".into(),
        };
        assert!(bad.is_per_type());
        // A site that keeps failing one type's pages, or a record the cache rejects.
        assert!(ScanError::Upstream(UpstreamError::Transport("down".into())).is_per_type());
        let invalid = StoreError::InvalidValue {
            entity_type: "Shot".into(),
            field: "id".into(),
            problem: "missing".into(),
        };
        assert!(ScanError::from(invalid).is_per_type());
        // The database as a whole: the run ends.
        assert!(!ScanError::from(StoreError::WriterGone).is_per_type());
        let store = ScanError::from(StoreError::SchemaChanged("Shot".into()));
        assert!(matches!(store, ScanError::SchemaChanged(_)));
    }
}
