//! Errors raised while parsing a site schema or applying selection rules.

/// A problem with the site schema or with the cache selection rules.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// The `schema_read` (or `schema_entity_read`) reply is not a JSON object.
    #[error("{call} reply is not a JSON object")]
    NotAnObject { call: &'static str },
    /// An entity type's entry in `schema_read` is not an object of fields.
    #[error("schema_read: entity type {entity_type} is not an object of fields")]
    BadEntity { entity_type: String },
    /// A field has no (string) `data_type.value`.
    #[error("schema_read: field {entity_type}.{field} has no string data_type.value")]
    MissingDataType { entity_type: String, field: String },
    /// An include rule names an entity type the site does not have.
    #[error("selection rule {rule:?}: unknown entity type {entity_type}")]
    UnknownType { rule: String, entity_type: String },
    /// An include rule names a field the entity type does not have.
    #[error("selection rule {rule:?}: entity type {entity_type} has no field {field}")]
    UnknownField {
        rule: String,
        entity_type: String,
        field: String,
    },
    /// A rule that cannot be parsed.
    #[error("selection rule {rule:?} is invalid: {reason}")]
    InvalidRule { rule: String, reason: String },
}
