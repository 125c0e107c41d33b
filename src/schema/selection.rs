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

/// Whether a field may hold a secret and is therefore never cached, whatever its data type
/// (`password` fields, and text fields such as `ApiUser.salted_password`).
fn is_secret(field: &str, kind: FieldKind) -> bool {
    kind == FieldKind::Password || field.ends_with("password")
}

/// Applies `rules` to `site`: the cached schema and a report of what was left out.
///
/// The selected types are closed over their links: every type that a cached entity or
/// multi-entity field may point to (`valid_types`) is cached at least **thinly** (`id`,
/// `updated_at`, its display field, and the retired state every table has), so that links get
/// their `name` and the retired-link rule can be applied locally. A link field whose valid types
/// cannot all be cached (the site does not expose the type, it has no display field, it is
/// `EventLogEntry` or excluded by a rule) is left uncached with the reason.
pub fn select(
    site: &SiteSchema,
    rules: &SelectionRules,
) -> Result<(CachedSchema, SelectionReport), SchemaError> {
    let mut report = SelectionReport::default();
    let mut sel = included(site, rules, &mut report)?;
    let (excluded, excluded_types) = exclusions(site, rules, &mut sel, &mut report)?;

    // Table names of every cached type, to detect association tables that would collide.
    let mut tables: BTreeSet<String> = BTreeSet::new();
    let mut cached = CachedSchema::default();
    let no_exclusions = BTreeSet::new();
    for (ty, entry) in &sel {
        let Some(def) = site.entity(ty) else { continue };
        let excl = excluded.get(ty).unwrap_or(&no_exclusions);
        let mut wanted: BTreeSet<&str> = if entry.all {
            def.fields.keys().map(String::as_str).collect()
        } else {
            entry.fields.iter().map(String::as_str).collect()
        };
        wanted.extend(always_cached(def));
        wanted.retain(|f| !excl.contains(*f));
        match build_entity(def, wanted, &mut tables, &mut report) {
            Ok(ce) => {
                cached.types.insert(ty.clone(), ce);
            }
            Err(problem) => report
                .warnings
                .push(format!("entity type {ty} skipped: {problem}")),
        }
    }
    close_over_links(site, &mut cached, &excluded_types, &mut tables, &mut report);

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

/// The types and fields named by the include rules (`*.field` rules applied to the selected
/// types), without `EventLogEntry`.
fn included(
    site: &SiteSchema,
    rules: &SelectionRules,
    report: &mut SelectionReport,
) -> Result<BTreeMap<String, TypeSel>, SchemaError> {
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
    Ok(sel)
}

/// Fields excluded by rules, by type.
type ExcludedFields = BTreeMap<String, BTreeSet<String>>;

/// Excluded fields by type (always-cached fields are protected), and excluded types (removed
/// from `sel`; they are not cached thinly either).
fn exclusions(
    site: &SiteSchema,
    rules: &SelectionRules,
    sel: &mut BTreeMap<String, TypeSel>,
    report: &mut SelectionReport,
) -> Result<(ExcludedFields, BTreeSet<String>), SchemaError> {
    let mut excluded: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut excluded_types = BTreeSet::new();
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
            let Some(fp) = rule.field else {
                sel.remove(&def.name);
                excluded_types.insert(def.name.clone());
                continue;
            };
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
    Ok((excluded, excluded_types))
}

/// The cached entity of `def` with the `wanted` fields that can be stored (the others are
/// reported as skipped); `Err` when its table name is unusable or already taken.
fn build_entity(
    def: &EntityDef,
    wanted: BTreeSet<&str>,
    tables: &mut BTreeSet<String>,
    report: &mut SelectionReport,
) -> Result<CachedEntity, String> {
    let ty = &def.name;
    let table = table_name(ty);
    if let Some(problem) = ident_problem(&table) {
        return Err(problem);
    }
    if !tables.insert(table.clone()) {
        return Err(format!("table {table} is already used"));
    }
    let display = display_field(def)
        .filter(|d| def.fields.get(*d).is_some_and(|f| is_scalar(f.kind)))
        .filter(|d| ident_problem(d).is_none())
        .map(str::to_owned);
    let mut ce = CachedEntity {
        name: ty.clone(),
        table: table.clone(),
        display_field: display,
        fields: BTreeMap::new(),
        thin: false,
        uncached: Default::default(),
    };
    let mut columns: BTreeMap<String, String> = BTreeMap::new();
    for fname in wanted {
        match cached_field(def, &table, fname, &columns, report) {
            Ok(Some(field)) => {
                for c in field.layout.columns() {
                    columns.insert(c.to_owned(), fname.to_owned());
                }
                ce.fields.insert(fname.to_owned(), field);
            }
            Ok(None) => {}
            Err(reason) => report.skipped.push(SkippedField {
                entity_type: ty.clone(),
                field: fname.to_owned(),
                reason,
            }),
        }
    }
    Ok(ce)
}

/// Whether a field of this kind is stored in one column (a display field must be).
fn is_scalar(kind: FieldKind) -> bool {
    matches!(
        ColumnLayout::for_field("t", "f", kind),
        Some(ColumnLayout::Scalar { .. })
    )
}

/// The cached form of field `fname` of `def`: `Ok(None)` when the site does not have it,
/// `Err(reason)` when it cannot be cached.
fn cached_field(
    def: &EntityDef,
    table: &str,
    fname: &str,
    columns: &BTreeMap<String, String>,
    report: &mut SelectionReport,
) -> Result<Option<CachedField>, String> {
    let ty = &def.name;
    let (kind, data_type, valid_types, default) = match def.fields.get(fname) {
        Some(fd) => (
            fd.kind,
            fd.data_type.clone(),
            fd.valid_types.clone(),
            fd.default_value.clone(),
        ),
        // `id` is implied even if the site forgot to list it.
        None if fname == "id" => (
            FieldKind::Number,
            "number".to_owned(),
            vec![],
            serde_json::Value::Null,
        ),
        None => return Ok(None),
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
        return Err(format!(
            "{prefix}* fields are UI-only and not served by the API"
        ));
    }
    if fname != "id" && is_secret(fname, kind) {
        return Err(format!(
            "data type {data_type}: may hold a secret, never cached"
        ));
    }
    let Some(mut layout) = ColumnLayout::for_field(table, fname, kind) else {
        let reason = kind.uncacheable_reason().unwrap_or("not cacheable");
        return Err(format!("data type {data_type}: {reason}"));
    };
    // A checkbox is NOT NULL only when the site gives it a boolean default: others can be null.
    if kind == FieldKind::Checkbox && default.is_boolean() {
        layout = layout.not_null();
    }
    if let Some(problem) = std::iter::once(fname)
        .chain(layout.identifiers())
        .find_map(ident_problem)
    {
        return Err(problem);
    }
    if let Some((col, other)) = layout
        .columns()
        .into_iter()
        .find_map(|c| columns.get(c).map(|o| (c, o)))
    {
        return Err(format!("column {col} is already used by field {other}"));
    }
    Ok(Some(CachedField {
        name: fname.to_owned(),
        kind,
        data_type,
        valid_types,
        layout,
    }))
}

/// Why links to `ty` cannot get a name and a retired state from the cache, if they cannot.
fn unlinkable(
    site: &SiteSchema,
    cached: &CachedSchema,
    excluded_types: &BTreeSet<String>,
    ty: &str,
) -> Option<String> {
    if let Some(ce) = cached.entity(ty) {
        return ce
            .display_field
            .is_none()
            .then(|| format!("{ty} has no known display field (the link name)"));
    }
    if NEVER_CACHED_TYPES.contains(&ty) {
        return Some(format!("{ty} is never cached"));
    }
    if excluded_types.contains(ty) {
        return Some(format!("{ty} is excluded by schema.exclude"));
    }
    let Some(def) = site.entity(ty) else {
        return Some(format!("the site does not expose the type {ty}"));
    };
    match display_field(def) {
        Some(d) if def.fields.get(d).is_some_and(|f| is_scalar(f.kind)) => None,
        _ => Some(format!("{ty} has no known display field (the link name)")),
    }
}

/// Caches thinly every type that a cached link field points to, and leaves uncached the link
/// fields whose valid types cannot all be cached (see [`select`]).
fn close_over_links(
    site: &SiteSchema,
    cached: &mut CachedSchema,
    excluded_types: &BTreeSet<String>,
    tables: &mut BTreeSet<String>,
    report: &mut SelectionReport,
) {
    let mut problems: BTreeMap<String, String> = BTreeMap::new();
    for ty in link_targets(cached) {
        if let Some(problem) = unlinkable(site, cached, excluded_types, &ty) {
            problems.insert(ty, problem);
            continue;
        }
        let Some(def) = site.entity(&ty) else {
            continue;
        };
        if cached.types.contains_key(&ty) {
            continue;
        }
        match thin_entity(&ty, def, tables, report) {
            Ok(ce) => {
                cached.types.insert(ty, ce);
            }
            Err(problem) => {
                problems.insert(ty, problem);
            }
        }
    }
    drop_unlinkable_fields(cached, &problems, report);
}

/// Every type that some cached link field may point to.
fn link_targets(cached: &CachedSchema) -> BTreeSet<String> {
    cached
        .types
        .values()
        .flat_map(|e| e.fields.values())
        .filter(|f| matches!(f.kind, FieldKind::Entity | FieldKind::MultiEntity))
        .flat_map(|f| f.valid_types.iter().cloned())
        .collect()
}

/// `def` (the type `ty`) cached thinly (its always-cached fields), or why it cannot be: a thin type must store
/// its display field, the link name.
fn thin_entity(
    ty: &str,
    def: &EntityDef,
    tables: &mut BTreeSet<String>,
    report: &mut SelectionReport,
) -> Result<CachedEntity, String> {
    match build_entity(
        def,
        always_cached(def).into_iter().collect(),
        tables,
        report,
    ) {
        Ok(mut ce)
            if ce
                .display_field
                .as_ref()
                .is_some_and(|d| ce.fields.contains_key(d)) =>
        {
            ce.thin = true;
            Ok(ce)
        }
        Ok(_) => {
            tables.remove(&table_name(ty));
            Err(format!("{ty}: its display field cannot be stored"))
        }
        Err(problem) => Err(format!("{ty} cannot be cached: {problem}")),
    }
}

/// Removes (and reports) the link fields with unknown valid types or a valid type listed in
/// `problems`.
fn drop_unlinkable_fields(
    cached: &mut CachedSchema,
    problems: &BTreeMap<String, String>,
    report: &mut SelectionReport,
) {
    for ce in cached.types.values_mut() {
        let drop: Vec<(String, String)> = ce
            .fields
            .values()
            .filter_map(|f| Some((f.name.clone(), unlinkable_field(f, problems)?)))
            .collect();
        for (field, reason) in drop {
            ce.fields.remove(&field);
            report.skipped.push(SkippedField {
                entity_type: ce.name.clone(),
                field,
                reason,
            });
        }
    }
}

/// Why the link field `f` cannot be cached, if it is a link field that cannot.
fn unlinkable_field(f: &CachedField, problems: &BTreeMap<String, String>) -> Option<String> {
    if !matches!(f.kind, FieldKind::Entity | FieldKind::MultiEntity) {
        return None;
    }
    if f.valid_types.is_empty() {
        return Some("no valid_types: the linked types are unknown".to_owned());
    }
    f.valid_types
        .iter()
        .find_map(|t| problems.get(t))
        .map(|p| format!("links to a type that cannot be cached: {p}"))
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
        assert_eq!(c.types.keys().collect::<Vec<_>>(), {
            let mut v = vec!["Shot"];
            v.extend(c.thin_types());
            v.sort();
            v
        });
        // Every type Shot links to is cached thinly (ApiUser/HumanUser: created_by, …).
        assert_eq!(
            c.thin_types().collect::<Vec<_>>(),
            vec![
                "ApiUser",
                "Asset",
                "HumanUser",
                "Project",
                "Sequence",
                "Task",
                "TaskTemplate"
            ]
        );
        assert!(!c.types["Shot"].thin);
        assert_eq!(fields(&c, "ApiUser"), vec!["firstname", "id", "updated_at"]);
        assert_eq!(fields(&c, "Task"), vec!["content", "id", "updated_at"]);
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
        assert_eq!(c.types.len(), 18);
        assert_eq!(c.thin_types().count(), 0);
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
            c.types
                .values()
                .filter(|e| !e.thin)
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>(),
            vec!["Scene", "Sequence", "Shot", "Step"]
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
        assert_eq!(
            c.types
                .values()
                .filter(|e| !e.thin)
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>(),
            vec!["Shot", "Task"]
        );
        // An excluded type is not cached thinly either: links into it stay uncached.
        assert!(!c.types.contains_key("Asset"));
        for (ty, f) in [("Task", "entity"), ("Shot", "assets")] {
            let s = r
                .skipped
                .iter()
                .find(|s| s.entity_type == ty && s.field == f)
                .unwrap_or_else(|| panic!("{ty}.{f} skipped"));
            assert!(s.reason.contains("Asset is excluded"), "{s:?}");
        }
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
        assert_eq!(c.types.len(), 4); // S* types selected with always-cached fields
        assert_eq!(r.warnings.len(), 2);
    }

    #[test]
    fn link_targets_are_cached_thinly_or_the_link_is_not_cached() {
        let text = |t: &str| serde_json::json!({"data_type": {"value": t}});
        let link = |types: &[&str]| {
            serde_json::json!({"data_type": {"value": "entity"},
                "properties": {"valid_types": {"value": types}}})
        };
        let v = serde_json::json!({
            "Thing": {
                "id": text("number"), "code": text("text"), "updated_at": text("date_time"),
                "owner": link(&["Person", "Other"]),
                "ghost": link(&["Ghost"]),
                "file": link(&["Attachment"]),
                "log": link(&["EventLogEntry"]),
                "salted_password": text("text"),
                "secret": text("password"),
                "password_strength": text("number"),
            },
            "Person": {"id": text("number"), "name": text("text"), "updated_at": text("date_time"),
                       "email": text("text"), "boss": link(&["Person"])},
            "Other": {"id": text("number"), "title": text("text")},
            "Attachment": {"id": text("number"), "filename": text("text")},
            "EventLogEntry": {"id": text("number"), "entity": link(&["Thing"])},
        });
        let site = SiteSchema::from_json(&v, None).unwrap();
        let (c, r) = select(&site, &rules(&["Thing"], &[])).unwrap();
        assert_eq!(c.thin_types().collect::<Vec<_>>(), vec!["Other", "Person"]);
        // Thin: id, updated_at (when the type has it) and the display field, nothing else.
        assert_eq!(fields(&c, "Person"), vec!["id", "name", "updated_at"]);
        assert_eq!(fields(&c, "Other"), vec!["id", "title"]);
        assert_eq!(c.types["Other"].display_field.as_deref(), Some("title"));
        assert_eq!(
            fields(&c, "Thing"),
            vec!["code", "id", "owner", "password_strength", "updated_at"]
        );
        let why: BTreeMap<_, _> = r
            .skipped
            .iter()
            .map(|s| (s.field.as_str(), s.reason.as_str()))
            .collect();
        assert!(
            why["ghost"].contains("does not expose the type Ghost"),
            "{why:?}"
        );
        assert!(why["file"].contains("Attachment has no known display field"));
        assert!(why["log"].contains("EventLogEntry is never cached"));
        assert!(why["salted_password"].contains("secret"));
        assert!(why["secret"].contains("secret"));
        // A selected type without a display field: links into it are not cached either.
        let (c, r) = select(&site, &rules(&["Thing", "Attachment"], &[])).unwrap();
        assert!(c.types.contains_key("Attachment") && !c.types["Attachment"].thin);
        assert!(!c.types["Thing"].fields.contains_key("file"));
        assert!(r.skipped.iter().any(|s| s.field == "file"));
        // A type selected in full is not thin, and its own links are closed over too.
        let (c, _) = select(&site, &rules(&["Person"], &[])).unwrap();
        assert_eq!(c.thin_types().count(), 0);
        assert!(c.types["Person"].fields.contains_key("boss"));
    }

    #[test]
    fn long_identifiers_are_skipped() {
        let long = format!("sg_{}", "x".repeat(58)); // 61 bytes: column OK, assoc table too long
        let v = serde_json::json!({"Thing": {
            "id": {"data_type": {"value": "number"}},
            "code": {"data_type": {"value": "text"}},
            long.clone(): {"data_type": {"value": "multi_entity"}},
            "sg_link": {"data_type": {"value": "entity"}, "properties": {"valid_types": {"value": ["Thing"]}}},
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
