//! The Verifier actor: are locally answered reads what the site would have answered?
//!
//! After a read was answered from the cache, the request handler hands a copy of it (the
//! read's arguments and the exact `results` sent) to [`VerifierHandle::offer`]: every one with
//! `verify.mode = "all"`, a random fraction `verify.sample_rate` with `"sample"`, none with
//! `"off"`. The hand-off never waits: the queue holds `verify.queue_capacity` reads and a read
//! offered to a full queue is dropped (counted).
//!
//! The actor takes one read at a time, re-runs it against the site with sgcache's own
//! credentials (at most `verify.max_requests_per_second` requests to the site, healing
//! included) and compares: the same entities, the same values, the same order where the read
//! had sorts (ties tolerated: entities with equal sort keys may come in any order). The re-run
//! always asks for `updated_at` and the sort fields (stripped again before comparing when the
//! client did not ask for them): a difference on an entity whose site `updated_at` is not
//! older than the cache's answer (minus `verify.changed_since_leeway`) was caused by a change
//! after the answer and is counted as "changed since", not as a mismatch. Differences in which
//! entities a page holds, their order or the total count are forgiven when any entity involved
//! changed since (a change shifts pages).
//!
//! Real mismatches are logged in `sgcache_verification` (the request, a compact diff, the ids),
//! counted per type and field, shown on `/status`, and healed: the entities involved are
//! re-read from the site and written through the DbWriter (entities the site does not know
//! any more are retired). With `verify.quarantine`, a type with `verify.quarantine_after`
//! mismatches is marked incomplete: its reads pass through until the scanner's full rescan
//! completes.
//!
//! While the site is unreachable a failed re-run is counted as an error and the verifier waits
//! `verify.error_backoff` before the next one (reads keep being answered; the queue drops).
//!
//! `sgcache verify --sample N` ([`crate::commands`]) uses [`verify_sample`]: N random cached rows per type,
//! every cached field compared with the site's values.
//!
//! Files: [`compare`] (the re-run read and the pure comparison), [`worker`] (the loop:
//! throttle, re-run, count, log, heal, quarantine), [`actor`] (the actor and the request
//! handler's [`VerifierHandle`]), [`stats`] (`/status` figures), [`sample`] (`verify --sample`).
pub mod actor;
pub mod compare;
pub mod sample;
mod stats;
mod worker;

pub use actor::{Verifier, VerifierHandle};
pub use compare::{Finding, FindingKind, rerun_args, same_value};
pub use sample::{SampleReport, verify_sample};
pub use stats::{RecentMismatch, TypeCounts, TypeCountsSnapshot, VerifierSnapshot, VerifierStats};

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

/// One locally answered read to verify.
#[derive(Debug, Clone)]
pub struct VerifyJob {
    pub entity_type: String,
    /// The read's `params[1]`, as the client sent it.
    pub args: Json,
    /// The `results` the client got.
    pub response: Json,
    /// When the cache answered (taken before the query ran).
    pub answered_at: DateTime<Utc>,
}
