//! One [`Apply`]: its ops in order, then its checkpoint, inside the caller's transaction.
//! Entity rows are written by [`super::upsert`]; the fixed bookkeeping tables here.
use std::borrow::Cow;

use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ConnectionTrait, DatabaseTransaction, EntityTrait,
};
use serde_json::Value as Json;

use super::StoreError;
use super::actor::{Apply, ApplyOutcome, Checkpoint, EntityStatePatch, WriteOp};
use super::upsert::{UpsertSpec, change_links, row_exists, upsert};
use crate::db::entities::{entity_state, event_cursor, site_info, uncached_field, verification};
use crate::schema::{CachedEntity, CachedSchema, ColumnLayout, UncachedMark};
use crate::time;

/// Applies `msg`'s ops and checkpoint in `tx`; the first failing op fails the whole message.
pub(super) async fn apply_ops(
    tx: &DatabaseTransaction,
    schema: &CachedSchema,
    msg: &Apply,
) -> Result<ApplyOutcome, StoreError> {
    let mut outcome = ApplyOutcome::default();
    let now = time::now();
    for op in &msg.ops {
        apply_op(tx, schema, op, &now, &mut outcome).await?;
    }
    if let Some(checkpoint) = &msg.checkpoint {
        move_checkpoint(tx, checkpoint, &now).await?;
    }
    Ok(outcome)
}

async fn apply_op(
    tx: &DatabaseTransaction,
    schema: &CachedSchema,
    op: &WriteOp,
    now: &str,
    outcome: &mut ApplyOutcome,
) -> Result<(), StoreError> {
    match op {
        WriteOp::Upsert {
            entity_type,
            records,
            mode,
            active,
            event_id,
        } => {
            let spec = UpsertSpec {
                mode: *mode,
                active: *active,
                event_id: *event_id,
                now,
            };
            let entity = marked_entity(cached_entity(schema, entity_type)?, &outcome.uncached);
            let before = outcome.uncached.len();
            upsert(tx, &entity, records, spec, outcome).await?;
            store_marks(tx, &outcome.uncached[before..]).await
        }
        WriteOp::SetActive {
            entity_type,
            id,
            active,
            event_id,
        } => {
            let entity = cached_entity(schema, entity_type)?;
            set_active(tx, entity, *id, *active, *event_id, now, outcome).await
        }
        WriteOp::Links {
            entity_type,
            id,
            field,
            added,
            removed,
        } => {
            let entity = cached_entity(schema, entity_type)?;
            let table = multi_entity_table(entity, field)?;
            if !row_exists(tx, entity, *id).await? {
                outcome.missing.push((entity_type.clone(), *id));
                return Ok(());
            }
            outcome.links_written += change_links(tx, table, *id, added, removed).await?;
            Ok(())
        }
        WriteOp::EntityState { entity_type, patch } => {
            patch_entity_state(tx, entity_type, patch, now).await
        }
        WriteOp::ExpectSchema {
            entity_type,
            signature,
        } => expect_schema(schema, entity_type, signature),
        WriteOp::SiteInfo { key, value } => store_site_info(tx, key, value, now).await,
        WriteOp::Rule { rule, state } => crate::db::rules::store_rule(tx, *rule, state, now).await,
        WriteOp::Analyze { entity_type } => analyze(tx, cached_entity(schema, entity_type)?).await,
        WriteOp::Verification {
            entity_type,
            outcome: verdict,
            request,
            diff,
            entity_ids,
        } => store_verification(tx, now, entity_type, verdict, request, diff, entity_ids).await,
    }
}

/// `ANALYZE` of `entity`'s table and association tables (allowed inside a transaction on both
/// backends).
async fn analyze(tx: &DatabaseTransaction, entity: &CachedEntity) -> Result<(), StoreError> {
    let backend = tx.get_database_backend();
    for table in std::iter::once(entity.table.as_str()).chain(entity.association_tables()) {
        let sql = format!("ANALYZE {}", crate::query::sql::ident(table));
        tx.execute_raw(sea_orm::Statement::from_string(backend, sql))
            .await?;
    }
    Ok(())
}

/// One verifier finding, a row of the verification table.
async fn store_verification(
    tx: &DatabaseTransaction,
    now: &str,
    entity_type: &str,
    verdict: &str,
    request: &Json,
    diff: &Json,
    entity_ids: &[i64],
) -> Result<(), StoreError> {
    verification::ActiveModel {
        created_at: Set(now.to_owned()),
        entity_type: Set(entity_type.to_owned()),
        outcome: Set(verdict.to_owned()),
        request: Set(request.to_string()),
        diff: Set(diff.to_string()),
        entity_ids: Set(Json::from(entity_ids.to_vec()).to_string()),
        ..Default::default()
    }
    .insert(tx)
    .await?;
    Ok(())
}

pub(super) fn cached_entity<'a>(
    schema: &'a CachedSchema,
    entity_type: &str,
) -> Result<&'a CachedEntity, StoreError> {
    schema
        .types
        .get(entity_type)
        .ok_or_else(|| StoreError::Schema(format!("{entity_type} is not a cached type")))
}

/// `entity` without the fields marked uncached by earlier ops of the same message.
fn marked_entity<'a>(entity: &'a CachedEntity, marks: &[UncachedMark]) -> Cow<'a, CachedEntity> {
    let name = entity.name.as_str();
    let mut entity = Cow::Borrowed(entity);
    for mark in marks.iter().filter(|m| m.entity_type == name) {
        // A mark made in this message always applies to the schema it was made from.
        let _ = entity.to_mut().apply_mark(mark.clone());
    }
    entity
}

/// Records new marks in `sgcache_uncached_field` (a restart keeps them).
async fn store_marks(tx: &DatabaseTransaction, marks: &[UncachedMark]) -> Result<(), StoreError> {
    for mark in marks {
        let row = uncached_field::ActiveModel {
            entity_type: Set(mark.entity_type.clone()),
            field_name: Set(mark.field.clone()),
            data_type: Set(mark.data_type.clone()),
            layout_signature: Set(mark.layout_signature.clone()),
            value_kind: Set(mark.value_kind.clone()),
            problem: Set(mark.problem.clone()),
            since: Set(mark.since.clone()),
        };
        uncached_field::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([
                    uncached_field::Column::EntityType,
                    uncached_field::Column::FieldName,
                ])
                .update_columns([
                    uncached_field::Column::DataType,
                    uncached_field::Column::LayoutSignature,
                    uncached_field::Column::ValueKind,
                    uncached_field::Column::Problem,
                    uncached_field::Column::Since,
                ])
                .to_owned(),
            )
            .exec(tx)
            .await?;
    }
    Ok(())
}

/// The association table of `entity.field`, which must be a cached multi-entity field.
fn multi_entity_table<'a>(entity: &'a CachedEntity, field: &str) -> Result<&'a str, StoreError> {
    match entity.fields.get(field).map(|f| &f.layout) {
        Some(ColumnLayout::MultiEntity { table }) => Ok(table),
        _ => Err(StoreError::InvalidValue {
            entity_type: entity.name.clone(),
            field: field.to_owned(),
            problem: "not a cached multi-entity field".to_owned(),
        }),
    }
}

/// Fails unless `entity_type`'s cached field set still has `signature`.
fn expect_schema(
    schema: &CachedSchema,
    entity_type: &str,
    signature: &str,
) -> Result<(), StoreError> {
    match schema.types.get(entity_type).map(CachedEntity::signature) {
        Some(current) if current == signature => Ok(()),
        _ => Err(StoreError::SchemaChanged(entity_type.to_owned())),
    }
}

/// Retires or revives one row.
async fn set_active(
    tx: &DatabaseTransaction,
    entity: &CachedEntity,
    id: i64,
    active: bool,
    event_id: Option<i64>,
    now: &str,
    outcome: &mut ApplyOutcome,
) -> Result<(), StoreError> {
    let mut update = Query::update();
    update
        .table(Alias::new(&entity.table))
        .value(Alias::new("_active"), active)
        .value(Alias::new("_cache_updated_at"), now.to_owned())
        .and_where(Expr::col(Alias::new("id")).eq(id));
    if let Some(event_id) = event_id {
        update.value(Alias::new("_last_log_event_id"), event_id);
    }
    let result = tx.execute(&update).await?;
    if result.rows_affected() == 0 {
        outcome.missing.push((entity.name.clone(), id));
    } else {
        outcome.rows_written += 1;
    }
    Ok(())
}

async fn patch_entity_state(
    tx: &DatabaseTransaction,
    entity_type: &str,
    patch: &EntityStatePatch,
    now: &str,
) -> Result<(), StoreError> {
    let Some(old) = entity_state::Entity::find_by_id(entity_type.to_owned())
        .one(tx)
        .await?
    else {
        return Err(StoreError::Schema(format!(
            "{entity_type} is not a cached type"
        )));
    };
    let mut row: entity_state::ActiveModel = old.into();
    if let Some(v) = patch.complete {
        row.complete = Set(v);
    }
    if let Some(v) = &patch.full_scan_cursor {
        row.full_scan_cursor = Set(*v);
    }
    if let Some(v) = &patch.full_scan_started_at {
        row.full_scan_started_at = Set(v.clone());
    }
    if let Some(v) = &patch.last_full_scan_at {
        row.last_full_scan_at = Set(v.clone());
    }
    if let Some(v) = &patch.scan_checkpoint {
        row.scan_checkpoint = Set(v.clone());
    }
    if let Some(v) = &patch.last_scan_at {
        row.last_scan_at = Set(v.clone());
    }
    row.updated_at = Set(now.to_owned());
    row.update(tx).await?;
    Ok(())
}

async fn store_site_info(
    tx: &DatabaseTransaction,
    key: &str,
    value: &Json,
    now: &str,
) -> Result<(), StoreError> {
    let row = site_info::ActiveModel {
        key: Set(key.to_owned()),
        value: Set(value.to_string()),
        fetched_at: Set(now.to_owned()),
    };
    site_info::Entity::insert(row)
        .on_conflict(
            OnConflict::column(site_info::Column::Key)
                .update_columns([site_info::Column::Value, site_info::Column::FetchedAt])
                .to_owned(),
        )
        .exec(tx)
        .await?;
    Ok(())
}

/// Moves the checkpoint in the transaction of the changes it covers.
async fn move_checkpoint(
    tx: &DatabaseTransaction,
    checkpoint: &Checkpoint,
    now: &str,
) -> Result<(), StoreError> {
    let Checkpoint::Events {
        last_event_id,
        open_gaps,
    } = checkpoint;
    let row = event_cursor::ActiveModel {
        name: Set("events".to_owned()),
        last_event_id: Set(*last_event_id),
        open_gaps: Set(open_gaps.to_string()),
        updated_at: Set(now.to_owned()),
    };
    event_cursor::Entity::insert(row)
        .on_conflict(
            OnConflict::column(event_cursor::Column::Name)
                .update_columns([
                    event_cursor::Column::LastEventId,
                    event_cursor::Column::OpenGaps,
                    event_cursor::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec(tx)
        .await?;
    Ok(())
}
