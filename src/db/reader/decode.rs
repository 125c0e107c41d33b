//! Result rows → the site's JSON, decoded by field kind so both backends give identical output.
//!
//! Rows are read by column index on either driver ([`Cells`]: rusqlite on SQLite, SeaORM's
//! rows on PostgreSQL); the indexes are resolved from the column names once per result
//! ([`Layout`]), not per row. A page is serialised straight from its rows ([`EntityOut`]):
//! no `serde_json::Value` per entity.
use std::borrow::Cow;
use std::collections::HashMap;

use sea_orm::{DbErr, QueryResult, TryGetable};
use serde::Serialize;
use serde::ser::{Error as _, SerializeMap};
use serde_json::Value as Json;

use crate::query::select::{Decode, ID, OutField};
use crate::schema::FieldKind;

/// One result row, read by column index.
pub trait Cells {
    fn int(&self, i: usize) -> Result<Option<i64>, DbErr>;
    /// A float; SQLite may hand back an integral REAL as an integer.
    fn float(&self, i: usize) -> Result<Option<f64>, DbErr>;
    /// A boolean stored as a boolean (PostgreSQL) or an integer (SQLite).
    fn boolean(&self, i: usize) -> Result<Option<bool>, DbErr>;
    /// Text, borrowed from the row where the driver allows it.
    fn text(&self, i: usize) -> Result<Option<Cow<'_, str>>, DbErr>;
}

/// A cell that could not be decoded.
pub(super) fn column_err(i: usize, e: impl std::fmt::Display) -> DbErr {
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
    fn text(&self, i: usize) -> Result<Option<Cow<'_, str>>, DbErr> {
        Ok(get::<String>(self, i)?.map(Cow::Owned))
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

/// One scalar column of kind `kind`, by name among the result's column `names` (the row reads
/// of [`super::rows`]; the names are read once per result).
pub(super) fn scalar_named(
    row: &QueryResult,
    names: &[String],
    kind: FieldKind,
    column: &str,
) -> Result<Json, DbErr> {
    let i = names
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
    fn text(&self, i: usize) -> Result<Option<Cow<'_, str>>, DbErr> {
        use rusqlite::types::ValueRef;
        match self.get_ref(i).map_err(|e| column_err(i, e))? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(b) => std::str::from_utf8(b)
                .map(|s| Some(Cow::Borrowed(s)))
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
    /// The links of the row in the `index`th multi-entity result ([`MultiLinks`]).
    Multi(usize),
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
                    Decode::Multi { index } => At::Multi(*index),
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

/// One decoded column.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell<'r> {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(Cow<'r, str>),
}

impl Cell<'_> {
    pub fn into_json(self) -> Json {
        match self {
            Cell::Null => Json::Null,
            Cell::Int(v) => Json::from(v),
            Cell::Float(v) => Json::from(v),
            Cell::Bool(v) => Json::Bool(v),
            Cell::Text(v) => Json::String(v.into_owned()),
        }
    }
}

impl Serialize for Cell<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Cell::Null => s.serialize_unit(),
            Cell::Int(v) => s.serialize_i64(*v),
            // Like `Json::from(f64)`: a non-finite float is null.
            Cell::Float(v) if !v.is_finite() => s.serialize_unit(),
            Cell::Float(v) => s.serialize_f64(*v),
            Cell::Bool(v) => s.serialize_bool(*v),
            Cell::Text(v) => s.serialize_str(v),
        }
    }
}

/// One scalar column of kind `kind` (the single place that decodes a column by field kind).
pub fn cell<C: Cells>(row: &C, kind: FieldKind, i: usize) -> Result<Cell<'_>, DbErr> {
    Ok(match kind {
        FieldKind::Number | FieldKind::Percent | FieldKind::Duration | FieldKind::Timecode => {
            row.int(i)?.map_or(Cell::Null, Cell::Int)
        }
        FieldKind::Float | FieldKind::Currency => row.float(i)?.map_or(Cell::Null, Cell::Float),
        // NULL only through a deep path whose link is null.
        FieldKind::Checkbox => row.boolean(i)?.map_or(Cell::Null, Cell::Bool),
        // Text kinds, dates (YYYY-MM-DD) and date-times (stored in the wire form).
        _ => row.text(i)?.map_or(Cell::Null, Cell::Text),
    })
}

fn scalar<C: Cells>(row: &C, kind: FieldKind, i: usize) -> Result<Json, DbErr> {
    Ok(cell(row, kind, i)?.into_json())
}

/// A link as the site writes it: `{"type", "id", "name"}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LinkOut<'r> {
    #[serde(rename = "type")]
    pub ty: Cow<'r, str>,
    pub id: i64,
    pub name: Option<Cow<'r, str>>,
}

impl<'r> LinkOut<'r> {
    /// The link in the columns `ty`, `id`, `name`; `None` when the type or id is NULL.
    fn read<C: Cells>(
        row: &'r C,
        ty: usize,
        id: usize,
        name: usize,
    ) -> Result<Option<LinkOut<'r>>, DbErr> {
        Ok(match (row.text(ty)?, row.int(id)?) {
            (Some(ty), Some(id)) => Some(LinkOut {
                ty,
                id,
                name: row.text(name)?,
            }),
            _ => None,
        })
    }

    fn into_owned(self) -> LinkOut<'static> {
        LinkOut {
            ty: Cow::Owned(self.ty.into_owned()),
            id: self.id,
            name: self.name.map(|n| Cow::Owned(n.into_owned())),
        }
    }
}

/// The links of one multi-entity field by parent id, each list in position order.
pub type MultiLinks = HashMap<i64, Vec<LinkOut<'static>>>;

/// Adds a row `(parent_id, type, id, name)` of a multi-entity statement
/// ([`crate::query::select::MultiRead`]; rows come in position order).
pub fn add_multi_row<C: Cells>(links: &mut MultiLinks, row: &C) -> Result<(), DbErr> {
    let null = |i: usize| column_err(i, "unexpected NULL");
    let parent = row.int(0)?.ok_or_else(|| null(0))?;
    let link = LinkOut::read(row, 1, 2, 3)?.ok_or_else(|| null(2))?;
    links.entry(parent).or_default().push(link.into_owned());
    Ok(())
}

/// One output entity, serialised straight from its row: `type`, `id`, then the return fields
/// in request order (the order and bytes of `serde_json`'s own map).
pub struct EntityOut<'a, C> {
    pub row: &'a C,
    pub layout: &'a Layout,
    pub entity_type: &'a str,
    pub fields: &'a [OutField],
    /// The page's multi-entity links, by [`Decode::Multi`] index.
    pub multis: &'a [MultiLinks],
}

impl<C: Cells> Serialize for EntityOut<'_, C> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let fail = |e: DbErr| S::Error::custom(e.to_string());
        let id = self.layout.id(self.row).map_err(fail)?;
        let mut m = s.serialize_map(Some(self.fields.len() + 2))?;
        m.serialize_entry("type", self.entity_type)?;
        m.serialize_entry("id", &id)?;
        let none: &[LinkOut<'static>] = &[];
        for (f, at) in self.fields.iter().zip(&self.layout.fields) {
            match *at {
                At::Scalar(kind, i) => {
                    m.serialize_entry(&f.key, &cell(self.row, kind, i).map_err(fail)?)?
                }
                At::Link { ty, id, name } => {
                    let link = LinkOut::read(self.row, ty, id, name).map_err(fail)?;
                    m.serialize_entry(&f.key, &link)?
                }
                At::Multi(index) => {
                    let links = id
                        .and_then(|id| self.multis.get(index)?.get(&id))
                        .map_or(none, Vec::as_slice);
                    m.serialize_entry(&f.key, links)?
                }
            }
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::select::Decode;
    use serde_json::json;

    /// A row of JSON values, read by index.
    struct Row(Vec<Json>);

    impl Cells for Row {
        fn int(&self, i: usize) -> Result<Option<i64>, DbErr> {
            Ok(self.0[i].as_i64())
        }
        fn float(&self, i: usize) -> Result<Option<f64>, DbErr> {
            Ok(self.0[i].as_f64())
        }
        fn boolean(&self, i: usize) -> Result<Option<bool>, DbErr> {
            Ok(self.0[i].as_bool())
        }
        fn text(&self, i: usize) -> Result<Option<Cow<'_, str>>, DbErr> {
            Ok(self.0[i].as_str().map(Cow::Borrowed))
        }
    }

    fn field(key: &str, decode: Decode) -> OutField {
        OutField {
            key: key.to_owned(),
            decode,
        }
    }

    #[test]
    fn entities_serialise_as_the_sites_json() {
        let scalar = |kind, column: &str| Decode::Scalar {
            kind,
            column: column.into(),
        };
        let fields = vec![
            field("code", scalar(FieldKind::Text, "c0")),
            field("ratio", scalar(FieldKind::Float, "c1")),
            field("flag", scalar(FieldKind::Checkbox, "c2")),
            field(
                "sg_sequence",
                Decode::Link {
                    type_column: "c3_t".into(),
                    id_column: "c3_i".into(),
                    name_column: "c3_n".into(),
                },
            ),
            field("assets", Decode::Multi { index: 0 }),
        ];
        let names = ["_id", "c0", "c1", "c2", "c3_t", "c3_i", "c3_n"];
        let layout = Layout::new(&names, &fields).unwrap();
        let mut links = MultiLinks::new();
        for row in [
            json!([7, "Asset", 9, null]),
            json!([7, "Shot", 1, "s"]),
            json!([8, "Asset", 4, "other row"]),
        ] {
            let Json::Array(cells) = row else { panic!() };
            add_multi_row(&mut links, &Row(cells)).unwrap();
        }
        let multis = [links];
        let out = |cells: Json| {
            let Json::Array(cells) = cells else { panic!() };
            let row = Row(cells);
            let e = EntityOut {
                row: &row,
                layout: &layout,
                entity_type: "Shot",
                fields: &fields,
                multis: &multis,
            };
            serde_json::to_string(&e).unwrap()
        };
        let expected = json!({"type": "Shot", "id": 7, "code": "a\"b", "ratio": 0.5,
            "flag": true, "sg_sequence": {"type": "Sequence", "id": 3, "name": null},
            "assets": [{"type": "Asset", "id": 9, "name": null},
                       {"type": "Shot", "id": 1, "name": "s"}]});
        assert_eq!(
            out(json!([7, "a\"b", 0.5, true, "Sequence", 3, null])),
            expected.to_string()
        );
        let expected = json!({"type": "Shot", "id": 6, "code": null, "ratio": null,
            "flag": false, "sg_sequence": null, "assets": []});
        assert_eq!(
            out(json!([6, null, null, false, null, null, "x"])),
            expected.to_string()
        );
    }

    #[test]
    fn non_finite_floats_are_null_as_in_serde_json() {
        assert_eq!(
            serde_json::to_string(&Cell::Float(f64::NAN)).unwrap(),
            "null"
        );
        assert_eq!(Cell::Float(f64::INFINITY).into_json(), Json::Null);
        assert_eq!(serde_json::to_string(&Cell::Float(2.0)).unwrap(), "2.0");
        assert_eq!(Cell::Float(2.0).into_json().to_string(), "2.0");
    }
}
