//! Probe reads for each rule, built from data the cache already holds. The data is found with
//! local reads that depend on no calibrated rule (filters on one field, sorted by id); a rule
//! without suitable data gets no probe and stays as it is.
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value as Json, json};

use super::engine::Local;
use crate::query::filters::case_insensitive;
use crate::query::rules::{Rule, Rules};
use crate::schema::{CachedEntity, CachedField, ColumnLayout, FieldKind};
use crate::time;

/// Types looked at per rule (the first complete ones, by name).
const TYPES_PER_RULE: usize = 8;
/// Probes built per rule at most.
const PROBES_PER_RULE: usize = 8;
/// Rows a probe returns at most.
const PROBE_PAGE: u32 = 100;

/// The probe reads for `rule`.
pub async fn probes_for(local: &Local<'_>, rule: Rule) -> Vec<Json> {
    let mut out = Vec::new();
    for entity in complete_types(local) {
        let found = match rule {
            Rule::EmptyIn => empty_in(entity),
            Rule::NullsAscending | Rule::NullsDescending => {
                nulls(local, entity, rule == Rule::NullsDescending).await
            }
            Rule::TextOrder => text_order(local, entity).await,
            Rule::EmptyMultiPath => empty_multi_path(local, entity).await,
            Rule::TimeZone => relative_dates(local, entity, "in_calendar_day", 3).await,
            Rule::WeekStart => relative_dates(local, entity, "in_calendar_week", 10).await,
        };
        out.extend(found);
        if out.len() >= PROBES_PER_RULE {
            out.truncate(PROBES_PER_RULE);
            break;
        }
    }
    out
}

fn complete_types<'a>(local: &Local<'a>) -> impl Iterator<Item = &'a CachedEntity> {
    let view = local.view;
    view.schema
        .types
        .values()
        .filter(|e| view.complete.contains(&e.name) && e.name != "EventLogEntry")
        .take(TYPES_PER_RULE)
}

fn probe(entity: &CachedEntity, conditions: Json, sorts: Json) -> Json {
    json!({
        "type": entity.name,
        "filters": {"logical_operator": "and", "conditions": conditions},
        "return_fields": ["id"],
        "sorts": sorts,
        "paging": {"entities_per_page": PROBE_PAGE, "current_page": 1},
    })
}

fn cond(path: &str, relation: &str, values: Json) -> Json {
    json!({"path": path, "relation": relation, "values": values})
}

/// The active entities of `entity` matching `conditions` (by id, rule-independent), with
/// `fields`.
async fn sample(
    local: &Local<'_>,
    entity: &CachedEntity,
    conditions: Json,
    fields: &[&str],
    limit: u32,
) -> Vec<Json> {
    let args = json!({
        "type": entity.name,
        "filters": {"logical_operator": "and", "conditions": conditions},
        "return_fields": fields,
        "paging": {"entities_per_page": limit, "current_page": 1},
    });
    match local.read(&args, &Rules::default()).await {
        Some(mut results) => match results.get_mut("entities").map(Json::take) {
            Some(Json::Array(entities)) => entities,
            _ => Vec::new(),
        },
        None => Vec::new(),
    }
}

fn ids(entities: &[Json]) -> Vec<i64> {
    entities
        .iter()
        .filter_map(|e| e.get("id").and_then(Json::as_i64))
        .collect()
}

fn scalar_fields(entity: &CachedEntity) -> impl Iterator<Item = &CachedField> {
    entity
        .fields
        .values()
        .filter(|f| f.name != "id" && matches!(f.layout, ColumnLayout::Scalar { .. }))
}

/// `id in []`: the three candidates answer none, every row, or a fault.
fn empty_in(entity: &CachedEntity) -> Vec<Json> {
    vec![probe(
        entity,
        json!([cond("id", "in", json!([]))]),
        json!([]),
    )]
}

/// Rows with and without a value of a number or date field, sorted by it.
async fn nulls(local: &Local<'_>, entity: &CachedEntity, descending: bool) -> Vec<Json> {
    let direction = if descending { "desc" } else { "asc" };
    let sortable = scalar_fields(entity).filter(|f| {
        !case_insensitive(f.kind)
            && matches!(
                f.kind,
                FieldKind::Number | FieldKind::Float | FieldKind::Date | FieldKind::DateTime
            )
    });
    for field in sortable {
        let none = sample(
            local,
            entity,
            json!([cond(&field.name, "is", json!([null]))]),
            &[],
            2,
        )
        .await;
        let some = sample(
            local,
            entity,
            json!([cond(&field.name, "is_not", json!([null]))]),
            &[],
            2,
        )
        .await;
        if none.is_empty() || some.is_empty() {
            continue;
        }
        let mut chosen = ids(&none);
        chosen.extend(ids(&some));
        return vec![probe(
            entity,
            json!([cond("id", "in", json!(chosen))]),
            json!([{"field_name": field.name, "direction": direction}]),
        )];
    }
    Vec::new()
}

/// Values of a text field that differ only in case, and values whose case-insensitive order
/// differs from their code-point order, sorted by the field.
async fn text_order(local: &Local<'_>, entity: &CachedEntity) -> Vec<Json> {
    let mut out = Vec::new();
    for field in scalar_fields(entity).filter(|f| case_insensitive(f.kind)) {
        let rows = sample(
            local,
            entity,
            json!([cond(&field.name, "is_not", json!([null]))]),
            &[field.name.as_str()],
            500,
        )
        .await;
        let values: Vec<&str> = rows
            .iter()
            .filter_map(|r| r.get(&field.name).and_then(Json::as_str))
            .filter(|v| v.is_ascii())
            .collect();
        let chosen = telling_values(&values);
        if chosen.len() >= 2 {
            out.push(probe(
                entity,
                json!([cond(&field.name, "in", json!(chosen))]),
                json!([{"field_name": field.name, "direction": "asc"}]),
            ));
        }
    }
    out
}

/// Up to a dozen values: case variants first, then a pair ordered differently by code point
/// and case-insensitively.
fn telling_values<'v>(values: &[&'v str]) -> Vec<&'v str> {
    let mut chosen: Vec<&str> = Vec::new();
    for (i, a) in values.iter().enumerate() {
        if chosen.len() >= 8 {
            break;
        }
        let variant = values[i + 1..]
            .iter()
            .find(|b| *b != a && b.eq_ignore_ascii_case(a));
        if let Some(b) = variant
            && !chosen.iter().any(|c| c.eq_ignore_ascii_case(a))
        {
            chosen.push(a);
            chosen.push(b);
        }
    }
    let crossed = values.iter().enumerate().find_map(|(i, a)| {
        values[i + 1..].iter().find_map(|b| {
            let folded = a.to_ascii_lowercase().cmp(&b.to_ascii_lowercase());
            (folded != std::cmp::Ordering::Equal && folded != a.cmp(b)).then_some((*a, *b))
        })
    });
    if let Some((a, b)) = crossed {
        chosen.extend([a, b]);
    }
    chosen
}

/// A row whose multi-entity field is empty, filtered through that field to `Type.id is null`.
async fn empty_multi_path(local: &Local<'_>, entity: &CachedEntity) -> Vec<Json> {
    let multi = entity
        .fields
        .values()
        .filter(|f| matches!(f.layout, ColumnLayout::MultiEntity { .. }));
    for field in multi {
        let Some(target) = field
            .valid_types
            .iter()
            .find(|t| local.view.complete.contains(*t))
        else {
            continue;
        };
        let empty = sample(
            local,
            entity,
            json!([cond(&field.name, "is", json!([null]))]),
            &[],
            1,
        )
        .await;
        let Some(id) = ids(&empty).first().copied() else {
            continue;
        };
        let path = format!("{}.{target}.id", field.name);
        return vec![probe(
            entity,
            json!([
                cond("id", "is", json!(id)),
                cond(&path, "is", json!([null]))
            ]),
            json!([]),
        )];
    }
    Vec::new()
}

/// `relation [k]` on a date-time field for every period offset `k` holding data within
/// `days` of now (the offsets where the candidates' periods differ are among them).
async fn relative_dates(
    local: &Local<'_>,
    entity: &CachedEntity,
    relation: &str,
    days: i64,
) -> Vec<Json> {
    let Some(field) = scalar_fields(entity).find(|f| f.kind == FieldKind::DateTime) else {
        return Vec::new();
    };
    let around = |d: i64| time::format(local.now + Duration::days(d));
    let rows = sample(
        local,
        entity,
        json!([cond(
            &field.name,
            "between",
            json!([around(-days), around(days)])
        )]),
        &[field.name.as_str()],
        500,
    )
    .await;
    let period_days = if relation == "in_calendar_week" { 7 } else { 1 };
    let mut offsets: Vec<i64> = rows
        .iter()
        .filter_map(|r| r.get(&field.name).and_then(Json::as_str))
        .filter_map(time::parse)
        .flat_map(|t| period_offsets(local.now, t, period_days))
        .collect();
    offsets.sort_unstable();
    offsets.dedup();
    offsets
        .into_iter()
        .map(|k| {
            probe(
                entity,
                json!([cond(&field.name, relation, json!([k]))]),
                json!([]),
            )
        })
        .collect()
}

/// The period offsets (relative to now's) that `t` may fall in, whatever the zone and week.
fn period_offsets(now: DateTime<Utc>, t: DateTime<Utc>, period_days: i64) -> Vec<i64> {
    let k = (t - now).num_days().div_euclid(period_days);
    vec![k - 1, k, k + 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telling_values_pick_case_variants_and_a_crossed_pair() {
        let v = telling_values(&["abc", "Tree", "ABC", "b", "zz"]);
        assert_eq!(v[..2], ["abc", "ABC"]);
        // "abc" vs "Tree": code point puts "Tree" first, case-insensitive "abc" first.
        assert_eq!(v[2..], ["abc", "Tree"]);
        assert!(telling_values(&["a", "b"]).is_empty());
    }
}
