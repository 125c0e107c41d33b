//! What a follower takes from the database: the schema the leader applied, the set of complete
//! types, the rules the leader's calibrator stored, and who the leader is.
//!
//! Followers poll (every election tick) rather than LISTEN: the poll needs no extra connection,
//! survives reconnects without missing a notification, and also sees what a previous leader
//! did before this instance started. Each poll reads everything in one read-only
//! `REPEATABLE READ` transaction, so the schema and the complete set come from the same commit:
//! a type the leader re-planned (fields added, dropped or retyped) and marked incomplete in the
//! same transaction is never seen complete under its new layout, nor under its old one. What
//! remains is the poll's delay: for up to one tick after the leader's DDL commits, a follower
//! still plans reads with the previous schema (a dropped or retyped column then fails the read,
//! which is passed through and counted as `local_error`).
use std::sync::Arc;

use sea_orm::{AccessMode, ConnectionTrait, IsolationLevel, TransactionTrait};
use tracing::{debug, info, warn};

use super::{ClusterState, LEADER_KEY, LeaderRecord};
use crate::actors::schema_loader::{LoadError, SchemaLoaderStats, SchemaSource};
use crate::config::Config;
use crate::db::{Pools, registry, writer::load_complete};
use crate::schema::{AppliedSchema, plan_ddl, select};
use crate::state::CacheState;

/// The registry a follower last looked at: the newest snapshot's id and the applied fields.
type RegistryVersion = (Option<i64>, AppliedSchema);

pub struct Follower {
    config: Arc<Config>,
    pools: Pools,
    cache: Arc<CacheState>,
    loader: Arc<SchemaLoaderStats>,
    seen: Option<RegistryVersion>,
}

impl Follower {
    pub fn new(
        config: Arc<Config>,
        pools: Pools,
        cache: Arc<CacheState>,
        loader: Arc<SchemaLoaderStats>,
    ) -> Follower {
        Follower {
            config,
            pools,
            cache,
            loader,
            seen: None,
        }
    }

    /// One poll: the leader's identity, its schema (when the registry changed), then the
    /// complete types and the calibrated rules, all from one snapshot of the database.
    pub async fn sync(&mut self, cluster: &ClusterState) -> Result<(), LoadError> {
        let tx = self
            .pools
            .reader
            .begin_with_config(
                Some(IsolationLevel::RepeatableRead),
                Some(AccessMode::ReadOnly),
            )
            .await
            .map_err(crate::db::StoreError::from)?;
        cluster.set_leader(leader_record(&tx).await?);
        let applied = registry::load_applied(&tx).await?;
        let snapshot = registry::latest_snapshot(&tx).await?;
        let version = (snapshot.as_ref().map(|s| s.id), applied);
        if self.seen.as_ref() != Some(&version) {
            if let Some(row) = &snapshot {
                self.adopt(&SchemaSource::from_snapshot(row)?, &version.1)?;
            } else {
                debug!("waiting for the leader to apply a schema");
            }
            self.seen = Some(version);
        }
        let complete = load_complete(&tx).await?;
        let rules = crate::db::rules::load_rules(&tx).await?;
        tx.commit().await.map_err(crate::db::StoreError::from)?;
        self.cache.set_complete(complete);
        // The leader's calibrated rules, under this instance's own pins.
        self.cache.set_rules(self.config.calibration.pinned(rules));
        Ok(())
    }

    /// Serves the schema the leader applied if it is the one this instance's rules select
    /// from the same site schema; otherwise keeps the previous one and says why.
    fn adopt(&mut self, src: &SchemaSource, applied: &AppliedSchema) -> Result<(), LoadError> {
        let site = src.parse()?;
        let (cached, report) = select(&site, &self.config.schema.rules())?;
        let plan = plan_ddl(&cached, applied, self.pools.backend);
        if !plan.statements.is_empty() {
            if applied.types.is_empty() {
                debug!("waiting for the leader to apply the schema");
            } else {
                warn!(
                    differences = plan.statements.len(),
                    new_types = ?plan.new_types,
                    changed_types = ?plan.changed_types,
                    "the leader applied a schema other than this instance's selection \
                     (are [schema] include/exclude the same on every instance?); keeping the previous one"
                );
            }
            return Ok(());
        }
        info!(
            types = cached.types.len(),
            "schema applied by the leader adopted"
        );
        self.cache.set_site(Arc::new(site));
        self.cache.set_schema(Arc::new(cached.clone()));
        self.loader.record_load("leader", &cached, &report);
        Ok(())
    }
}

/// The leader as it recorded itself when it took the lead.
pub async fn leader_record<C: ConnectionTrait>(db: &C) -> Result<Option<LeaderRecord>, LoadError> {
    let value = registry::site_info(db, LEADER_KEY).await?;
    Ok(value.and_then(|v| serde_json::from_value(v).ok()))
}
