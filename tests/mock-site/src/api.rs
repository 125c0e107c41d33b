//! Site state, authentication and the RPC method dispatch (§2, §3).

use crate::error::Fault;
use crate::faults::FaultState;
use crate::read::{parse_return_fields, read, render};
use crate::store::{Actor, Store, as_link, link, parse_field_list};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// An API script (an `ApiUser` entity in the store).
#[derive(Debug, Clone)]
pub struct ScriptConfig {
    pub name: String,
    pub key: String,
    pub generate_events: bool,
}

impl ScriptConfig {
    pub fn new(name: &str, key: &str, generate_events: bool) -> ScriptConfig {
        ScriptConfig {
            name: name.into(),
            key: key.into(),
            generate_events,
        }
    }
}

/// A human user that may log in with `user_login` / `user_password` (a `HumanUser` entity).
#[derive(Debug, Clone)]
pub struct UserConfig {
    pub login: String,
    pub password: String,
    pub name: String,
}

/// One API call received over HTTP.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// `method_name` (empty when the body was not a JSON envelope).
    pub method: String,
    /// `params[1].type` when present.
    pub entity_type: Option<String>,
    /// The whole decoded body (a JSON string holding the raw text when it was not JSON).
    pub body: Value,
}

/// Everything the site knows. It lives behind `Arc<std::sync::Mutex<..>>`: every request locks
/// it only for synchronous work and releases it before any `.await` (latency sleeps happen
/// outside the lock), so a std mutex is safe and cheaper than an async one.
pub struct SiteState {
    pub store: Store,
    pub scripts: Vec<(ScriptConfig, i64)>,
    pub users: Vec<(UserConfig, i64)>,
    pub sessions: HashMap<String, Actor>,
    pub info: Value,
    pub requests: Vec<RecordedRequest>,
    pub faults: FaultState,
    pub session_counter: u64,
}

pub type Shared = Arc<Mutex<SiteState>>;

impl SiteState {
    /// The actor for a configured script name.
    pub fn script_actor(&self, name: &str) -> Option<Actor> {
        self.scripts
            .iter()
            .find(|(s, _)| s.name == name)
            .map(|(s, id)| Actor {
                link: link("ApiUser", *id),
                generate_events: s.generate_events,
                session_uuid: Value::Null,
            })
    }

    fn authenticate(&self, auth: &Value) -> Result<Actor, Fault> {
        let Some(a) = auth.as_object() else {
            return Err(Fault::auth("Missing authentication parameters"));
        };
        let session_uuid = a.get("session_uuid").cloned().unwrap_or(Value::Null);
        let mut actor = if let Some(name) = a.get("script_name") {
            let name_s = name.as_str().unwrap_or("");
            let key = a.get("script_key").and_then(Value::as_str);
            match self.scripts.iter().find(|(s, _)| s.name == name_s) {
                Some((s, id)) if Some(s.key.as_str()) == key => Actor {
                    link: link("ApiUser", *id),
                    generate_events: s.generate_events,
                    session_uuid: Value::Null,
                },
                _ => return Err(Fault::auth(format!("Can't authenticate script '{name_s}'"))),
            }
        } else if let Some(login) = a.get("user_login") {
            let login_s = login.as_str().unwrap_or("");
            let pw = a.get("user_password").and_then(Value::as_str);
            match self.users.iter().find(|(u, _)| u.login == login_s) {
                Some((u, id)) if Some(u.password.as_str()) == pw => Actor {
                    link: link("HumanUser", *id),
                    generate_events: true,
                    session_uuid: Value::Null,
                },
                _ => return Err(Fault::auth(format!("Can't authenticate user '{login_s}'"))),
            }
        } else if let Some(tok) = a.get("session_token") {
            match tok.as_str().and_then(|t| self.sessions.get(t)) {
                Some(actor) => actor.clone(),
                None => {
                    return Err(Fault::auth(
                        "Can't authenticate session token: unknown or expired session",
                    ));
                }
            }
        } else {
            return Err(Fault::auth(
                "Can't authenticate: no script_name, user_login or session_token given",
            ));
        };
        actor.session_uuid = session_uuid;
        Ok(actor)
    }

    /// Handle one decoded request body; returns the JSON reply body.
    pub fn handle(&mut self, body: &Value) -> Value {
        match self.dispatch(body) {
            Ok(v) => json!({"results": v}),
            Err(f) => f.to_body(),
        }
    }

    fn dispatch(&mut self, body: &Value) -> Result<Value, Fault> {
        let method = body
            .get("method_name")
            .and_then(Value::as_str)
            .ok_or_else(|| Fault::new("Request body has no 'method_name'"))?;
        let params = match body.get("params") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(_) => return Err(Fault::new("'params' must be a list")),
        };
        if method == "info" {
            return Ok(self.info.clone());
        }
        let actor = self.authenticate(params.first().unwrap_or(&Value::Null))?;
        let args = params.get(1).cloned().unwrap_or(Value::Null);
        match method {
            "read" => read(&self.store, &args),
            "schema_read" => Ok(self.store.schema.schema_read()),
            "schema_entity_read" => Ok(self.store.schema.schema_entity_read()),
            "schema_field_read" => self.schema_field_read(&args),
            "create" => create(&mut self.store, &args, &actor),
            "update" => update(&mut self.store, &args, &actor),
            "delete" => retire(&mut self.store, &args, &actor, true),
            "revive" => retire(&mut self.store, &args, &actor, false),
            "batch" => {
                let mut copy = self.store.clone();
                let r = batch(&mut copy, &args, &actor)?;
                self.store = copy;
                Ok(r)
            }
            "get_session_token" => {
                self.session_counter += 1;
                let token = format!(
                    "mock-session-{:08x}-{}",
                    self.session_counter * 2654435761,
                    self.session_counter
                );
                self.sessions.insert(token.clone(), actor);
                Ok(json!({"session_id": token}))
            }
            other => Err(Fault::new(format!("unknown method '{other}'"))),
        }
    }

    fn schema_field_read(&self, args: &Value) -> Result<Value, Fault> {
        let ty = args
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| Fault::new("API schema_field_read() requires a 'type'"))?;
        let fields = self.store.schema.type_fields(ty).ok_or_else(|| {
            Fault::new(format!(
                "API schema_field_read() unknown entity type '{ty}'"
            ))
        })?;
        match args.get("field_name") {
            None | Some(Value::Null) => Ok(Value::Object(fields.clone())),
            Some(Value::String(f)) => match fields.get(f) {
                Some(def) => Ok(json!({ f.clone(): def.clone() })),
                None => Err(Fault::new(format!(
                    "API schema_field_read() {ty}.{f} doesn't exist"
                ))),
            },
            Some(other) => Err(Fault::new(format!(
                "API schema_field_read() field_name must be a string, got {other}"
            ))),
        }
    }
}

fn arg_type<'a>(method: &str, args: &'a Value) -> Result<&'a str, Fault> {
    if !args.is_object() {
        return Err(Fault::new(format!(
            "API {method}() expects a hash of parameters"
        )));
    }
    args.get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| Fault::new(format!("API {method}() requires an entity 'type'")))
}

fn arg_id(method: &str, args: &Value) -> Result<i64, Fault> {
    args.get("id")
        .and_then(Value::as_i64)
        .ok_or_else(|| Fault::new(format!("API {method}() requires an integer 'id'")))
}

/// `create`: the response holds `type`, `id`, every field set and the requested return fields.
pub fn create(store: &mut Store, args: &Value, actor: &Actor) -> Result<Value, Fault> {
    let ty = arg_type("create", args)?;
    let fields = parse_field_list("create", args.get("fields"))?;
    let return_fields = parse_return_fields("create", args.get("return_fields"))?;
    let id = store.create(ty, &fields, actor, true)?;
    let row = store
        .get(ty, id)
        .ok_or_else(|| Fault::new("API create() lost the new row"))?;
    let mut out = Map::new();
    out.insert("type".into(), json!(ty));
    out.insert("id".into(), json!(id));
    for w in &fields {
        if w.field != "type"
            && w.field != "id"
            && let Some(v) = store.resolve_path(ty, row, &w.field)
        {
            out.insert(w.field.clone(), v);
        }
    }
    for (k, v) in render(store, ty, row, &return_fields) {
        out.entry(k).or_insert(v);
    }
    Ok(Value::Object(out))
}

/// `update`: the response holds `type`, `id` and the updated fields.
pub fn update(store: &mut Store, args: &Value, actor: &Actor) -> Result<Value, Fault> {
    let ty = arg_type("update", args)?;
    let id = arg_id("update", args)?;
    let fields = parse_field_list("update", args.get("fields"))?;
    let written = store.update(ty, id, &fields, actor)?;
    let row = store
        .get(ty, id)
        .ok_or_else(|| Fault::new("API update() lost the row"))?;
    let mut out = Map::new();
    out.insert("type".into(), json!(ty));
    out.insert("id".into(), json!(id));
    for f in written {
        if let Some(v) = store.resolve_path(ty, row, &f) {
            out.insert(f, v);
        }
    }
    Ok(Value::Object(out))
}

/// `delete` (retire = true) or `revive`.
pub fn retire(
    store: &mut Store,
    args: &Value,
    actor: &Actor,
    retire: bool,
) -> Result<Value, Fault> {
    let method = if retire { "delete" } else { "revive" };
    let ty = arg_type(method, args)?;
    let id = arg_id(method, args)?;
    let r = if retire {
        store.delete(ty, id, actor)?
    } else {
        store.revive(ty, id, actor)?
    };
    Ok(json!(r))
}

/// `batch` on a store (the caller applies it on a copy and commits on success).
pub fn batch(store: &mut Store, args: &Value, actor: &Actor) -> Result<Value, Fault> {
    let items = args
        .as_array()
        .ok_or_else(|| Fault::new("API batch() expects a list of requests"))?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let kind = item
            .get("request_type")
            .and_then(Value::as_str)
            .unwrap_or("");
        let r = match kind {
            "create" => create(store, item, actor),
            "update" => update(store, item, actor),
            "delete" => retire(store, item, actor, true),
            "revive" => retire(store, item, actor, false),
            other => Err(Fault::new(format!("invalid request_type '{other}'"))),
        };
        match r {
            Ok(v) => out.push(v),
            Err(f) => {
                return Err(Fault {
                    error_code: f.error_code,
                    message: format!(
                        "API batch() request #{i} failed, nothing was applied: {}",
                        f.message
                    ),
                });
            }
        }
    }
    Ok(Value::Array(out))
}

/// Summarise a body for the request log.
pub fn record_of(body: &Value) -> RecordedRequest {
    let method = body
        .get("method_name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let entity_type = body
        .get("params")
        .and_then(|p| p.get(1))
        .and_then(|a| a.get("type"))
        .and_then(Value::as_str)
        .map(String::from);
    RecordedRequest {
        method,
        entity_type,
        body: body.clone(),
    }
}

/// Expand a stored link for direct-API callers.
pub fn link_of(v: &Value) -> Option<(String, i64)> {
    as_link(v).map(|(t, i)| (t.to_string(), i))
}
