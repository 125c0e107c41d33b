//! Selection rules: which types and fields of the site are cached.

use std::collections::{BTreeMap, BTreeSet};

use wildmatch::WildMatch;

use super::cached::{
    CachedEntity, CachedField, CachedSchema, ColumnLayout, ident_problem, table_name,
};
use super::display::display_field;
use super::error::SchemaError;
use super::kind::FieldKind;
use super::site::{EntityDef, SiteSchema};

/// Types that are never cached, whatever the rules say.
pub const NEVER_CACHED_TYPES: &[&str] = &["EventLogEntry"];

/// Field-name prefixes of UI-only fields the API does not serve (`smart_cut_in`, …).
pub const UI_ONLY_FIELD_PREFIXES: &[&str] = &["smart_"];

/// Include/exclude rules from the configuration (`Type`, `Type.field`, `*.field`, wildcards).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct SelectionRules {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

/// A field that was asked for (or implied) but is not cached.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SkippedField {
    pub entity_type: String,
    pub field: String,
    pub reason: String,
}

/// What [`select`] left out and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SelectionReport {
    pub skipped: Vec<SkippedField>,
    pub warnings: Vec<String>,
}

struct Rule<'a> {
    raw: &'a str,
    ty: &'a str,
    field: Option<&'a str>,
}

fn has_wildcard(s: &str) -> bool {
    s.contains('*') || s.contains('?')
}

fn parse_rule(raw: &str) -> Result<Rule<'_>, SchemaError> {
    let invalid = |reason: &str| SchemaError::InvalidRule {
        rule: raw.to_owned(),
        reason: reason.to_owned(),
    };
    let s = raw.trim();
    if s.is_empty() {
        return Err(invalid("empty rule"));
    }
    let (ty, field) = match s.split_once('.') {
        None => (s, None),
        Some((t, f)) => {
            if f.contains('.') {
                return Err(invalid(
                    "expected `Type` or `Type.field` (deep fields are not allowed)",
                ));
            }
            (t, Some(f))
        }
    };
    if ty.is_empty() || field.is_some_and(str::is_empty) {
        return Err(invalid("empty type or field part"));
    }
    Ok(Rule { raw, ty, field })
}

/// Entity types matched by a type pattern; a literal name must exist.
fn matching_types<'s>(
    site: &'s SiteSchema,
    rule: &Rule<'_>,
) -> Result<Vec<&'s EntityDef>, SchemaError> {
    if has_wildcard(rule.ty) {
        let m = WildMatch::new(rule.ty);
        Ok(site
            .entities
            .values()
            .filter(|e| m.matches(&e.name))
            .collect())
    } else {
        site.entity(rule.ty)
            .map(|e| vec![e])
            .ok_or_else(|| SchemaError::UnknownType {
                rule: rule.raw.to_owned(),
                entity_type: rule.ty.to_owned(),
            })
    }
}

fn matching_fields<'e>(def: &'e EntityDef, pattern: &str) -> impl Iterator<Item = &'e str> {
    let m = WildMatch::new(pattern);
    def.fields
        .keys()
        .filter(move |f| m.matches(f))
        .map(String::as_str)
}

#[derive(Default)]
struct TypeSel {
    all: bool,
    fields: BTreeSet<String>,
}

/// Fields that are always cached for a selected type (when present and cacheable).
fn always_cached(def: &EntityDef) -> Vec<&str> {
    let mut v = vec!["id"];
    if def.fields.contains_key("updated_at") {
        v.push("updated_at");
    }
    if let Some(d) = display_field(def)
        && !v.contains(&d)
    {
        v.push(d);
    }
    v
}

/// Applies `rules` to `site`: the cached schema and a report of what was left out.
pub fn select(
    site: &SiteSchema,
    rules: &SelectionRules,
) -> Result<(CachedSchema, SelectionReport), SchemaError> {
    let mut report = SelectionReport::default();
    let mut sel: BTreeMap<String, TypeSel> = BTreeMap::new();
    let mut star_fields: Vec<&str> = Vec::new();

    for raw in &rules.include {
        let rule = parse_rule(raw)?;
        if rule.ty == "*" && rule.field.is_some() {
            star_fields.extend(rule.field);
            continue;
        }
        let types = matching_types(site, &rule)?;
        if types.is_empty() {
            report
                .warnings
                .push(format!("include rule {raw:?} matches no entity type"));
        }
        for def in types {
            let entry = sel.entry(def.name.clone()).or_default();
            match rule.field {
                None => entry.all = true,
                Some(fp) if has_wildcard(fp) => {
                    entry
                        .fields
                        .extend(matching_fields(def, fp).map(str::to_owned));
                }
                Some(f) => {
                    if def.fields.contains_key(f) {
                        entry.fields.insert(f.to_owned());
                    } else if !has_wildcard(rule.ty) {
                        return Err(SchemaError::UnknownField {
                            rule: raw.clone(),
                            entity_type: def.name.clone(),
                            field: f.to_owned(),
                        });
                    }
                }
            }
        }
    }

    for never in NEVER_CACHED_TYPES {
        if sel.remove(*never).is_some() {
            report
                .warnings
                .push(format!("{never} is never cached; it was skipped"));
        }
    }

    for fp in &star_fields {
        let mut hit = false;
        for (ty, entry) in sel.iter_mut() {
            if let Some(def) = site.entity(ty) {
                for f in matching_fields(def, fp) {
                    hit = true;
                    entry.fields.insert(f.to_owned());
                }
            }
        }
        if !hit {
            report.warnings.push(format!(
                "include rule \"*.{fp}\" matches no field of a selected type"
            ));
        }
    }

    let mut excluded: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for raw in &rules.exclude {
        let rule = parse_rule(raw)?;
        let types: Vec<&EntityDef> = if has_wildcard(rule.ty) {
            let m = WildMatch::new(rule.ty);
            site.entities
                .values()
                .filter(|e| m.matches(&e.name))
                .collect()
        } else {
            site.entity(rule.ty).into_iter().collect()
        };
        if types.is_empty() {
            report
                .warnings
                .push(format!("exclude rule {raw:?} matches no entity type"));
            continue;
        }
        for def in types {
            match rule.field {
                None => {
                    sel.remove(&def.name);
                }
                Some(fp) => {
                    if !sel.contains_key(&def.name) {
                        continue;
                    }
                    let protected = always_cached(def);
                    let set = excluded.entry(def.name.clone()).or_default();
                    for f in matching_fields(def, fp) {
                        if protected.contains(&f) {
                            report.warnings.push(format!(
                                "exclude rule {raw:?} ignored for {}.{f}: always cached",
                                def.name
                            ));
                        } else {
                            set.insert(f.to_owned());
                        }
                    }
                }
            }
        }
    }

    // Table names of every selected type, to detect association tables that would collide.
    let mut tables: BTreeSet<String> = BTreeSet::new();
    let mut cached = CachedSchema::default();
    for (ty, entry) in &sel {
        let Some(def) = site.entity(ty) else { continue };
        let table = table_name(ty);
        if let Some(problem) = ident_problem(&table) {
            report
                .warnings
                .push(format!("entity type {ty} skipped: {problem}"));
            continue;
        }
        if !tables.insert(table.clone()) {
            report.warnings.push(format!(
                "entity type {ty} skipped: table {table} is already used"
            ));
            continue;
        }
        let no_exclusions = BTreeSet::new();
        let excl = excluded.get(ty).unwrap_or(&no_exclusions);
        let mut wanted: BTreeSet<&str> = if entry.all {
            def.fields.keys().map(String::as_str).collect()
        } else {
            entry.fields.iter().map(String::as_str).collect()
        };
        wanted.extend(always_cached(def));
        wanted.retain(|f| !excl.contains(*f));

        let display = display_field(def)
            .filter(|d| def.fields.get(*d).is_some_and(|f| f.kind.is_cacheable()))
            .filter(|d| ident_problem(d).is_none())
            .map(str::to_owned);
        let mut ce = CachedEntity {
            name: ty.clone(),
            table: table.clone(),
            display_field: display,
            fields: BTreeMap::new(),
        };
        let mut columns: BTreeMap<String, String> = BTreeMap::new();
        for fname in wanted {
            let skip = |reason: String| SkippedField {
                entity_type: ty.clone(),
                field: fname.to_owned(),
                reason,
            };
            let (kind, data_type, valid_types) = match def.fields.get(fname) {
                Some(fd) => (fd.kind, fd.data_type.clone(), fd.valid_types.clone()),
                // `id` is implied even if the site forgot to list it.
                None if fname == "id" => (FieldKind::Number, "number".to_owned(), vec![]),
                None => continue,
            };
            if fname == "id" && kind != FieldKind::Number {
                report.warnings.push(format!(
                    "{ty}.id has data type {data_type}; stored as a number anyway"
                ));
            }
            if let Some(prefix) = UI_ONLY_FIELD_PREFIXES
                .iter()
                .find(|p| fname.starts_with(**p))
            {
                report.skipped.push(skip(format!(
                    "{prefix}* fields are UI-only and not served by the API"
                )));
                continue;
            }
            let layout = match ColumnLayout::for_field(&table, fname, kind) {
                Some(l) => l,
                None => {
                    let reason = kind.uncacheable_reason().unwrap_or("not cacheable");
                    report
                        .skipped
                        .push(skip(format!("data type {data_type}: {reason}")));
                    continue;
                }
            };
            if let Some(problem) = std::iter::once(fname)
                .chain(layout.identifiers())
                .find_map(ident_problem)
            {
                report.skipped.push(skip(problem));
                continue;
            }
            if let Some((col, other)) = layout
                .columns()
                .into_iter()
                .find_map(|c| columns.get(c).map(|o| (c, o)))
            {
                report.skipped.push(skip(format!(
                    "column {col} is already used by field {other}"
                )));
                continue;
            }
            for c in layout.columns() {
                columns.insert(c.to_owned(), fname.to_owned());
            }
            ce.fields.insert(
                fname.to_owned(),
                CachedField {
                    name: fname.to_owned(),
                    kind,
                    data_type,
                    valid_types,
                    layout,
                },
            );
        }
        cached.types.insert(ty.clone(), ce);
    }

    // Association tables must not collide with entity tables or with each other.
    for ce in cached.types.values_mut() {
        let mut drop = Vec::new();
        for f in ce.fields.values() {
            if let ColumnLayout::MultiEntity { table } = &f.layout
                && !tables.insert(table.clone())
            {
                drop.push(f.name.clone());
                report.skipped.push(SkippedField {
                    entity_type: ce.name.clone(),
                    field: f.name.clone(),
                    reason: format!("association table {table} collides with another table"),
                });
            }
        }
        for f in drop {
            ce.fields.remove(&f);
        }
    }

    Ok((cached, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::site::tests::fixture;

    fn rules(include: &[&str], exclude: &[&str]) -> SelectionRules {
        SelectionRules {
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn fields(c: &CachedSchema, ty: &str) -> Vec<String> {
        c.types[ty].fields.keys().cloned().collect()
    }

    #[test]
    fn whole_type() {
        let (c, r) = select(&fixture(), &rules(&["Shot"], &[])).unwrap();
        assert_eq!(c.types.keys().collect::<Vec<_>>(), vec!["Shot"]);
        let shot = &c.types["Shot"];
        assert_eq!(shot.table, "shot");
        assert_eq!(shot.display_field.as_deref(), Some("code"));
        assert_eq!(
            fields(&c, "Shot"),
            vec![
                "assets",
                "code",
                "created_at",
                "created_by",
                "description",
                "id",
                "parent_shots",
                "project",
                "sg_cut_in",
                "sg_cut_order",
                "sg_cut_out",
                "sg_sequence",
                "sg_shot_type",
                "sg_status_list",
                "shots",
                "task_template",
                "tasks",
                "updated_at",
                "updated_by"
            ]
        );
        let skipped: Vec<_> = r.skipped.iter().map(|s| s.field.as_str()).collect();
        assert_eq!(
            skipped,
            vec!["filmstrip_image", "image", "smart_cut_in", "tag_list"]
        );
        assert!(r.skipped.iter().all(|s| s.entity_type == "Shot"));
        assert!(r.skipped[0].reason.contains("image"), "{:?}", r.skipped[0]);
        assert!(r.skipped[2].reason.contains("UI-only"));
        assert!(r.skipped[3].reason.contains("tag_list"));
        assert!(r.warnings.is_empty());
        assert_eq!(
            shot.fields["id"].layout,
            ColumnLayout::Scalar {
                column: "id".into(),
                sql: crate::schema::cached::SqlType::BigInt,
                not_null: true
            }
        );
    }

    #[test]
    fn single_fields_and_always_cached() {
        let (c, r) = select(
            &fixture(),
            &rules(&["Task.task_assignees", "Shot.sg_*", "Task.image"], &[]),
        )
        .unwrap();
        assert_eq!(
            fields(&c, "Task"),
            vec!["content", "id", "task_assignees", "updated_at"]
        );
        assert_eq!(c.types["Task"].display_field.as_deref(), Some("content"));
        assert_eq!(
            fields(&c, "Shot"),
            vec![
                "code",
                "id",
                "sg_cut_in",
                "sg_cut_order",
                "sg_cut_out",
                "sg_sequence",
                "sg_shot_type",
                "sg_status_list",
                "updated_at"
            ]
        );
        assert_eq!(r.skipped.len(), 1);
        assert_eq!(
            (
                r.skipped[0].entity_type.as_str(),
                r.skipped[0].field.as_str()
            ),
            ("Task", "image")
        );
    }

    #[test]
    fn star_field_does_not_select_types() {
        let (c, _) = select(&fixture(), &rules(&["*.description", "Asset.id"], &[])).unwrap();
        assert_eq!(c.types.keys().collect::<Vec<_>>(), vec!["Asset"]);
        assert_eq!(
            fields(&c, "Asset"),
            vec!["code", "description", "id", "updated_at"]
        );
    }

    #[test]
    fn star_and_event_log() {
        let (c, r) = select(&fixture(), &rules(&["*"], &[])).unwrap();
        assert_eq!(c.types.len(), 9);
        assert!(!c.types.contains_key("EventLogEntry"));
        assert!(r.warnings.iter().any(|w| w.contains("EventLogEntry")));
        // Password, url, serializable are skipped with reasons.
        for (ty, f) in [
            ("HumanUser", "password_proxy"),
            ("Version", "sg_uploaded_movie"),
            ("Task", "splits"),
        ] {
            assert!(
                r.skipped
                    .iter()
                    .any(|s| s.entity_type == ty && s.field == f),
                "{ty}.{f}"
            );
            assert!(!c.types[ty].fields.contains_key(f));
        }
        // Wildcard type part.
        let (c, _) = select(&fixture(), &rules(&["S*"], &[])).unwrap();
        assert_eq!(
            c.types.keys().collect::<Vec<_>>(),
            vec!["Sequence", "Shot", "Step"]
        );
        let (c, _) = select(&fixture(), &rules(&["S?ot.code"], &[])).unwrap();
        assert_eq!(fields(&c, "Shot"), vec!["code", "id", "updated_at"]);
    }

    #[test]
    fn exclusions() {
        let (c, r) = select(
            &fixture(),
            &rules(
                &["Shot", "Asset", "Task"],
                &[
                    "Asset",
                    "Shot.sg_*",
                    "*.created_by",
                    "Shot.code",
                    "*.id",
                    "Task.content",
                ],
            ),
        )
        .unwrap();
        assert_eq!(c.types.keys().collect::<Vec<_>>(), vec!["Shot", "Task"]);
        let shot = fields(&c, "Shot");
        assert!(shot.iter().all(|f| !f.starts_with("sg_")));
        assert!(!shot.contains(&"created_by".to_string()));
        assert!(shot.contains(&"code".to_string()));
        assert!(shot.contains(&"id".to_string()));
        assert!(fields(&c, "Task").contains(&"content".to_string()));
        assert!(!fields(&c, "Task").contains(&"created_by".to_string()));
        assert!(r.warnings.iter().any(|w| w.contains("Shot.code")));
        assert!(r.warnings.iter().any(|w| w.contains("Task.id")));
        assert!(r.warnings.iter().any(|w| w.contains("Task.content")));
        // Excluding updated_at is ignored too.
        let (c, r) = select(&fixture(), &rules(&["Step"], &["Step.updated_at"])).unwrap();
        assert!(c.types["Step"].fields.contains_key("updated_at"));
        assert_eq!(r.warnings.len(), 1);
    }

    #[test]
    fn errors() {
        let err = select(&fixture(), &rules(&["Nope"], &[])).unwrap_err();
        assert!(
            matches!(err, SchemaError::UnknownType { ref entity_type, .. } if entity_type == "Nope")
        );
        let err = select(&fixture(), &rules(&["Nope.code"], &[])).unwrap_err();
        assert!(matches!(err, SchemaError::UnknownType { .. }));
        let err = select(&fixture(), &rules(&["Shot.nope"], &[])).unwrap_err();
        assert_eq!(
            err,
            SchemaError::UnknownField {
                rule: "Shot.nope".into(),
                entity_type: "Shot".into(),
                field: "nope".into()
            }
        );
        assert!(matches!(
            select(&fixture(), &rules(&["Shot.a.b"], &[])).unwrap_err(),
            SchemaError::InvalidRule { .. }
        ));
        assert!(matches!(
            select(&fixture(), &rules(&[""], &[])).unwrap_err(),
            SchemaError::InvalidRule { .. }
        ));
        // Wildcards that match nothing and unknown excludes only warn.
        let (c, r) = select(&fixture(), &rules(&["Zz*", "S*.nope"], &["Nope"])).unwrap();
        assert_eq!(c.types.len(), 3); // S* types selected with always-cached fields
        assert_eq!(r.warnings.len(), 2);
    }

    #[test]
    fn long_identifiers_are_skipped() {
        let long = format!("sg_{}", "x".repeat(58)); // 61 bytes: column OK, assoc table too long
        let v = serde_json::json!({"Thing": {
            "id": {"data_type": {"value": "number"}},
            "code": {"data_type": {"value": "text"}},
            long.clone(): {"data_type": {"value": "multi_entity"}},
            "sg_link": {"data_type": {"value": "entity"}},
            "sg_link__id": {"data_type": {"value": "number"}},
            "Bad": {"data_type": {"value": "text"}},
        }});
        let site = SiteSchema::from_json(&v, None).unwrap();
        let (c, r) = select(&site, &rules(&["Thing"], &[])).unwrap();
        assert_eq!(fields(&c, "Thing"), vec!["code", "id", "sg_link"]);
        let why: BTreeMap<_, _> = r
            .skipped
            .iter()
            .map(|s| (s.field.as_str(), s.reason.as_str()))
            .collect();
        assert!(why["Bad"].contains("does not match"));
        assert!(why[long.as_str()].contains("longer than 63"));
        assert!(why["sg_link__id"].contains("already used"));
    }
}
