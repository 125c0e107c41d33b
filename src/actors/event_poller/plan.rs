//! What one event means for the cache, decided before anything is fetched (pure).
use serde_json::{Map, Value as Json, json};

use crate::schema::{CachedEntity, CachedField, CachedSchema, ColumnLayout, FieldKind, values};

/// The action an event type names: `Shotgun_<Type>_<Action>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventAction {
    New,
    /// A field change (`attribute_name` says which field).
    Change,
    Retirement,
    Revival,
    /// Anything else (`View`, ...).
    Other,
}

impl EventAction {
    fn parse(action: &str) -> EventAction {
        match action {
            "New" => EventAction::New,
            "Change" => EventAction::Change,
            "Retirement" => EventAction::Retirement,
            "Revival" => EventAction::Revival,
            _ => EventAction::Other,
        }
    }
}

/// How one event was classified (the `/status` counters are keyed by [`EventKind::label`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventKind {
    New,
    /// A scalar or entity field change applied from the event's `new_value`.
    Change,
    /// A change whose value cannot be applied as is: the entity is fetched.
    ChangeRefetch,
    /// A multi-entity change applied from `added`/`removed`.
    Links,
    /// A back-reference change (`meta.actual_attribute_changed`) on the event's entity.
    Backref,
    BackrefNoOwner,
    BackrefEmpty,
    BackrefScalar,
    /// A change made while creating the entity (the New event fetched it whole).
    InCreate,
    Retirement,
    Revival,
    /// A display column changed: reload the schema.
    Schema,
    Uncached,
    UncachedField,
    Malformed,
    Other,
}

impl EventKind {
    pub fn label(self) -> &'static str {
        match self {
            EventKind::New => "new",
            EventKind::Change => "change",
            EventKind::ChangeRefetch => "change_refetch",
            EventKind::Links => "links",
            EventKind::Backref => "backref",
            EventKind::BackrefNoOwner => "backref_no_owner",
            EventKind::BackrefEmpty => "backref_empty",
            EventKind::BackrefScalar => "backref_scalar",
            EventKind::InCreate => "in_create",
            EventKind::Retirement => "retirement",
            EventKind::Revival => "revival",
            EventKind::Schema => "schema",
            EventKind::Uncached => "uncached",
            EventKind::UncachedField => "uncached_field",
            EventKind::Malformed => "malformed",
            EventKind::Other => "other",
        }
    }
}

/// What one event asks for, before fetching.
#[derive(Debug)]
pub(super) enum Action {
    /// Fetch the whole entity and upsert it (New, Revival, or a value we cannot apply).
    Fetch {
        ty: String,
        id: i64,
    },
    /// Write some fields of an existing row.
    Update {
        ty: String,
        record: Map<String, Json>,
    },
    Links {
        ty: String,
        id: i64,
        field: String,
        added: Vec<(String, i64)>,
        removed: Vec<(String, i64)>,
    },
    SetActive {
        ty: String,
        id: i64,
        active: bool,
    },
    /// Re-read the cached entities linking to a revived entity (the site showed them without
    /// the link while it was retired).
    Relink {
        ty: String,
        id: i64,
    },
    Reload,
}

/// One event, classified.
pub(super) struct Planned {
    pub event_id: i64,
    pub kind: EventKind,
    pub actions: Vec<Action>,
}

/// `"2015-07-13 21:54:01 UTC"` (event-log form) → `"2015-07-13T21:54:01Z"`; other strings
/// are returned unchanged.
pub fn event_date_time(s: &str) -> String {
    if crate::time::parse(s).is_some() {
        return s.to_owned();
    }
    let trimmed = s.trim().trim_end_matches("UTC").trim_end();
    for format in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(trimmed, format) {
            return crate::time::format(t.and_utc());
        }
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return crate::time::format(t.with_timezone(&chrono::Utc));
    }
    s.to_owned()
}

fn link_of(v: &Json) -> Option<(String, i64)> {
    Some((v.get("type")?.as_str()?.to_owned(), v.get("id")?.as_i64()?))
}

fn links_of(v: Option<&Json>) -> Vec<(String, i64)> {
    v.and_then(Json::as_array)
        .map(|a| a.iter().filter_map(link_of).collect())
        .unwrap_or_default()
}

/// Splits `Shotgun_<Type>_<Action>`; `None` for other domains.
pub fn parse_event_type(event_type: &str) -> Option<(&str, EventAction)> {
    let (ty, action) = event_type.strip_prefix("Shotgun_")?.rsplit_once('_')?;
    Some((ty, EventAction::parse(action)))
}

/// The `updated_at` a Change event's record carries: the event's time, or the entity's
/// current `updated_at` if that is earlier (the two can straddle a second boundary). Older
/// than the stored row → the writer skips the change, so a replayed event never undoes a
/// newer scan.
fn change_updated_at(event: &Map<String, Json>, ty: &str) -> Option<String> {
    let created = event
        .get("created_at")
        .and_then(Json::as_str)
        .map(event_date_time)
        .filter(|s| crate::time::parse(s).is_some());
    let current = event
        .get(&format!("entity.{ty}.updated_at"))
        .and_then(Json::as_str)
        .map(event_date_time)
        .filter(|s| crate::time::parse(s).is_some());
    match (created, current) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Decides what one event means for the cache.
pub(super) fn plan_event(
    schema: &CachedSchema,
    event: &Map<String, Json>,
    event_id: i64,
) -> Planned {
    let planned = |kind, actions| Planned {
        event_id,
        kind,
        actions,
    };
    let event_type = event.get("event_type").and_then(Json::as_str).unwrap_or("");
    let Some((ty, action)) = parse_event_type(event_type) else {
        return planned(EventKind::Other, vec![]);
    };
    if ty == "DisplayColumn" {
        return match action {
            EventAction::New | EventAction::Change => {
                planned(EventKind::Schema, vec![Action::Reload])
            }
            _ => planned(EventKind::Other, vec![]),
        };
    }
    let Some(entity) = schema.types.get(ty) else {
        return planned(EventKind::Uncached, vec![]);
    };
    let meta = event.get("meta").and_then(Json::as_object);
    let meta_id = meta.and_then(|m| m.get("entity_id")).and_then(Json::as_i64);
    let event_entity = event.get("entity").and_then(link_of);
    let own_id = meta_id.or_else(|| {
        event_entity
            .as_ref()
            .filter(|(t, _)| t == ty)
            .map(|(_, i)| *i)
    });
    match action {
        EventAction::New => match own_id {
            Some(id) => planned(EventKind::New, vec![Action::Fetch { ty: ty.into(), id }]),
            None => planned(EventKind::Malformed, vec![]),
        },
        EventAction::Retirement => match own_id {
            Some(id) => planned(
                EventKind::Retirement,
                vec![Action::SetActive {
                    ty: ty.into(),
                    id,
                    active: false,
                }],
            ),
            None => planned(EventKind::Malformed, vec![]),
        },
        EventAction::Revival => match own_id {
            Some(id) => planned(
                EventKind::Revival,
                vec![
                    Action::SetActive {
                        ty: ty.into(),
                        id,
                        active: true,
                    },
                    Action::Fetch { ty: ty.into(), id },
                    Action::Relink { ty: ty.into(), id },
                ],
            ),
            None => planned(EventKind::Malformed, vec![]),
        },
        EventAction::Change => plan_change(entity, event, meta, event_entity, meta_id, event_id),
        EventAction::Other => planned(EventKind::Other, vec![]),
    }
}

fn plan_change(
    entity: &CachedEntity,
    event: &Map<String, Json>,
    meta: Option<&Map<String, Json>>,
    event_entity: Option<(String, i64)>,
    meta_id: Option<i64>,
    event_id: i64,
) -> Planned {
    let ty = entity.name.as_str();
    let planned = |kind, actions| Planned {
        event_id,
        kind,
        actions,
    };
    let Some(meta) = meta else {
        return planned(EventKind::Malformed, vec![]);
    };
    let attribute = event
        .get("attribute_name")
        .and_then(Json::as_str)
        .or_else(|| meta.get("attribute_name").and_then(Json::as_str))
        .unwrap_or("");
    let Some(field) = entity.fields.get(attribute) else {
        return planned(EventKind::UncachedField, vec![]);
    };
    let backref = meta
        .get("actual_attribute_changed")
        .is_some_and(|v| !v.is_null());
    if backref {
        let (kind, actions) = plan_backref(ty, field, meta, event_entity);
        return planned(kind, actions);
    }
    if meta.get("in_create").and_then(Json::as_bool) == Some(true) {
        // The New event fetched the whole entity.
        return planned(EventKind::InCreate, vec![]);
    }
    let Some(id) = meta_id.or_else(|| event_entity.filter(|(t, _)| t == ty).map(|(_, i)| i)) else {
        return planned(EventKind::Malformed, vec![]);
    };
    let (kind, actions) = plan_field_change(entity, field, event, meta, id);
    planned(kind, actions)
}

/// A back-reference change: `field` of the event's entity (the owner) changed because the
/// other side (`meta.actual_attribute_changed`) did.
fn plan_backref(
    ty: &str,
    field: &CachedField,
    meta: &Map<String, Json>,
    event_entity: Option<(String, i64)>,
) -> (EventKind, Vec<Action>) {
    // The owner of `attribute_name` is the event's entity; meta describes the other side.
    let Some(id) = event_entity.filter(|(t, _)| t == ty).map(|(_, i)| i) else {
        // Retired owner (entity is null): the scanner reconciles it.
        return (EventKind::BackrefNoOwner, vec![]);
    };
    let added = links_of(meta.get("added"));
    let removed = links_of(meta.get("removed"));
    match &field.layout {
        ColumnLayout::MultiEntity { .. } => (
            EventKind::Backref,
            vec![Action::Links {
                ty: ty.into(),
                id,
                field: field.name.clone(),
                added,
                removed,
            }],
        ),
        ColumnLayout::Entity { .. } => {
            let value = meta
                .get("added")
                .and_then(Json::as_array)
                .and_then(|a| a.last())
                .cloned();
            let value = match value {
                Some(v) => v,
                None if !removed.is_empty() => Json::Null,
                None => return (EventKind::BackrefEmpty, vec![]),
            };
            let mut record = Map::new();
            record.insert("type".into(), json!(ty));
            record.insert("id".into(), json!(id));
            record.insert(field.name.clone(), value);
            (
                EventKind::Backref,
                vec![Action::Update {
                    ty: ty.into(),
                    record,
                }],
            )
        }
        ColumnLayout::Scalar { .. } => (EventKind::BackrefScalar, vec![]),
    }
}

/// A change of `field` of `id`: applied from the event when the value can be stored as is,
/// else the entity is fetched. Carries the `updated_at`/`updated_by` the site set with it.
fn plan_field_change(
    entity: &CachedEntity,
    field: &CachedField,
    event: &Map<String, Json>,
    meta: &Map<String, Json>,
    id: i64,
) -> (EventKind, Vec<Action>) {
    let ty = entity.name.as_str();
    let refetch = |kind| (kind, vec![Action::Fetch { ty: ty.into(), id }]);
    // What the site sets along with any change: updated_at and updated_by.
    let mut record = Map::new();
    record.insert("type".into(), json!(ty));
    record.insert("id".into(), json!(id));
    if field.name != "updated_at"
        && entity.fields.contains_key("updated_at")
        && let Some(at) = change_updated_at(event, ty)
    {
        record.insert("updated_at".into(), json!(at));
    }
    if field.name != "updated_by"
        && entity.fields.contains_key("updated_by")
        && let Some(user) = event.get("user").filter(|u| link_of(u).is_some())
    {
        record.insert("updated_by".into(), user.clone());
    }
    match &field.layout {
        ColumnLayout::MultiEntity { .. } => {
            if meta.get("added").is_none() && meta.get("removed").is_none() {
                return refetch(EventKind::ChangeRefetch);
            }
            let mut actions = vec![Action::Links {
                ty: ty.into(),
                id,
                field: field.name.clone(),
                added: links_of(meta.get("added")),
                removed: links_of(meta.get("removed")),
            }];
            if record.len() > 2 {
                actions.push(Action::Update {
                    ty: ty.into(),
                    record,
                });
            }
            (EventKind::Links, actions)
        }
        layout => {
            let Some(raw) = meta.get("new_value") else {
                return refetch(EventKind::ChangeRefetch);
            };
            let value = match (field.kind, raw) {
                (FieldKind::DateTime, Json::String(s)) => Json::String(event_date_time(s)),
                _ => raw.clone(),
            };
            // Check the value the way the writer will; anything odd is fetched instead.
            let ok = match layout {
                ColumnLayout::Scalar { .. } => values::scalar_value(field, &value).is_ok(),
                ColumnLayout::Entity { .. } => values::entity_value(&value).is_ok(),
                ColumnLayout::MultiEntity { .. } => false,
            };
            if !ok || matches!(field.kind, FieldKind::Image | FieldKind::Url) {
                // Image changes carry an Attachment id, not the URL a read returns.
                return refetch(EventKind::ChangeRefetch);
            }
            record.insert(field.name.clone(), value);
            (
                EventKind::Change,
                vec![Action::Update {
                    ty: ty.into(),
                    record,
                }],
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_event_log_date_times() {
        assert_eq!(
            event_date_time("2015-07-13 21:54:01 UTC"),
            "2015-07-13T21:54:01Z"
        );
        assert_eq!(
            event_date_time("2015-07-13T21:54:01Z"),
            "2015-07-13T21:54:01Z"
        );
        assert_eq!(event_date_time("not a date"), "not a date");
    }

    #[test]
    fn parses_event_types() {
        assert_eq!(
            parse_event_type("Shotgun_Shot_Change"),
            Some(("Shot", EventAction::Change))
        );
        assert_eq!(
            parse_event_type("Shotgun_DisplayColumn_New"),
            Some(("DisplayColumn", EventAction::New))
        );
        assert_eq!(parse_event_type("Toolkit_App_Startup"), None);
    }

    fn fixture_schema() -> CachedSchema {
        crate::actors::fixture::schema(&["Shot", "Task", "Asset"])
    }

    fn event(v: Json) -> Map<String, Json> {
        v.as_object().expect("object").clone()
    }

    #[test]
    fn plans_each_kind_of_event() {
        let schema = fixture_schema();
        let kind = |v: Json| plan_event(&schema, &event(v), 1).kind.label();
        assert_eq!(
            kind(json!({"event_type": "Shotgun_DisplayColumn_Change", "meta": {}})),
            "schema"
        );
        assert_eq!(
            kind(json!({"event_type": "Shotgun_Reading_Change"})),
            "uncached"
        );
        assert_eq!(kind(json!({"event_type": "Toolkit_App_Startup"})), "other");
        assert_eq!(kind(json!({"event_type": "Shotgun_Shot_View"})), "other");
        assert_eq!(
            kind(
                json!({"event_type": "Shotgun_Shot_Change", "attribute_name": "smart_cut_in",
                        "meta": {"entity_id": 3, "new_value": 1}})
            ),
            "uncached_field"
        );
        assert_eq!(
            kind(
                json!({"event_type": "Shotgun_Shot_Change", "attribute_name": "code",
                        "meta": {"entity_id": 3, "new_value": "x", "in_create": true}})
            ),
            "in_create"
        );
        // A back-reference whose owner is retired (entity null) cannot be placed.
        assert_eq!(
            kind(
                json!({"event_type": "Shotgun_Shot_Change", "attribute_name": "tasks",
                        "entity": null,
                        "meta": {"actual_attribute_changed": "Task.entity", "entity_type": "Task",
                                 "entity_id": 5, "added": [{"type": "Task", "id": 5}], "removed": []}})
            ),
            "backref_no_owner"
        );
        // A revival sets the entity active, fetches it and re-reads the entities linking to it.
        let plan = plan_event(
            &schema,
            &event(json!({"event_type": "Shotgun_Shot_Revival", "meta": {"entity_id": 6}})),
            1,
        );
        assert_eq!(plan.kind, EventKind::Revival);
        assert!(matches!(
            plan.actions[..],
            [
                Action::SetActive {
                    id: 6,
                    active: true,
                    ..
                },
                Action::Fetch { id: 6, .. },
                Action::Relink { id: 6, .. }
            ]
        ));
        // A value the cache cannot store as is (null checkbox) is fetched instead.
        let plan = plan_event(
            &schema,
            &event(
                json!({"event_type": "Shotgun_Task_Change", "attribute_name": "milestone",
                          "meta": {"entity_id": 4, "new_value": null}}),
            ),
            1,
        );
        assert_eq!(plan.kind, EventKind::ChangeRefetch);
        assert!(matches!(plan.actions[..], [Action::Fetch { id: 4, .. }]));
    }

    #[test]
    fn a_change_carries_the_converted_value_and_bookkeeping() {
        let schema = fixture_schema();
        let plan = plan_event(
            &schema,
            &event(json!({
                "event_type": "Shotgun_Shot_Change", "attribute_name": "sg_sequence",
                "entity": {"type": "Shot", "id": 3},
                "user": {"type": "HumanUser", "id": 9, "name": "J"},
                "created_at": "2026-01-02T03:04:06Z",
                "entity.Shot.updated_at": "2026-01-02T03:04:05Z",
                "meta": {"entity_id": 3, "new_value": {"type": "Sequence", "id": 2, "valid": "valid"}},
            })),
            7,
        );
        assert_eq!(plan.kind, EventKind::Change);
        let [Action::Update { record, .. }] = &plan.actions[..] else {
            panic!("one update");
        };
        assert_eq!(record["sg_sequence"]["id"], 2);
        // The earlier of the event time and the entity's updated_at.
        assert_eq!(record["updated_at"], "2026-01-02T03:04:05Z");
        assert_eq!(record["updated_by"]["id"], 9);
    }
}
