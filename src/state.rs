//! What every part of the daemon needs to know about the cache right now: the cached schema
//! and which types are complete. Written only by the DbWriter after a commit; read by
//! everyone (the lock is a std `RwLock`, held for a pointer copy and never across `.await`).
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use crate::query::rules::{Rule, RuleState, Rules};
use crate::schema::{CachedSchema, SiteSchema};

#[derive(Clone, Debug, Default)]
pub struct CacheView {
    pub schema: Arc<CachedSchema>,
    /// The whole site's schema (every type and field, cached or not).
    pub site: Arc<SiteSchema>,
    /// Types whose first full scan completed and whose selection has not changed since.
    pub complete: Arc<BTreeSet<String>>,
    /// The site's rules as calibrated so far (see [`crate::query::rules`]).
    pub rules: Arc<Rules>,
}

#[derive(Debug, Default)]
pub struct CacheState {
    view: RwLock<CacheView>,
    /// Types with a client write whose write-back has not committed yet (counted per write):
    /// their reads pass through so a client always reads its own writes.
    pending_writes: std::sync::Mutex<std::collections::BTreeMap<String, u32>>,
}

impl CacheState {
    pub fn new() -> Arc<CacheState> {
        Arc::new(CacheState::default())
    }

    /// A consistent snapshot (cheap: two `Arc` clones).
    pub fn view(&self) -> CacheView {
        self.view
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn set_schema(&self, schema: Arc<CachedSchema>) {
        self.view
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .schema = schema;
    }

    pub fn set_site(&self, site: Arc<SiteSchema>) {
        self.view
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .site = site;
    }

    pub fn set_complete(&self, complete: BTreeSet<String>) {
        self.view
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .complete = Arc::new(complete);
    }

    pub fn set_rules(&self, rules: Rules) {
        self.view
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .rules = Arc::new(rules);
    }

    pub fn set_rule(&self, rule: Rule, state: RuleState) {
        let mut view = self
            .view
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::make_mut(&mut view.rules).set(rule, state);
    }

    pub fn add_pending_write(&self, entity_type: &str) {
        if let Ok(mut pending) = self.pending_writes.lock() {
            *pending.entry(entity_type.to_owned()).or_default() += 1;
        }
    }

    pub fn finish_pending_write(&self, entity_type: &str) {
        if let Ok(mut pending) = self.pending_writes.lock()
            && let Some(n) = pending.get_mut(entity_type)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                pending.remove(entity_type);
            }
        }
    }

    pub fn has_pending_write(&self, entity_type: &str) -> bool {
        self.pending_writes
            .lock()
            .is_ok_and(|p| p.contains_key(entity_type))
    }

    pub fn is_complete(&self, entity_type: &str) -> bool {
        self.view().complete.contains(entity_type)
    }
}
