//! Entity rows and their associations: wire records turned into columns and link lists
//! ([`prepare`]), newer-wins filtering against the stored rows, the multi-row upsert SQL, and
//! the association-table changes (a record's list replaces the stored set; event-log link
//! changes add and remove single links).
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, OnConflict, Query, Value};
use sea_orm::{ConnectionTrait, DatabaseTransaction};
use serde_json::{Map, Value as Json};

use super::StoreError;
use super::actor::{ApplyOutcome, UpsertMode};
use crate::schema::{CachedEntity, CachedField, ColumnLayout, UncachedMark, values};

/// Rows per multi-row INSERT are limited by the bind-parameter cap (32,766 on SQLite).
const MAX_BIND_PARAMS: usize = 30_000;
/// Ids per `IN (...)` lookup.
const ID_CHUNK: usize = 500;

/// One record turned into columns and link lists.
#[derive(Debug, PartialEq)]
pub(super) struct PreparedRow {
    pub id: i64,
    pub updated_at: Option<String>,
    pub columns: Vec<(String, Value)>,
    /// `(association table, links in the record's order)`.
    pub links: Vec<(String, Vec<(String, i64)>)>,
}

/// One association row: `(parent_id, child_type, child_id, position)`.
type LinkRow = (i64, String, i64, i64);

/// How the rows of one upsert are written (the op's fields other than the records).
#[derive(Clone, Copy, Debug)]
pub(super) struct UpsertSpec<'a> {
    pub mode: UpsertMode,
    pub active: Option<bool>,
    pub event_id: Option<i64>,
    pub now: &'a str,
}

/// The stored `(updated_at, _last_log_event_id)` of a row.
type StoredVersion = (Option<String>, Option<i64>);

fn invalid(entity: &CachedEntity, field: &str, problem: impl ToString) -> StoreError {
    StoreError::InvalidValue {
        entity_type: entity.name.clone(),
        field: field.to_owned(),
        problem: problem.to_string(),
    }
}

/// Turns a wire record into columns and link lists. Fields the cache does not keep (and
/// deep `a.B.c` keys) are ignored; a value of the wrong shape is an error.
pub(super) fn prepare(
    entity: &CachedEntity,
    record: &Map<String, Json>,
) -> Result<PreparedRow, StoreError> {
    let id = record
        .get("id")
        .and_then(Json::as_i64)
        .ok_or_else(|| invalid(entity, "id", "missing or not an integer"))?;
    let mut row = PreparedRow {
        id,
        updated_at: None,
        columns: Vec::new(),
        links: Vec::new(),
    };
    for (name, value) in record {
        if name == "id" || name == "type" {
            continue;
        }
        let Some(field) = entity.fields.get(name) else {
            continue;
        };
        push_field(entity, field, value, &mut row)?;
    }
    row.updated_at = record
        .get("updated_at")
        .and_then(Json::as_str)
        .map(str::to_owned);
    Ok(row)
}

fn push_field(
    entity: &CachedEntity,
    field: &CachedField,
    value: &Json,
    row: &mut PreparedRow,
) -> Result<(), StoreError> {
    match &field.layout {
        ColumnLayout::Scalar { column, .. } => {
            let v =
                values::scalar_value(field, value).map_err(|e| invalid(entity, &field.name, e))?;
            row.columns.push((column.clone(), v));
        }
        ColumnLayout::Entity {
            type_column,
            id_column,
        } => {
            let link = values::entity_value(value).map_err(|e| invalid(entity, &field.name, e))?;
            let (t, i) = match link {
                Some((t, i)) => (Some(t), Some(i)),
                None => (None, None),
            };
            row.columns.push((type_column.clone(), Value::String(t)));
            row.columns.push((id_column.clone(), Value::BigInt(i)));
        }
        ColumnLayout::MultiEntity { table } => {
            let links =
                values::multi_entity_value(value).map_err(|e| invalid(entity, &field.name, e))?;
            row.links.push((table.clone(), links));
        }
    }
    Ok(())
}

/// Prepares every record; a value the cache cannot store in a field that may be left
/// uncached ([`UncachedMark::for_value`]) marks that field (pushed to `marks`) and the records
/// are prepared again without it. Other bad values reject the records.
fn prepare_marking<'a>(
    entity: &'a CachedEntity,
    records: &[Map<String, Json>],
    now: &str,
    marks: &mut Vec<UncachedMark>,
) -> Result<(Cow<'a, CachedEntity>, Vec<PreparedRow>), StoreError> {
    let mut entity = Cow::Borrowed(entity);
    'records: loop {
        let mut rows = Vec::with_capacity(records.len());
        for record in records {
            match prepare(&entity, record) {
                Ok(row) => rows.push(row),
                Err(err) => {
                    let StoreError::InvalidValue { field, problem, .. } = &err else {
                        return Err(err);
                    };
                    let value = record.get(field);
                    let Some(mark) = UncachedMark::for_value(&entity, field, value, problem, now)
                    else {
                        return Err(err);
                    };
                    marks.push(mark.clone());
                    if entity.to_mut().apply_mark(mark).is_some() {
                        return Err(err);
                    }
                    continue 'records;
                }
            }
        }
        return Ok((entity, rows));
    }
}

/// Newer wins: drops the rows the stored rows are newer than (by `updated_at`, or by the
/// event that last changed them) and, for [`UpsertMode::UpdateOnly`], the rows the cache does
/// not have; both are counted in `outcome`.
fn keep_newer(
    entity: &CachedEntity,
    prepared: Vec<PreparedRow>,
    existing: &HashMap<i64, StoredVersion>,
    spec: UpsertSpec<'_>,
    outcome: &mut ApplyOutcome,
) -> Vec<PreparedRow> {
    let mut rows = Vec::with_capacity(prepared.len());
    for row in prepared {
        match existing.get(&row.id) {
            Some((stored_updated_at, stored_event)) => {
                let older = matches!((&row.updated_at, stored_updated_at), (Some(new), Some(old)) if new < old);
                let older_event =
                    matches!((spec.event_id, stored_event), (Some(new), Some(old)) if new < *old);
                if older || older_event {
                    outcome.skipped_older += 1;
                    continue;
                }
            }
            None if spec.mode == UpsertMode::UpdateOnly => {
                outcome.missing.push((entity.name.clone(), row.id));
                continue;
            }
            None => {}
        }
        rows.push(row);
    }
    rows
}

/// The bookkeeping columns every written row gets.
fn bookkeeping_columns(spec: UpsertSpec<'_>) -> Vec<(String, Value)> {
    let mut extra: Vec<(String, Value)> =
        vec![("_cache_updated_at".to_owned(), spec.now.to_owned().into())];
    if let Some(active) = spec.active {
        extra.push(("_active".to_owned(), active.into()));
    }
    if let Some(event_id) = spec.event_id {
        extra.push(("_last_log_event_id".to_owned(), event_id.into()));
    }
    extra
}

/// Rows grouped by their column set, so each group is one multi-row INSERT.
fn group_by_columns(rows: &[PreparedRow]) -> BTreeMap<Vec<String>, Vec<&PreparedRow>> {
    let mut groups: BTreeMap<Vec<String>, Vec<&PreparedRow>> = BTreeMap::new();
    for row in rows {
        groups
            .entry(row.columns.iter().map(|(c, _)| c.clone()).collect())
            .or_default()
            .push(row);
    }
    groups
}

/// The association rows of `table` for `parents`, positions in list order. Duplicates in one
/// list would violate the key: the first position wins.
fn link_rows(table: &str, parents: &[&PreparedRow]) -> Vec<LinkRow> {
    let mut links = Vec::new();
    for row in parents {
        for (t, list) in &row.links {
            if t != table {
                continue;
            }
            let mut seen = BTreeSet::new();
            for (child_type, child_id) in list {
                if seen.insert((child_type.as_str(), *child_id)) {
                    links.push((row.id, child_type.clone(), *child_id, seen.len() as i64 - 1));
                }
            }
        }
    }
    links
}

/// The stored versions of `ids` (rows the cache does not have are absent).
async fn existing_versions(
    tx: &DatabaseTransaction,
    entity: &CachedEntity,
    ids: &[i64],
) -> Result<HashMap<i64, StoredVersion>, StoreError> {
    let mut found = HashMap::new();
    let has_updated_at = entity.fields.contains_key("updated_at");
    for chunk in ids.chunks(ID_CHUNK) {
        let mut select = Query::select();
        select
            .from(Alias::new(&entity.table))
            .column(Alias::new("id"))
            .column(Alias::new("_last_log_event_id"))
            .and_where(Expr::col(Alias::new("id")).is_in(chunk.iter().copied()));
        if has_updated_at {
            select.column(Alias::new("updated_at"));
        }
        for row in tx.query_all(&select).await? {
            let id: i64 = row.try_get("", "id")?;
            let updated_at: Option<String> = if has_updated_at {
                row.try_get("", "updated_at")?
            } else {
                None
            };
            let event: Option<i64> = row.try_get("", "_last_log_event_id")?;
            found.insert(id, (updated_at, event));
        }
    }
    Ok(found)
}

pub(super) async fn row_exists(
    tx: &DatabaseTransaction,
    entity: &CachedEntity,
    id: i64,
) -> Result<bool, StoreError> {
    Ok(!existing_versions(tx, entity, &[id]).await?.is_empty())
}

/// Writes `records` of `entity`: newer wins, then the rows, then their associations.
pub(super) async fn upsert(
    tx: &DatabaseTransaction,
    entity: &CachedEntity,
    records: &[Map<String, Json>],
    spec: UpsertSpec<'_>,
    outcome: &mut ApplyOutcome,
) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let (entity, prepared) = prepare_marking(entity, records, spec.now, &mut outcome.uncached)?;
    let entity = entity.as_ref();
    let ids: Vec<i64> = prepared.iter().map(|r| r.id).collect();
    let existing = existing_versions(tx, entity, &ids).await?;
    let rows = keep_newer(entity, prepared, &existing, spec, outcome);
    if rows.is_empty() {
        return Ok(());
    }
    let extra = bookkeeping_columns(spec);
    // Rows actually written: another instance may have committed a newer version of a row
    // since `existing` was read (see `newer_wins`); links follow only the written rows.
    let written = match spec.mode {
        UpsertMode::Full => insert_rows(tx, entity, &rows, &extra, spec, outcome).await?,
        UpsertMode::UpdateOnly => update_rows(tx, entity, &rows, &extra, spec, outcome).await?,
    };
    let rows: Vec<PreparedRow> = rows
        .into_iter()
        .filter(|row| written.contains(&row.id))
        .collect();
    outcome.links_written += replace_links(tx, &rows).await?;
    Ok(())
}

/// The condition under which a row is written over its stored version: its `updated_at` (and
/// its event id) is not older than the stored one. The database evaluates it on the latest
/// committed version of the row, so it holds when another instance commits the same row
/// between this transaction's read of `existing_versions` and its write (PostgreSQL, several
/// instances); `None` when there is nothing to compare.
fn newer_wins(table: &str, updated_at: Option<Expr>, event_id: Option<Expr>) -> Option<Condition> {
    let stored = |column: &str| Expr::col((Alias::new(table), Alias::new(column)));
    let checks: Vec<Condition> = [("updated_at", updated_at), ("_last_log_event_id", event_id)]
        .into_iter()
        .filter_map(|(column, new)| {
            let new = new?;
            Some(
                Condition::any()
                    .add(stored(column).is_null())
                    .add(new.clone().is_null())
                    .add(new.gte(stored(column))),
            )
        })
        .collect();
    (!checks.is_empty()).then(|| checks.into_iter().fold(Condition::all(), Condition::add))
}

/// The value an `INSERT ... ON CONFLICT DO UPDATE` proposed for `column`.
fn excluded(column: &str) -> Expr {
    Expr::col((Alias::new("excluded"), Alias::new(column)))
}

/// `INSERT ... ON CONFLICT (id) DO UPDATE ... WHERE newer` for full records, one statement
/// per column set and bind-parameter chunk; returns the ids written.
async fn insert_rows(
    tx: &DatabaseTransaction,
    entity: &CachedEntity,
    rows: &[PreparedRow],
    extra: &[(String, Value)],
    spec: UpsertSpec<'_>,
    outcome: &mut ApplyOutcome,
) -> Result<BTreeSet<i64>, StoreError> {
    let now = spec.now;
    let guard = || {
        newer_wins(
            &entity.table,
            entity
                .fields
                .contains_key("updated_at")
                .then(|| excluded("updated_at")),
            spec.event_id.map(|_| excluded("_last_log_event_id")),
        )
    };
    let mut written = BTreeSet::new();
    for (columns, group) in group_by_columns(rows) {
        let mut all_columns = vec!["id".to_owned(), "_cache_created_at".to_owned()];
        all_columns.extend(extra.iter().map(|(c, _)| c.clone()));
        all_columns.extend(columns);
        let per_chunk = (MAX_BIND_PARAMS / all_columns.len()).max(1);
        let update_columns: Vec<Alias> = all_columns
            .iter()
            .filter(|c| *c != "id" && *c != "_cache_created_at")
            .map(Alias::new)
            .collect();
        for chunk in group.chunks(per_chunk) {
            let mut insert = Query::insert();
            insert
                .into_table(Alias::new(&entity.table))
                .columns(all_columns.iter().map(Alias::new));
            for row in chunk {
                let mut values: Vec<Expr> = vec![row.id.into(), now.to_owned().into()];
                values.extend(extra.iter().map(|(_, v)| Expr::val(v.clone())));
                values.extend(row.columns.iter().map(|(_, v)| Expr::val(v.clone())));
                insert
                    .values(values)
                    .map_err(|e| StoreError::Schema(format!("building insert: {e}")))?;
            }
            let mut on_conflict = OnConflict::column(Alias::new("id"));
            if update_columns.is_empty() {
                on_conflict.do_nothing();
            } else {
                on_conflict.update_columns(update_columns.clone());
                if let Some(guard) = guard() {
                    on_conflict.action_cond_where(guard);
                }
            }
            insert.on_conflict(on_conflict);
            insert.returning_col(Alias::new("id"));
            let before = written.len();
            for row in tx.query_all(&insert).await? {
                written.insert(row.try_get::<i64>("", "id")?);
            }
            let done = (written.len() - before) as u64;
            outcome.rows_written += done;
            outcome.skipped_older += chunk.len() as u64 - done;
        }
    }
    Ok(written)
}

/// `UPDATE ... WHERE id = ? AND newer` per row for partial records (rows with nothing to set
/// are left); returns the ids written.
async fn update_rows(
    tx: &DatabaseTransaction,
    entity: &CachedEntity,
    rows: &[PreparedRow],
    extra: &[(String, Value)],
    spec: UpsertSpec<'_>,
    outcome: &mut ApplyOutcome,
) -> Result<BTreeSet<i64>, StoreError> {
    let has_updated_at = entity.fields.contains_key("updated_at");
    let mut written = BTreeSet::new();
    for row in rows {
        if row.columns.is_empty()
            && row.links.is_empty()
            && spec.active.is_none()
            && spec.event_id.is_none()
        {
            continue;
        }
        let mut update = Query::update();
        update.table(Alias::new(&entity.table));
        for (c, v) in extra.iter().chain(row.columns.iter()) {
            update.value(Alias::new(c), v.clone());
        }
        update.and_where(Expr::col(Alias::new("id")).eq(row.id));
        let new_updated_at = row.updated_at.clone().filter(|_| has_updated_at);
        let guard = newer_wins(
            &entity.table,
            new_updated_at.map(Expr::val),
            spec.event_id.map(Expr::val),
        );
        if let Some(guard) = guard {
            update.cond_where(guard);
        }
        if tx.execute(&update).await?.rows_affected() > 0 {
            written.insert(row.id);
            outcome.rows_written += 1;
        } else {
            outcome.skipped_older += 1;
        }
    }
    Ok(written)
}

/// Multi-entity associations: each record's list replaces the stored set of its row.
async fn replace_links(tx: &DatabaseTransaction, rows: &[PreparedRow]) -> Result<u64, StoreError> {
    let mut by_table: BTreeMap<&str, Vec<&PreparedRow>> = BTreeMap::new();
    for row in rows {
        for (table, _) in &row.links {
            by_table.entry(table.as_str()).or_default().push(row);
        }
    }
    let mut written = 0;
    for (table, parents) in by_table {
        for chunk in parents.chunks(ID_CHUNK) {
            let delete = Query::delete()
                .from_table(Alias::new(table))
                .and_where(Expr::col(Alias::new("parent_id")).is_in(chunk.iter().map(|r| r.id)))
                .to_owned();
            tx.execute(&delete).await?;
        }
        written += insert_links(tx, table, &link_rows(table, &parents), false).await?;
    }
    Ok(written)
}

/// Event-log link changes of one row's multi-entity field: removes `removed`, appends
/// `added` after the last stored position (links already there are kept where they are).
pub(super) async fn change_links(
    tx: &DatabaseTransaction,
    table: &str,
    id: i64,
    added: &[(String, i64)],
    removed: &[(String, i64)],
) -> Result<u64, StoreError> {
    for (child_type, child_id) in removed {
        let delete = Query::delete()
            .from_table(Alias::new(table))
            .and_where(Expr::col(Alias::new("parent_id")).eq(id))
            .and_where(Expr::col(Alias::new("child_type")).eq(child_type.clone()))
            .and_where(Expr::col(Alias::new("child_id")).eq(*child_id))
            .to_owned();
        tx.execute(&delete).await?;
    }
    if added.is_empty() {
        return Ok(0);
    }
    let next = next_position(tx, table, id).await?;
    let rows: Vec<LinkRow> = added
        .iter()
        .enumerate()
        .map(|(i, (t, c))| (id, t.clone(), *c, next + i as i64))
        .collect();
    insert_links(tx, table, &rows, true).await
}

async fn next_position(
    tx: &DatabaseTransaction,
    table: &str,
    parent: i64,
) -> Result<i64, StoreError> {
    let select = Query::select()
        .expr_as(
            Expr::col(Alias::new("position")).max(),
            Alias::new("max_position"),
        )
        .from(Alias::new(table))
        .and_where(Expr::col(Alias::new("parent_id")).eq(parent))
        .to_owned();
    let row = tx.query_one(&select).await?;
    // `position` is an INTEGER column: INT4 on PostgreSQL.
    let max: Option<i32> = match row {
        Some(row) => row.try_get("", "max_position")?,
        None => None,
    };
    Ok(max.map_or(0, |m| i64::from(m) + 1))
}

/// Inserts association rows `(parent_id, child_type, child_id, position)`.
async fn insert_links(
    tx: &DatabaseTransaction,
    table: &str,
    rows: &[LinkRow],
    ignore_existing: bool,
) -> Result<u64, StoreError> {
    let mut written = 0;
    for chunk in rows.chunks(MAX_BIND_PARAMS / 4) {
        let mut insert = Query::insert();
        insert.into_table(Alias::new(table)).columns([
            Alias::new("parent_id"),
            Alias::new("child_type"),
            Alias::new("child_id"),
            Alias::new("position"),
        ]);
        for (parent, child_type, child_id, position) in chunk {
            insert
                .values([
                    (*parent).into(),
                    child_type.clone().into(),
                    (*child_id).into(),
                    (*position).into(),
                ])
                .map_err(|e| StoreError::Schema(format!("building insert: {e}")))?;
        }
        if ignore_existing {
            insert.on_conflict(
                OnConflict::columns([
                    Alias::new("parent_id"),
                    Alias::new("child_type"),
                    Alias::new("child_id"),
                ])
                .do_nothing()
                .to_owned(),
            );
        }
        let result = tx.execute(&insert).await?;
        written += result.rows_affected();
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::shot_entity;
    use super::*;

    fn record(v: Json) -> Map<String, Json> {
        v.as_object().cloned().expect("object")
    }

    fn row(id: i64, updated_at: Option<&str>) -> PreparedRow {
        PreparedRow {
            id,
            updated_at: updated_at.map(str::to_owned),
            columns: Vec::new(),
            links: Vec::new(),
        }
    }

    fn spec(mode: UpsertMode, event_id: Option<i64>) -> UpsertSpec<'static> {
        UpsertSpec {
            mode,
            active: None,
            event_id,
            now: "2024-03-01T00:00:00Z",
        }
    }

    /// Columns come in the record's order (the daemon keeps JSON key order).
    #[test]
    fn prepare_maps_fields_to_columns_and_links() {
        let entity = shot_entity();
        let row = prepare(
            &entity,
            &record(json!({
                "type": "Shot", "id": 5, "code": "sh005",
                "updated_at": "2024-01-01T00:00:00Z",
                "sg_sequence": {"type": "Sequence", "id": 7, "name": "sq07"},
                "assets": [{"type": "Asset", "id": 1}, {"type": "Asset", "id": 2}],
                "not_cached": 1,
                "sg_sequence.Sequence.code": "deep keys are ignored",
            })),
        )
        .expect("prepared");
        assert_eq!(row.id, 5);
        assert_eq!(row.updated_at.as_deref(), Some("2024-01-01T00:00:00Z"));
        assert_eq!(
            row.columns,
            vec![
                ("code".to_owned(), Value::from("sh005")),
                ("updated_at".to_owned(), Value::from("2024-01-01T00:00:00Z")),
                (
                    "sg_sequence__type".to_owned(),
                    Value::String(Some("Sequence".into()))
                ),
                ("sg_sequence__id".to_owned(), Value::BigInt(Some(7))),
            ]
        );
        assert_eq!(
            row.links,
            vec![(
                "shot_assets".to_owned(),
                vec![("Asset".to_owned(), 1), ("Asset".to_owned(), 2)]
            )]
        );
        // A null entity link clears both columns.
        let row = prepare(&entity, &record(json!({"id": 6, "sg_sequence": null}))).expect("ok");
        assert_eq!(
            row.columns,
            vec![
                ("sg_sequence__type".to_owned(), Value::String(None)),
                ("sg_sequence__id".to_owned(), Value::BigInt(None)),
            ]
        );
    }

    #[test]
    fn prepare_rejects_bad_records() {
        let entity = shot_entity();
        for bad in [
            json!({"type": "Shot"}),
            json!({"id": "5"}),
            json!({"id": 5, "code": 12}),
            json!({"id": 5, "updated_at": "yesterday"}),
            json!({"id": 5, "sg_sequence": "Sequence 7"}),
            json!({"id": 5, "assets": {"type": "Asset", "id": 1}}),
        ] {
            let err = prepare(&entity, &record(bad.clone())).expect_err("rejected");
            assert!(
                matches!(err, StoreError::InvalidValue { ref entity_type, .. } if entity_type == "Shot"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn newer_wins_and_update_only_never_creates() {
        let entity = shot_entity();
        let existing: HashMap<i64, StoredVersion> = [
            (1, (Some("2024-02-01T00:00:00Z".to_owned()), None)),
            (2, (Some("2024-02-01T00:00:00Z".to_owned()), Some(100))),
            (3, (None, None)),
        ]
        .into_iter()
        .collect();
        let rows = || {
            vec![
                row(1, Some("2024-01-01T00:00:00Z")), // older than stored: skipped
                row(2, Some("2024-03-01T00:00:00Z")), // newer, but see the event id
                row(3, Some("2024-01-01T00:00:00Z")), // nothing to compare: written
                row(4, None),                         // not stored
            ]
        };
        let mut outcome = ApplyOutcome::default();
        let kept = keep_newer(
            &entity,
            rows(),
            &existing,
            spec(UpsertMode::Full, None),
            &mut outcome,
        );
        assert_eq!(kept.iter().map(|r| r.id).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(outcome.skipped_older, 1);

        // From event 99, row 2 (last changed by event 100) is newer; row 4 is missing.
        let mut outcome = ApplyOutcome::default();
        let kept = keep_newer(
            &entity,
            rows(),
            &existing,
            spec(UpsertMode::UpdateOnly, Some(99)),
            &mut outcome,
        );
        assert_eq!(kept.iter().map(|r| r.id).collect::<Vec<_>>(), [3]);
        assert_eq!(outcome.skipped_older, 2);
        assert_eq!(outcome.missing, [("Shot".to_owned(), 4)]);
    }

    #[test]
    fn bookkeeping_columns_follow_the_op() {
        let names = |s: UpsertSpec<'_>| {
            bookkeeping_columns(s)
                .into_iter()
                .map(|(c, _)| c)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(spec(UpsertMode::Full, None)), ["_cache_updated_at"]);
        let mut s = spec(UpsertMode::Full, Some(3));
        s.active = Some(false);
        assert_eq!(
            bookkeeping_columns(s),
            vec![
                (
                    "_cache_updated_at".to_owned(),
                    Value::from("2024-03-01T00:00:00Z")
                ),
                ("_active".to_owned(), Value::from(false)),
                ("_last_log_event_id".to_owned(), Value::from(3i64)),
            ]
        );
    }

    #[test]
    fn rows_are_grouped_by_column_set_and_links_deduplicated() {
        let mut a = row(1, None);
        a.columns = vec![("code".into(), Value::from("a"))];
        a.links = vec![(
            "shot_assets".into(),
            vec![
                ("Asset".into(), 7),
                ("Asset".into(), 8),
                ("Asset".into(), 7),
            ],
        )];
        let mut b = row(2, None);
        b.columns = vec![("code".into(), Value::from("b"))];
        b.links = vec![("shot_assets".into(), vec![("Asset".into(), 9)])];
        let mut c = row(3, None);
        c.columns = vec![("updated_at".into(), Value::from("2024-01-01T00:00:00Z"))];
        let rows = [a, b, c];
        let groups = group_by_columns(&rows);
        assert_eq!(
            groups
                .iter()
                .map(|(cols, rows)| (cols.clone(), rows.iter().map(|r| r.id).collect()))
                .collect::<Vec<(Vec<String>, Vec<i64>)>>(),
            vec![
                (vec!["code".to_owned()], vec![1, 2]),
                (vec!["updated_at".to_owned()], vec![3]),
            ]
        );
        let parents: Vec<&PreparedRow> = rows.iter().collect();
        assert_eq!(
            link_rows("shot_assets", &parents),
            vec![
                (1, "Asset".to_owned(), 7, 0),
                (1, "Asset".to_owned(), 8, 1),
                (2, "Asset".to_owned(), 9, 0),
            ]
        );
        assert!(link_rows("shot_tasks", &parents).is_empty());
    }
}
