//! The site schema: a `schema_read()` reply plus an optional `schema_entity_read()` reply.

use serde_json::{Map, Value, json};

/// The fixture schema shipped with the repository (10 entity types).
pub const FIXTURE_SCHEMA_READ: &str = include_str!("../../fixtures/schema_read.json");
/// The matching `schema_entity_read()` fixture.
pub const FIXTURE_SCHEMA_ENTITY_READ: &str = include_str!("../../fixtures/schema_entity_read.json");

/// A loaded schema. Field definitions are kept exactly as the site returns them.
#[derive(Debug, Clone)]
pub struct Schema {
    fields: Map<String, Value>,
    entities: Map<String, Value>,
}

impl Schema {
    /// The repository's fixture schema.
    pub fn fixture() -> Schema {
        Schema::from_strs(FIXTURE_SCHEMA_READ, Some(FIXTURE_SCHEMA_ENTITY_READ))
            .expect("fixture schema is valid JSON")
    }

    /// Parse a `schema_read()` reply (and optionally a `schema_entity_read()` reply).
    /// A `{"results": ...}` envelope is accepted and unwrapped.
    pub fn from_strs(
        schema_read: &str,
        schema_entity_read: Option<&str>,
    ) -> Result<Schema, String> {
        let fields: Value =
            serde_json::from_str(schema_read).map_err(|e| format!("schema_read JSON: {e}"))?;
        let entities = match schema_entity_read {
            Some(s) => {
                Some(serde_json::from_str(s).map_err(|e| format!("schema_entity_read JSON: {e}"))?)
            }
            None => None,
        };
        Schema::from_values(fields, entities)
    }

    /// Build from already-parsed JSON values.
    pub fn from_values(
        schema_read: Value,
        schema_entity_read: Option<Value>,
    ) -> Result<Schema, String> {
        let fields = match unwrap_results(schema_read) {
            Value::Object(m) => m,
            _ => return Err("schema_read must be a JSON object".into()),
        };
        let entities = match schema_entity_read.map(unwrap_results) {
            Some(Value::Object(m)) => m,
            Some(_) => return Err("schema_entity_read must be a JSON object".into()),
            None => fields
                .keys()
                .map(|t| {
                    (
                        t.clone(),
                        json!({"name": {"editable": false, "value": t}, "visible": {"editable": false, "value": true}}),
                    )
                })
                .collect(),
        };
        Ok(Schema { fields, entities })
    }

    pub fn has_type(&self, ty: &str) -> bool {
        self.fields.get(ty).is_some_and(Value::is_object)
    }

    /// Entity type names.
    pub fn types(&self) -> impl Iterator<Item = &String> {
        self.fields.keys()
    }

    /// Field definitions of one type.
    pub fn type_fields(&self, ty: &str) -> Option<&Map<String, Value>> {
        self.fields.get(ty).and_then(Value::as_object)
    }

    /// The `data_type.value` of a field, if the field exists.
    pub fn data_type(&self, ty: &str, field: &str) -> Option<&str> {
        self.type_fields(ty)?
            .get(field)?
            .get("data_type")?
            .get("value")?
            .as_str()
    }

    /// `properties.valid_types.value` of a link field (empty when absent).
    pub fn valid_types(&self, ty: &str, field: &str) -> Vec<String> {
        self.property(ty, field, "valid_types")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `properties.<name>.value` of a field.
    pub fn property(&self, ty: &str, field: &str, name: &str) -> Option<&Value> {
        self.type_fields(ty)?
            .get(field)?
            .get("properties")?
            .get(name)?
            .get("value")
    }

    /// The `schema_read` reply.
    pub fn schema_read(&self) -> Value {
        Value::Object(self.fields.clone())
    }

    /// The `schema_entity_read` reply.
    pub fn schema_entity_read(&self) -> Value {
        Value::Object(self.entities.clone())
    }

    /// The field used as the `name` key of links to `ty` (§7): the known exceptions first, then
    /// `code`, `name`, `title`, whichever the type has. `None`: links to it have no name.
    pub fn name_field(&self, ty: &str) -> Option<&str> {
        let preferred: &[&str] = match ty {
            "Project" | "HumanUser" | "Department" | "Tag" | "Status" => &["name"],
            "ApiUser" => &["name", "firstname"],
            "Task" | "Reply" => &["content"],
            "Note" => &["subject"],
            "Delivery" | "Ticket" => &["title"],
            // Links to DisplayColumn carry the field's internal name.
            "DisplayColumn" => return Some("name"),
            _ => &[],
        };
        let fields = self.type_fields(ty)?;
        preferred
            .iter()
            .chain(["code", "name", "title"].iter())
            .find_map(|f| fields.get_key_value(*f).map(|(k, _)| k.as_str()))
    }
}

fn unwrap_results(v: Value) -> Value {
    match v {
        Value::Object(mut m) if m.len() == 1 && m.contains_key("results") => {
            m.remove("results").unwrap_or(Value::Null)
        }
        other => other,
    }
}
