//! The serve-or-pass decision and compilation of a read.
use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::filters::{Compiler, PlanError, ruby_dump};
use super::paths::Schemas;
use super::rules::{Rule, Rules};
use super::select::{Built, ROOT, build};
use super::{CompiledRead, Decision, PassReason};
use crate::api3::read::ReadRequest;
use crate::error::ApiError;
use crate::schema::{Backend, CachedSchema, SiteSchema};

/// Most bind parameters in one statement (SQLite allows 32,766, PostgreSQL 65,535).
pub const MAX_PARAMS: usize = 30_000;

/// Decides whether `req` can be answered from the cache and compiles it for `backend`, with no
/// project restriction (see [`plan_read_restricted`]).
///
/// Errors only for requests the site would reject for sure: a filter on a field that does not
/// exist on the site. Everything the cache cannot answer exactly is passed through.
pub fn plan_read(
    req: &ReadRequest,
    cached: &CachedSchema,
    site: &SiteSchema,
    complete: &BTreeSet<String>,
    rules: &Rules,
    backend: Backend,
) -> Result<Decision, ApiError> {
    plan_read_restricted(req, cached, site, complete, rules, backend, &[])
}

/// [`plan_read`] for a cache restricted to the projects `projects` (`scanner.projects`; empty =
/// every project): a read of a type with a cached `project` field is local only when its
/// filters restrict it to those projects ([`super::projects::restricted_to`]).
pub fn plan_read_restricted(
    req: &ReadRequest,
    cached: &CachedSchema,
    site: &SiteSchema,
    complete: &BTreeSet<String>,
    rules: &Rules,
    backend: Backend,
    projects: &[i64],
) -> Result<Decision, ApiError> {
    let schemas = Schemas {
        cached,
        site,
        complete,
    };
    explain_read_at(req, schemas, rules, backend, projects, Utc::now()).map(|p| p.decision)
}

/// [`plan_read`] with an explicit "now" for time relations.
pub fn plan_read_at(
    req: &ReadRequest,
    cached: &CachedSchema,
    site: &SiteSchema,
    complete: &BTreeSet<String>,
    rules: &Rules,
    backend: Backend,
    now: DateTime<Utc>,
) -> Result<Decision, ApiError> {
    let schemas = Schemas {
        cached,
        site,
        complete,
    };
    explain_read_at(req, schemas, rules, backend, &[], now).map(|p| p.decision)
}

/// A decision and the calibrated rules it relied on.
#[derive(Clone, Debug)]
pub struct Plan {
    pub decision: Decision,
    /// The rules the compiler asked for, decided or not (an undecided one passes the read
    /// through as `uncalibrated`).
    pub rules_used: BTreeSet<Rule>,
}

/// [`plan_read_restricted`] at `now`, also telling which rules the decision relied on.
pub fn explain_read_at(
    req: &ReadRequest,
    schemas: Schemas<'_>,
    rules: &Rules,
    backend: Backend,
    projects: &[i64],
    now: DateTime<Utc>,
) -> Result<Plan, ApiError> {
    let c = Compiler::new(schemas, backend.into(), now, rules);
    let decision = decide(&c, req, backend, projects)?;
    Ok(Plan {
        decision,
        rules_used: c.used.take(),
    })
}

/// The local read of `req` whose statements `b` holds.
fn compiled(req: &ReadRequest, backend: Backend, b: Built) -> CompiledRead {
    CompiledRead {
        entity_type: req.entity_type.clone(),
        dialect: backend.into(),
        page: b.page,
        count: b.count,
        counts: !req.without_counts,
        fields: b.fields,
        ids: b.ids,
        multis: b.multis,
        entities_per_page: req.entities_per_page,
        current_page: req.current_page,
        by_id: req.filters.pins_ids(),
    }
}

fn decide(
    c: &Compiler<'_>,
    req: &ReadRequest,
    backend: Backend,
    projects: &[i64],
) -> Result<Decision, ApiError> {
    let Schemas {
        cached, complete, ..
    } = c.schemas;
    let Some(root) = cached.entity(&req.entity_type) else {
        return Ok(Decision::PassThrough(PassReason::UncachedType));
    };
    // Compile the filter first so that a filter on a field the site lacks is an error even
    // when the read would otherwise be passed through.
    let filter = c.predicate(&req.filters, root, ROOT);
    let filter = match filter {
        Err(PlanError::Fault(e)) => return Err(e),
        Err(PlanError::Pass(r)) => {
            // Compilation stopped early: still report any path the site does not have.
            for (path, relation, values) in req.filters.leaves() {
                if path.starts_with("$FROM$") {
                    continue;
                }
                if let Some(name) = c.schemas.site_missing(&root.name, path) {
                    return Err(ApiError::bad_request(format!(
                        "API read() {name} doesn't exist: {}",
                        ruby_dump(path, relation, values)
                    )));
                }
            }
            Err(r)
        }
        Ok(f) => Ok(f),
    };
    if !complete.contains(&req.entity_type) {
        return Ok(Decision::PassThrough(PassReason::IncompleteType));
    }
    if req.entity_type == "EventLogEntry" {
        // The site shows `entity` as null while the linked entity is retired (§9.1).
        return Ok(Decision::PassThrough(PassReason::UnsupportedFeature(
            "EventLogEntry reads".into(),
        )));
    }
    if req.has_presets {
        return Ok(Decision::PassThrough(PassReason::UnsupportedFeature(
            "additional_filter_presets".into(),
        )));
    }
    if !req.include_archived_projects {
        return Ok(Decision::PassThrough(PassReason::UnsupportedFeature(
            "include_archived_projects: false".into(),
        )));
    }
    let filter = match filter {
        Ok(f) => f,
        Err(r) => return Ok(Decision::PassThrough(r)),
    };
    match build(c, req, root, filter) {
        // The cache holds only some projects' rows of this type.
        Ok(_) if !super::projects::restricted_to(root, &req.filters, projects) => {
            Ok(Decision::PassThrough(PassReason::ProjectNotRestricted))
        }
        Ok(b) if b.page.param_count() > MAX_PARAMS => Ok(Decision::PassThrough(
            PassReason::UnsupportedFeature(format!("more than {MAX_PARAMS} filter values")),
        )),
        Ok(b) => Ok(Decision::Local(compiled(req, backend, b))),
        Err(PlanError::Pass(r)) => Ok(Decision::PassThrough(r)),
        Err(PlanError::Fault(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::Dialect;
    use crate::query::rules::Rules;
    use crate::schema::selection::{SelectionRules, select};
    use crate::schema::site::tests::fixture;
    use serde_json::json;

    fn setup() -> (CachedSchema, SiteSchema, BTreeSet<String>) {
        let site = fixture();
        let rules = SelectionRules {
            include: [
                "Project",
                "Sequence",
                "Shot",
                "Asset",
                "Task",
                "Step",
                "HumanUser",
            ]
            .map(String::from)
            .to_vec(),
            exclude: vec![],
        };
        let (cached, _) = select(&site, &rules).unwrap();
        let complete = cached.types.keys().cloned().collect();
        (cached, site, complete)
    }

    fn plan(args: serde_json::Value) -> Result<Decision, ApiError> {
        plan_with(args, |_| {})
    }

    fn plan_with(
        args: serde_json::Value,
        tweak: impl FnOnce(&mut BTreeSet<String>),
    ) -> Result<Decision, ApiError> {
        let (cached, site, mut complete) = setup();
        tweak(&mut complete);
        let req = ReadRequest::parse(&args).unwrap();
        let now = crate::time::parse("2024-03-06T12:00:00Z").unwrap();
        plan_read_at(
            &req,
            &cached,
            &site,
            &complete,
            &Rules::assumed(),
            Backend::Sqlite,
            now,
        )
    }

    fn pass(args: serde_json::Value) -> PassReason {
        match plan(args.clone()).unwrap() {
            Decision::PassThrough(r) => r,
            Decision::Local(_) => panic!("expected a pass-through for {args}"),
        }
    }

    fn local(args: serde_json::Value) -> CompiledRead {
        match plan(args.clone()).unwrap() {
            Decision::Local(c) => c,
            Decision::PassThrough(r) => panic!("expected local for {args}, got {r:?}"),
        }
    }

    /// `args` compiled for PostgreSQL.
    fn local_pg(args: &serde_json::Value) -> CompiledRead {
        let (cached, site, complete) = setup();
        let req = ReadRequest::parse(args).unwrap();
        match plan_read(
            &req,
            &cached,
            &site,
            &complete,
            &Rules::assumed(),
            Backend::Postgres,
        )
        .unwrap()
        {
            Decision::Local(c) => c,
            Decision::PassThrough(r) => panic!("expected local for {args}, got {r:?}"),
        }
    }

    #[test]
    fn pass_reasons() {
        assert_eq!(pass(json!({"type": "Version"})), PassReason::UncachedType);
        assert_eq!(pass(json!({"type": "Nope"})), PassReason::UncachedType);
        let d = plan_with(json!({"type": "Shot"}), |c| {
            c.remove("Shot");
        })
        .unwrap();
        assert!(matches!(
            d,
            Decision::PassThrough(PassReason::IncompleteType)
        ));
        // A hop into an incomplete type.
        let d = plan_with(
            json!({"type": "Shot", "filters": [["sg_sequence.Sequence.code", "is", "x"]]}),
            |c| {
                c.remove("Sequence");
            },
        )
        .unwrap();
        assert!(matches!(
            d,
            Decision::PassThrough(PassReason::IncompleteType)
        ));
        assert_eq!(
            pass(json!({"type": "Shot", "return_fields": ["image"]})),
            PassReason::UncachedField("Shot.image".into())
        );
        assert_eq!(
            pass(json!({"type": "Shot", "filters": [["tag_list", "is", "x"]]})),
            PassReason::UncachedField("Shot.tag_list".into())
        );
        // Links into thinly cached types are local once those are primed.
        for args in [
            json!({"type": "Shot", "return_fields": ["created_by"]}),
            json!({"type": "Task", "return_fields": ["task_assignees", "entity"]}),
            json!({"type": "Task", "filters": [["entity", "type_is", "Element"]]}),
            json!({"type": "Task", "filters": [["task_assignees", "name_is", "x"]],
                   "sorts": [{"field_name": "entity"}]}),
        ] {
            local(args);
        }
        let d = plan_with(
            json!({"type": "Shot", "return_fields": ["created_by"]}),
            |c| {
                c.remove("ApiUser");
            },
        )
        .unwrap();
        assert!(matches!(
            d,
            Decision::PassThrough(PassReason::IncompleteType)
        ));
        assert_eq!(
            pass(json!({"type": "Shot", "filters": [["code", "less_than", "x"]]})),
            PassReason::UnsupportedRelation("less_than on text".into())
        );
        assert_eq!(
            pass(json!({"type": "Shot", "filters": [["code", "frobnicates", "x"]]})),
            PassReason::UnsupportedRelation("frobnicates".into())
        );
        for args in [
            json!({"type": "Shot", "additional_filter_presets": [{"preset_name": "LATEST"}]}),
            json!({"type": "Shot", "include_archived_projects": false}),
            json!({"type": "Task", "filters": [["$FROM$EventLogEntry.entity.id", "is", 1]]}),
            json!({"type": "Task", "return_fields": ["task_assignees.HumanUser.login"]}),
            json!({"type": "Shot", "sorts": [{"field_name": "assets"}]}),
            json!({"type": "Shot", "filters": [["sg_cut_in", "is", "ten"]]}),
            json!({"type": "Task", "filters": [["milestone", "is", null]]}),
            json!({"type": "Shot", "filters": [["code", "contains", "é"]]}),
            json!({"type": "Shot", "filters": [["code", "in", ["a", "É"]]]}),
            json!({"type": "Shot", "filters": [["sg_sequence", "name_is", "ü"]]}),
            json!({"type": "Shot", "filters": [["created_at", "is", "2024-03-01 10:00:00"]]}),
            json!({"type": "Shot", "filters": [["sg_sequence", "is", {"type": "Sequence"}]]}),
        ] {
            let r = pass(args.clone());
            assert_eq!(r.label(), "unsupported_feature", "{args}: {r:?}");
        }
        assert_eq!(PassReason::UncachedType.label(), "uncached_type");
        assert_eq!(PassReason::IncompleteType.label(), "incomplete_type");
        assert_eq!(
            PassReason::UncachedField("x".into()).label(),
            "uncached_field"
        );
        assert_eq!(
            PassReason::UnsupportedRelation("x".into()).label(),
            "unsupported_relation"
        );
    }

    #[test]
    fn project_restriction() {
        let (cached, site, complete) = setup();
        let decide = |args: serde_json::Value, projects: &[i64]| {
            let req = ReadRequest::parse(&args).unwrap();
            match plan_read_restricted(
                &req,
                &cached,
                &site,
                &complete,
                &Rules::assumed(),
                Backend::Sqlite,
                projects,
            )
            .unwrap()
            {
                Decision::Local(_) => None,
                Decision::PassThrough(r) => Some(r),
            }
        };
        let p1 = json!({"type": "Project", "id": 1});
        assert_eq!(
            decide(json!({"type": "Shot"}), &[1]),
            Some(PassReason::ProjectNotRestricted)
        );
        assert_eq!(
            PassReason::ProjectNotRestricted.label(),
            "outside_cached_projects"
        );
        assert_eq!(decide(json!({"type": "Shot"}), &[]), None);
        assert_eq!(
            decide(
                json!({"type": "Shot", "filters": [["project", "is", p1]]}),
                &[1]
            ),
            None
        );
        assert_eq!(
            decide(
                json!({"type": "Shot", "filters": [["project", "is", p1]]}),
                &[2]
            ),
            Some(PassReason::ProjectNotRestricted)
        );
        // Types without a project field are scanned whole: unaffected.
        assert_eq!(decide(json!({"type": "HumanUser"}), &[1]), None);
        // Other reasons come first.
        assert_eq!(
            decide(json!({"type": "Shot", "return_fields": ["image"]}), &[1]),
            Some(PassReason::UncachedField("Shot.image".into()))
        );
    }

    #[test]
    fn unknown_filter_field_is_a_fault() {
        let e = plan(json!({"type": "Shot", "filters": [["foo", "is", 1]]})).unwrap_err();
        assert_eq!(
            e.message,
            r#"API read() Shot.foo doesn't exist: {"path"=>"foo", "relation"=>"is", "values"=>[1]}"#
        );
        let e =
            plan(json!({"type": "Task", "filters": [["entity.Shot.nope", "is", 1]]})).unwrap_err();
        assert!(
            e.message.starts_with("API read() Shot.nope doesn't exist"),
            "{}",
            e.message
        );
        // Even when an earlier condition would be passed through.
        let e =
            plan(json!({"type": "Shot", "filters": [["tag_list", "is", "x"], ["foo", "is", 1]]}))
                .unwrap_err();
        assert!(e.message.contains("Shot.foo doesn't exist"));
        // Unknown return fields are just left out.
        let c = local(
            json!({"type": "Shot", "return_fields": ["code", "nope", "sg_sequence.Sequence.nope"]}),
        );
        assert_eq!(c.fields.len(), 1);
    }

    #[test]
    fn a_page_of_the_rows_own_columns_is_one_level() {
        let c = local(json!({"type": "Shot", "filters": [["id", "is", 5]],
            "return_fields": ["code"], "sorts": [{"field_name": "code", "direction": "asc"}]}));
        assert!(c.by_id);
        let (sqlite, values) = c.page.render(Dialect::Sqlite);
        assert!(
            sqlite.starts_with(
                "SELECT t0.\"id\" AS \"_id\", t0.\"code\" AS \"c0\" FROM \"shot\" t0 WHERE "
            ),
            "{sqlite}"
        );
        assert!(!sqlite.contains(" JOIN "), "{sqlite}");
        assert!(
            sqlite.ends_with(", t0.\"id\" ASC LIMIT 501 OFFSET 0"),
            "{sqlite}"
        );
        assert_eq!(values, vec![sea_orm::Value::from(5i64)]);
        // On PostgreSQL a first page keeps its literal LIMIT and OFFSET (one statement whose
        // plan is kept); a later page binds them (one statement for all pages).
        let by_id =
            json!({"type": "Shot", "filters": [["id", "is", 5]], "return_fields": ["code"]});
        let (pg, values) = local_pg(&by_id).page.render(Dialect::Postgres);
        assert!(pg.ends_with(" ASC LIMIT 501 OFFSET 0"), "{pg}");
        assert_eq!(values, vec![sea_orm::Value::from(5i64)]);
        let mut later = by_id.clone();
        later["paging"] = json!({"entities_per_page": 20, "current_page": 3});
        let (pg, values) = local_pg(&later).page.render(Dialect::Postgres);
        assert!(pg.ends_with(" ASC LIMIT $2 OFFSET $3"), "{pg}");
        assert_eq!(
            values,
            [5i64, 21, 40].map(sea_orm::Value::from).to_vec(),
            "{pg}"
        );
        // A link or a deep field keeps the two levels.
        for field in ["sg_sequence", "sg_sequence.Sequence.code"] {
            let c = local(json!({"type": "Shot", "return_fields": ["code", field]}));
            let (sqlite, _) = c.page.render(Dialect::Sqlite);
            assert!(
                sqlite.contains(") p JOIN \"shot\" t0 ON "),
                "{field}: {sqlite}"
            );
        }
    }

    #[test]
    fn golden_sql() {
        let args = json!({"type": "Shot",
            "filters": [["code", "contains", "a_b"], ["sg_sequence", "is_not", {"type": "Sequence", "id": 3}]],
            "return_fields": ["code", "sg_sequence"],
            "sorts": [{"field_name": "sg_cut_in", "direction": "desc"}],
            "paging": {"entities_per_page": 10, "current_page": 2}});
        let c = local(args.clone());
        let (sqlite, values) = c.page.render(Dialect::Sqlite);
        let expected = concat!(
            "SELECT p.\"_id\" AS \"_id\", t0.\"code\" AS \"c0\", CASE WHEN j2.\"id\" IS NOT NULL ",
            "THEN t0.\"sg_sequence__type\" END AS \"c1_t\", j2.\"id\" AS \"c1_i\", j2.\"code\" AS ",
            "\"c1_n\" FROM (SELECT t0.\"id\" AS \"_id\", t0.\"sg_cut_in\" AS \"s0\" FROM ",
            "\"shot\" t0 WHERE t0.\"_active\" = TRUE AND ((LOWER(t0.\"code\") LIKE LOWER(?) ESCAPE '\\') AND ",
            "(NOT COALESCE((COALESCE((t0.\"sg_sequence__type\" = 'Sequence' AND EXISTS (SELECT 1 FROM ",
            "\"sequence\" n1 WHERE n1.\"id\" = t0.\"sg_sequence__id\" AND n1.\"_active\" = TRUE LIMIT 1)), FALSE) AND ",
            "(t0.\"sg_sequence__type\" = ? AND t0.\"sg_sequence__id\" = ?)), FALSE))) ORDER BY ",
            "t0.\"sg_cut_in\" DESC NULLS LAST, t0.\"id\" ASC LIMIT 11 OFFSET 10) p JOIN \"shot\" t0 ON ",
            "t0.\"id\" = p.\"_id\" LEFT JOIN \"sequence\" j2 ON t0.\"sg_sequence__type\" = 'Sequence' AND ",
            "j2.\"id\" = t0.\"sg_sequence__id\" AND j2.\"_active\" = TRUE ORDER BY p.\"s0\" DESC NULLS LAST, ",
            "p.\"_id\" ASC",
        );
        assert_eq!(sqlite, expected);
        assert_eq!(
            values,
            vec![
                // Only the request's values are bound (the schema's constants are written
                // into the SQL): the code filter, then the link is_not compares with.
                sea_orm::Value::from("%a\\_b%"),
                sea_orm::Value::from("Sequence"),
                sea_orm::Value::from(3i64),
            ]
        );
        let (pg_sql, pg_values) = local_pg(&args).page.render(Dialect::Postgres);
        // PostgreSQL binds a later page's LIMIT and OFFSET (see `select::ordered_cut`).
        assert_eq!(
            pg_values[pg_values.len() - 2..],
            [sea_orm::Value::from(11i64), sea_orm::Value::from(10i64)]
        );
        let mut n = 0;
        let numbered: String = expected
            .replace("LIMIT 11 OFFSET 10)", "LIMIT ? OFFSET ?)")
            .split('?')
            .enumerate()
            .map(|(i, part)| {
                if i == 0 {
                    part.to_owned()
                } else {
                    n += 1;
                    format!("${n}{part}")
                }
            })
            .collect::<String>()
            // PostgreSQL's EXISTS keep no LIMIT (see `Dialect::exists`).
            .replace(" LIMIT 1)", ")");
        assert_eq!(pg_sql, numbered);
    }
}

#[cfg(test)]
mod hostile_tests {
    use super::*;
    use crate::query::rules::Rules;
    use crate::schema::selection::{SelectionRules, select};
    use crate::schema::site::tests::fixture;
    use serde_json::json;

    /// Extreme values never panic: they compile or are passed through.
    #[test]
    fn extreme_values_do_not_panic() {
        let site = fixture();
        let rules = SelectionRules {
            include: vec![
                "Shot".into(),
                "Task".into(),
                "Sequence".into(),
                "Project".into(),
            ],
            exclude: vec![],
        };
        let (cached, _) = select(&site, &rules).unwrap();
        let complete: BTreeSet<String> = cached.types.keys().cloned().collect();
        for values in [
            json!([i64::MAX, "YEAR"]),
            json!([i64::MIN, "HOUR"]),
            json!([-3, "DAY"]),
            json!([1e300, "DAY"]),
            json!(["x", "DAY"]),
            json!([1, "FORTNIGHT"]),
            json!([]),
            json!([null, null]),
        ] {
            for rel in [
                "in_last",
                "not_in_next",
                "in_calendar_month",
                "in_calendar_week",
                "between",
                "in",
            ] {
                for path in ["created_at", "due_date"] {
                    let ty = if path == "due_date" { "Task" } else { "Shot" };
                    let req = ReadRequest::parse(&json!({"type": ty,
                        "filters": [{"path": path, "relation": rel, "values": values}],
                        "paging": {"entities_per_page": 100_000, "current_page": 10_000_000}}))
                    .unwrap();
                    for backend in [Backend::Sqlite, Backend::Postgres] {
                        let _ =
                            plan_read(&req, &cached, &site, &complete, &Rules::assumed(), backend)
                                .unwrap();
                    }
                }
            }
        }
    }
}
