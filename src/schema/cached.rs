//! The cached subset of the site schema and its column layout.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::kind::FieldKind;

/// PostgreSQL's identifier length limit, in bytes.
pub const MAX_IDENT_LEN: usize = 63;

/// Whether `s` is a safe SQL identifier for the cache: `^[a-z][a-z0-9_]*$` and ≤ 63 bytes.
pub fn is_valid_ident(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
        && s.len() <= MAX_IDENT_LEN
}

/// Why `s` is not a valid identifier, or `None` when it is.
pub fn ident_problem(s: &str) -> Option<String> {
    if s.len() > MAX_IDENT_LEN {
        Some(format!(
            "SQL identifier {s:?} is longer than {MAX_IDENT_LEN} bytes"
        ))
    } else if !is_valid_ident(s) {
        Some(format!(
            "SQL identifier {s:?} does not match ^[a-z][a-z0-9_]*$"
        ))
    } else {
        None
    }
}

/// The cache table of an entity type: its lower-cased name.
pub fn table_name(entity_type: &str) -> String {
    entity_type.to_ascii_lowercase()
}

/// The selected types and fields, with their storage layout.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CachedSchema {
    pub types: BTreeMap<String, CachedEntity>,
}

/// One cached entity type.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CachedEntity {
    pub name: String,
    /// Lower-case type name.
    pub table: String,
    pub display_field: Option<String>,
    pub fields: BTreeMap<String, CachedField>,
    /// Cached only because cached link fields point to it: `id`, `updated_at` and the display
    /// field (see [`crate::schema::selection`]). Scanned and followed like any cached type.
    #[serde(default)]
    pub thin: bool,
    /// Fields left uncached because the site answered a value the cache cannot store
    /// ([`crate::schema::marks`]); they are not in `fields`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub uncached: BTreeMap<String, super::marks::UncachedMark>,
}

/// One cached field.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CachedField {
    pub name: String,
    pub kind: FieldKind,
    pub data_type: String,
    pub valid_types: Vec<String>,
    pub layout: ColumnLayout,
}

/// How a field is stored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "layout", rename_all = "snake_case")]
pub enum ColumnLayout {
    /// One column of the entity table.
    Scalar {
        column: String,
        sql: SqlType,
        not_null: bool,
    },
    /// Two columns of the entity table: `{f}__type` and `{f}__id`.
    Entity {
        type_column: String,
        id_column: String,
    },
    /// An association table `{entity_table}_{field}`.
    MultiEntity { table: String },
}

/// Column SQL types used by the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqlType {
    Text,
    BigInt,
    Double,
    Boolean,
}

impl SqlType {
    fn as_str(&self) -> &'static str {
        match self {
            SqlType::Text => "text",
            SqlType::BigInt => "bigint",
            SqlType::Double => "double",
            SqlType::Boolean => "boolean",
        }
    }

    fn parse(s: &str) -> Option<SqlType> {
        Some(match s {
            "text" => SqlType::Text,
            "bigint" => SqlType::BigInt,
            "double" => SqlType::Double,
            "boolean" => SqlType::Boolean,
            _ => return None,
        })
    }
}

impl ColumnLayout {
    /// The storage layout of field `field` of kind `kind` on table `entity_table`; `None` for
    /// kinds that are never cached. A checkbox is nullable here: the selection makes it NOT NULL
    /// only when the site's schema gives it a boolean default ([`ColumnLayout::not_null`]).
    pub fn for_field(entity_table: &str, field: &str, kind: FieldKind) -> Option<ColumnLayout> {
        let scalar = |sql, not_null| ColumnLayout::Scalar {
            column: field.to_owned(),
            sql,
            not_null,
        };
        if field == "id" {
            return Some(scalar(SqlType::BigInt, true));
        }
        Some(match kind {
            FieldKind::Text
            | FieldKind::Color
            | FieldKind::List
            | FieldKind::StatusList
            | FieldKind::EntityType
            | FieldKind::Uuid
            | FieldKind::Footage
            | FieldKind::SystemTaskType
            | FieldKind::Date
            | FieldKind::DateTime => scalar(SqlType::Text, false),
            FieldKind::Number | FieldKind::Percent | FieldKind::Duration | FieldKind::Timecode => {
                scalar(SqlType::BigInt, false)
            }
            FieldKind::Float | FieldKind::Currency => scalar(SqlType::Double, false),
            FieldKind::Checkbox => scalar(SqlType::Boolean, false),
            FieldKind::Entity => ColumnLayout::Entity {
                type_column: format!("{field}__type"),
                id_column: format!("{field}__id"),
            },
            FieldKind::MultiEntity => ColumnLayout::MultiEntity {
                table: format!("{entity_table}_{field}"),
            },
            _ => return None,
        })
    }

    /// This layout with its scalar column NOT NULL (other layouts unchanged).
    pub fn not_null(self) -> ColumnLayout {
        match self {
            ColumnLayout::Scalar { column, sql, .. } => ColumnLayout::Scalar {
                column,
                sql,
                not_null: true,
            },
            other => other,
        }
    }

    /// Columns this layout adds to the entity table (none for multi-entity).
    pub fn columns(&self) -> Vec<&str> {
        match self {
            ColumnLayout::Scalar { column, .. } => vec![column.as_str()],
            ColumnLayout::Entity {
                type_column,
                id_column,
            } => vec![type_column.as_str(), id_column.as_str()],
            ColumnLayout::MultiEntity { .. } => vec![],
        }
    }

    /// Every SQL identifier this layout introduces (columns or association table).
    pub fn identifiers(&self) -> Vec<&str> {
        match self {
            ColumnLayout::MultiEntity { table } => vec![table.as_str()],
            other => other.columns(),
        }
    }

    /// A stable, parseable description of the layout, e.g. `scalar:code:text:null`,
    /// `entity:project__type:project__id`, `multi:shot_assets`.
    pub fn signature(&self) -> String {
        match self {
            ColumnLayout::Scalar {
                column,
                sql,
                not_null,
            } => format!(
                "scalar:{column}:{}:{}",
                sql.as_str(),
                if *not_null { "not_null" } else { "null" }
            ),
            ColumnLayout::Entity {
                type_column,
                id_column,
            } => format!("entity:{type_column}:{id_column}"),
            ColumnLayout::MultiEntity { table } => format!("multi:{table}"),
        }
    }

    /// Parses [`ColumnLayout::signature`] back.
    pub fn from_signature(s: &str) -> Option<ColumnLayout> {
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            ["scalar", column, sql, nn] => Some(ColumnLayout::Scalar {
                column: (*column).to_owned(),
                sql: SqlType::parse(sql)?,
                not_null: match *nn {
                    "not_null" => true,
                    "null" => false,
                    _ => return None,
                },
            }),
            ["entity", t, i] => Some(ColumnLayout::Entity {
                type_column: (*t).to_owned(),
                id_column: (*i).to_owned(),
            }),
            ["multi", table] => Some(ColumnLayout::MultiEntity {
                table: (*table).to_owned(),
            }),
            _ => None,
        }
    }
}

impl CachedField {
    /// See [`ColumnLayout::signature`].
    pub fn layout_signature(&self) -> String {
        self.layout.signature()
    }
}

impl CachedEntity {
    /// A stable SHA-256 hex digest of the table name, fields, data types and layouts; changes
    /// whenever the cached selection of this type changes.
    pub fn signature(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.table.as_bytes());
        h.update(b"\n");
        for f in self.fields.values() {
            h.update(f.name.as_bytes());
            h.update(b"\t");
            h.update(f.data_type.as_bytes());
            h.update(b"\t");
            h.update(f.layout_signature().as_bytes());
            h.update(b"\n");
        }
        let digest = h.finalize();
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The field named `name`.
    pub fn field(&self, name: &str) -> Option<&CachedField> {
        self.fields.get(name)
    }

    /// The association tables of the entity's multi-entity fields.
    pub fn association_tables(&self) -> impl Iterator<Item = &str> {
        self.fields.values().filter_map(|f| match &f.layout {
            ColumnLayout::MultiEntity { table } => Some(table.as_str()),
            _ => None,
        })
    }

    /// All columns of the entity table that hold field values, `id` first.
    pub fn field_columns(&self) -> Vec<&str> {
        let mut cols = vec!["id"];
        for f in self.fields.values() {
            cols.extend(f.layout.columns().into_iter().filter(|c| *c != "id"));
        }
        cols
    }
}

impl CachedSchema {
    /// The cached type named `name`.
    pub fn entity(&self, name: &str) -> Option<&CachedEntity> {
        self.types.get(name)
    }

    /// The cached field `field` of type `ty`.
    pub fn field(&self, ty: &str, field: &str) -> Option<&CachedField> {
        self.types.get(ty)?.fields.get(field)
    }

    /// The types cached only thinly (as link targets), by name.
    pub fn thin_types(&self) -> impl Iterator<Item = &str> {
        self.types
            .values()
            .filter(|e| e.thin)
            .map(|e| e.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idents() {
        assert!(is_valid_ident("sg_cut_in"));
        assert!(is_valid_ident("customentity01"));
        assert!(!is_valid_ident("Shot"));
        assert!(!is_valid_ident("_x"));
        assert!(!is_valid_ident("9a"));
        assert!(!is_valid_ident("a-b"));
        assert!(!is_valid_ident(""));
        assert!(is_valid_ident(&"a".repeat(63)));
        assert!(!is_valid_ident(&"a".repeat(64)));
        assert!(ident_problem(&"a".repeat(64)).unwrap().contains("63"));
    }

    #[test]
    fn layouts_and_signatures() {
        let l = ColumnLayout::for_field("shot", "code", FieldKind::Text).unwrap();
        assert_eq!(l.signature(), "scalar:code:text:null");
        let l = ColumnLayout::for_field("shot", "sg_sequence", FieldKind::Entity).unwrap();
        assert_eq!(l.columns(), vec!["sg_sequence__type", "sg_sequence__id"]);
        assert_eq!(l.signature(), "entity:sg_sequence__type:sg_sequence__id");
        let l = ColumnLayout::for_field("shot", "assets", FieldKind::MultiEntity).unwrap();
        assert_eq!(
            l,
            ColumnLayout::MultiEntity {
                table: "shot_assets".into()
            }
        );
        let l = ColumnLayout::for_field("task", "milestone", FieldKind::Checkbox).unwrap();
        assert_eq!(l.signature(), "scalar:milestone:boolean:null");
        assert_eq!(
            l.not_null().signature(),
            "scalar:milestone:boolean:not_null"
        );
        let l = ColumnLayout::for_field("task", "id", FieldKind::Number).unwrap();
        assert_eq!(l.signature(), "scalar:id:bigint:not_null");
        assert_eq!(
            ColumnLayout::for_field("x", "f", FieldKind::Float)
                .unwrap()
                .signature(),
            "scalar:f:double:null"
        );
        assert_eq!(ColumnLayout::for_field("x", "f", FieldKind::Image), None);
        for k in FieldKind::ALL {
            if let Some(l) = ColumnLayout::for_field("t", "f", k) {
                assert!(k.is_cacheable());
                assert_eq!(ColumnLayout::from_signature(&l.signature()), Some(l));
            } else {
                assert!(!k.is_cacheable());
            }
        }
        assert_eq!(ColumnLayout::from_signature("bogus"), None);
    }
}
