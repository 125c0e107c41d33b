//! The pure part of verification: the read re-run against the site, and the comparison of the
//! cache's answer with the site's (values, membership, order with ties, the total count).
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json, json};

use crate::db::reader::rows::CachedRow;
use crate::schema::{CachedEntity, CachedField, ColumnLayout};
use crate::time;
use crate::upstream::refresh::Refreshed;

/// Longest value shown in a diff (characters); longer ones are cut.
const MAX_SHOWN: usize = 120;
/// How many ids an order finding shows of each answer.
const ORDER_IDS_SHOWN: usize = 10;

/// What kind of difference a [`Finding`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FindingKind {
    /// A field's value differs.
    Value,
    /// The cache returned the entity; the site's answer lacks it and the site, asked about it,
    /// has no newer version.
    NotInSiteAnswer,
    /// The site returned the entity; the cache's answer lacks it.
    MissingFromCacheAnswer,
    /// The entities come in another order (ties of the sort keys tolerated).
    Order,
    /// `paging_info.entity_count` differs.
    EntityCount,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Value => "value",
            FindingKind::NotInSiteAnswer => "not_in_site_answer",
            FindingKind::MissingFromCacheAnswer => "missing_from_cache_answer",
            FindingKind::Order => "order",
            FindingKind::EntityCount => "entity_count",
        }
    }
}

/// One difference between the cache's answer and the site's.
#[derive(Debug, Clone)]
pub struct Finding {
    pub id: Option<i64>,
    pub field: Option<String>,
    pub kind: FindingKind,
    pub cache: Json,
    pub site: Json,
}

impl Finding {
    /// A difference about a whole entity (its presence in one answer).
    fn entity(id: i64, kind: FindingKind) -> Finding {
        Finding {
            id: Some(id),
            field: None,
            kind,
            cache: Json::Null,
            site: Json::Null,
        }
    }

    /// A difference about the whole page (its order or count).
    fn page(kind: FindingKind, cache: Json, site: Json) -> Finding {
        Finding {
            id: None,
            field: None,
            kind,
            cache,
            site,
        }
    }

    /// The field this finding is counted under (`(kind)` for entity and page findings).
    pub fn counted_as(&self) -> String {
        self.field
            .clone()
            .unwrap_or_else(|| format!("({})", self.kind.as_str()))
    }

    pub fn to_json(&self) -> Json {
        let mut m = Map::new();
        if let Some(id) = self.id {
            m.insert("id".into(), id.into());
        }
        if let Some(f) = &self.field {
            m.insert("field".into(), f.clone().into());
        }
        m.insert("kind".into(), self.kind.as_str().into());
        if self.kind == FindingKind::Value || !self.cache.is_null() || !self.site.is_null() {
            m.insert("cache".into(), shorten(&self.cache));
            m.insert("site".into(), shorten(&self.site));
        }
        Json::Object(m)
    }
}

/// `v`, or its text cut to [`MAX_SHOWN`] characters when longer.
fn shorten(v: &Json) -> Json {
    let text = match v {
        Json::String(s) => s.clone(),
        _ => v.to_string(),
    };
    if text.chars().count() <= MAX_SHOWN {
        return v.clone();
    }
    Json::String(format!(
        "{}...",
        text.chars().take(MAX_SHOWN).collect::<String>()
    ))
}

/// The first `n` items of a list, then how many more there are.
pub fn truncate_list(v: &Json, n: usize) -> Json {
    match v {
        Json::Array(a) if a.len() > n => {
            let mut out: Vec<Json> = a[..n].to_vec();
            out.push(json!(format!("... {} more", a.len() - n)));
            Json::Array(out)
        }
        other => other.clone(),
    }
}

/// Values equal as the site means them (numbers compared as numbers).
pub fn same_value(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
                _ => false,
            },
        },
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_value(x, y))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        _ => a == b,
    }
}

/// The read to send to the site: the client's, plus `updated_at` and the sort fields in
/// `return_fields`. Returns the fields added (to strip before comparing).
pub fn rerun_args(args: &Json, entity: &CachedEntity) -> (Json, Vec<String>) {
    let mut rerun = args.clone();
    let mut added = Vec::new();
    let Some(obj) = rerun.as_object_mut() else {
        return (rerun, added);
    };
    let mut fields: Vec<String> = match obj.get("return_fields") {
        Some(Json::Array(a)) => a
            .iter()
            .filter_map(|f| f.as_str().map(str::to_owned))
            .collect(),
        _ => vec!["id".to_owned()],
    };
    let mut wanted: Vec<String> = Vec::new();
    if entity.fields.contains_key("updated_at") {
        wanted.push("updated_at".to_owned());
    }
    wanted.extend(sort_fields(args));
    for w in wanted {
        if !fields.contains(&w) {
            fields.push(w.clone());
            added.push(w);
        }
    }
    obj.insert("return_fields".into(), json!(fields));
    (rerun, added)
}

fn sort_fields(args: &Json) -> Vec<String> {
    args.get("sorts")
        .and_then(Json::as_array)
        .map(|sorts| {
            sorts
                .iter()
                .filter_map(|s| {
                    s.get("field_name")
                        .and_then(Json::as_str)
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the site changed `record` at or after `threshold`.
pub fn is_newer(record: &Map<String, Json>, threshold: DateTime<Utc>) -> bool {
    record
        .get("updated_at")
        .and_then(Json::as_str)
        .and_then(time::parse)
        // The site's timestamps have whole seconds: compare at that precision.
        .is_some_and(|t| t.timestamp() >= threshold.timestamp())
}

/// What one verification concluded.
#[derive(Debug)]
pub enum Outcome {
    Matched,
    ChangedSince,
    Mismatch(Vec<Finding>),
}

/// The comparison of one read's two answers.
#[derive(Debug, Default)]
pub struct Comparison {
    pub findings: Vec<Finding>,
    /// Entities the site changed after the cache answered.
    pub changed_ids: BTreeSet<i64>,
    /// Ids the cache returned that the site's answer lacks (decided after asking the site,
    /// see [`Comparison::settle_only_local`]).
    pub only_local: BTreeSet<i64>,
}

impl Comparison {
    /// Decides the ids only the cache returned, from what the site says about them now:
    /// changed since the answer, or a finding.
    pub fn settle_only_local(&mut self, site_now: &Refreshed, threshold: DateTime<Utc>) {
        for id in &self.only_local {
            if site_now
                .get(*id)
                .is_some_and(|(r, _)| is_newer(r, threshold))
            {
                self.changed_ids.insert(*id);
            } else {
                let finding = Finding::entity(*id, FindingKind::NotInSiteAnswer);
                self.findings.push(finding);
            }
        }
    }

    pub fn outcome(self) -> Outcome {
        // Same entities and values (the site may have changed fields nobody asked for).
        if self.findings.is_empty() {
            return Outcome::Matched;
        }
        let any_changed = !self.changed_ids.is_empty();
        let real: Vec<Finding> = self
            .findings
            .into_iter()
            .filter(|f| match f.id {
                // A page's membership, order and count shift when any entity changed.
                _ if any_changed && f.field.is_none() => false,
                Some(id) => !self.changed_ids.contains(&id),
                None => true,
            })
            .collect();
        if real.is_empty() {
            Outcome::ChangedSince
        } else {
            Outcome::Mismatch(real)
        }
    }
}

type Record = Map<String, Json>;

fn records(results: &Json) -> Vec<Record> {
    results
        .get("entities")
        .and_then(Json::as_array)
        .map(|a| a.iter().filter_map(|e| e.as_object().cloned()).collect())
        .unwrap_or_default()
}

fn id_of(r: &Record) -> Option<i64> {
    r.get("id").and_then(Json::as_i64)
}

fn by_id(records: &[Record]) -> BTreeMap<i64, &Record> {
    records
        .iter()
        .filter_map(|r| Some((id_of(r)?, r)))
        .collect()
}

/// Compares the cache's answer `local` to read `args` with the site's answer `site` (whose
/// extra fields `added` are ignored); site entities changed at or after `threshold` are noted.
pub fn compare(
    args: &Json,
    local: &Json,
    site: &Json,
    added: &[String],
    threshold: DateTime<Utc>,
) -> Comparison {
    let mut cmp = Comparison::default();
    let local_records = records(local);
    let site_records = records(site);
    let local_by_id = by_id(&local_records);
    let site_by_id = by_id(&site_records);
    cmp.changed_ids = site_by_id
        .iter()
        .filter(|(_, r)| is_newer(r, threshold))
        .map(|(id, _)| *id)
        .collect();
    for (id, l) in &local_by_id {
        match site_by_id.get(id) {
            Some(s) => cmp.findings.extend(value_findings(*id, l, s, added)),
            None => {
                cmp.only_local.insert(*id);
            }
        }
    }
    let missing = site_by_id.keys().filter(|id| !local_by_id.contains_key(id));
    cmp.findings
        .extend(missing.map(|id| Finding::entity(*id, FindingKind::MissingFromCacheAnswer)));
    let sorts = sort_fields(args);
    if !sorts.is_empty() {
        cmp.findings
            .extend(order_finding(&sorts, &local_records, &site_records));
    }
    cmp.findings.extend(count_finding(local, site));
    cmp
}

/// The fields of one entity whose values differ (fields in only one answer compare to null).
fn value_findings(id: i64, local: &Record, site: &Record, added: &[String]) -> Vec<Finding> {
    let keys: BTreeSet<&String> = local
        .keys()
        .chain(site.keys())
        .filter(|k| !added.contains(k))
        .collect();
    keys.into_iter()
        .filter_map(|k| {
            let lv = local.get(k).unwrap_or(&Json::Null);
            let sv = site.get(k).unwrap_or(&Json::Null);
            (!same_value(lv, sv)).then(|| Finding {
                id: Some(id),
                field: Some(k.clone()),
                kind: FindingKind::Value,
                cache: lv.clone(),
                site: sv.clone(),
            })
        })
        .collect()
}

/// The tie group of each entity both answers hold, in the site's order: consecutive site
/// entities with equal sort keys share a group.
fn tie_groups(sorts: &[String], site: &[Record], local: &BTreeSet<i64>) -> BTreeMap<i64, usize> {
    let key = |r: &Record| -> Json {
        Json::Array(
            sorts
                .iter()
                .map(|f| r.get(f).cloned().unwrap_or(Json::Null))
                .collect(),
        )
    };
    let mut groups = BTreeMap::new();
    let mut last: Option<Json> = None;
    let mut group = 0usize;
    for r in site {
        let Some(id) = id_of(r).filter(|id| local.contains(id)) else {
            continue;
        };
        let k = key(r);
        if last.as_ref().is_some_and(|prev| !same_value(prev, &k)) {
            group += 1;
        }
        last = Some(k);
        groups.insert(id, group);
    }
    groups
}

/// An order finding when the cache's entities do not follow the site's tie groups.
fn order_finding(sorts: &[String], local: &[Record], site: &[Record]) -> Option<Finding> {
    let local_ids: BTreeSet<i64> = local.iter().filter_map(id_of).collect();
    let groups = tie_groups(sorts, site, &local_ids);
    let in_local_order: Vec<usize> = local
        .iter()
        .filter_map(|r| id_of(r).and_then(|id| groups.get(&id)).copied())
        .collect();
    if in_local_order.is_sorted() {
        return None;
    }
    let shown = |records: &[Record]| -> Json {
        json!(
            records
                .iter()
                .filter_map(id_of)
                .take(ORDER_IDS_SHOWN)
                .collect::<Vec<_>>()
        )
    };
    Some(Finding::page(FindingKind::Order, shown(local), shown(site)))
}

/// An entity-count finding when both answers give `paging_info.entity_count` and they differ.
fn count_finding(local: &Json, site: &Json) -> Option<Finding> {
    let count = |v: &Json| {
        v.get("paging_info")
            .and_then(|p| p.get("entity_count"))
            .and_then(Json::as_i64)
    };
    let (a, b) = (count(local)?, count(site)?);
    (a != b).then(|| Finding::page(FindingKind::EntityCount, a.into(), b.into()))
}

/// The value the cache stores for `field` given the site's value (links reduced to
/// `{type, id}`).
fn stored_form(field: &CachedField, site_value: Json) -> Json {
    let link_key = |v: &Json| match v {
        Json::Object(m) => json!({"type": m.get("type"), "id": m.get("id")}),
        _ => Json::Null,
    };
    match &field.layout {
        ColumnLayout::Scalar { .. } => site_value,
        ColumnLayout::Entity { .. } => link_key(&site_value),
        ColumnLayout::MultiEntity { .. } => Json::Array(
            site_value
                .as_array()
                .map(|a| a.iter().map(link_key).collect())
                .unwrap_or_default(),
        ),
    }
}

/// The fields in which a cached row differs from the site's record of it (`_active`:
/// retirement; `(missing)`: the site lacks the row).
pub fn row_differences(
    entity: &CachedEntity,
    row: &CachedRow,
    site: Option<(&Record, bool)>,
) -> Vec<String> {
    let Some((record, active)) = site else {
        return vec!["(missing)".to_owned()];
    };
    let mut bad = Vec::new();
    if row.get("_active") != Some(&Json::from(active)) {
        bad.push("_active".to_owned());
    }
    for field in entity.fields.values() {
        let expected = stored_form(
            field,
            record.get(&field.name).cloned().unwrap_or(Json::Null),
        );
        let cached = row.get(&field.name).unwrap_or(&Json::Null);
        if !same_value(cached, &expected) {
            bad.push(field.name.clone());
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        time::parse(s).expect("time")
    }

    fn record(v: Json) -> Record {
        v.as_object().expect("object").clone()
    }

    #[test]
    fn compares_values_membership_and_order_with_ties() {
        let args = json!({"type": "Shot", "return_fields": ["code", "sg_cut_in"],
                          "sorts": [{"field_name": "sg_cut_in", "direction": "asc"}]});
        let old = "2020-01-01T00:00:00Z";
        let local = json!({"entities": [
            {"type": "Shot", "id": 2, "code": "b", "sg_cut_in": 1},
            {"type": "Shot", "id": 1, "code": "a", "sg_cut_in": 1},
            {"type": "Shot", "id": 3, "code": "c", "sg_cut_in": 2.0}],
            "paging_info": {"entity_count": 3, "has_next_page": false}});
        let site = json!({"entities": [
            {"type": "Shot", "id": 1, "code": "a", "sg_cut_in": 1, "updated_at": old},
            {"type": "Shot", "id": 2, "code": "b", "sg_cut_in": 1, "updated_at": old},
            {"type": "Shot", "id": 3, "code": "c", "sg_cut_in": 2, "updated_at": old}],
            "paging_info": {"entity_count": 3, "has_next_page": false}});
        let added = vec!["updated_at".to_owned()];
        let cmp = compare(&args, &local, &site, &added, t("2021-01-01T00:00:00Z"));
        assert!(matches!(cmp.outcome(), Outcome::Matched));

        let mut bad = site.clone();
        bad["entities"][2]["code"] = json!("x");
        let cmp = compare(&args, &local, &bad, &added, t("2021-01-01T00:00:00Z"));
        let Outcome::Mismatch(f) = cmp.outcome() else {
            panic!("mismatch")
        };
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].field.as_deref(), Some("code"));

        // The same difference, but the site changed the entity after the answer.
        bad["entities"][2]["updated_at"] = json!("2021-06-01T00:00:00Z");
        let cmp = compare(&args, &local, &bad, &added, t("2021-01-01T00:00:00Z"));
        assert!(matches!(cmp.outcome(), Outcome::ChangedSince));

        // Out of order (not a tie).
        let swapped = json!({"entities": [
            {"type": "Shot", "id": 3, "code": "c", "sg_cut_in": 2},
            {"type": "Shot", "id": 1, "code": "a", "sg_cut_in": 1},
            {"type": "Shot", "id": 2, "code": "b", "sg_cut_in": 1}]});
        let cmp = compare(&args, &swapped, &site, &added, t("2021-01-01T00:00:00Z"));
        let Outcome::Mismatch(f) = cmp.outcome() else {
            panic!("order mismatch")
        };
        assert_eq!(f[0].kind, FindingKind::Order);
        assert_eq!(f[0].cache, json!([3, 1, 2]));
        assert_eq!(f[0].site, json!([1, 2, 3]));
    }

    #[test]
    fn membership_and_count_differences_are_findings_unless_something_changed() {
        let args = json!({"type": "Shot", "return_fields": ["code"]});
        let local = json!({"entities": [{"type": "Shot", "id": 1, "code": "a"},
                                        {"type": "Shot", "id": 2, "code": "b"}],
                           "paging_info": {"entity_count": 2}});
        let site = json!({"entities": [{"type": "Shot", "id": 1, "code": "a"},
                                       {"type": "Shot", "id": 3, "code": "c"}],
                          "paging_info": {"entity_count": 5}});
        let threshold = t("2021-01-01T00:00:00Z");
        let mut cmp = compare(&args, &local, &site, &[], threshold);
        assert_eq!(cmp.only_local, BTreeSet::from([2]));
        let kinds: Vec<FindingKind> = cmp.findings.iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            vec![
                FindingKind::MissingFromCacheAnswer,
                FindingKind::EntityCount
            ]
        );

        // The site has no newer version of 2: a finding.
        let unchanged = Refreshed::from_records(
            "Shot",
            [2],
            vec![(
                record(json!({"id": 2, "updated_at": "2020-01-01T00:00:00Z"})),
                true,
            )],
        );
        cmp.settle_only_local(&unchanged, threshold);
        let Outcome::Mismatch(f) = cmp.outcome() else {
            panic!("mismatch")
        };
        assert_eq!(f.len(), 3);
        assert_eq!(f[2].kind, FindingKind::NotInSiteAnswer);
        assert_eq!(f[2].counted_as(), "(not_in_site_answer)");

        // 2 changed after the answer: the page's membership and count are forgiven.
        let mut cmp = compare(&args, &local, &site, &[], threshold);
        let changed = Refreshed::from_records(
            "Shot",
            [2],
            vec![(
                record(json!({"id": 2, "updated_at": "2021-02-01T00:00:00Z"})),
                false,
            )],
        );
        cmp.settle_only_local(&changed, threshold);
        assert!(matches!(cmp.outcome(), Outcome::ChangedSince));
    }

    #[test]
    fn diffs_are_shortened_for_display() {
        let long = "x".repeat(MAX_SHOWN + 5);
        let f = Finding {
            id: Some(1),
            field: Some("code".into()),
            kind: FindingKind::Value,
            cache: json!(long),
            site: Json::Null,
        };
        let shown = f.to_json();
        assert_eq!(shown["kind"], "value");
        assert_eq!(
            shown["cache"],
            json!(format!("{}...", "x".repeat(MAX_SHOWN)))
        );
        assert_eq!(shown["site"], Json::Null);
        let entity = Finding::entity(4, FindingKind::MissingFromCacheAnswer).to_json();
        assert_eq!(
            entity,
            json!({"id": 4, "kind": "missing_from_cache_answer"})
        );
        assert_eq!(
            truncate_list(&json!([1, 2, 3]), 2),
            json!([1, 2, "... 1 more"])
        );
        assert_eq!(truncate_list(&json!([1, 2]), 2), json!([1, 2]));
    }

    #[test]
    fn rerun_adds_updated_at_and_sort_fields() {
        let schema = crate::actors::fixture::schema(&["Shot"]);
        let shot = &schema.types["Shot"];
        let args = json!({"return_fields": ["code", "id"],
                          "sorts": [{"field_name": "sg_cut_in", "direction": "asc"},
                                    {"field_name": "code", "direction": "asc"}]});
        let (rerun, added) = rerun_args(&args, shot);
        assert_eq!(added, vec!["updated_at", "sg_cut_in"]);
        assert_eq!(
            rerun["return_fields"],
            json!(["code", "id", "updated_at", "sg_cut_in"])
        );
    }

    #[test]
    fn cached_rows_compare_in_their_stored_form() {
        let schema = crate::actors::fixture::schema(&["Shot"]);
        let shot = &schema.types["Shot"];
        let link = shot
            .fields
            .values()
            .find(|f| matches!(f.layout, ColumnLayout::Entity { .. }))
            .expect("a link field")
            .name
            .clone();
        let mut site = Record::new();
        let mut row = CachedRow::new();
        for field in shot.fields.values() {
            site.insert(field.name.clone(), Json::Null);
            let stored = match field.layout {
                ColumnLayout::MultiEntity { .. } => json!([]),
                _ => Json::Null,
            };
            row.insert(field.name.clone(), stored);
        }
        site.insert(
            link.clone(),
            json!({"type": "Sequence", "id": 7, "name": "sq"}),
        );
        row.insert(link.clone(), json!({"type": "Sequence", "id": 7}));
        row.insert("_active".into(), json!(true));
        assert_eq!(
            row_differences(shot, &row, Some((&site, true))),
            Vec::<String>::new()
        );
        assert_eq!(
            row_differences(shot, &row, Some((&site, false))),
            vec!["_active"]
        );
        row.insert(link.clone(), json!({"type": "Sequence", "id": 8}));
        assert_eq!(row_differences(shot, &row, Some((&site, true))), vec![link]);
        assert_eq!(row_differences(shot, &row, None), vec!["(missing)"]);
    }
}
