//! Result rows → the site's JSON, decoded by field kind so both backends give identical output.
//!
//! Rows are read by column index on either driver ([`Cells`]: rusqlite on SQLite, SeaORM's
//! rows on PostgreSQL); the indexes are resolved from the column names once per result
//! ([`Layout`]), not per row.
use sea_orm::{DbErr, QueryResult, TryGetable};
use std::collections::HashMap;

use serde_json::{Map, Value as Json};

use crate::query::select::{Decode, ID, OutField};
use crate::schema::FieldKind;

/// One result row, read by column index.
pub trait Cells {
    fn int(&self, i: usize) -> Result<Option<i64>, DbErr>;
    /// A float; SQLite may hand back an integral REAL as an integer.
    fn float(&self, i: usize) -> Result<Option<f64>, DbErr>;
    /// A boolean stored as a boolean (PostgreSQL) or an integer (SQLite).
    fn boolean(&self, i: usize) -> Result<Option<bool>, DbErr>;
    fn text(&self, i: usize) -> Result<Option<String>, DbErr>;
}

fn column_err(i: usize, e: impl std::fmt::Display) -> DbErr {
    DbErr::Custom(format!("column {i}: {e}"))
}

impl Cells for QueryResult {
    fn int(&self, i: usize) -> Result<Option<i64>, DbErr> {
        get(self, i)
    }
    fn float(&self, i: usize) -> Result<Option<f64>, DbErr> {
        match get::<f64>(self, i) {
            Ok(v) => Ok(v),
            Err(_) => Ok(get::<i64>(self, i)?.map(|v| v as f64)),
        }
    }
    fn boolean(&self, i: usize) -> Result<Option<bool>, DbErr> {
        match get::<bool>(self, i) {
            Ok(v) => Ok(v),
            Err(_) => Ok(get::<i64>(self, i)?.map(|v| v != 0)),
        }
    }
    fn text(&self, i: usize) -> Result<Option<String>, DbErr> {
        get(self, i)
    }
}

fn get<T: TryGetable>(row: &QueryResult, i: usize) -> Result<Option<T>, DbErr> {
    row.try_get_by_index::<Option<T>>(i)
        .map_err(|e| column_err(i, e))
}

/// A column by name (the row reads of [`super::rows`] and [`super::sizes`]).
pub(super) fn get_named<T: TryGetable>(
    row: &QueryResult,
    column: &str,
) -> Result<Option<T>, DbErr> {
    row.try_get::<Option<T>>("", column)
        .map_err(|e| DbErr::Custom(format!("column {column}: {e}")))
}

/// One scalar column of kind `kind`, by name (the row reads of [`super::rows`]).
pub(super) fn scalar_named(
    row: &QueryResult,
    kind: FieldKind,
    column: &str,
) -> Result<Json, DbErr> {
    let i = row
        .column_names()
        .iter()
        .position(|n| n == column)
        .ok_or_else(|| DbErr::Custom(format!("no column {column} in the result")))?;
    scalar(row, kind, i)
}

impl Cells for rusqlite::Row<'_> {
    fn int(&self, i: usize) -> Result<Option<i64>, DbErr> {
        use rusqlite::types::ValueRef;
        match self.get_ref(i).map_err(|e| column_err(i, e))? {
            ValueRef::Null => Ok(None),
            ValueRef::Integer(v) => Ok(Some(v)),
            other => Err(column_err(
                i,
                format!("expected an integer, got {:?}", other.data_type()),
            )),
        }
    }
    fn float(&self, i: usize) -> Result<Option<f64>, DbErr> {
        use rusqlite::types::ValueRef;
        match self.get_ref(i).map_err(|e| column_err(i, e))? {
            ValueRef::Null => Ok(None),
            ValueRef::Real(v) => Ok(Some(v)),
            ValueRef::Integer(v) => Ok(Some(v as f64)),
            other => Err(column_err(
                i,
                format!("expected a float, got {:?}", other.data_type()),
            )),
        }
    }
    fn boolean(&self, i: usize) -> Result<Option<bool>, DbErr> {
        Ok(self.int(i)?.map(|v| v != 0))
    }
    fn text(&self, i: usize) -> Result<Option<String>, DbErr> {
        use rusqlite::types::ValueRef;
        match self.get_ref(i).map_err(|e| column_err(i, e))? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(b) => std::str::from_utf8(b)
                .map(|s| Some(s.to_owned()))
                .map_err(|e| column_err(i, e)),
            other => Err(column_err(
                i,
                format!("expected text, got {:?}", other.data_type()),
            )),
        }
    }
}

/// Where one return field is in the row.
#[derive(Clone, Copy, Debug)]
enum At {
    Scalar(FieldKind, usize),
    Link {
        ty: usize,
        id: usize,
        name: usize,
    },
    /// Filled in from a statement of its own ([`fill_multi`]).
    Multi,
}

/// The column indexes of a result, resolved once from its column names.
#[derive(Debug)]
pub struct Layout {
    id: usize,
    fields: Vec<At>,
}

impl Layout {
    /// `names`: the result's column names in order.
    pub fn new<S: AsRef<str>>(names: &[S], fields: &[OutField]) -> Result<Layout, DbErr> {
        let at = |column: &str| {
            names
                .iter()
                .position(|n| n.as_ref() == column)
                .ok_or_else(|| DbErr::Custom(format!("no column {column} in the result")))
        };
        let fields = fields
            .iter()
            .map(|f| {
                Ok(match &f.decode {
                    Decode::Scalar { kind, column } => At::Scalar(*kind, at(column)?),
                    Decode::Link {
                        type_column,
                        id_column,
                        name_column,
                    } => At::Link {
                        ty: at(type_column)?,
                        id: at(id_column)?,
                        name: at(name_column)?,
                    },
                    Decode::Multi { .. } => At::Multi,
                })
            })
            .collect::<Result<Vec<_>, DbErr>>()?;
        Ok(Layout {
            id: at(ID)?,
            fields,
        })
    }

    /// The row's id.
    pub fn id<C: Cells>(&self, row: &C) -> Result<Option<i64>, DbErr> {
        row.int(self.id)
    }
}

/// One scalar column of kind `kind` (the single place that decodes a column by field kind).
fn scalar<C: Cells>(row: &C, kind: FieldKind, i: usize) -> Result<Json, DbErr> {
    Ok(match kind {
        FieldKind::Number | FieldKind::Percent | FieldKind::Duration | FieldKind::Timecode => {
            row.int(i)?.map_or(Json::Null, Json::from)
        }
        FieldKind::Float | FieldKind::Currency => row.float(i)?.map_or(Json::Null, Json::from),
        // NULL only through a deep path whose link is null.
        FieldKind::Checkbox => row.boolean(i)?.map_or(Json::Null, Json::Bool),
        // Text kinds, dates (YYYY-MM-DD) and date-times (stored in the wire form).
        _ => row.text(i)?.map_or(Json::Null, Json::String),
    })
}

/// `{type, id, name}`, or null when the type or id is null.
pub fn link(ty: Option<String>, id: Option<i64>, name: Json) -> Json {
    match (ty, id) {
        (Some(t), Some(i)) => {
            let mut m = Map::with_capacity(3);
            m.insert("type".into(), Json::String(t));
            m.insert("id".into(), Json::from(i));
            m.insert("name".into(), name);
            Json::Object(m)
        }
        _ => Json::Null,
    }
}

/// One output entity: `type`, `id`, then the return fields in request order.
pub fn entity<C: Cells>(
    row: &C,
    layout: &Layout,
    entity_type: &str,
    fields: &[OutField],
) -> Result<Json, DbErr> {
    let mut out = Map::with_capacity(fields.len() + 2);
    out.insert("type".into(), Json::String(entity_type.to_owned()));
    out.insert("id".into(), layout.id(row)?.map_or(Json::Null, Json::from));
    for (f, at) in fields.iter().zip(&layout.fields) {
        let v = match *at {
            At::Scalar(kind, i) => scalar(row, kind, i)?,
            At::Link { ty, id, name } => link(
                row.text(ty)?,
                row.int(id)?,
                row.text(name)?.map_or(Json::Null, Json::String),
            ),
            At::Multi => Json::Array(Vec::new()),
        };
        out.insert(f.key.clone(), v);
    }
    Ok(Json::Object(out))
}

/// One link of a multi-entity list: `(parent id, type, id, name)`.
pub type MultiRow = (i64, String, i64, Option<String>);

/// A row of a multi-entity statement ([`crate::query::select::MultiRead`]).
pub fn multi_row<C: Cells>(row: &C) -> Result<MultiRow, DbErr> {
    let null = |i: usize| column_err(i, "unexpected NULL");
    Ok((
        row.int(0)?.ok_or_else(|| null(0))?,
        row.text(1)?.ok_or_else(|| null(1))?,
        row.int(2)?.ok_or_else(|| null(2))?,
        row.text(3)?,
    ))
}

/// Sets `key` of each entity to its links among `rows`, in their order (`[]` when none).
pub fn fill_multi(entities: &mut [Json], key: &str, rows: Vec<MultiRow>) {
    let mut by_parent: HashMap<i64, Vec<Json>> = HashMap::new();
    for (parent, ty, id, name) in rows {
        let name = name.map_or(Json::Null, Json::String);
        by_parent
            .entry(parent)
            .or_default()
            .push(link(Some(ty), Some(id), name));
    }
    for e in entities {
        let links = e["id"].as_i64().and_then(|id| by_parent.remove(&id));
        if let Some(slot) = e.get_mut(key) {
            *slot = Json::Array(links.unwrap_or_default());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn multi_links_go_to_their_parents_in_order() {
        let mut entities = vec![
            json!({"type": "Shot", "id": 2, "assets": []}),
            json!({"type": "Shot", "id": 1, "assets": []}),
        ];
        let rows = vec![
            (1, "Asset".to_owned(), 9, None),
            (1, "Shot".to_owned(), 1, Some("s".to_owned())),
            (3, "Asset".to_owned(), 4, Some("other page".to_owned())),
        ];
        fill_multi(&mut entities, "assets", rows);
        assert_eq!(
            entities,
            vec![
                json!({"type": "Shot", "id": 2, "assets": []}),
                json!({"type": "Shot", "id": 1, "assets": [
                    {"type": "Asset", "id": 9, "name": null},
                    {"type": "Shot", "id": 1, "name": "s"}
                ]}),
            ]
        );
    }
}
