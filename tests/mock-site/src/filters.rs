//! The wire filter tree (§5.1) compiled against the schema and evaluated on stored rows (§5.5).

use crate::error::{Fault, ruby_inspect};
use crate::semantics::{CalUnit, EmptyIn, EmptyPath};
use crate::store::{Row, Store, as_link, parse_datetime};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use std::cmp::Ordering;

/// A compiled filter node.
#[derive(Debug, Clone)]
pub enum Filter {
    Group { and: bool, children: Vec<Filter> },
    Leaf(Leaf),
}

/// A compiled condition.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// Link hops of a deep path: (field, target type).
    hops: Vec<(String, String)>,
    /// Some hop is a multi_entity field.
    through_multi: bool,
    /// Final field and the type owning it.
    field: String,
    owner: String,
    dt: String,
    rel: Rel,
    negate: bool,
    values: Vec<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rel {
    Is,
    In,
    LessThan,
    GreaterThan,
    Between,
    Contains,
    StartsWith,
    EndsWith,
    TypeIs,
    NameIs,
    NameContains,
    NameStartsWith,
    NameEndsWith,
    InLast,
    InNext,
    InCalendar(CalUnit),
}

fn parse_rel(s: &str) -> Option<(Rel, bool)> {
    Some(match s {
        "is" => (Rel::Is, false),
        "is_not" => (Rel::Is, true),
        "in" => (Rel::In, false),
        "not_in" => (Rel::In, true),
        "less_than" => (Rel::LessThan, false),
        "greater_than" => (Rel::GreaterThan, false),
        "between" => (Rel::Between, false),
        "not_between" => (Rel::Between, true),
        "contains" => (Rel::Contains, false),
        "not_contains" => (Rel::Contains, true),
        "starts_with" => (Rel::StartsWith, false),
        "ends_with" => (Rel::EndsWith, false),
        "type_is" => (Rel::TypeIs, false),
        "type_is_not" => (Rel::TypeIs, true),
        "name_is" => (Rel::NameIs, false),
        "name_contains" => (Rel::NameContains, false),
        "name_not_contains" => (Rel::NameContains, true),
        "name_starts_with" => (Rel::NameStartsWith, false),
        "name_ends_with" => (Rel::NameEndsWith, false),
        "in_last" => (Rel::InLast, false),
        "not_in_last" => (Rel::InLast, true),
        "in_next" => (Rel::InNext, false),
        "not_in_next" => (Rel::InNext, true),
        "in_calendar_day" => (Rel::InCalendar(CalUnit::Day), false),
        "in_calendar_week" => (Rel::InCalendar(CalUnit::Week), false),
        "in_calendar_month" => (Rel::InCalendar(CalUnit::Month), false),
        "in_calendar_year" => (Rel::InCalendar(CalUnit::Year), false),
        _ => return None,
    })
}

/// Text kinds compared (and sorted) case-insensitively.
pub fn case_insensitive(dt: &str) -> bool {
    is_textish(dt) && dt != "list" && dt != "status_list"
}

fn is_textish(dt: &str) -> bool {
    matches!(
        dt,
        "text" | "uuid" | "color" | "entity_type" | "footage" | "list" | "status_list" | "password"
    )
}

fn is_numeric(dt: &str) -> bool {
    matches!(
        dt,
        "number" | "float" | "currency" | "percent" | "duration" | "timecode"
    )
}

fn allowed(dt: &str, rel: Rel) -> bool {
    use Rel::*;
    match dt {
        "text" | "uuid" | "color" | "entity_type" | "footage" => {
            matches!(rel, Is | In | Contains | StartsWith | EndsWith)
        }
        "list" | "status_list" => matches!(rel, Is | In | Contains | StartsWith | EndsWith),
        d if is_numeric(d) => matches!(rel, Is | In | LessThan | GreaterThan | Between),
        "date" | "date_time" => {
            matches!(
                rel,
                Is | In | LessThan | GreaterThan | Between | InLast | InNext | InCalendar(_)
            )
        }
        "checkbox" => matches!(rel, Is),
        "entity" | "multi_entity" => {
            matches!(
                rel,
                Is | In | TypeIs | NameIs | NameContains | NameStartsWith | NameEndsWith
            )
        }
        "tag_list" => matches!(rel, Is | In | NameIs | NameContains),
        "image" => matches!(rel, Is),
        _ => false,
    }
}

/// Compile a wire filter tree for entity type `ty`.
pub fn compile(store: &Store, ty: &str, filters: &Value) -> Result<Filter, Fault> {
    match filters {
        Value::Null => Ok(Filter::Group {
            and: true,
            children: vec![],
        }),
        // List form `[[path, relation, values...], ...]` (accepted for convenience).
        Value::Array(items) => {
            let children = items
                .iter()
                .map(|i| compile_node(store, ty, i))
                .collect::<Result<_, _>>()?;
            Ok(Filter::Group {
                and: true,
                children,
            })
        }
        Value::Object(_) => compile_node(store, ty, filters),
        other => Err(Fault::new(format!(
            "API read() filters must be a hash, got {other}"
        ))),
    }
}

fn compile_node(store: &Store, ty: &str, node: &Value) -> Result<Filter, Fault> {
    if let Some(arr) = node.as_array() {
        // list-form leaf
        let path = arr.first().and_then(Value::as_str);
        let rel = arr.get(1).and_then(Value::as_str);
        let (Some(path), Some(rel)) = (path, rel) else {
            return Err(Fault::new(format!(
                "API read() invalid filter: {}",
                ruby_inspect(node)
            )));
        };
        let rest: Vec<Value> = arr[2..].to_vec();
        let values = match rest.as_slice() {
            [Value::Array(a)] => a.clone(),
            _ => rest,
        };
        let leaf = json!({"path": path, "relation": rel, "values": values});
        return compile_leaf(store, ty, &leaf);
    }
    let Some(obj) = node.as_object() else {
        return Err(Fault::new(format!(
            "API read() invalid filter condition: {node}"
        )));
    };
    if obj.contains_key("conditions") || obj.contains_key("logical_operator") {
        let and = match obj.get("logical_operator").and_then(Value::as_str) {
            None | Some("and") | Some("all") => true,
            Some("or") | Some("any") => false,
            Some(other) => {
                return Err(Fault::new(format!(
                    "API read() unknown logical_operator '{other}'"
                )));
            }
        };
        let conds = match obj.get("conditions") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(other) => {
                return Err(Fault::new(format!(
                    "API read() 'conditions' must be a list, got {other}"
                )));
            }
        };
        let children = conds
            .iter()
            .map(|c| compile_node(store, ty, c))
            .collect::<Result<_, _>>()?;
        return Ok(Filter::Group { and, children });
    }
    if obj.contains_key("filters") {
        // client-side dialect {"filter_operator", "filters"}
        let and = !matches!(
            obj.get("filter_operator").and_then(Value::as_str),
            Some("or") | Some("any")
        );
        let conds = obj
            .get("filters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let children = conds
            .iter()
            .map(|c| compile_node(store, ty, c))
            .collect::<Result<_, _>>()?;
        return Ok(Filter::Group { and, children });
    }
    compile_leaf(store, ty, node)
}

fn compile_leaf(store: &Store, ty: &str, node: &Value) -> Result<Filter, Fault> {
    let dump = ruby_inspect(node);
    let path = node.get("path").and_then(Value::as_str).ok_or_else(|| {
        Fault::new(format!(
            "API read() filter condition needs a 'path': {dump}"
        ))
    })?;
    let rel_s = node
        .get("relation")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Fault::new(format!(
                "API read() filter condition needs a 'relation': {dump}"
            ))
        })?;
    let values = match node.get("values") {
        Some(Value::Array(a)) => a.clone(),
        None | Some(Value::Null) => Vec::new(),
        Some(other) => vec![other.clone()],
    };
    if path.starts_with("$FROM$") {
        return Err(Fault::new(format!(
            "API read() $FROM$ filters are not supported by the mock site: {dump}"
        )));
    }
    let parts: Vec<&str> = path.split('.').collect();
    if parts.len().is_multiple_of(2) || parts.iter().any(|p| p.is_empty()) {
        return Err(Fault::new(format!(
            "API read() {ty}.{path} doesn't exist: {dump}"
        )));
    }
    let mut hops = Vec::new();
    let mut through_multi = false;
    let mut cur = ty.to_string();
    for pair in parts[..parts.len() - 1].chunks(2) {
        match store.schema.data_type(&cur, pair[0]) {
            Some("entity") => {}
            Some("multi_entity") => through_multi = true,
            _ => {
                return Err(Fault::new(format!(
                    "API read() {cur}.{} doesn't exist: {dump}",
                    pair[0]
                )));
            }
        }
        if !store.schema.has_type(pair[1]) {
            return Err(Fault::new(format!(
                "API read() {path}: unknown entity type {}: {dump}",
                pair[1]
            )));
        }
        hops.push((pair[0].to_string(), pair[1].to_string()));
        cur = pair[1].to_string();
    }
    let field = parts[parts.len() - 1];
    let dt = store
        .schema
        .data_type(&cur, field)
        .ok_or_else(|| Fault::new(format!("API read() {cur}.{field} doesn't exist: {dump}")))?
        .to_string();
    let (rel, negate) = parse_rel(rel_s)
        .ok_or_else(|| Fault::new(format!("API read() unknown relation '{rel_s}': {dump}")))?;
    if !allowed(&dt, rel) {
        return Err(Fault::new(format!(
            "API read() relation '{rel_s}' is not valid for {cur}.{field} ({dt}): {dump}"
        )));
    }
    let need = match rel {
        Rel::Between | Rel::InLast | Rel::InNext => 2,
        Rel::In => 0,
        _ => 1,
    };
    if values.len() < need {
        return Err(Fault::new(format!(
            "API read() relation '{rel_s}' needs {need} value(s): {dump}"
        )));
    }
    if rel == Rel::In && values.is_empty() {
        match store.semantics.empty_in {
            EmptyIn::MatchNone => {}
            EmptyIn::Ignored => {
                return Ok(Filter::Group {
                    and: true,
                    children: vec![],
                });
            }
            EmptyIn::Fault => {
                return Err(Fault::new(format!(
                    "API read() relation '{rel_s}' needs at least one value: {dump}"
                )));
            }
        }
    }
    if (dt == "checkbox" || dt == "image") && rel == Rel::Is {
        let v = values.first().unwrap_or(&Value::Null);
        if dt == "checkbox" && !v.is_boolean() {
            return Err(Fault::new(format!(
                "API read() {cur}.{field} (checkbox) needs a boolean value: {dump}"
            )));
        }
        if dt == "image" && !v.is_null() {
            return Err(Fault::new(format!(
                "API read() {cur}.{field} (image) can only be compared to null: {dump}"
            )));
        }
    }
    if matches!(rel, Rel::InLast | Rel::InNext)
        && (!values[0].is_i64() || unit_duration(&values[1], 1).is_none())
    {
        return Err(Fault::new(format!(
            "API read() relation '{rel_s}' needs [int, unit]: {dump}"
        )));
    }
    if matches!(rel, Rel::InCalendar(_)) && !values[0].is_i64() {
        return Err(Fault::new(format!(
            "API read() relation '{rel_s}' needs [int offset]: {dump}"
        )));
    }
    Ok(Filter::Leaf(Leaf {
        hops,
        through_multi,
        field: field.to_string(),
        owner: cur,
        dt,
        rel,
        negate,
        values,
    }))
}

fn unit_duration(unit: &Value, n: i64) -> Option<Duration> {
    Some(match unit.as_str()? {
        "HOUR" => Duration::hours(n),
        "DAY" => Duration::days(n),
        "WEEK" => Duration::weeks(n),
        "MONTH" => Duration::days(30 * n),
        "YEAR" => Duration::days(365 * n),
        _ => return None,
    })
}

impl Filter {
    /// Does the row match?
    pub fn matches(&self, store: &Store, ty: &str, row: &Row) -> bool {
        match self {
            Filter::Group {
                and: true,
                children,
            } => children.iter().all(|c| c.matches(store, ty, row)),
            Filter::Group {
                and: false,
                children,
            } => children.iter().any(|c| c.matches(store, ty, row)),
            Filter::Leaf(l) => l.matches(store, ty, row),
        }
    }
}

impl Leaf {
    fn matches(&self, store: &Store, ty: &str, row: &Row) -> bool {
        let candidates = self.candidates(store, ty, row);
        let hit = candidates.iter().any(|v| self.positive(store, v));
        hit != self.negate
    }

    /// The values reached through the path (existential over multi_entity hops).
    fn candidates(&self, store: &Store, ty: &str, row: &Row) -> Vec<Value> {
        let mut rows: Vec<(String, &Row)> = vec![(ty.to_string(), row)];
        for (field, target) in &self.hops {
            let mut next = Vec::new();
            let mut any_null = false;
            for (t, r) in &rows {
                let v = store.field_value(t, r, field);
                let links: Vec<Value> = match v {
                    Value::Array(a) => a,
                    Value::Null => {
                        any_null = true;
                        vec![]
                    }
                    other => vec![other],
                };
                for l in links {
                    if let Some((lt, li)) = as_link(&l)
                        && lt == target
                        && let Some(tr) = store.get(lt, li)
                        && !tr.retired
                    {
                        next.push((lt.to_string(), tr));
                    }
                }
            }
            if next.is_empty() {
                let _ = any_null;
                if self.through_multi && store.semantics.empty_path == EmptyPath::NoValue {
                    return vec![];
                }
                return vec![Value::Null];
            }
            rows = next;
        }
        rows.iter()
            .map(|(t, r)| store.field_value(t, r, &self.field))
            .collect()
    }

    fn positive(&self, store: &Store, v: &Value) -> bool {
        let dt = self.dt.as_str();
        let first = self.values.first().unwrap_or(&Value::Null);
        let multi = matches!(dt, "multi_entity" | "tag_list");
        let items: Vec<Value> = if multi {
            v.as_array().cloned().unwrap_or_default()
        } else {
            vec![v.clone()]
        };
        match self.rel {
            Rel::Is => self.equal_any(store, v, &items, multi, std::slice::from_ref(first)),
            Rel::In => self.equal_any(store, v, &items, multi, &self.values),
            Rel::LessThan => compare(dt, v, first) == Some(Ordering::Less),
            Rel::GreaterThan => compare(dt, v, first) == Some(Ordering::Greater),
            Rel::Between => {
                if v.is_null() {
                    return false;
                }
                let lo = &self.values[0];
                let hi = &self.values[1];
                (lo.is_null()
                    || matches!(
                        compare(dt, v, lo),
                        Some(Ordering::Greater | Ordering::Equal)
                    ))
                    && (hi.is_null()
                        || matches!(compare(dt, v, hi), Some(Ordering::Less | Ordering::Equal)))
            }
            Rel::Contains => text_op(v, first, |a, b| a.contains(b)),
            Rel::StartsWith => text_op(v, first, |a, b| a.starts_with(b)),
            Rel::EndsWith => text_op(v, first, |a, b| a.ends_with(b)),
            Rel::TypeIs => match first {
                Value::Null => items.iter().all(Value::is_null) || (multi && items.is_empty()),
                Value::String(t) => items
                    .iter()
                    .any(|l| as_link(l).is_some_and(|(lt, _)| lt == t)),
                _ => false,
            },
            Rel::NameIs | Rel::NameContains | Rel::NameStartsWith | Rel::NameEndsWith => {
                let names: Vec<Value> = items
                    .iter()
                    .map(|l| match as_link(l) {
                        Some((t, i)) => store.link_name(t, i),
                        None => l.clone(), // tag_list entries are names already
                    })
                    .collect();
                names.iter().any(|n| match self.rel {
                    Rel::NameIs => text_op(n, first, |a, b| a == b),
                    Rel::NameContains => text_op(n, first, |a, b| a.contains(b)),
                    Rel::NameStartsWith => text_op(n, first, |a, b| a.starts_with(b)),
                    _ => text_op(n, first, |a, b| a.ends_with(b)),
                })
            }
            Rel::InLast | Rel::InNext => {
                let Some(t) = value_time(store, dt, v) else {
                    return false;
                };
                let now = store.now();
                let n = self.values[0].as_i64().unwrap_or(0);
                let Some(d) = unit_duration(&self.values[1], n) else {
                    return false;
                };
                if self.rel == Rel::InLast {
                    t >= now - d && t <= now
                } else {
                    t >= now && t <= now + d
                }
            }
            Rel::InCalendar(unit) => {
                let Some(t) = value_time(store, dt, v) else {
                    return false;
                };
                let off = self.values[0].as_i64().unwrap_or(0);
                let Some((start, end)) = store.semantics.calendar_period(store.now(), unit, off)
                else {
                    return false;
                };
                t >= start && t < end
            }
        }
    }

    fn equal_any(
        &self,
        store: &Store,
        v: &Value,
        items: &[Value],
        multi: bool,
        targets: &[Value],
    ) -> bool {
        let _ = store;
        targets.iter().any(|target| {
            if multi {
                if target.is_null() {
                    items.is_empty()
                } else {
                    items
                        .iter()
                        .any(|i| equal(&self.dt, &self.owner, i, target))
                }
            } else {
                equal(&self.dt, &self.owner, v, target)
            }
        })
    }
}

fn value_time(store: &Store, dt: &str, v: &Value) -> Option<DateTime<Utc>> {
    let s = v.as_str()?;
    if dt == "date" {
        let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
        return store.semantics.date_instant(d);
    }
    parse_datetime(s)
}

fn text_op(v: &Value, needle: &Value, f: impl Fn(&str, &str) -> bool) -> bool {
    match (v.as_str(), needle.as_str()) {
        (Some(a), Some(b)) => f(&a.to_lowercase(), &b.to_lowercase()),
        _ => false,
    }
}

/// Equality under §5.5 rules (case-insensitive text, entity by type+id, numbers numerically).
fn equal(dt: &str, _owner: &str, a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        _ => {
            if matches!(dt, "entity" | "multi_entity") {
                return match (as_link(a), as_link(b)) {
                    (Some(x), Some(y)) => x == y,
                    _ => false,
                };
            }
            compare(dt, a, b) == Some(Ordering::Equal)
        }
    }
}

/// Ordering of two non-null values of one data type.
pub fn compare(dt: &str, a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::String(x), Value::String(y)) => {
            if dt == "date_time"
                && let (Some(p), Some(q)) = (parse_datetime(x), parse_datetime(y))
            {
                return Some(p.cmp(&q));
            }
            if case_insensitive(dt) {
                Some(x.to_lowercase().cmp(&y.to_lowercase()))
            } else {
                Some(x.cmp(y))
            }
        }
        _ => None,
    }
}
