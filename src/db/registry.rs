//! Reads of the fixed tables (on any connection; the daemon uses the reader pool).
use std::collections::BTreeMap;

use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder};

use super::StoreError;
use super::entities::{
    entity_state, event_cursor, schema_field, schema_snapshot, site_info, uncached_field,
};
use crate::schema::{AppliedField, AppliedSchema, UncachedMark};

/// What the schema registry says the database has.
pub async fn load_applied<C: ConnectionTrait>(db: &C) -> Result<AppliedSchema, StoreError> {
    let mut types: BTreeMap<String, BTreeMap<String, AppliedField>> = BTreeMap::new();
    for row in schema_field::Entity::find().all(db).await? {
        types.entry(row.entity_type.clone()).or_default().insert(
            row.field_name.clone(),
            AppliedField {
                entity_type: row.entity_type,
                field_name: row.field_name,
                data_type: row.data_type,
                layout_signature: row.layout_signature,
            },
        );
    }
    Ok(AppliedSchema { types })
}

/// The fields left uncached by a value the cache could not store (`sgcache_uncached_field`).
pub async fn uncached_marks<C: ConnectionTrait>(db: &C) -> Result<Vec<UncachedMark>, StoreError> {
    let rows = uncached_field::Entity::find().all(db).await?;
    Ok(rows
        .into_iter()
        .map(|r| UncachedMark {
            entity_type: r.entity_type,
            field: r.field_name,
            data_type: r.data_type,
            layout_signature: r.layout_signature,
            value_kind: r.value_kind,
            problem: r.problem,
            since: r.since,
        })
        .collect())
}

pub async fn entity_states<C: ConnectionTrait>(
    db: &C,
) -> Result<Vec<entity_state::Model>, StoreError> {
    Ok(entity_state::Entity::find()
        .order_by_asc(entity_state::Column::EntityType)
        .all(db)
        .await?)
}

pub async fn latest_snapshot<C: ConnectionTrait>(
    db: &C,
) -> Result<Option<schema_snapshot::Model>, StoreError> {
    Ok(schema_snapshot::Entity::find()
        .order_by_desc(schema_snapshot::Column::Id)
        .one(db)
        .await?)
}

pub async fn event_cursor<C: ConnectionTrait>(
    db: &C,
) -> Result<Option<event_cursor::Model>, StoreError> {
    Ok(event_cursor::Entity::find_by_id("events".to_owned())
        .one(db)
        .await?)
}

pub async fn site_info<C: ConnectionTrait>(
    db: &C,
    key: &str,
) -> Result<Option<serde_json::Value>, StoreError> {
    let row = site_info::Entity::find_by_id(key.to_owned())
        .one(db)
        .await?;
    Ok(row.and_then(|r| serde_json::from_str(&r.value).ok()))
}
