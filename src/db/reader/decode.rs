//! Result rows → the site's JSON, decoded by field kind so both backends give identical output.
use sea_orm::{DbErr, QueryResult};
use serde_json::{Map, Value as Json, json};

use crate::query::select::{Decode, ID, OutField};
use crate::schema::FieldKind;

pub(super) fn get<T: sea_orm::TryGetable>(
    row: &QueryResult,
    column: &str,
) -> Result<Option<T>, DbErr> {
    row.try_get::<Option<T>>("", column)
        .map_err(|e| DbErr::Custom(format!("column {column}: {e}")))
}

/// A boolean stored as a boolean (PostgreSQL) or an integer (SQLite).
fn get_bool(row: &QueryResult, column: &str) -> Result<Option<bool>, DbErr> {
    match row.try_get::<Option<bool>>("", column) {
        Ok(v) => Ok(v),
        Err(_) => Ok(get::<i64>(row, column)?.map(|i| i != 0)),
    }
}

/// A JSON aggregate: real JSON on PostgreSQL, text on SQLite.
fn get_json(row: &QueryResult, column: &str) -> Result<Json, DbErr> {
    let parse = |s: &str| {
        serde_json::from_str::<Json>(s).map_err(|e| DbErr::Custom(format!("column {column}: {e}")))
    };
    match row.try_get::<Option<Json>>("", column) {
        Ok(Some(Json::String(s))) => parse(&s),
        Ok(Some(v)) => Ok(v),
        Ok(None) => Ok(Json::Array(vec![])),
        Err(_) => match get::<String>(row, column)? {
            Some(s) => parse(&s),
            None => Ok(Json::Array(vec![])),
        },
    }
}

/// One scalar column of kind `kind` (the single place that decodes a column by field kind).
pub(super) fn scalar(row: &QueryResult, kind: FieldKind, column: &str) -> Result<Json, DbErr> {
    Ok(match kind {
        FieldKind::Number | FieldKind::Percent | FieldKind::Duration | FieldKind::Timecode => {
            get::<i64>(row, column)?.map_or(Json::Null, Json::from)
        }
        FieldKind::Float | FieldKind::Currency => match get::<f64>(row, column) {
            Ok(v) => v.map_or(Json::Null, Json::from),
            // SQLite may hand back an integral REAL as an integer.
            Err(_) => get::<i64>(row, column)?.map_or(Json::Null, |i| Json::from(i as f64)),
        },
        // NULL only through a deep path whose link is null.
        FieldKind::Checkbox => get_bool(row, column)?.map_or(Json::Null, Json::Bool),
        // Text kinds, dates (YYYY-MM-DD) and date-times (stored in the wire form).
        _ => get::<String>(row, column)?.map_or(Json::Null, Json::String),
    })
}

fn link(ty: Option<String>, id: Option<i64>, name: Json) -> Json {
    match (ty, id) {
        (Some(t), Some(i)) => json!({"type": t, "id": i, "name": name}),
        _ => Json::Null,
    }
}

/// `[[position, type, id, name], ...]` → links in position order.
fn multi(v: Json) -> Json {
    let mut items: Vec<(i64, Json)> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let a = e.as_array()?;
            let pos = a.first()?.as_i64()?;
            let ty = a.get(1)?.as_str()?.to_owned();
            let id = a.get(2)?.as_i64()?;
            let name = a.get(3).cloned().unwrap_or(Json::Null);
            Some((pos, link(Some(ty), Some(id), name)))
        })
        .collect();
    items.sort_by_key(|(p, _)| *p);
    Json::Array(items.into_iter().map(|(_, l)| l).collect())
}

/// One output entity: `type`, `id`, then the return fields in request order.
pub fn entity(row: &QueryResult, entity_type: &str, fields: &[OutField]) -> Result<Json, DbErr> {
    let mut out = Map::new();
    out.insert("type".into(), Json::String(entity_type.to_owned()));
    out.insert(
        "id".into(),
        get::<i64>(row, ID)?.map_or(Json::Null, Json::from),
    );
    for f in fields {
        let v = match &f.decode {
            Decode::Scalar { kind, column } => scalar(row, *kind, column)?,
            Decode::Link {
                type_column,
                id_column,
                name_column,
            } => link(
                get::<String>(row, type_column)?,
                get::<i64>(row, id_column)?,
                get::<String>(row, name_column)?.map_or(Json::Null, Json::String),
            ),
            Decode::Multi { column } => multi(get_json(row, column)?),
        };
        out.insert(f.key.clone(), v);
    }
    Ok(Json::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_sorts_by_position() {
        let v = json!([
            [2, "Asset", 5, "b"],
            [0, "Asset", 9, null],
            [1, "Shot", 1, "s"]
        ]);
        assert_eq!(
            multi(v),
            json!([
                {"type": "Asset", "id": 9, "name": null},
                {"type": "Shot", "id": 1, "name": "s"},
                {"type": "Asset", "id": 5, "name": "b"}
            ])
        );
        assert_eq!(multi(json!([])), json!([]));
    }
}
