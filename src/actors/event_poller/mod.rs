//! The EventPoller actor: follows the site's `EventLogEntry` stream and applies each event to
//! the cache (issue #6; `docs/shotgun-api.md` §9).
//!
//! Files: [`plan`] decides what an event means (pure), [`page`] reads a page of events and
//! applies it with the checkpoint, [`cursor`] is the position in the stream (last id, open
//! gaps), [`actor`] schedules the polls, [`stats`] holds the `/status` figures.
//!
//! **Polling.** Every `events.poll_interval` it reads `EventLogEntry` with `id > start`, sorted
//! by id, 500 per page; when a page comes back full it asks again at once. `start` is the
//! stored checkpoint, or `min(open gap) - 1` while gaps are open (§9.3).
//!
//! **Start-up.** With no stored checkpoint it starts from the newest event id on the site
//! (history is skipped): the Scanner's full scans prime the cache and its incremental scans
//! cover anything in between. `sgcache events --from ID` stores a checkpoint to replay from.
//!
//! **Exactly once.** All the changes of one page and the new checkpoint (last id and open
//! gaps) go to the DbWriter as ONE [`Apply`], i.e. one transaction: a crash at any point
//! neither skips an event nor applies one twice. Fetches from the site happen before that
//! Apply. Rows the Apply reports missing (a change to a row the cache does not have) are
//! fetched whole and written in a follow-up Apply.
//!
//! **Gaps.** Event ids are not committed in order. An id below the newest id seen that has
//! not appeared yet is an *open gap* (id → first-seen time); polls re-read from the lowest
//! gap for `events.gap_window`, then the id is declared missing (counted, logged). Events
//! already applied inside that re-read window are skipped.
//!
//! **Handling** (cached types and fields only; anything else is counted as ignored):
//! `Shotgun_<T>_New` → fetch the entity (active, else retired) and upsert it whole;
//! `_Change` → apply `new_value` (event-log date-times converted) or `added`/`removed` links;
//! a back-reference change (`meta.actual_attribute_changed`) updates `event.entity`'s field
//! `attribute_name`; `in_create` changes are skipped (the New event fetched the entity);
//! `_Retirement` / `_Revival` → set `_active` (a revival also refetches, and re-reads the cached
//! entities that link to the revived one, bounded: [`crate::upstream::refresh::relink`]);
//! `Shotgun_DisplayColumn_New/_Change` → [`Reload`] the schema.
//!
//! **What it cannot see:** writes by scripts with event generation off (`site.quiet()` in the
//! tests) produce no events at all; the Scanner's periodic `updated_at` scans catch those.
//!
//! When the site is down the poll is retried with back-off and jitter, from the same place.

mod actor;
pub mod cursor;
pub mod page;
pub mod plan;
mod stats;

pub use actor::EventPoller;
pub use cursor::{Cursor, OpenGaps};
pub use page::{PageReport, PollContext, events_request, load_cursor, newest_event_id, poll_page};
pub use plan::{EventAction, EventKind, event_date_time, parse_event_type};
pub use stats::{EventPollerSnapshot, EventPollerStats, KindCounts};

use crate::db::StoreError;
use crate::upstream::UpstreamError;

/// Events per page (the official event daemon's batch size).
pub const PAGE_SIZE: usize = 500;
/// More open gaps than this are declared missing at once (a huge jump in ids).
pub(crate) const MAX_OPEN_GAPS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("unexpected reply from the site: {0}")]
    Reply(String),
}
