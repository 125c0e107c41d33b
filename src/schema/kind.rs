//! Shotgun field data types (`data_type.value` in `schema_read`).

/// The kind of a Shotgun field, from its `data_type.value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    Text,
    Number,
    Float,
    Currency,
    Percent,
    Duration,
    Timecode,
    Footage,
    Checkbox,
    Color,
    Date,
    DateTime,
    List,
    StatusList,
    EntityType,
    Uuid,
    Entity,
    MultiEntity,
    TagList,
    Addressing,
    Image,
    Url,
    UrlTemplate,
    Serializable,
    PivotColumn,
    Summary,
    Password,
    Calculated,
    SystemTaskType,
    Unknown,
}

impl FieldKind {
    /// Every kind, in declaration order.
    pub const ALL: [FieldKind; 30] = [
        FieldKind::Text,
        FieldKind::Number,
        FieldKind::Float,
        FieldKind::Currency,
        FieldKind::Percent,
        FieldKind::Duration,
        FieldKind::Timecode,
        FieldKind::Footage,
        FieldKind::Checkbox,
        FieldKind::Color,
        FieldKind::Date,
        FieldKind::DateTime,
        FieldKind::List,
        FieldKind::StatusList,
        FieldKind::EntityType,
        FieldKind::Uuid,
        FieldKind::Entity,
        FieldKind::MultiEntity,
        FieldKind::TagList,
        FieldKind::Addressing,
        FieldKind::Image,
        FieldKind::Url,
        FieldKind::UrlTemplate,
        FieldKind::Serializable,
        FieldKind::PivotColumn,
        FieldKind::Summary,
        FieldKind::Password,
        FieldKind::Calculated,
        FieldKind::SystemTaskType,
        FieldKind::Unknown,
    ];

    /// Maps a raw `data_type.value` to a kind; anything unrecognised is [`FieldKind::Unknown`].
    pub fn from_data_type(s: &str) -> FieldKind {
        match s {
            "text" => FieldKind::Text,
            "number" => FieldKind::Number,
            "float" => FieldKind::Float,
            "currency" => FieldKind::Currency,
            "percent" => FieldKind::Percent,
            "duration" => FieldKind::Duration,
            "timecode" => FieldKind::Timecode,
            "footage" => FieldKind::Footage,
            "checkbox" => FieldKind::Checkbox,
            "color" => FieldKind::Color,
            "date" => FieldKind::Date,
            "date_time" => FieldKind::DateTime,
            "list" => FieldKind::List,
            "status_list" => FieldKind::StatusList,
            "entity_type" => FieldKind::EntityType,
            "uuid" => FieldKind::Uuid,
            "entity" => FieldKind::Entity,
            "multi_entity" => FieldKind::MultiEntity,
            "tag_list" => FieldKind::TagList,
            "addressing" => FieldKind::Addressing,
            "image" => FieldKind::Image,
            "url" => FieldKind::Url,
            "url_template" => FieldKind::UrlTemplate,
            "serializable" => FieldKind::Serializable,
            "pivot_column" => FieldKind::PivotColumn,
            "summary" => FieldKind::Summary,
            "password" => FieldKind::Password,
            "calculated" => FieldKind::Calculated,
            "system_task_type" => FieldKind::SystemTaskType,
            _ => FieldKind::Unknown,
        }
    }

    /// The canonical `data_type` string of this kind (`"unknown"` for [`FieldKind::Unknown`]).
    pub fn data_type(&self) -> &'static str {
        match self {
            FieldKind::Text => "text",
            FieldKind::Number => "number",
            FieldKind::Float => "float",
            FieldKind::Currency => "currency",
            FieldKind::Percent => "percent",
            FieldKind::Duration => "duration",
            FieldKind::Timecode => "timecode",
            FieldKind::Footage => "footage",
            FieldKind::Checkbox => "checkbox",
            FieldKind::Color => "color",
            FieldKind::Date => "date",
            FieldKind::DateTime => "date_time",
            FieldKind::List => "list",
            FieldKind::StatusList => "status_list",
            FieldKind::EntityType => "entity_type",
            FieldKind::Uuid => "uuid",
            FieldKind::Entity => "entity",
            FieldKind::MultiEntity => "multi_entity",
            FieldKind::TagList => "tag_list",
            FieldKind::Addressing => "addressing",
            FieldKind::Image => "image",
            FieldKind::Url => "url",
            FieldKind::UrlTemplate => "url_template",
            FieldKind::Serializable => "serializable",
            FieldKind::PivotColumn => "pivot_column",
            FieldKind::Summary => "summary",
            FieldKind::Password => "password",
            FieldKind::Calculated => "calculated",
            FieldKind::SystemTaskType => "system_task_type",
            FieldKind::Unknown => "unknown",
        }
    }

    /// Why a field of this kind is never cached, or `None` when it is cacheable.
    pub fn uncacheable_reason(&self) -> Option<&'static str> {
        match self {
            FieldKind::Text
            | FieldKind::Number
            | FieldKind::Float
            | FieldKind::Currency
            | FieldKind::Percent
            | FieldKind::Duration
            | FieldKind::Timecode
            | FieldKind::Footage
            | FieldKind::Checkbox
            | FieldKind::Color
            | FieldKind::Date
            | FieldKind::DateTime
            | FieldKind::List
            | FieldKind::StatusList
            | FieldKind::EntityType
            | FieldKind::Uuid
            | FieldKind::SystemTaskType
            | FieldKind::Entity
            | FieldKind::MultiEntity => None,
            FieldKind::Image => Some("image fields hold short-lived signed URLs"),
            FieldKind::Url => Some("url (file/link) fields are not cached"),
            FieldKind::UrlTemplate => Some("url_template fields are not cached"),
            FieldKind::Serializable => Some("serializable fields hold arbitrary JSON"),
            FieldKind::PivotColumn => Some("pivot_column fields are not served by the API"),
            FieldKind::Summary => Some("summary/query fields are computed by the server"),
            FieldKind::Password => Some("password fields are never returned"),
            FieldKind::Calculated => Some("calculated fields are computed by the server"),
            FieldKind::TagList => Some("tag_list fields are not cached"),
            FieldKind::Addressing => Some("addressing fields are not cached"),
            FieldKind::Unknown => Some("unknown data type"),
        }
    }

    /// Shorthand for `uncacheable_reason().is_none()`.
    pub fn is_cacheable(&self) -> bool {
        self.uncacheable_reason().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_serde() {
        for k in FieldKind::ALL {
            if k != FieldKind::Unknown {
                assert_eq!(FieldKind::from_data_type(k.data_type()), k);
            }
            let json = serde_json::to_value(k).unwrap();
            assert_eq!(json, serde_json::Value::String(k.data_type().to_string()));
        }
        assert_eq!(
            FieldKind::from_data_type("something_new"),
            FieldKind::Unknown
        );
    }

    #[test]
    fn cacheability() {
        let cacheable: Vec<_> = FieldKind::ALL.iter().filter(|k| k.is_cacheable()).collect();
        assert_eq!(cacheable.len(), 19);
        assert!(FieldKind::MultiEntity.is_cacheable());
        assert!(FieldKind::SystemTaskType.is_cacheable());
        assert!(FieldKind::TagList.uncacheable_reason().is_some());
        assert!(FieldKind::Unknown.uncacheable_reason().is_some());
        assert!(FieldKind::Image.uncacheable_reason().is_some());
    }
}
