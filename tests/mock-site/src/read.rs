//! The `read` method (§2.3, §3.3, §4.2) and record rendering shared with the write methods.

use crate::error::Fault;
use crate::filters::{self, case_insensitive, compare};
use crate::semantics::Semantics;
use crate::store::{EVENT_TYPE, Row, Store};
use serde_json::{Map, Value, json};
use std::cmp::Ordering;

/// Render `type`, `id` and the requested return fields of a row (unknown fields omitted).
pub fn render(store: &Store, ty: &str, row: &Row, return_fields: &[String]) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("type".into(), json!(ty));
    out.insert(
        "id".into(),
        row.fields.get("id").cloned().unwrap_or(Value::Null),
    );
    for f in return_fields {
        if f == "type" || f == "id" || out.contains_key(f) {
            continue;
        }
        if let Some(v) = store.resolve_path(ty, row, f) {
            out.insert(f.clone(), v);
        }
    }
    out
}

/// Parse a `return_fields` list (default `["id"]`).
pub fn parse_return_fields(method: &str, v: Option<&Value>) -> Result<Vec<String>, Fault> {
    match v {
        None | Some(Value::Null) => Ok(vec!["id".into()]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str().map(String::from).ok_or_else(|| {
                    Fault::new(format!(
                        "API {method}() return_fields must be strings, got {x}"
                    ))
                })
            })
            .collect(),
        Some(other) => Err(Fault::new(format!(
            "API {method}() return_fields must be a list, got {other}"
        ))),
    }
}

fn get_int(args: &Value, key: &str, outer: Option<&str>, default: i64) -> Result<i64, Fault> {
    let v = match outer {
        Some(o) => args.get(o).and_then(|p| p.get(key)),
        None => args.get(key),
    };
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(x) => x
            .as_i64()
            .ok_or_else(|| Fault::new(format!("API read() {key} must be an integer, got {x}"))),
    }
}

/// `read`.
pub fn read(store: &Store, args: &Value) -> Result<Value, Fault> {
    if !args.is_object() {
        return Err(Fault::new("API read() expects a hash of parameters"));
    }
    let ty = args
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| Fault::new("API read() requires an entity 'type'"))?;
    if !store.schema.has_type(ty) {
        return Err(Fault::new(format!("API read() unknown entity type '{ty}'")));
    }
    let filter = filters::compile(store, ty, args.get("filters").unwrap_or(&Value::Null))?;
    let return_fields = parse_return_fields("read", args.get("return_fields"))?;
    let retired = match args.get("return_only").and_then(Value::as_str) {
        None | Some("active") => false,
        Some("retired") => true,
        Some(other) => {
            return Err(Fault::new(format!(
                "API read() invalid return_only '{other}'"
            )));
        }
    };
    let per_page = get_int(args, "entities_per_page", Some("paging"), 500)?;
    let page = get_int(args, "current_page", Some("paging"), 1)?;
    if per_page < 1 || page < 1 {
        return Err(Fault::new(
            "API read() paging: entities_per_page and current_page must be >= 1",
        ));
    }
    let sorts = parse_sorts(store, ty, args.get("sorts"))?;

    let mut rows: Vec<&Row> = store
        .table(ty)
        .into_iter()
        .flat_map(|t| t.iter())
        .filter(|(id, r)| r.retired == retired && (ty != EVENT_TYPE || store.event_visible(**id)))
        .filter(|(_, r)| filter.matches(store, ty, r))
        .map(|(_, r)| r)
        .collect();
    if !sorts.is_empty() {
        rows.sort_by(|a, b| {
            for (field, dt, desc) in &sorts {
                let va = store
                    .resolve_raw(ty, a, field)
                    .map(|x| x.0)
                    .unwrap_or(Value::Null);
                let vb = store
                    .resolve_raw(ty, b, field)
                    .map(|x| x.0)
                    .unwrap_or(Value::Null);
                let o = key_cmp(store, &store.semantics, dt, &va, &vb, *desc);
                if o != Ordering::Equal {
                    return o;
                }
            }
            let ia = a.fields.get("id").and_then(Value::as_i64).unwrap_or(0);
            let ib = b.fields.get("id").and_then(Value::as_i64).unwrap_or(0);
            ia.cmp(&ib)
        });
    }
    let total = rows.len();
    let start = ((page - 1) as usize).saturating_mul(per_page as usize);
    let end = start.saturating_add(per_page as usize).min(total);
    let entities: Vec<Value> = if start < total {
        rows[start..end]
            .iter()
            .map(|r| Value::Object(render(store, ty, r, &return_fields)))
            .collect()
    } else {
        Vec::new()
    };
    Ok(json!({
        "entities": entities,
        "paging_info": {"entity_count": total, "has_next_page": end < total},
    }))
}

fn parse_sorts(
    store: &Store,
    ty: &str,
    v: Option<&Value>,
) -> Result<Vec<(String, String, bool)>, Fault> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(Fault::new(format!(
                "API read() sorts must be a list, got {other}"
            )));
        }
    };
    let mut out = Vec::new();
    for s in items {
        let field = s
            .get("field_name")
            .or_else(|| s.get("column"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                Fault::new(format!("API read() each sort needs a field_name, got {s}"))
            })?;
        let desc = match s.get("direction").and_then(Value::as_str) {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => {
                return Err(Fault::new(format!(
                    "API read() invalid sort direction '{other}'"
                )));
            }
        };
        let dt = sort_field_type(store, ty, field).ok_or_else(|| {
            Fault::new(format!("API read() {ty}.{field} doesn't exist (in sorts)"))
        })?;
        out.push((field.to_string(), dt, desc));
    }
    Ok(out)
}

fn sort_field_type(store: &Store, ty: &str, path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('.').collect();
    if parts.len().is_multiple_of(2) {
        return None;
    }
    let mut cur = ty;
    for pair in parts[..parts.len() - 1].chunks(2) {
        if store.schema.data_type(cur, pair[0])? != "entity" {
            return None;
        }
        cur = pair[1];
    }
    store
        .schema
        .data_type(cur, parts[parts.len() - 1])
        .map(String::from)
}

/// Order of one sort key in its direction: NULLs placed and text ordered by the site's rules,
/// links by display name then id (each placed like a key of its own).
fn key_cmp(store: &Store, sem: &Semantics, dt: &str, a: &Value, b: &Value, desc: bool) -> Ordering {
    if dt == "entity" && !a.is_null() && !b.is_null() {
        let na = store.expand(a);
        let nb = store.expand(b);
        return key_cmp(store, sem, "text", &na["name"], &nb["name"], desc).then_with(|| {
            sem.sort_key_cmp(na["id"].as_i64(), nb["id"].as_i64(), desc, |x, y| x.cmp(&y))
        });
    }
    let some = |v: &Value| (!v.is_null()).then_some(v.clone());
    sem.sort_key_cmp(some(a), some(b), desc, |x, y| match (&x, &y) {
        (Value::String(p), Value::String(q)) if case_insensitive(dt) => sem.text_cmp(p, q),
        _ => compare(dt, &x, &y).unwrap_or_else(|| x.to_string().cmp(&y.to_string())),
    })
}
