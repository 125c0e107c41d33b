//! The verifier's `/status` figures and their typed snapshot.
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use serde_json::Value as Json;

use super::compare::truncate_list;
use crate::actors::{ActorSnapshot, ActorStats};
use crate::config::VerifyMode;
use crate::time;

/// How many recent mismatches `/status` shows.
const RECENT: usize = 20;
/// How many diff items a recent mismatch shows.
const RECENT_DIFF_ITEMS: usize = 5;

/// Per-type mismatch figures.
#[derive(Debug, Default, Clone)]
pub struct TypeCounts {
    pub mismatched: u64,
    pub changed_since: u64,
    pub fields: BTreeMap<String, u64>,
}

/// What `/status` shows under `actors.verifier`.
#[derive(Debug, Default)]
pub struct VerifierStats {
    pub actor: ActorStats,
    pub mode: Mutex<Option<VerifyMode>>,
    /// Reads offered by the request handler (after sampling).
    pub offered: AtomicU64,
    /// Reads waiting in the queue.
    pub queued: AtomicU64,
    /// Reads not verified because the queue was full.
    pub dropped: AtomicU64,
    /// Reads re-run against the site and compared.
    pub verified: AtomicU64,
    pub matched: AtomicU64,
    pub changed_since: AtomicU64,
    pub mismatched: AtomicU64,
    /// Rows re-read from the site and rewritten (or retired) after a mismatch.
    pub healed: AtomicU64,
    /// Types marked incomplete after repeated mismatches.
    pub quarantined: AtomicU64,
    /// Pauses after a failed re-run (site unreachable).
    pub backoffs: AtomicU64,
    pub by_type: Mutex<BTreeMap<String, TypeCounts>>,
    pub recent: Mutex<VecDeque<RecentMismatch>>,
}

/// One of the last mismatches (`recent_mismatches`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct RecentMismatch {
    pub at: String,
    pub entity_type: String,
    pub entity_ids: Vec<i64>,
    pub fields: Vec<String>,
    /// The first items of the diff (`{id, field, kind, cache, site}`).
    pub diff: Json,
}

/// Per-type mismatch figures on `/status`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TypeCountsSnapshot {
    pub mismatched: u64,
    pub changed_since: u64,
    pub fields: BTreeMap<String, u64>,
}

/// `/status` → `actors.verifier`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct VerifierSnapshot {
    #[serde(flatten)]
    pub actor: ActorSnapshot,
    pub enabled: bool,
    pub mode: VerifyMode,
    pub offered: u64,
    pub queued: u64,
    pub dropped: u64,
    pub verified: u64,
    pub matched: u64,
    pub changed_since: u64,
    pub mismatched: u64,
    pub healed: u64,
    pub quarantined: u64,
    pub backoffs: u64,
    pub by_type: BTreeMap<String, TypeCountsSnapshot>,
    /// Newest first.
    pub recent_mismatches: Vec<RecentMismatch>,
}

impl VerifierStats {
    /// A read whose differences were all caused by changes after the cache answered.
    pub fn count_changed_since(&self, entity_type: &str) {
        self.changed_since.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut by_type) = self.by_type.lock() {
            by_type
                .entry(entity_type.to_owned())
                .or_default()
                .changed_since += 1;
        }
    }

    /// A real mismatch of a read of `entity_type`: counted per type and field, and kept among
    /// the recent ones.
    pub fn count_mismatch(
        &self,
        entity_type: &str,
        ids: &BTreeSet<i64>,
        fields: &BTreeSet<String>,
        diff: &Json,
    ) {
        self.mismatched.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut by_type) = self.by_type.lock() {
            let counts = by_type.entry(entity_type.to_owned()).or_default();
            counts.mismatched += 1;
            for f in fields {
                *counts.fields.entry(f.clone()).or_default() += 1;
            }
        }
        if let Ok(mut recent) = self.recent.lock() {
            recent.push_back(RecentMismatch {
                at: time::format(Utc::now()),
                entity_type: entity_type.to_owned(),
                entity_ids: ids.iter().copied().collect(),
                fields: fields.iter().cloned().collect(),
                diff: truncate_list(diff, RECENT_DIFF_ITEMS),
            });
            while recent.len() > RECENT {
                recent.pop_front();
            }
        }
    }

    pub fn snapshot(&self) -> VerifierSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mode = self.mode.lock().ok().and_then(|m| *m).unwrap_or_default();
        VerifierSnapshot {
            actor: self.actor.snapshot(),
            enabled: mode != VerifyMode::Off,
            mode,
            offered: load(&self.offered),
            queued: load(&self.queued),
            dropped: load(&self.dropped),
            verified: load(&self.verified),
            matched: load(&self.matched),
            changed_since: load(&self.changed_since),
            mismatched: load(&self.mismatched),
            healed: load(&self.healed),
            quarantined: load(&self.quarantined),
            backoffs: load(&self.backoffs),
            by_type: self.by_type_snapshot(),
            recent_mismatches: self
                .recent
                .lock()
                .map(|r| r.iter().rev().cloned().collect())
                .unwrap_or_default(),
        }
    }

    fn by_type_snapshot(&self) -> BTreeMap<String, TypeCountsSnapshot> {
        let Ok(by_type) = self.by_type.lock() else {
            return BTreeMap::new();
        };
        by_type
            .iter()
            .map(|(t, c)| {
                let counts = TypeCountsSnapshot {
                    mismatched: c.mismatched,
                    changed_since: c.changed_since,
                    fields: c.fields.clone(),
                };
                (t.clone(), counts)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn mismatches_are_counted_per_type_and_field_and_the_recent_ones_kept() {
        let stats = VerifierStats::default();
        let fields = BTreeSet::from(["code".to_owned(), "(order)".to_owned()]);
        for i in 0..(RECENT as i64 + 2) {
            let diff = json!([1, 2, 3, 4, 5, 6, 7]);
            stats.count_mismatch("Shot", &BTreeSet::from([i]), &fields, &diff);
        }
        stats.count_changed_since("Shot");
        stats.count_changed_since("Asset");
        let snap = stats.snapshot();
        assert_eq!(snap.mismatched, RECENT as u64 + 2);
        assert_eq!(snap.changed_since, 2);
        assert_eq!(snap.by_type["Shot"].mismatched, RECENT as u64 + 2);
        assert_eq!(snap.by_type["Shot"].fields["code"], RECENT as u64 + 2);
        assert_eq!(snap.by_type["Asset"].changed_since, 1);
        assert_eq!(snap.recent_mismatches.len(), RECENT);
        // Newest first, diffs cut.
        assert_eq!(
            snap.recent_mismatches[0].entity_ids,
            vec![RECENT as i64 + 1]
        );
        assert_eq!(
            snap.recent_mismatches[0].diff,
            json!([1, 2, 3, 4, 5, "... 2 more"])
        );
        assert!(!snap.enabled);
    }
}
