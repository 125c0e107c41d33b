//! Id-set reconciliation: rows the cache holds active that the site no longer has active.
use std::collections::BTreeSet;

use sea_orm::DatabaseConnection;
use serde_json::{Value as Json, json};
use tracing::info;

use super::ScanError;
use super::scan::{ScanOptions, project_condition};
use crate::db::StoreError;
use crate::db::writer::{Apply, DbWriterHandle, EntityStatePatch, WriteOp};
use crate::schema::CachedEntity;
use crate::upstream::UpstreamClient;
use crate::upstream::fetch::{self, Condition, ReadArgs};
use crate::upstream::refresh::{Gone, refresh};

/// Compares the ids of `entity`'s active rows with the site's active ids and corrects the rows
/// the site no longer has active: a script that generates no events can retire an entity
/// without moving its `updated_at`, so neither the event log nor incremental scans see it.
/// The differing rows are read whole (retired ones come back retired); ids the site does not
/// have at all are retired. Returns how many rows were corrected.
pub async fn reconcile_type(
    upstream: &UpstreamClient,
    writer: &DbWriterHandle,
    reader: &DatabaseConnection,
    entity: &CachedEntity,
    opts: &ScanOptions,
) -> Result<u64, ScanError> {
    let extra: Vec<Condition> = project_condition(entity, &opts.projects)
        .into_iter()
        .collect();
    let mut site_ids = BTreeSet::new();
    let mut last_id = 0;
    loop {
        let args = ReadArgs::new(&entity.name)
            .filter("id", "greater_than", json!([last_id]))
            .conditions(&extra)
            .page(opts.page_size, 1);
        let records = fetch::read(upstream, args).await?;
        for id in records
            .iter()
            .filter_map(|r| r.get("id").and_then(Json::as_i64))
        {
            site_ids.insert(id);
            last_id = std::cmp::max(last_id, id);
        }
        if records.len() < opts.page_size as usize {
            break;
        }
    }
    let stale: BTreeSet<i64> = crate::db::reader::rows::active_ids(reader, entity)
        .await
        .map_err(StoreError::from)?
        .into_iter()
        .filter(|id| !site_ids.contains(id))
        .collect();
    if stale.is_empty() {
        return Ok(0);
    }
    let ops = refresh(upstream, entity, &stale)
        .await?
        .ops(None, Gone::Retire);
    writer
        .apply(Apply {
            ops,
            checkpoint: None,
        })
        .await?;
    info!(entity_type = %entity.name, rows = stale.len(), "reconciled active ids with the site");
    Ok(stale.len() as u64)
}

/// Marks `entity_type` incomplete and forgets its full-scan cursor (restart from scratch).
pub async fn reset_full_scan(writer: &DbWriterHandle, entity_type: &str) -> Result<(), StoreError> {
    writer
        .apply(Apply {
            ops: vec![WriteOp::EntityState {
                entity_type: entity_type.to_owned(),
                patch: EntityStatePatch {
                    complete: Some(false),
                    full_scan_cursor: Some(None),
                    full_scan_started_at: Some(None),
                    ..Default::default()
                },
            }],
            checkpoint: None,
        })
        .await
        .map(|_| ())
}
