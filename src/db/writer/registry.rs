//! Schema changes: the DDL of a [`DdlPlan`], the schema registry (`sgcache_schema_field`)
//! mirroring the columns that now exist, each type's scan state (`sgcache_entity_state`)
//! invalidated where its fields changed, and the newest schema snapshots.
use std::collections::{BTreeSet, HashMap};

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction,
    DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement,
};
use tracing::debug;

use super::StoreError;
use super::actor::{ApplySchema, NewSnapshot};
use crate::db::entities::{entity_state, schema_field, schema_snapshot, uncached_field};
use crate::schema::{Backend, CachedEntity, CachedSchema, DdlPlan};
use crate::time;

/// Schema snapshots kept in `sgcache_schema_snapshot`.
const SNAPSHOTS_KEPT: u64 = 5;

pub(super) fn db_backend(backend: Backend) -> DbBackend {
    match backend {
        Backend::Sqlite => DbBackend::Sqlite,
        Backend::Postgres => DbBackend::Postgres,
    }
}

/// Types that are cached and complete, from `sgcache_entity_state`.
pub async fn load_complete<C: ConnectionTrait>(db: &C) -> Result<BTreeSet<String>, StoreError> {
    let rows = entity_state::Entity::find()
        .filter(entity_state::Column::Cached.eq(true))
        .filter(entity_state::Column::Complete.eq(true))
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|r| r.entity_type).collect())
}

/// Applies `msg` inside `tx`: DDL, registry, entity states, snapshot, and the fields left
/// uncached; returns the schema to serve (`msg.desired` without them).
pub(super) async fn apply_schema(
    tx: &DatabaseTransaction,
    backend: Backend,
    msg: &ApplySchema,
) -> Result<CachedSchema, StoreError> {
    let db_backend = db_backend(backend);
    let existing = if msg.plan.ensure.is_empty() {
        BTreeSet::new()
    } else {
        index_names(tx, backend).await?
    };
    let missing = msg
        .plan
        .ensure
        .iter()
        .filter(|i| !existing.contains(&i.name));
    for sql in msg.plan.statements.iter().chain(missing.map(|i| &i.sql)) {
        debug!(sql = %sql, "ddl");
        tx.execute_raw(Statement::from_string(db_backend, sql.clone()))
            .await?;
    }
    let now = time::now();
    rewrite_registry(tx, &msg.plan, &msg.desired, &now).await?;
    update_entity_states(tx, &msg.plan, &msg.desired, &now).await?;
    if let Some(snapshot) = &msg.snapshot {
        record_snapshot(tx, snapshot, &now).await?;
    }
    served_schema(tx, &msg.desired).await
}

/// The names of the indexes in the database's schema.
async fn index_names(
    tx: &DatabaseTransaction,
    backend: Backend,
) -> Result<BTreeSet<String>, StoreError> {
    let sql = match backend {
        Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'index'",
        Backend::Postgres => {
            "SELECT indexname AS name FROM pg_indexes WHERE schemaname = current_schema()"
        }
    };
    let rows = tx
        .query_all_raw(Statement::from_string(db_backend(backend), sql))
        .await?;
    rows.iter()
        .map(|r| r.try_get::<String>("", "name").map_err(Into::into))
        .collect()
}

/// `desired` without the fields the stored marks leave uncached; marks that no longer apply
/// (the site changed the field, or it is not selected any more) are forgotten.
async fn served_schema(
    tx: &DatabaseTransaction,
    desired: &CachedSchema,
) -> Result<CachedSchema, StoreError> {
    let marks = crate::db::registry::uncached_marks(tx).await?;
    let mut served = desired.clone();
    for stale in served.apply_marks(marks) {
        debug!(entity_type = %stale.entity_type, field = %stale.field, "uncached mark cleared");
        uncached_field::Entity::delete_by_id((stale.entity_type, stale.field))
            .exec(tx)
            .await?;
    }
    Ok(served)
}

/// The registry mirrors the columns that now exist: rewrites the rows of every desired type,
/// and forgets the dropped fields.
async fn rewrite_registry(
    tx: &DatabaseTransaction,
    plan: &DdlPlan,
    desired: &CachedSchema,
    now: &str,
) -> Result<(), StoreError> {
    let mut touched: BTreeSet<&str> = desired.types.keys().map(String::as_str).collect();
    touched.extend(plan.dropped.iter().map(|(t, _)| t.as_str()));
    schema_field::Entity::delete_many()
        .filter(schema_field::Column::EntityType.is_in(touched.iter().copied()))
        .exec(tx)
        .await?;
    let rows = registry_rows(desired, now);
    for chunk in rows.chunks(1000) {
        schema_field::Entity::insert_many(chunk.to_vec())
            .exec(tx)
            .await?;
    }
    Ok(())
}

/// One registry row per cached field.
fn registry_rows(desired: &CachedSchema, now: &str) -> Vec<schema_field::ActiveModel> {
    let mut rows = Vec::new();
    for entity in desired.types.values() {
        for field in entity.fields.values() {
            rows.push(schema_field::ActiveModel {
                entity_type: Set(entity.name.clone()),
                field_name: Set(field.name.clone()),
                data_type: Set(field.data_type.clone()),
                layout_signature: Set(field.layout_signature()),
                applied_at: Set(now.to_owned()),
            });
        }
    }
    rows
}

/// Every desired type gets a cached state row; a type that was not cached, or whose fields
/// changed, must be scanned again in full; types no longer desired stop being cached.
async fn update_entity_states(
    tx: &DatabaseTransaction,
    plan: &DdlPlan,
    desired: &CachedSchema,
    now: &str,
) -> Result<(), StoreError> {
    let existing: HashMap<String, entity_state::Model> = entity_state::Entity::find()
        .all(tx)
        .await?
        .into_iter()
        .map(|m| (m.entity_type.clone(), m))
        .collect();
    for entity in desired.types.values() {
        let invalidated =
            plan.new_types.contains(&entity.name) || plan.changed_types.contains(&entity.name);
        match existing.get(&entity.name) {
            None => new_entity_state(entity, now).insert(tx).await?,
            Some(old) => {
                cached_entity_state(entity, old, invalidated, now)
                    .update(tx)
                    .await?
            }
        };
    }
    for (name, old) in &existing {
        if old.cached && !desired.types.contains_key(name) {
            let mut row: entity_state::ActiveModel = old.clone().into();
            row.cached = Set(false);
            row.complete = Set(false);
            row.updated_at = Set(now.to_owned());
            row.update(tx).await?;
        }
    }
    Ok(())
}

fn new_entity_state(entity: &CachedEntity, now: &str) -> entity_state::ActiveModel {
    entity_state::ActiveModel {
        entity_type: Set(entity.name.clone()),
        table_name: Set(entity.table.clone()),
        cached: Set(true),
        complete: Set(false),
        selection_signature: Set(entity.signature()),
        full_scan_cursor: Set(None),
        full_scan_started_at: Set(None),
        last_full_scan_at: Set(None),
        scan_checkpoint: Set(None),
        last_scan_at: Set(None),
        updated_at: Set(now.to_owned()),
    }
}

/// `old` updated for a type that is (still) cached.
fn cached_entity_state(
    entity: &CachedEntity,
    old: &entity_state::Model,
    invalidated: bool,
    now: &str,
) -> entity_state::ActiveModel {
    let signature = entity.signature();
    let mut row: entity_state::ActiveModel = old.clone().into();
    row.cached = Set(true);
    row.table_name = Set(entity.table.clone());
    // A type that was not cached, or whose fields changed, must be scanned again in full
    // before its reads are answered locally.
    if invalidated || !old.cached || old.selection_signature != signature {
        row.complete = Set(false);
        row.full_scan_cursor = Set(None);
        row.full_scan_started_at = Set(None);
    }
    row.selection_signature = Set(signature);
    row.updated_at = Set(now.to_owned());
    row
}

/// Records the schema the site sent, keeping the newest few snapshots only.
async fn record_snapshot(
    tx: &DatabaseTransaction,
    snapshot: &NewSnapshot,
    now: &str,
) -> Result<(), StoreError> {
    schema_snapshot::ActiveModel {
        fetched_at: Set(now.to_owned()),
        source: Set(snapshot.source.clone()),
        digest: Set(snapshot.digest.clone()),
        schema_read: Set(snapshot.schema_read.clone()),
        schema_entity_read: Set(snapshot.schema_entity_read.clone()),
        ..Default::default()
    }
    .insert(tx)
    .await?;
    let keep: Vec<i64> = schema_snapshot::Entity::find()
        .order_by_desc(schema_snapshot::Column::Id)
        .limit(SNAPSHOTS_KEPT)
        .all(tx)
        .await?
        .into_iter()
        .map(|m| m.id)
        .collect();
    schema_snapshot::Entity::delete_many()
        .filter(schema_snapshot::Column::Id.is_not_in(keep))
        .exec(tx)
        .await?;
    Ok(())
}
