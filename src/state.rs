//! What every part of the daemon needs to know about the cache right now: the cached schema
//! and which types are complete. Written only by the DbWriter after a commit; read by
//! everyone (the lock is a std `RwLock`, held for a pointer copy and never across `.await`).
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use crate::schema::{CachedSchema, SiteSchema};

#[derive(Clone, Debug, Default)]
pub struct CacheView {
    pub schema: Arc<CachedSchema>,
    /// The whole site's schema (every type and field, cached or not).
    pub site: Arc<SiteSchema>,
    /// Types whose first full scan completed and whose selection has not changed since.
    pub complete: Arc<BTreeSet<String>>,
}

#[derive(Debug, Default)]
pub struct CacheState {
    view: RwLock<CacheView>,
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
        self.view.write().unwrap_or_else(|poisoned| poisoned.into_inner()).site = site;
    }

    pub fn set_complete(&self, complete: BTreeSet<String>) {
        self.view
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .complete = Arc::new(complete);
    }

    pub fn is_complete(&self, entity_type: &str) -> bool {
        self.view().complete.contains(entity_type)
    }
}
