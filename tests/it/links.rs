//! Links into partly cached types, on both backends, against the mock site: every link target
//! type is cached thinly, primed by the scanner and followed by the event poller (name changes,
//! new entities, retirement, revival); link fields, `name_*`, `type_is` and link sorts into
//! them are answered locally and equal to the site; a retired link target reads as absent in
//! returns, filters, sorts, multi-entity lists and deep paths, and reviving it restores it.
//! Also: a checkbox whose site default is null round-trips `null`, and a NOT NULL checkbox
//! column of an existing database is widened on restart.
use std::time::Duration;

use serde_json::{Value, json};
use sgcache::db::writer::{Apply, UpsertMode, WriteOp};

use crate::query::link;
use crate::support::{
    MockSite, SchemaApplied, api3_read, apply_config_schema, assert_answered_locally, cache_rows,
    databases, fixture_schema_applied, listener, not_null_checkbox_schema, nullable,
    passed_through, status_of, test_config, until_equal, wait_primed,
};

/// The reads of this test: link fields into thin types, their names, types and sorts.
fn reads(element: i64) -> Vec<Value> {
    let fields = json!([
        "content",
        "entity",
        "task_assignees",
        "created_by",
        "entity.Element.code"
    ]);
    vec![
        json!({"type": "Task", "return_fields": fields, "sorts": [{"field_name": "id"}]}),
        json!({"type": "Task", "filters": [["entity", "type_is", "Element"]], "return_fields": fields}),
        json!({"type": "Task", "filters": [["entity", "is", null]], "return_fields": ["id"]}),
        json!({"type": "Task", "filters": [["entity", "is_not", null]], "return_fields": ["id"]}),
        json!({"type": "Task", "filters": [["entity", "is", link("Element", element)]], "return_fields": ["id"]}),
        json!({"type": "Task", "filters": [["entity.Element.code", "starts_with", "el"]], "return_fields": ["id"]}),
        json!({"type": "Task", "filters": [["task_assignees", "name_is", "Leads"]], "return_fields": ["id"]}),
        json!({"type": "Task", "filters": [["task_assignees", "type_is", "Group"]], "return_fields": ["id"]}),
        json!({"type": "Task", "filters": [["task_assignees", "is", null]], "return_fields": ["id"]}),
        json!({"type": "Task", "filters": [["task_assignees.Group.code", "contains", "lead"]], "return_fields": ["id"]}),
        json!({"type": "Task", "return_fields": ["entity"], "sorts": [{"field_name": "entity", "direction": "desc"}]}),
        json!({"type": "Shot", "return_fields": ["code", "created_by", "updated_by"]}),
        json!({"type": "HumanUser", "return_fields": ["name", "groups", "email_inbox_general"]}),
    ]
}

/// Every read answered by sgcache equals the site's answer (retrying while events land);
/// returns the site's answers.
async fn agree(daemon: &sgcache::Daemon, site: &MockSite, element: i64, what: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for args in reads(element) {
        let want = api3_read(&site.url(), &args).await;
        assert!(
            want.get("exception").is_none(),
            "{what}: site fault {want} for {args}"
        );
        let url = daemon.url();
        until_equal(&want, &format!("{what}: {args}"), || api3_read(&url, &args)).await;
        out.push(want);
    }
    out
}

#[actix_web::test]
async fn thin_link_targets_are_primed_followed_and_served_locally() {
    for test_db in databases().await {
        let site = MockSite::start();
        let project = site.seed("Project", 1, |_| json!({"name": "Film"}))[0];
        let users = site.seed(
            "HumanUser",
            2,
            |i| json!({"login": format!("u{i}"), "firstname": format!("U{i}"), "lastname": "X"}),
        );
        let groups = site.seed("Group", 2, |i| json!({"code": (["Leads", "Anim"][i])}));
        let elements = site.seed(
            "Element",
            2,
            |i| json!({"code": format!("el{i}"), "project": link("Project", project)}),
        );
        let shot = site.seed(
            "Shot",
            1,
            |_| json!({"code": "sh010", "project": link("Project", project)}),
        )[0];
        site.seed("Task", 4, |i| {
            let entity = match i {
                0 | 1 => link("Element", elements[i]),
                2 => link("Shot", shot),
                _ => Value::Null,
            };
            let assignees = match i {
                0 => json!([link("Group", groups[0]), link("HumanUser", users[0])]),
                1 => json!([link("Group", groups[1])]),
                2 => json!([link("HumanUser", users[1])]),
                _ => json!([]),
            };
            json!({"content": format!("task{i}"), "entity": entity, "task_assignees": assignees,
                   "project": link("Project", project)})
        });
        let mut config = test_config(&test_db, Some(&site));
        config.events.poll_interval = Duration::from_millis(100);
        let daemon = sgcache::Daemon::start(config, listener())
            .await
            .expect("daemon starts");
        let status = wait_primed(&daemon, Duration::from_secs(60)).await;
        let thin: Vec<&str> = status["schema"]["thin_types"]
            .as_array()
            .expect("thin_types")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for ty in ["ApiUser", "Element", "Group", "Scene", "Department"] {
            assert!(thin.contains(&ty), "{ty} is cached thinly: {thin:?}");
            assert_eq!(status["schema"]["types"][ty]["thin"], true);
            assert_eq!(
                status["schema"]["types"][ty]["complete"], true,
                "{ty} primed"
            );
        }
        assert_eq!(status["schema"]["types"]["Task"]["thin"], false);

        // Primed: every read is local and equal to the site's.
        let answers = agree(&daemon, &site, elements[0], "primed").await;
        let served = status_of(&daemon).await["requests"]["served_locally_by_method"]["read"]
            .as_u64()
            .unwrap_or(0);
        assert!(served >= 13, "{served} reads answered locally");
        assert_answered_locally(&daemon, &[], "primed").await;
        assert_eq!(
            answers[0]["results"]["entities"][0]["task_assignees"][0],
            json!({"type": "Group", "id": groups[0], "name": "Leads"})
        );
        assert_eq!(
            answers[0]["results"]["entities"][0]["entity.Element.code"],
            json!("el0")
        );
        // A checkbox with a null site default reads null.
        assert_eq!(
            answers[12]["results"]["entities"][0]["email_inbox_general"],
            Value::Null
        );

        // The display field of a thin type changes: the link names follow (Change event).
        site.update("Group", groups[0], json!({"code": "Leads2"}));
        site.update("HumanUser", users[0], json!({"email_inbox_general": true}));
        let answers = agree(&daemon, &site, elements[0], "renamed").await;
        assert_eq!(
            answers[0]["results"]["entities"][0]["task_assignees"][0]["name"],
            json!("Leads2")
        );
        // A new entity of a thin type, linked (New event, then the Task's Change).
        let group = site.create("Group", json!({"code": "Leads"}))["id"]
            .as_i64()
            .expect("id");
        site.update(
            "Task",
            answers[0]["results"]["entities"][3]["id"]
                .as_i64()
                .expect("id"),
            json!({"task_assignees": [link("Group", group)]}),
        );
        agree(&daemon, &site, elements[0], "new thin entity").await;

        // Retire link targets (a thin Element, a Group in lists): links read as absent.
        site.delete("Element", elements[0]);
        site.delete("Group", groups[1]);
        let answers = agree(&daemon, &site, elements[0], "retired").await;
        assert_eq!(answers[0]["results"]["entities"][0]["entity"], Value::Null);
        assert_eq!(
            answers[0]["results"]["entities"][1]["task_assignees"],
            json!([])
        );
        // Revived: restored.
        site.revive("Element", elements[0]);
        site.revive("Group", groups[1]);
        let answers = agree(&daemon, &site, elements[0], "revived").await;
        assert_eq!(
            answers[0]["results"]["entities"][0]["entity"],
            json!({"type": "Element", "id": elements[0], "name": "el0"})
        );
        assert_answered_locally(&daemon, &[], "revived").await;
        drop(daemon);
    }
}

#[actix_web::test]
async fn a_not_null_checkbox_column_is_widened_on_restart_and_null_round_trips() {
    for test_db in databases().await {
        // An existing database made when the site gave email_inbox_general a boolean default.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(&test_db, None);
        config.schema.file = Some(not_null_checkbox_schema(dir.path()));
        let before = apply_config_schema(&config).await;
        assert!(!nullable(&before.pools.reader, "humanuser", "email_inbox_general").await);
        before.arbiter.stop();
        drop(before.pools);

        // Restart with the site's schema: the default is null, the column becomes nullable.
        let SchemaApplied {
            pools,
            writer,
            arbiter,
            applied,
        } = fixture_schema_applied(&test_db).await;
        assert!(
            applied.invalidated.contains(&"HumanUser".to_owned()),
            "HumanUser is rescanned: {:?}",
            applied.invalidated
        );
        assert!(nullable(&pools.reader, "humanuser", "email_inbox_general").await);
        // Task.milestone has a boolean default: it stays NOT NULL.
        assert!(!nullable(&pools.reader, "task", "milestone").await);
        let record = |id: i64, v: Value| {
            json!({"type": "HumanUser", "id": id, "name": "x", "email_inbox_general": v})
                .as_object()
                .cloned()
                .expect("object")
        };
        writer
            .apply(Apply {
                ops: vec![WriteOp::Upsert {
                    entity_type: "HumanUser".into(),
                    records: vec![record(1, Value::Null), record(2, json!(true))],
                    mode: UpsertMode::Full,
                    active: Some(true),
                    event_id: None,
                }],
                checkpoint: None,
            })
            .await
            .expect("a null checkbox is stored");
        let rows = cache_rows(&pools, &applied.cached, "HumanUser").await;
        assert_eq!(rows[&1]["email_inbox_general"], Value::Null);
        assert_eq!(rows[&2]["email_inbox_general"], json!(true));
        arbiter.stop();
    }
}

#[actix_web::test]
async fn with_scanner_projects_only_reads_restricted_to_them_are_local() {
    for test_db in databases().await {
        let site = MockSite::start();
        let projects = site.seed("Project", 2, |i| json!({"name": format!("P{i}")}));
        site.seed(
            "Shot",
            6,
            |i| json!({"code": format!("sh{i}"), "project": link("Project", projects[i % 2])}),
        );
        let mut config = test_config(&test_db, Some(&site));
        config.scanner.projects = vec![projects[0]];
        let daemon = sgcache::Daemon::start(config, listener())
            .await
            .expect("daemon starts");
        wait_primed(&daemon, Duration::from_secs(60)).await;
        let p0 = link("Project", projects[0]);
        let cases = [
            // (read, answered locally)
            (json!({"type": "Shot", "return_fields": ["code"]}), false),
            (
                json!({"type": "Shot", "filters": [["project", "is", p0]], "return_fields": ["code"]}),
                true,
            ),
            (
                json!({"type": "Shot", "filters": [["project", "in", [p0, link("Project", projects[1])]]]}),
                false,
            ),
            (
                json!({"type": "Shot", "filters": {"logical_operator": "and", "conditions": [
                {"path": "code", "relation": "starts_with", "values": ["sh"]},
                {"logical_operator": "and", "conditions": [
                    {"path": "project", "relation": "is", "values": [p0]}]}]}}),
                true,
            ),
            (
                json!({"type": "Shot", "filters": {"logical_operator": "or", "conditions": [
                {"path": "project", "relation": "is", "values": [p0]},
                {"path": "code", "relation": "is", "values": ["sh1"]}]}}),
                false,
            ),
            // Project has no project field: scanned whole, unaffected.
            (json!({"type": "Project", "return_fields": ["name"]}), true),
        ];
        for (args, local) in cases {
            let before = passed_through(&status_of(&daemon).await, "outside_cached_projects");
            let got = api3_read(&daemon.url(), &args).await;
            let want = api3_read(&site.url(), &args).await;
            assert_eq!(got, want, "{args}: sgcache differs from the site");
            let after = passed_through(&status_of(&daemon).await, "outside_cached_projects");
            assert_eq!(after == before, local, "{args}: local = {local}");
        }
        drop(daemon);
    }
}
