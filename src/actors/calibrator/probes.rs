//! Probe reads for each rule, built from data the cache already holds. The data is found with
//! local reads that depend on no calibrated rule (filters on one field, sorted by id); a rule
//! without suitable data gets no probe and stays as it is.
use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, Utc, Weekday};
use serde_json::{Value as Json, json};

use super::engine::Local;
use crate::query::calibrated::CalUnit;
use crate::query::filters::case_insensitive;
use crate::query::rules::{Rule, RuleValue, Rules};
use crate::schema::{CachedEntity, CachedField, ColumnLayout, FieldKind};
use crate::time;

/// Types looked at per rule (the first complete ones, by name).
const TYPES_PER_RULE: usize = 64;
/// Probes built per rule at most.
const PROBES_PER_RULE: usize = 8;
/// Rows a probe returns at most.
const PROBE_PAGE: u32 = 100;

/// The probe reads for `rule`.
pub async fn probes_for(local: &Local<'_>, rule: Rule) -> Vec<Json> {
    let mut out = Vec::new();
    for entity in complete_types(local) {
        let found = match rule {
            Rule::EmptyIn => empty_in(local, entity),
            Rule::NullsAscending | Rule::NullsDescending => {
                nulls(local, entity, rule == Rule::NullsDescending).await
            }
            Rule::TextOrder => text_order(local, entity).await,
            Rule::EmptyMultiPath => empty_multi_path(local, entity).await,
            Rule::TimeZone | Rule::WeekStart => relative_dates(local, entity, rule).await,
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

fn probe(local: &Local<'_>, entity: &CachedEntity, conditions: Json, sorts: Json) -> Json {
    let conditions = conditions.as_array().cloned().unwrap_or_default();
    json!({
        "type": entity.name,
        "filters": local.restrict(entity, conditions),
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
    let conditions = conditions.as_array().cloned().unwrap_or_default();
    let args = json!({
        "type": entity.name,
        "filters": local.restrict(entity, conditions),
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
fn empty_in(local: &Local<'_>, entity: &CachedEntity) -> Vec<Json> {
    vec![probe(
        local,
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
            local,
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
                local,
                entity,
                json!([cond(&field.name, "in", json!(chosen))]),
                json!([{"field_name": field.name, "direction": "asc"}]),
            ));
        }
    }
    out
}

/// Up to a dozen values: case variants first (those where the earlier row, by id, has the
/// later code point: there "ties by id" and "ties by code point" differ), then a pair ordered
/// differently by code point and case-insensitively.
fn telling_values<'v>(values: &[&'v str]) -> Vec<&'v str> {
    let mut chosen: Vec<&str> = Vec::new();
    for (i, a) in values.iter().enumerate() {
        if chosen.len() >= 8 {
            break;
        }
        let variant = values[i + 1..]
            .iter()
            .find(|b| *b < a && b.eq_ignore_ascii_case(a));
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
    chosen.sort_unstable();
    chosen.dedup();
    chosen
}

/// A row whose multi-entity field is empty, filtered through that field to
/// `Type.<display field> is null`.
async fn empty_multi_path(local: &Local<'_>, entity: &CachedEntity) -> Vec<Json> {
    let multi = entity
        .fields
        .values()
        .filter(|f| matches!(f.layout, ColumnLayout::MultiEntity { .. }));
    for field in multi {
        // A field of a complete target type (its display field: `id` is not a path field).
        let target = field.valid_types.iter().find_map(|t| {
            let entity = local.view.schema.entity(t)?;
            let shown = entity.display_field.as_ref()?;
            (local.view.complete.contains(t) && entity.fields.contains_key(shown))
                .then_some((t, shown))
        });
        let Some((target, shown)) = target else {
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
        let path = format!("{}.{target}.{shown}", field.name);
        return vec![probe(
            local,
            entity,
            json!([
                cond("id", "is", json!([id])),
                cond(&path, "is", json!([null]))
            ]),
            json!([]),
        )];
    }
    Vec::new()
}

/// `relation [k]` on a date-time field for the period offsets `k` (within `days` of now) whose
/// rows fall in different periods under different candidates: there the candidates differ.
async fn relative_dates(local: &Local<'_>, entity: &CachedEntity, rule: Rule) -> Vec<Json> {
    let Some(field) = scalar_fields(entity).find(|f| f.kind == FieldKind::DateTime) else {
        return Vec::new();
    };
    let (relation, unit, days) = match rule {
        Rule::WeekStart => ("in_calendar_week", CalUnit::Week, 10),
        _ => ("in_calendar_day", CalUnit::Day, 3),
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
    let times: Vec<DateTime<Utc>> = rows
        .iter()
        .filter_map(|r| r.get(&field.name).and_then(Json::as_str))
        .filter_map(time::parse)
        .collect();
    let variants = zone_and_week_candidates(&local.view.rules, rule);
    telling_offsets(local.now, &times, unit, &variants)
        .into_iter()
        .map(|k| {
            probe(
                local,
                entity,
                json!([cond(&field.name, relation, json!([k]))]),
                json!([]),
            )
        })
        .collect()
}

/// The (UTC offset, week start) pairs the probed rule's candidates stand for.
fn zone_and_week_candidates(rules: &Rules, rule: Rule) -> Vec<(i32, Weekday)> {
    let zone = rules.utc_offset().unwrap_or(0);
    rule.candidates()
        .into_iter()
        .filter_map(|v| match v {
            RuleValue::TimeZone(m) => Some((m, Weekday::Mon)),
            RuleValue::WeekStart(d) => Some((zone, d)),
            _ => None,
        })
        .collect()
}

/// Period offsets (relative to now's period) that some time falls in under one candidate and
/// not under another.
fn telling_offsets(
    now: DateTime<Utc>,
    times: &[DateTime<Utc>],
    unit: CalUnit,
    variants: &[(i32, Weekday)],
) -> Vec<i64> {
    let index = |t: DateTime<Utc>, (zone, week): (i32, Weekday)| {
        let local = (t + Duration::minutes(i64::from(zone))).date_naive();
        match unit {
            CalUnit::Week => {
                let start = local - Duration::days(i64::from(local.weekday().days_since(week)));
                i64::from(start.num_days_from_ce()).div_euclid(7)
            }
            _ => i64::from(local.num_days_from_ce()),
        }
    };
    let mut out = BTreeSet::new();
    for &t in times {
        let ks: BTreeSet<i64> = variants
            .iter()
            .map(|&v| index(t, v) - index(now, v))
            .collect();
        if ks.len() > 1 {
            out.extend(ks);
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telling_values_pick_case_variants_and_a_crossed_pair() {
        // "abc" (the earlier row) and "ABC"; "abc" vs "Tree": code point puts "Tree" first.
        let v = telling_values(&["abc", "Tree", "ABC", "b", "zz"]);
        assert_eq!(v, ["ABC", "Tree", "abc"]);
        // "ABC" before "abc" by id and by code point alike: not a telling pair.
        assert_eq!(telling_values(&["ABC", "abc"]), Vec::<&str>::new());
        assert!(telling_values(&["a", "b"]).is_empty());
    }

    #[test]
    fn telling_offsets_keep_only_times_near_a_boundary() {
        let now = time::parse("2024-03-06T12:00:00Z").unwrap(); // a Wednesday
        let t = |s: &str| time::parse(s).unwrap();
        let zones = [(0, Weekday::Mon), (-300, Weekday::Mon)];
        // 02:00 UTC is the previous day at UTC-5; 12:00 UTC the same day in both zones.
        let times = [t("2024-03-05T02:00:00Z"), t("2024-03-06T12:00:00Z")];
        assert_eq!(telling_offsets(now, &times, CalUnit::Day, &zones), [-2, -1]);
        let weeks = [(0, Weekday::Mon), (0, Weekday::Sun)];
        let sunday = [t("2024-03-03T10:00:00Z"), t("2024-03-05T10:00:00Z")];
        assert_eq!(
            telling_offsets(now, &sunday, CalUnit::Week, &weeks),
            [-1, 0]
        );
    }
}
