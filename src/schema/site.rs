//! The whole site's schema, as returned by `schema_read` (+ optional `schema_entity_read`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::error::SchemaError;
use super::kind::FieldKind;

/// Every entity type of a site with its fields.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SiteSchema {
    pub entities: BTreeMap<String, EntityDef>,
}

/// One entity type of the site.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EntityDef {
    pub name: String,
    pub display_name: Option<String>,
    pub fields: BTreeMap<String, FieldDef>,
}

/// One field of an entity type.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FieldDef {
    pub entity_type: String,
    pub name: String,
    /// The raw `data_type.value`.
    pub data_type: String,
    pub kind: FieldKind,
    pub display_name: Option<String>,
    pub valid_types: Vec<String>,
    pub valid_values: Vec<String>,
    /// `properties.default_value.value` (`null` when absent).
    #[serde(default)]
    pub default_value: Value,
}

/// `obj[key].value` when it is a string.
fn wrapped_str<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.get(key)?.get("value")?.as_str()
}

/// `obj.properties[key].value` as a list of strings (non-strings ignored).
fn property_list(obj: &Value, key: &str) -> Vec<String> {
    obj.get("properties")
        .and_then(|p| p.get(key))
        .and_then(|p| p.get("value"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

impl SiteSchema {
    /// Parses a `schema_read` reply (`{Type: {field: {data_type: {value}, …}}}`) and, optionally,
    /// a `schema_entity_read` reply (`{Type: {name: {value}}}`) for display names.
    pub fn from_json(
        schema_read: &Value,
        schema_entity_read: Option<&Value>,
    ) -> Result<SiteSchema, SchemaError> {
        let types = schema_read.as_object().ok_or(SchemaError::NotAnObject {
            call: "schema_read",
        })?;
        let entity_names = match schema_entity_read {
            None => None,
            Some(v) => Some(v.as_object().ok_or(SchemaError::NotAnObject {
                call: "schema_entity_read",
            })?),
        };
        let mut entities = BTreeMap::new();
        for (type_name, fields_json) in types {
            let fields_obj = fields_json
                .as_object()
                .ok_or_else(|| SchemaError::BadEntity {
                    entity_type: type_name.clone(),
                })?;
            let mut fields = BTreeMap::new();
            for (field_name, fj) in fields_obj {
                let data_type =
                    wrapped_str(fj, "data_type").ok_or_else(|| SchemaError::MissingDataType {
                        entity_type: type_name.clone(),
                        field: field_name.clone(),
                    })?;
                fields.insert(
                    field_name.clone(),
                    FieldDef {
                        entity_type: type_name.clone(),
                        name: field_name.clone(),
                        data_type: data_type.to_owned(),
                        kind: FieldKind::from_data_type(data_type),
                        display_name: wrapped_str(fj, "name").map(str::to_owned),
                        valid_types: property_list(fj, "valid_types"),
                        valid_values: property_list(fj, "valid_values"),
                        default_value: fj
                            .get("properties")
                            .and_then(|p| p.get("default_value"))
                            .and_then(|p| p.get("value"))
                            .cloned()
                            .unwrap_or(Value::Null),
                    },
                );
            }
            let display_name = entity_names
                .and_then(|m| m.get(type_name))
                .and_then(|e| wrapped_str(e, "name"))
                .map(str::to_owned);
            entities.insert(
                type_name.clone(),
                EntityDef {
                    name: type_name.clone(),
                    display_name,
                    fields,
                },
            );
        }
        Ok(SiteSchema { entities })
    }

    /// The entity type named `name` (internal name, case-sensitive).
    pub fn entity(&self, name: &str) -> Option<&EntityDef> {
        self.entities.get(name)
    }

    /// The field `name` of entity type `ty`.
    pub fn field(&self, ty: &str, name: &str) -> Option<&FieldDef> {
        self.entities.get(ty)?.fields.get(name)
    }
}

impl EntityDef {
    /// The field named `name`.
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.get(name)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn fixture() -> SiteSchema {
        let read: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/schema_read.json")).unwrap();
        let ent: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/schema_entity_read.json"))
                .unwrap();
        SiteSchema::from_json(&read, Some(&ent)).unwrap()
    }

    #[test]
    fn parses_fixture() {
        let s = fixture();
        assert_eq!(s.entities.len(), 19);
        assert_eq!(
            s.field("HumanUser", "email_inbox_general")
                .unwrap()
                .default_value,
            Value::Null
        );
        assert_eq!(
            s.field("Task", "milestone").unwrap().default_value,
            Value::Bool(false)
        );
        let shot = s.entity("Shot").unwrap();
        assert_eq!(shot.display_name.as_deref(), Some("Shot"));
        assert_eq!(
            s.entity("HumanUser").unwrap().display_name.as_deref(),
            Some("Person")
        );
        let f = s.field("Shot", "sg_sequence").unwrap();
        assert_eq!(f.kind, FieldKind::Entity);
        assert_eq!(f.data_type, "entity");
        assert_eq!(f.entity_type, "Shot");
        assert_eq!(f.valid_types, vec!["Sequence".to_string()]);
        let v = s.field("Version", "entity").unwrap();
        assert!(v.valid_types.contains(&"Shot".to_string()) && v.valid_types.len() > 1);
        let st = s.field("Shot", "sg_status_list").unwrap();
        assert_eq!(st.kind, FieldKind::StatusList);
        assert!(!st.valid_values.is_empty());
        assert_eq!(s.field("Task", "due_date").unwrap().kind, FieldKind::Date);
        assert_eq!(
            s.field("Shot", "id").unwrap().display_name.as_deref(),
            Some("Id")
        );
        assert!(s.field("Shot", "nope").is_none());
        assert!(s.field("Nope", "id").is_none());
        // Without schema_entity_read.
        let read: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/schema_read.json")).unwrap();
        let s2 = SiteSchema::from_json(&read, None).unwrap();
        assert_eq!(s2.entity("Shot").unwrap().display_name, None);
    }

    #[test]
    fn tolerant_and_strict() {
        let v = serde_json::json!({"Thing": {
            "code": {"data_type": {"value": "text"}, "extra": 1},
            "odd": {"data_type": {"value": "brand_new"}, "properties": {"valid_types": {"value": null}}}
        }, "Empty": {}});
        let s = SiteSchema::from_json(&v, None).unwrap();
        assert_eq!(s.field("Thing", "code").unwrap().kind, FieldKind::Text);
        let odd = s.field("Thing", "odd").unwrap();
        assert_eq!(odd.kind, FieldKind::Unknown);
        assert_eq!(odd.data_type, "brand_new");
        assert!(odd.valid_types.is_empty());
        assert!(s.entity("Empty").unwrap().fields.is_empty());

        let err = SiteSchema::from_json(&serde_json::json!([1]), None).unwrap_err();
        assert!(matches!(err, SchemaError::NotAnObject { .. }));
        let err = SiteSchema::from_json(&serde_json::json!({"Thing": 3}), None).unwrap_err();
        assert_eq!(
            err,
            SchemaError::BadEntity {
                entity_type: "Thing".into()
            }
        );
        let err = SiteSchema::from_json(
            &serde_json::json!({"Thing": {"f": {"data_type": {"editable": false}}}}),
            None,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "schema_read: field Thing.f has no string data_type.value"
        );
    }

    #[test]
    #[ignore = "reads the full site schema from /work/shared/data"]
    fn parses_full_site() {
        let text = std::fs::read_to_string("/work/shared/data/shotgun-schema/schema.json").unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let s = SiteSchema::from_json(&v, None).unwrap();
        assert_eq!(s.entities.len(), 77);
        use crate::schema::ddl::{AppliedSchema, Backend, plan_ddl};
        use crate::schema::selection::{SelectionRules, select};
        let rules = SelectionRules {
            include: vec!["*".into()],
            exclude: vec![],
        };
        let (cached, report) = select(&s, &rules).unwrap();
        assert_eq!(cached.types.len(), 76);
        assert!(!report.skipped.is_empty());
        for b in [Backend::Sqlite, Backend::Postgres] {
            let plan = plan_ddl(&cached, &AppliedSchema::default(), b);
            assert_eq!(plan.new_types.len(), 76);
            assert!(plan_ddl(&cached, &AppliedSchema::from_cached(&cached), b).is_empty());
        }
    }
}
