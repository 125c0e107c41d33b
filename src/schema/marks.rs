//! Fields left uncached for one type because the site answered a value the cache cannot
//! store (a `null` for a NOT NULL checkbox, an object for a text field…).
//!
//! The decision is made here and only here: [`UncachedMark::for_value`] says whether a value
//! the DbWriter rejected marks its field (never `id` or `updated_at`, which every row needs),
//! and [`CachedSchema::apply_marks`] removes every marked field from the schema the compiler,
//! the scanner and the writer see, as long as the site still defines the field as it did when
//! it was marked (a retyped field, or one whose layout changed, is cached again and its stale
//! mark dropped). The marks are stored in `sgcache_uncached_field`, so a restart or a schema
//! refresh keeps them; the table's columns stay, only unused.
use serde_json::Value as Json;

use super::cached::{CachedEntity, CachedField, CachedSchema};

/// Fields every row needs: a value of theirs that cannot be stored rejects the record.
const NEVER_MARKED: &[&str] = &["id", "updated_at"];

/// A field of one type left uncached, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UncachedMark {
    pub entity_type: String,
    pub field: String,
    /// The field's site data type and storage layout when it was marked.
    pub data_type: String,
    pub layout_signature: String,
    /// The JSON kind of the value that could not be stored (`null`, `object`…).
    pub value_kind: String,
    /// What the DbWriter said about the value.
    pub problem: String,
    pub since: String,
}

/// The JSON kind of a value, for logs and `/status`.
pub fn json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

impl UncachedMark {
    /// The mark for `entity.field` whose `value` could not be stored (`problem`), or `None`
    /// when the field is not cached or every row needs it.
    pub fn for_value(
        entity: &CachedEntity,
        field: &str,
        value: Option<&Json>,
        problem: &str,
        since: &str,
    ) -> Option<UncachedMark> {
        if NEVER_MARKED.contains(&field) {
            return None;
        }
        let cached = entity.fields.get(field)?;
        Some(UncachedMark {
            entity_type: entity.name.clone(),
            field: field.to_owned(),
            data_type: cached.data_type.clone(),
            layout_signature: cached.layout_signature(),
            value_kind: json_kind(value.unwrap_or(&Json::Null)).to_owned(),
            problem: problem.to_owned(),
            since: since.to_owned(),
        })
    }

    /// Whether the mark still holds for `field` (the same site definition).
    pub fn applies_to(&self, field: &CachedField) -> bool {
        field.data_type == self.data_type && field.layout_signature() == self.layout_signature
    }

    /// The reason shown on `/status` and in pass-through details.
    pub fn reason(&self) -> String {
        format!(
            "the site answered a {} value the cache cannot store: {}",
            self.value_kind, self.problem
        )
    }
}

impl CachedSchema {
    /// Removes every marked field whose site definition is unchanged from its type (the mark
    /// is kept in [`CachedEntity::uncached`]); returns the marks that no longer apply.
    pub fn apply_marks(
        &mut self,
        marks: impl IntoIterator<Item = UncachedMark>,
    ) -> Vec<UncachedMark> {
        let mut stale = Vec::new();
        for mark in marks {
            let not_applied = match self.types.get_mut(&mark.entity_type) {
                Some(entity) => entity.apply_mark(mark),
                None => Some(mark),
            };
            stale.extend(not_applied);
        }
        stale
    }

    /// Every field left uncached by a mark, by type and field.
    pub fn uncached_marks(&self) -> impl Iterator<Item = &UncachedMark> {
        self.types.values().flat_map(|e| e.uncached.values())
    }
}

impl CachedEntity {
    /// Removes the marked field (kept in [`CachedEntity::uncached`]) if its site definition
    /// is unchanged; gives the mark back (stale) when it no longer applies.
    pub fn apply_mark(&mut self, mark: UncachedMark) -> Option<UncachedMark> {
        match self.fields.get(&mark.field) {
            Some(field) if mark.applies_to(field) => {
                self.fields.remove(&mark.field);
                self.uncached.insert(mark.field.clone(), mark);
                None
            }
            // Already removed by an earlier mark.
            None if self.uncached.contains_key(&mark.field) => None,
            _ => Some(mark),
        }
    }

    /// `Type.field`, with the reason when a mark left the field uncached: the detail of an
    /// `uncached_field` pass-through.
    pub fn uncached_detail(&self, field: &str) -> String {
        match self.uncached.get(field) {
            Some(mark) => format!("{}.{field} ({})", self.name, mark.reason()),
            None => format!("{}.{field}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::schema::{ColumnLayout, FieldKind};

    fn entity() -> CachedEntity {
        let field = |name: &str, kind: FieldKind| {
            let layout = ColumnLayout::for_field("humanuser", name, kind).expect("cacheable");
            let f = CachedField {
                name: name.to_owned(),
                kind,
                data_type: kind.data_type().to_owned(),
                valid_types: vec![],
                layout,
            };
            (name.to_owned(), f)
        };
        CachedEntity {
            name: "HumanUser".into(),
            table: "humanuser".into(),
            display_field: Some("name".into()),
            fields: [
                field("id", FieldKind::Number),
                field("updated_at", FieldKind::DateTime),
                field("name", FieldKind::Text),
                field("email_inbox_general", FieldKind::Checkbox),
            ]
            .into_iter()
            .collect(),
            thin: false,
            uncached: Default::default(),
        }
    }

    fn schema() -> CachedSchema {
        CachedSchema {
            types: [("HumanUser".to_owned(), entity())].into_iter().collect(),
        }
    }

    #[test]
    fn id_updated_at_and_uncached_fields_are_never_marked() {
        let e = entity();
        for field in ["id", "updated_at", "not_cached"] {
            assert_eq!(UncachedMark::for_value(&e, field, None, "bad", "t"), None);
        }
        let mark = UncachedMark::for_value(&e, "name", Some(&json!({"a": 1})), "bad", "t")
            .expect("a mark");
        assert_eq!(mark.value_kind, "object");
        assert_eq!(mark.data_type, "text");
        assert!(mark.reason().contains("object") && mark.reason().contains("bad"));
    }

    #[test]
    fn marks_remove_fields_until_the_site_definition_changes() {
        let e = entity();
        let mark = UncachedMark::for_value(&e, "email_inbox_general", Some(&Json::Null), "x", "t")
            .expect("a mark");
        let mut s = schema();
        assert!(s.apply_marks([mark.clone(), mark.clone()]).is_empty());
        let hu = &s.types["HumanUser"];
        assert!(hu.field("email_inbox_general").is_none());
        assert!(
            hu.uncached_detail("email_inbox_general")
                .contains("null value")
        );
        assert_eq!(hu.uncached_detail("name"), "HumanUser.name");
        assert_eq!(s.uncached_marks().count(), 1);
        assert_ne!(hu.signature(), entity().signature());

        // Retyped on the site: the mark no longer applies and the field is cached again.
        let mut retyped = schema();
        let field = retyped
            .types
            .get_mut("HumanUser")
            .and_then(|e| e.fields.get_mut("email_inbox_general"))
            .expect("field");
        field.data_type = "text".into();
        assert_eq!(retyped.apply_marks([mark.clone()]), vec![mark.clone()]);
        assert!(
            retyped.types["HumanUser"]
                .field("email_inbox_general")
                .is_some()
        );
        // A type no longer cached: stale too.
        let mut other = mark;
        other.entity_type = "Shot".into();
        assert_eq!(schema().apply_marks([other.clone()]), vec![other]);
    }
}
