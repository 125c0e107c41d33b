//! The in-memory entity store: rows per entity type, id sequences, value validation and the
//! write operations (create / update / delete / revive) including event logging.

use crate::error::Fault;
use crate::schema::Schema;
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// The entity type of the event log.
pub const EVENT_TYPE: &str = "EventLogEntry";

/// One stored entity. Links are stored as `{"type", "id"}` only; `name` is computed when read.
#[derive(Debug, Clone)]
pub struct Row {
    pub fields: Map<String, Value>,
    pub retired: bool,
}

/// Who performs a write.
#[derive(Debug, Clone)]
pub struct Actor {
    /// `{"type": "ApiUser"|"HumanUser", "id": N}`
    pub link: Value,
    pub generate_events: bool,
    /// Copied onto the events (`session_uuid` of the auth params).
    pub session_uuid: Value,
}

/// `multi_entity_update_mode` of one field in an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMode {
    Set,
    Add,
    Remove,
}

/// One `{field_name, value, multi_entity_update_mode?}` item.
#[derive(Debug, Clone)]
pub struct FieldWrite {
    pub field: String,
    pub value: Value,
    pub mode: UpdateMode,
}

impl FieldWrite {
    pub fn set(field: impl Into<String>, value: Value) -> FieldWrite {
        FieldWrite {
            field: field.into(),
            value,
            mode: UpdateMode::Set,
        }
    }
}

/// A pair of link fields kept consistent with each other (e.g. `Shot.assets` <-> `Asset.shots`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReverseField {
    pub a_type: String,
    pub a_field: String,
    pub b_type: String,
    pub b_field: String,
}

impl ReverseField {
    pub fn new(a: &str, b: &str) -> ReverseField {
        let (at, af) = a.split_once('.').unwrap_or((a, ""));
        let (bt, bf) = b.split_once('.').unwrap_or((b, ""));
        ReverseField {
            a_type: at.into(),
            a_field: af.into(),
            b_type: bt.into(),
            b_field: bf.into(),
        }
    }
}

/// The whole data set. `Clone` is used by `batch` to apply a transaction on a copy.
#[derive(Clone)]
pub struct Store {
    pub schema: Arc<Schema>,
    tables: HashMap<String, BTreeMap<i64, Row>>,
    next_ids: HashMap<String, i64>,
    pub first_id: i64,
    /// Ids of events that exist but are not yet visible (see `hold_events`).
    pub held: BTreeSet<i64>,
    pub holding: bool,
    pub now_offset: Duration,
    /// When set, the site clock stands still at this instant (plus `now_offset`).
    pub frozen_now: Option<DateTime<Utc>>,
    pub validate_links: bool,
    pub reverse: Vec<ReverseField>,
    /// The site's rules where the documentation is silent.
    pub semantics: crate::semantics::Semantics,
}

pub fn fmt_wire(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn fmt_event(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Parse any accepted date-time spelling into UTC.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(n) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%SZ") {
        return Some(n.and_utc());
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    if let Ok(n) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S UTC") {
        return Some(n.and_utc());
    }
    None
}

/// Is this a link dict? Returns (type, id).
pub fn as_link(v: &Value) -> Option<(&str, i64)> {
    let o = v.as_object()?;
    Some((o.get("type")?.as_str()?, o.get("id")?.as_i64()?))
}

pub fn link(ty: &str, id: i64) -> Value {
    json!({"type": ty, "id": id})
}

fn links_of(v: &Value) -> Vec<(String, i64)> {
    match v {
        Value::Array(a) => a
            .iter()
            .filter_map(as_link)
            .map(|(t, i)| (t.to_string(), i))
            .collect(),
        other => as_link(other)
            .map(|(t, i)| vec![(t.to_string(), i)])
            .unwrap_or_default(),
    }
}

impl Store {
    pub fn new(schema: Arc<Schema>, first_id: i64) -> Store {
        Store {
            schema,
            tables: HashMap::new(),
            next_ids: HashMap::new(),
            first_id,
            held: BTreeSet::new(),
            holding: false,
            now_offset: Duration::zero(),
            frozen_now: None,
            validate_links: true,
            reverse: Vec::new(),
            semantics: Default::default(),
        }
    }

    /// The site clock (UTC, second precision, shifted by `now_offset`).
    pub fn now(&self) -> DateTime<Utc> {
        let t = self.frozen_now.unwrap_or_else(Utc::now) + self.now_offset;
        DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
    }

    pub fn table(&self, ty: &str) -> Option<&BTreeMap<i64, Row>> {
        self.tables.get(ty)
    }

    pub fn get(&self, ty: &str, id: i64) -> Option<&Row> {
        self.tables.get(ty)?.get(&id)
    }

    fn get_mut(&mut self, ty: &str, id: i64) -> Option<&mut Row> {
        self.tables.get_mut(ty)?.get_mut(&id)
    }

    /// Consume and return the next id of a type.
    pub fn alloc_id(&mut self, ty: &str) -> i64 {
        let first = self.first_id;
        let next = self.next_ids.entry(ty.to_string()).or_insert(first);
        let id = *next;
        *next += 1;
        id
    }

    /// Is the event with this id visible to reads?
    pub fn event_visible(&self, id: i64) -> bool {
        !self.held.contains(&id)
    }

    /// The display name of the entity a link points at (`null` when unknown).
    pub fn link_name(&self, ty: &str, id: i64) -> Value {
        let Some(field) = self.schema.name_field(ty) else {
            return Value::Null;
        };
        self.get(ty, id)
            .and_then(|r| r.fields.get(field))
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// `{"type","id","name"}` for a stored link value; other values unchanged; lists mapped.
    pub fn expand(&self, v: &Value) -> Value {
        match v {
            Value::Array(a) => Value::Array(a.iter().map(|x| self.expand(x)).collect()),
            other => match as_link(other) {
                Some((t, i)) => json!({"type": t, "id": i, "name": self.link_name(t, i)}),
                None => other.clone(),
            },
        }
    }

    /// Whether a link resolves: its target exists and is not retired.
    pub fn link_live(&self, ty: &str, id: i64) -> bool {
        self.get(ty, id).is_some_and(|r| !r.retired)
    }

    /// The value of a plain field as reads see it. A link to a retired entity reads as if it
    /// were absent: an entity field is null, a multi-entity list leaves it out (the site nulls
    /// the `entity` of an event while that entity is retired, §9.1; the same rule holds for
    /// every link field). Reviving the target restores the link.
    pub fn field_value(&self, ty: &str, row: &Row, field: &str) -> Value {
        let v = row.fields.get(field).cloned().unwrap_or(Value::Null);
        let dt =
            self.schema
                .data_type(ty, field)
                .unwrap_or(if ty == EVENT_TYPE && field == "entity" {
                    "entity"
                } else {
                    ""
                });
        match (dt, v) {
            ("entity", v) => match as_link(&v) {
                Some((t, i)) if !self.link_live(t, i) => Value::Null,
                _ => v,
            },
            ("multi_entity", Value::Array(a)) => Value::Array(
                a.into_iter()
                    .filter(|l| as_link(l).is_none_or(|(t, i)| self.link_live(t, i)))
                    .collect(),
            ),
            (_, v) => v,
        }
    }

    /// Expand links only for link-typed fields (a `serializable` value may look like a link).
    pub fn expand_typed(&self, dt: &str, v: &Value) -> Value {
        if matches!(dt, "entity" | "multi_entity") {
            self.expand(v)
        } else {
            v.clone()
        }
    }

    /// Resolve a (possibly deep, `a.T.b`) return-field path and render it (links with `name`).
    /// `None` = the field does not exist (omit it).
    pub fn resolve_path(&self, ty: &str, row: &Row, path: &str) -> Option<Value> {
        let (v, dt) = self.resolve_raw(ty, row, path)?;
        Some(self.expand_typed(&dt, &v))
    }

    /// Resolve a path to its stored value and data type.
    pub fn resolve_raw(&self, ty: &str, row: &Row, path: &str) -> Option<(Value, String)> {
        let parts: Vec<&str> = path.split('.').collect();
        if parts.len() == 1 {
            let dt = self.schema.data_type(ty, path)?.to_string();
            return Some((self.field_value(ty, row, path), dt));
        }
        if parts.len().is_multiple_of(2) {
            return None;
        }
        // Check the path exists in the schema first.
        let mut cur_ty = ty;
        for pair in parts[..parts.len() - 1].chunks(2) {
            let dt = self.schema.data_type(cur_ty, pair[0])?;
            if dt != "entity" {
                return None;
            }
            cur_ty = pair[1];
        }
        let dt = self
            .schema
            .data_type(cur_ty, parts[parts.len() - 1])?
            .to_string();
        let mut cur_ty = ty.to_string();
        let mut cur_row = row;
        for pair in parts[..parts.len() - 1].chunks(2) {
            let v = self.field_value(&cur_ty, cur_row, pair[0]);
            match as_link(&v) {
                Some((t, i)) if t == pair[1] => match self.get(t, i) {
                    Some(r) => {
                        cur_row = r;
                        cur_ty = t.to_string();
                    }
                    None => return Some((Value::Null, dt)),
                },
                _ => return Some((Value::Null, dt)),
            }
        }
        Some((
            self.field_value(&cur_ty, cur_row, parts[parts.len() - 1]),
            dt,
        ))
    }

    /// Full record of a row as reads show it (every field, links expanded, links to retired
    /// entities left out) plus `type`, `id`, `_retired`.
    pub fn full_record(&self, ty: &str, row: &Row) -> Value {
        self.record(ty, row, false)
    }

    /// [`Store::full_record`] with links as stored: links to retired entities included.
    pub fn stored_record(&self, ty: &str, row: &Row) -> Value {
        self.record(ty, row, true)
    }

    fn record(&self, ty: &str, row: &Row, stored: bool) -> Value {
        let mut out = Map::new();
        out.insert("type".into(), json!(ty));
        out.insert(
            "id".into(),
            row.fields.get("id").cloned().unwrap_or(Value::Null),
        );
        for (k, _) in row.fields.iter() {
            if k != "id" {
                let dt =
                    self.schema
                        .data_type(ty, k)
                        .unwrap_or(if ty == EVENT_TYPE && k == "meta" {
                            "serializable"
                        } else {
                            "entity"
                        });
                let v = if stored {
                    row.fields.get(k).cloned().unwrap_or(Value::Null)
                } else {
                    self.field_value(ty, row, k)
                };
                out.insert(k.clone(), self.expand_typed(dt, &v));
            }
        }
        out.insert("_retired".into(), json!(row.retired));
        Value::Object(out)
    }

    /// Default value of a field for a new row.
    fn default_value(&self, ty: &str, field: &str, dt: &str) -> Value {
        match dt {
            // A checkbox whose schema default is null reads as null until it is set.
            "checkbox" => match self.schema.property(ty, field, "default_value") {
                Some(Value::Null) => Value::Null,
                other => Value::Bool(other.and_then(Value::as_bool).unwrap_or(false)),
            },
            "multi_entity" | "tag_list" => json!([]),
            "entity" | "image" | "url" | "serializable" | "date_time" | "date" => Value::Null,
            _ => self
                .schema
                .property(ty, field, "default_value")
                .cloned()
                .unwrap_or(Value::Null),
        }
    }

    fn validate_link(
        &self,
        method: &str,
        ty: &str,
        field: &str,
        v: &Value,
    ) -> Result<Value, Fault> {
        let bad = || {
            Fault::new(format!(
                "API {method}() {ty}.{field} expects an entity hash with 'type' and 'id', got {v}"
            ))
        };
        let (t, i) = as_link(v).ok_or_else(bad)?;
        let valid = self.schema.valid_types(ty, field);
        if !valid.is_empty() && !valid.iter().any(|x| x == t) {
            return Err(Fault::new(format!(
                "API {method}() {ty}.{field} can only link to {}, not to {t}",
                valid.join(", ")
            )));
        }
        if self.validate_links && self.schema.has_type(t) && self.get(t, i).is_none() {
            return Err(Fault::new(format!(
                "API {method}() {ty}.{field}: linked entity {t} #{i} does not exist"
            )));
        }
        Ok(link(t, i))
    }

    /// Check and normalise a written value according to the field's data type.
    pub fn normalize(
        &self,
        method: &str,
        ty: &str,
        field: &str,
        dt: &str,
        v: &Value,
    ) -> Result<Value, Fault> {
        let wrong = |what: &str| {
            Fault::new(format!(
                "API {method}() {ty}.{field} ({dt}) expects {what}, got {v}"
            ))
        };
        let out = match dt {
            "text" | "color" | "entity_type" | "uuid" | "footage" | "password"
            | "system_task_type" | "image" | "url_template" => match v {
                Value::Null | Value::String(_) => v.clone(),
                _ => return Err(wrong("a string or null")),
            },
            "list" | "status_list" => match v {
                Value::Null => Value::Null,
                Value::String(s) => {
                    let valid: Vec<&str> = self
                        .schema
                        .property(ty, field, "valid_values")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    if !valid.is_empty() && !valid.contains(&s.as_str()) {
                        return Err(Fault::new(format!(
                            "API {method}() {ty}.{field}: '{s}' is not a valid value (valid values: {})",
                            valid.join(", ")
                        )));
                    }
                    v.clone()
                }
                _ => return Err(wrong("a string or null")),
            },
            "number" | "percent" | "duration" | "timecode" => match v {
                Value::Null => Value::Null,
                Value::Number(n) if n.is_i64() => v.clone(),
                Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => {
                    json!(n.as_f64().unwrap_or_default() as i64)
                }
                _ => return Err(wrong("an integer or null")),
            },
            "float" | "currency" => match v {
                Value::Null | Value::Number(_) => v.clone(),
                _ => return Err(wrong("a number or null")),
            },
            "checkbox" => match v {
                Value::Bool(_) => v.clone(),
                Value::Null => Value::Bool(false),
                _ => return Err(wrong("a boolean")),
            },
            "date" => match v {
                Value::Null => Value::Null,
                Value::String(s) if NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() => v.clone(),
                _ => return Err(wrong("a date string YYYY-MM-DD or null")),
            },
            "date_time" => match v {
                Value::Null => Value::Null,
                Value::String(s) => match parse_datetime(s) {
                    Some(t) => json!(fmt_wire(t)),
                    None => return Err(wrong("a date-time string YYYY-MM-DDTHH:MM:SSZ or null")),
                },
                _ => return Err(wrong("a date-time string or null")),
            },
            "entity" => match v {
                Value::Null => Value::Null,
                _ => self.validate_link(method, ty, field, v)?,
            },
            "multi_entity" => match v {
                Value::Null => json!([]),
                Value::Array(a) => {
                    let mut out: Vec<Value> = Vec::new();
                    for x in a {
                        let l = self.validate_link(method, ty, field, x)?;
                        if !out.contains(&l) {
                            out.push(l);
                        }
                    }
                    Value::Array(out)
                }
                _ => return Err(wrong("a list of entity hashes")),
            },
            "tag_list" => match v {
                Value::Null => json!([]),
                Value::Array(a) if a.iter().all(|x| x.is_string()) => v.clone(),
                _ => return Err(wrong("a list of strings")),
            },
            "url" => match v {
                Value::Null | Value::Object(_) | Value::String(_) => v.clone(),
                _ => return Err(wrong("a url hash or null")),
            },
            "summary" | "pivot_column" | "calculated" => {
                return Err(Fault::new(format!(
                    "API {method}() {ty}.{field} is not editable"
                )));
            }
            _ => v.clone(),
        };
        Ok(out)
    }

    fn field_dt(&self, method: &str, ty: &str, field: &str) -> Result<String, Fault> {
        self.schema
            .data_type(ty, field)
            .map(String::from)
            .ok_or_else(|| Fault::new(format!("API {method}() {ty}.{field} doesn't exist")))
    }

    fn check_type(&self, method: &str, ty: &str) -> Result<(), Fault> {
        if self.schema.has_type(ty) {
            Ok(())
        } else {
            Err(Fault::new(format!(
                "API {method}() unknown entity type '{ty}'"
            )))
        }
    }

    fn project_of(&self, ty: &str, id: i64) -> Value {
        let Some(row) = self.get(ty, id) else {
            return Value::Null;
        };
        match row.fields.get("project").and_then(as_link) {
            Some((t, i)) => self.expand(&link(t, i)),
            None => Value::Null,
        }
    }

    /// Append one EventLogEntry and return its id.
    #[allow(clippy::too_many_arguments)]
    pub fn log_event(
        &mut self,
        actor: &Actor,
        event_type: String,
        attribute_name: Option<&str>,
        entity: Value,
        project: Value,
        meta: Value,
        description: String,
    ) -> i64 {
        let id = self.alloc_id(EVENT_TYPE);
        let now = self.now();
        let mut f = Map::new();
        f.insert("id".into(), json!(id));
        f.insert("event_type".into(), json!(event_type));
        f.insert(
            "attribute_name".into(),
            attribute_name.map(Value::from).unwrap_or(Value::Null),
        );
        f.insert("meta".into(), meta);
        f.insert("entity".into(), entity);
        f.insert("user".into(), actor.link.clone());
        f.insert("project".into(), project);
        f.insert("session_uuid".into(), actor.session_uuid.clone());
        f.insert("created_at".into(), json!(fmt_wire(now)));
        f.insert("description".into(), json!(description));
        f.insert("cached_display_name".into(), Value::Null);
        if self.holding {
            self.held.insert(id);
        }
        self.tables
            .entry(EVENT_TYPE.to_string())
            .or_default()
            .insert(
                id,
                Row {
                    fields: f,
                    retired: false,
                },
            );
        id
    }

    /// Consume an event id that will never be used.
    pub fn burn_event_id(&mut self) -> i64 {
        self.alloc_id(EVENT_TYPE)
    }

    fn logs(&self, actor: &Actor, ty: &str) -> bool {
        actor.generate_events && ty != EVENT_TYPE
    }

    /// Create an entity. `fields` are validated against the schema. Returns the new id.
    pub fn create(
        &mut self,
        ty: &str,
        fields: &[FieldWrite],
        actor: &Actor,
        log: bool,
    ) -> Result<i64, Fault> {
        self.check_type("create", ty)?;
        let mut given: Vec<(String, String, Value)> = Vec::new();
        for w in fields {
            if w.field == "id" || w.field == "type" {
                if w.field == "id" {
                    return Err(Fault::new(format!("API create() {ty}.id is not editable")));
                }
                continue;
            }
            let dt = self.field_dt("create", ty, &w.field)?;
            if w.field == "updated_at" || w.field == "updated_by" {
                return Err(Fault::new(format!(
                    "API create() {ty}.{} is not editable",
                    w.field
                )));
            }
            let v = self.normalize("create", ty, &w.field, &dt, &w.value)?;
            given.retain(|(f, _, _)| f != &w.field);
            given.push((w.field.clone(), dt, v));
        }
        let id = self.alloc_id(ty);
        let now = json!(fmt_wire(self.now()));
        let mut row = Map::new();
        row.insert("id".into(), json!(id));
        if let Some(defs) = self.schema.type_fields(ty) {
            for (name, def) in defs {
                if name == "id" {
                    continue;
                }
                let dt = def
                    .get("data_type")
                    .and_then(|d| d.get("value"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                row.insert(name.clone(), self.default_value(ty, name, dt));
            }
        }
        for (auto, val) in [
            ("created_at", now.clone()),
            ("updated_at", now.clone()),
            ("created_by", actor.link.clone()),
            ("updated_by", actor.link.clone()),
        ] {
            if self.schema.data_type(ty, auto).is_some() {
                row.insert(auto.into(), val);
            }
        }
        for (f, _, v) in &given {
            row.insert(f.clone(), v.clone());
        }
        if ty == "HumanUser" && row.get("name").is_some_and(Value::is_null) {
            let first = row.get("firstname").and_then(Value::as_str).unwrap_or("");
            let last = row.get("lastname").and_then(Value::as_str).unwrap_or("");
            let name = format!("{first} {last}").trim().to_string();
            if !name.is_empty() {
                row.insert("name".into(), json!(name));
            }
        }
        self.tables.entry(ty.to_string()).or_default().insert(
            id,
            Row {
                fields: row,
                retired: false,
            },
        );

        let logging = log && self.logs(actor, ty);
        let me = link(ty, id);
        let project = self.project_of(ty, id);
        let mut new_event = None;
        if logging {
            let display = self.link_name(ty, id);
            new_event = Some(self.log_event(
                actor,
                format!("Shotgun_{ty}_New"),
                None,
                me.clone(),
                project.clone(),
                json!({"type": "new_entity", "entity_type": ty, "entity_id": id}),
                format!(
                    "{} created new {ty} {}",
                    self.actor_name(actor),
                    display_str(&display)
                ),
            ));
        }
        for (f, dt, v) in &given {
            let empty = if dt == "multi_entity" {
                json!([])
            } else {
                Value::Null
            };
            let mut change_id = new_event;
            if logging {
                let meta = self.change_meta(ty, id, f, dt, &empty, v, true);
                change_id = Some(self.log_event(
                    actor,
                    format!("Shotgun_{ty}_Change"),
                    Some(f),
                    me.clone(),
                    project.clone(),
                    meta,
                    format!("{} set {f} on {ty} #{id}", self.actor_name(actor)),
                ));
            }
            self.sync_reverse(ty, id, f, &empty, v, actor, logging, true, change_id);
        }
        Ok(id)
    }

    fn actor_name(&self, actor: &Actor) -> String {
        match as_link(&actor.link) {
            Some((t, i)) => display_str(&self.link_name(t, i)),
            None => "Someone".into(),
        }
    }

    /// Build the meta of a Change event.
    #[allow(clippy::too_many_arguments)]
    fn change_meta(
        &self,
        ty: &str,
        id: i64,
        field: &str,
        dt: &str,
        old: &Value,
        new: &Value,
        in_create: bool,
    ) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), json!("attribute_change"));
        m.insert("attribute_name".into(), json!(field));
        m.insert("entity_type".into(), json!(ty));
        m.insert("entity_id".into(), json!(id));
        m.insert("field_data_type".into(), json!(dt));
        if dt == "multi_entity" {
            let old_l = links_of(old);
            let new_l = links_of(new);
            let added: Vec<Value> = new_l
                .iter()
                .filter(|l| !old_l.contains(l))
                .map(|(t, i)| self.expand(&link(t, *i)))
                .collect();
            let removed: Vec<Value> = old_l
                .iter()
                .filter(|l| !new_l.contains(l))
                .map(|(t, i)| self.expand(&link(t, *i)))
                .collect();
            m.insert("added".into(), Value::Array(added));
            m.insert("removed".into(), Value::Array(removed));
        } else {
            m.insert("old_value".into(), self.event_value(dt, old));
            m.insert("new_value".into(), self.event_value(dt, new));
        }
        if in_create {
            m.insert("in_create".into(), json!(true));
        }
        Value::Object(m)
    }

    /// The event-log encoding of a value.
    fn event_value(&self, dt: &str, v: &Value) -> Value {
        match (dt, v) {
            ("date_time", Value::String(s)) => parse_datetime(s)
                .map(|t| json!(fmt_event(t)))
                .unwrap_or(v.clone()),
            _ => self.expand_typed(dt, v),
        }
    }

    /// Update an entity; returns the names of the written fields.
    pub fn update(
        &mut self,
        ty: &str,
        id: i64,
        fields: &[FieldWrite],
        actor: &Actor,
    ) -> Result<Vec<String>, Fault> {
        self.check_type("update", ty)?;
        if self.get(ty, id).is_none_or(|r| r.retired) {
            return Err(Fault::new(format!(
                "API update() {ty} with id {id} does not exist"
            )));
        }
        let mut plan: Vec<(String, String, Value, Value)> = Vec::new();
        for w in fields {
            let dt = self.field_dt("update", ty, &w.field)?;
            if matches!(
                w.field.as_str(),
                "id" | "updated_at" | "updated_by" | "created_at" | "created_by"
            ) {
                return Err(Fault::new(format!(
                    "API update() {ty}.{} is not editable",
                    w.field
                )));
            }
            let v = self.normalize("update", ty, &w.field, &dt, &w.value)?;
            let old = plan
                .iter()
                .rev()
                .find(|(f, _, _, _)| f == &w.field)
                .map(|p| p.3.clone())
                .or_else(|| {
                    self.get(ty, id)
                        .and_then(|r| r.fields.get(&w.field).cloned())
                })
                .unwrap_or(Value::Null);
            let new = match (dt.as_str(), w.mode) {
                ("multi_entity", UpdateMode::Add) => {
                    let mut cur = old.as_array().cloned().unwrap_or_default();
                    for l in v.as_array().cloned().unwrap_or_default() {
                        if !cur.iter().any(|c| same_link(c, &l)) {
                            cur.push(l);
                        }
                    }
                    Value::Array(cur)
                }
                ("multi_entity", UpdateMode::Remove) => {
                    let rm = v.as_array().cloned().unwrap_or_default();
                    Value::Array(
                        old.as_array()
                            .cloned()
                            .unwrap_or_default()
                            .into_iter()
                            .filter(|c| !rm.iter().any(|r| same_link(c, r)))
                            .collect(),
                    )
                }
                _ => v,
            };
            plan.push((w.field.clone(), dt, old, new));
        }
        let now = json!(fmt_wire(self.now()));
        let has_updated_at = self.schema.data_type(ty, "updated_at").is_some();
        let has_updated_by = self.schema.data_type(ty, "updated_by").is_some();
        let logging = self.logs(actor, ty);
        let me = link(ty, id);
        let mut written = Vec::new();
        for (f, dt, old, new) in plan {
            if let Some(row) = self.get_mut(ty, id) {
                row.fields.insert(f.clone(), new.clone());
            }
            let changed = if dt == "multi_entity" {
                links_of(&old) != links_of(&new)
            } else {
                old != new
            };
            let mut change_id = None;
            if logging && changed {
                let meta = self.change_meta(ty, id, &f, &dt, &old, &new, false);
                let project = self.project_of(ty, id);
                change_id = Some(self.log_event(
                    actor,
                    format!("Shotgun_{ty}_Change"),
                    Some(&f),
                    me.clone(),
                    project,
                    meta,
                    format!("{} changed \"{f}\" on {ty} #{id}", self.actor_name(actor)),
                ));
            }
            if changed {
                self.sync_reverse(ty, id, &f, &old, &new, actor, logging, false, change_id);
            }
            written.push(f);
        }
        if let Some(row) = self.get_mut(ty, id) {
            if has_updated_at {
                row.fields.insert("updated_at".into(), now);
            }
            if has_updated_by {
                row.fields.insert("updated_by".into(), actor.link.clone());
            }
        }
        Ok(written)
    }

    /// Retire an entity: `Ok(true)`, or `Ok(false)` if already retired.
    pub fn delete(&mut self, ty: &str, id: i64, actor: &Actor) -> Result<bool, Fault> {
        self.retire_or_revive(ty, id, actor, true)
    }

    /// Revive a retired entity: `Ok(true)`, or `Ok(false)` if it is active.
    pub fn revive(&mut self, ty: &str, id: i64, actor: &Actor) -> Result<bool, Fault> {
        self.retire_or_revive(ty, id, actor, false)
    }

    fn retire_or_revive(
        &mut self,
        ty: &str,
        id: i64,
        actor: &Actor,
        retire: bool,
    ) -> Result<bool, Fault> {
        let method = if retire { "delete" } else { "revive" };
        self.check_type(method, ty)?;
        let Some(row) = self.get_mut(ty, id) else {
            return Err(Fault::new(format!(
                "API {method}() CRUD ERROR #3: Entity {ty} with id {id} does not exist"
            )));
        };
        if row.retired == retire {
            return Ok(false);
        }
        row.retired = retire;
        if !self.logs(actor, ty) {
            return Ok(true);
        }
        let now = self.now();
        let display = self.link_name(ty, id);
        let project = self.project_of(ty, id);
        let who = self.actor_name(actor);
        let mut meta = json!({
            "type": if retire { "entity_retirement" } else { "entity_revival" },
            "entity_type": ty, "entity_id": id, "id": id, "class_name": ty, "display_name": display,
        });
        if retire {
            meta["retirement_date"] = json!(fmt_event(now));
        }
        let action = if retire { "Retirement" } else { "Revival" };
        let verb = if retire { "retired" } else { "revived" };
        self.log_event(
            actor,
            format!("Shotgun_{ty}_{action}"),
            None,
            link(ty, id),
            project.clone(),
            meta,
            format!("{who} {verb} {ty} {}", display_str(&display)),
        );
        if retire {
            self.log_event(
                actor,
                format!("Shotgun_{ty}_Change"),
                Some("retirement_date"),
                link(ty, id),
                project,
                json!({"type": "attribute_change", "attribute_name": "retirement_date", "entity_type": ty,
                       "entity_id": id, "field_data_type": "date_time", "old_value": null,
                       "new_value": fmt_event(now)}),
                format!("{who} set retirement_date on {ty} #{id}"),
            );
        }
        Ok(true)
    }

    /// Insert a row directly (bulk seeding): validates values, no events, no reverse maintenance.
    pub fn seed_row(
        &mut self,
        ty: &str,
        fields: &[FieldWrite],
        actor: &Actor,
    ) -> Result<i64, Fault> {
        let saved = std::mem::take(&mut self.reverse);
        let r = self.create(ty, fields, actor, false);
        self.reverse = saved;
        r
    }

    /// Find the reverse field of `ty.field` for links to `target_type`.
    fn reverse_of(&self, ty: &str, field: &str, target_type: &str) -> Option<String> {
        for r in &self.reverse {
            if r.a_type == ty && r.a_field == field && r.b_type == target_type {
                return Some(r.b_field.clone());
            }
            if r.b_type == ty && r.b_field == field && r.a_type == target_type {
                return Some(r.a_field.clone());
            }
        }
        None
    }

    /// Keep reverse link fields consistent after `ty#id.field` went from `old` to `new`.
    #[allow(clippy::too_many_arguments)]
    fn sync_reverse(
        &mut self,
        ty: &str,
        id: i64,
        field: &str,
        old: &Value,
        new: &Value,
        actor: &Actor,
        logging: bool,
        in_create: bool,
        original_event: Option<i64>,
    ) {
        if self.reverse.is_empty() {
            return;
        }
        let old_l = links_of(old);
        let new_l = links_of(new);
        let me = link(ty, id);
        for (t, i) in new_l.iter().filter(|l| !old_l.contains(l)) {
            if let Some(g) = self.reverse_of(ty, field, t) {
                self.reverse_apply(
                    t,
                    *i,
                    &g,
                    &me,
                    true,
                    ty,
                    field,
                    actor,
                    logging,
                    in_create,
                    original_event,
                );
            }
        }
        for (t, i) in old_l.iter().filter(|l| !new_l.contains(l)) {
            if let Some(g) = self.reverse_of(ty, field, t) {
                self.reverse_apply(
                    t,
                    *i,
                    &g,
                    &me,
                    false,
                    ty,
                    field,
                    actor,
                    logging,
                    in_create,
                    original_event,
                );
            }
        }
    }

    /// Add (or remove) `other` to/from `ty#id.field`, the reverse side of `other_ty.other_field`.
    #[allow(clippy::too_many_arguments)]
    fn reverse_apply(
        &mut self,
        ty: &str,
        id: i64,
        field: &str,
        other: &Value,
        add: bool,
        other_ty: &str,
        other_field: &str,
        actor: &Actor,
        logging: bool,
        in_create: bool,
        original_event: Option<i64>,
    ) {
        let Some(dt) = self.schema.data_type(ty, field).map(String::from) else {
            return;
        };
        let Some(row) = self.get(ty, id) else { return };
        let old = row.fields.get(field).cloned().unwrap_or(Value::Null);
        let new = match (dt.as_str(), add) {
            ("multi_entity", true) => {
                let mut a = old.as_array().cloned().unwrap_or_default();
                if !a.iter().any(|x| same_link(x, other)) {
                    a.push(other.clone());
                }
                Value::Array(a)
            }
            ("multi_entity", false) => Value::Array(
                old.as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|x| !same_link(x, other))
                    .collect(),
            ),
            ("entity", true) => other.clone(),
            ("entity", false) => {
                if same_link(&old, other) {
                    Value::Null
                } else {
                    old.clone()
                }
            }
            _ => return,
        };
        if links_of(&old) == links_of(&new) {
            return;
        }
        if let Some(row) = self.get_mut(ty, id) {
            row.fields.insert(field.to_string(), new.clone());
        }
        let (oty, oid) = as_link(other)
            .map(|(t, i)| (t.to_string(), i))
            .unwrap_or_default();
        if logging {
            let other_dt = self
                .schema
                .data_type(other_ty, other_field)
                .unwrap_or("entity")
                .to_string();
            let mut meta = json!({
                "type": "attribute_change", "attribute_name": field,
                "actual_attribute_changed": format!("{other_ty}.{other_field}"),
                "original_event_log_entry_id": original_event,
                "entity_type": oty, "entity_id": oid, "field_data_type": other_dt,
                "added": if add { vec![self.expand(other)] } else { vec![] },
                "removed": if add { vec![] } else { vec![self.expand(other)] },
            });
            if in_create {
                meta["in_create"] = json!(true);
            }
            let project = self.project_of(ty, id);
            self.log_event(
                actor,
                format!("Shotgun_{ty}_Change"),
                Some(field),
                link(ty, id),
                project,
                meta,
                format!(
                    "{} changed \"{field}\" on {ty} #{id}",
                    self.actor_name(actor)
                ),
            );
        }
        // A single-entity reverse side that was re-pointed: detach from the previous holder.
        if dt == "entity"
            && add
            && let Some((pt, pi)) = as_link(&old).map(|(t, i)| (t.to_string(), i))
            && pt == oty
            && pi != oid
        {
            let me = link(ty, id);
            self.reverse_apply(
                &pt,
                pi,
                other_field,
                &me,
                false,
                ty,
                field,
                actor,
                logging,
                in_create,
                original_event,
            );
        }
    }

    /// All event rows (visible and held), in id order.
    pub fn event_rows(&self) -> impl Iterator<Item = &Row> {
        self.tables
            .get(EVENT_TYPE)
            .into_iter()
            .flat_map(|t| t.values())
    }
}

fn same_link(a: &Value, b: &Value) -> bool {
    match (as_link(a), as_link(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

fn display_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "(unnamed)".into(),
        other => other.to_string(),
    }
}

/// Turn a `fields` list (`[{field_name, value, multi_entity_update_mode?}]`) into writes.
pub fn parse_field_list(method: &str, v: Option<&Value>) -> Result<Vec<FieldWrite>, Fault> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let arr = v
        .as_array()
        .ok_or_else(|| Fault::new(format!("API {method}() 'fields' must be a list")))?;
    let mut out = Vec::new();
    for item in arr {
        let field = item
            .get("field_name")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                Fault::new(format!(
                    "API {method}() each field needs a 'field_name' string"
                ))
            })?;
        let value = item.get("value").cloned().unwrap_or(Value::Null);
        let mode = match item.get("multi_entity_update_mode").and_then(Value::as_str) {
            None | Some("set") => UpdateMode::Set,
            Some("add") => UpdateMode::Add,
            Some("remove") => UpdateMode::Remove,
            Some(other) => {
                return Err(Fault::new(format!(
                    "API {method}() invalid multi_entity_update_mode '{other}'"
                )));
            }
        };
        out.push(FieldWrite {
            field: field.to_string(),
            value,
            mode,
        });
    }
    Ok(out)
}

/// Turn a `{field: value}` object (direct control API) into writes.
pub fn fields_from_object(v: &Value) -> Vec<FieldWrite> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| FieldWrite::set(k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

impl Store {
    /// Return an id obtained from `alloc_id` if it is still the latest one.
    pub fn unalloc_id(&mut self, ty: &str, id: i64) {
        if let Some(n) = self.next_ids.get_mut(ty)
            && *n == id + 1
        {
            *n = id;
        }
    }
}
