//! Row reads of the cached tables outside the read path: the stored links of a row (the
//! write-back), the active ids of a type (the scanner's reconciliation), and whole rows for the
//! verifier. Values are decoded by field kind with [`super::decode`].
use std::collections::{BTreeMap, BTreeSet};

use sea_orm::sea_query::{Alias, Asterisk, Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, QueryResult, Statement};
use serde_json::{Value as Json, json};

use super::decode;
use crate::schema::{CachedEntity, ColumnLayout};

/// A cached row: `_active` and every cached field by name, links as `{type, id}` (no name).
pub type CachedRow = BTreeMap<String, Json>;

/// The current links of `id`'s link fields `fields` (entity and multi-entity), as `(type, id)`.
pub async fn stored_links(
    db: &DatabaseConnection,
    entity: &CachedEntity,
    id: i64,
    fields: &[String],
) -> Result<Vec<(String, i64)>, DbErr> {
    let mut links = Vec::new();
    for name in fields {
        let Some(field) = entity.fields.get(name) else {
            continue;
        };
        let select = match &field.layout {
            ColumnLayout::Entity {
                type_column,
                id_column,
            } => Query::select()
                .expr_as(Expr::col(Alias::new(type_column)), Alias::new("t"))
                .expr_as(Expr::col(Alias::new(id_column)), Alias::new("i"))
                .from(Alias::new(&entity.table))
                .and_where(Expr::col(Alias::new("id")).eq(id))
                .to_owned(),
            ColumnLayout::MultiEntity { table } => Query::select()
                .expr_as(Expr::col(Alias::new("child_type")), Alias::new("t"))
                .expr_as(Expr::col(Alias::new("child_id")), Alias::new("i"))
                .from(Alias::new(table))
                .and_where(Expr::col(Alias::new("parent_id")).eq(id))
                .to_owned(),
            ColumnLayout::Scalar { .. } => continue,
        };
        for row in db.query_all(&select).await? {
            let t = decode::get_named::<String>(&row, "t")?;
            let i = decode::get_named::<i64>(&row, "i")?;
            if let (Some(t), Some(i)) = (t, i) {
                links.push((t, i));
            }
        }
    }
    Ok(links)
}

/// The ids of `entity`'s active rows.
pub async fn active_ids(
    db: &DatabaseConnection,
    entity: &CachedEntity,
) -> Result<BTreeSet<i64>, DbErr> {
    let select = Query::select()
        .column(Alias::new("id"))
        .from(Alias::new(&entity.table))
        .and_where(Expr::col(Alias::new("_active")).eq(true))
        .to_owned();
    let mut ids = BTreeSet::new();
    for row in db.query_all(&select).await? {
        ids.extend(decode::get_named::<i64>(&row, "id")?);
    }
    Ok(ids)
}

/// Up to `n` (at least 1) random ids of `entity`'s rows, sorted.
pub async fn random_ids(
    db: &DatabaseConnection,
    entity: &CachedEntity,
    n: u64,
) -> Result<Vec<i64>, DbErr> {
    let sql = format!(
        "SELECT id FROM \"{}\" ORDER BY RANDOM() LIMIT {}",
        entity.table.replace('"', "\"\""),
        Ord::max(n, 1)
    );
    let statement = Statement::from_string(db.get_database_backend(), sql);
    let mut ids = Vec::new();
    for row in db.query_all_raw(statement).await? {
        ids.extend(decode::get_named::<i64>(&row, "id")?);
    }
    ids.sort_unstable();
    Ok(ids)
}

/// The cached rows `ids` of `entity` (multi-entity links in position order).
pub async fn cached_rows(
    db: &DatabaseConnection,
    entity: &CachedEntity,
    ids: &[i64],
) -> Result<BTreeMap<i64, CachedRow>, DbErr> {
    let mut out = BTreeMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let select = Query::select()
        .column(Asterisk)
        .from(Alias::new(&entity.table))
        .and_where(Expr::col(Alias::new("id")).is_in(ids.iter().copied()))
        .to_owned();
    let rows = db.query_all(&select).await?;
    let names = rows
        .first()
        .map(QueryResult::column_names)
        .unwrap_or_default();
    for row in rows {
        let Some(id) = decode::get_named::<i64>(&row, "id")? else {
            continue;
        };
        let mut fields = CachedRow::new();
        let checkbox = crate::schema::FieldKind::Checkbox;
        let active = decode::scalar_named(&row, &names, checkbox, "_active")?;
        fields.insert("_active".to_owned(), active);
        for field in entity.fields.values() {
            let value = match &field.layout {
                ColumnLayout::Scalar { column, .. } => {
                    decode::scalar_named(&row, &names, field.kind, column)?
                }
                ColumnLayout::Entity {
                    type_column,
                    id_column,
                } => match decode::get_named::<String>(&row, type_column)? {
                    Some(t) => json!({"type": t, "id": decode::get_named::<i64>(&row, id_column)?}),
                    None => Json::Null,
                },
                ColumnLayout::MultiEntity { .. } => Json::Array(Vec::new()),
            };
            fields.insert(field.name.clone(), value);
        }
        out.insert(id, fields);
    }
    for field in entity.fields.values() {
        let ColumnLayout::MultiEntity { table } = &field.layout else {
            continue;
        };
        let select = Query::select()
            .columns([
                Alias::new("parent_id"),
                Alias::new("child_type"),
                Alias::new("child_id"),
            ])
            .from(Alias::new(table))
            .and_where(Expr::col(Alias::new("parent_id")).is_in(ids.iter().copied()))
            .order_by(Alias::new("parent_id"), Order::Asc)
            .order_by(Alias::new("position"), Order::Asc)
            .to_owned();
        for link in db.query_all(&select).await? {
            let parent = decode::get_named::<i64>(&link, "parent_id")?;
            let t = decode::get_named::<String>(&link, "child_type")?;
            let i = decode::get_named::<i64>(&link, "child_id")?;
            if let Some(Json::Array(list)) = parent
                .and_then(|p| out.get_mut(&p))
                .and_then(|r| r.get_mut(&field.name))
            {
                list.push(json!({"type": t, "id": i}));
            }
        }
    }
    Ok(out)
}
