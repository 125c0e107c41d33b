//! Acceptance: the official Python client runs a pipeline-like set of reads (Toolkit context,
//! tasks of an entity, "my tasks", versions with user/created_by, notes on a shot, published
//! files of a task, paged full finds, schema calls) against sgcache with the shipped default
//! selection (`config.toml`) in front of the mock site: every answer equals the site's, and at
//! least 90 % of the requests are answered locally (sgcache's `/status` counts).
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use sgcache::Daemon;
use sgcache::config::{CliOverrides, Config};

use crate::python_client::ClientScript;
use crate::query::link;
use crate::support::{MockSite, databases, listener, status_of, test_config, wait_primed};

/// A small production: 600 shots and 700 tasks (over the 500-entity page), versions, notes,
/// published files, playlists, users in a group and a department; some link targets retired.
fn populate(site: &MockSite) {
    let p = link(
        "Project",
        site.seed("Project", 1, |_| json!({"name": "Film"}))[0],
    );
    let steps = site.seed("Step", 3, |i| {
        json!({"code": (["Anim", "Comp", "Model"][i]), "entity_type": (["Shot", "Shot", "Asset"][i])})
    });
    let departments = site.seed(
        "Department",
        2,
        |i| json!({"name": (["Animation", "Lighting"][i]), "code": (["anm", "lgt"][i])}),
    );
    let users = site.seed("HumanUser", 3, |i| {
        json!({"login": format!("user{i}"), "name": format!("User {i}"),
               "department": link("Department", departments[i % 2])})
    });
    let group = site.seed(
        "Group",
        1,
        |_| json!({"code": "Leads", "users": [link("HumanUser", users[1])]}),
    )[0];
    let seqs = site.seed(
        "Sequence",
        5,
        |i| json!({"code": format!("sq{i:02}"), "project": p}),
    );
    let assets = site.seed("Asset", 20, |i| {
        json!({"code": format!("asset{i:02}"), "project": p,
               "sg_asset_type": (["Character", "Prop", "Environment"][i % 3])})
    });
    let shots = site.seed("Shot", 600, |i| {
        json!({"code": format!("sh{i:04}"), "project": p, "sg_status_list": (["ip", "fin", "wtg"][i % 3]),
               "sg_sequence": link("Sequence", seqs[i % 5])})
    });
    let tasks = site.seed("Task", 700, |i| {
        let entity = if i % 7 == 0 {
            link("Asset", assets[i % 20])
        } else {
            link("Shot", shots[i % 600])
        };
        let assignees = match i % 4 {
            0 => json!([link("HumanUser", users[1])]),
            1 => json!([link("Group", group)]),
            2 => json!([
                link("HumanUser", users[i % 3]),
                link("HumanUser", users[(i + 1) % 3])
            ]),
            _ => json!([]),
        };
        json!({"content": format!("task{i}"), "project": p, "entity": entity,
               "step": link("Step", steps[i % 3]), "task_assignees": assignees,
               "sg_status_list": (["ip", "fin", "wtg"][i % 3]),
               "due_date": format!("2026-12-{:02}", 1 + i % 28)})
    });
    let versions = site.seed("Version", 60, |i| {
        json!({"code": format!("sh{:04}_v{:03}", i % 20, i), "project": p,
               "entity": link("Shot", shots[i % 20]), "user": link("HumanUser", users[i % 3]),
               "sg_task": link("Task", tasks[i % 20]), "sg_status_list": (["rev", "vwd", "na"][i % 3])})
    });
    site.seed("Note", 30, |i| {
        json!({"subject": format!("note {i}"), "content": "looks good", "project": p,
               "note_links": [link("Shot", shots[10 + i % 3])], "user": link("HumanUser", users[i % 3]),
               "addressings_to": [link("HumanUser", users[(i + 1) % 3])]})
    });
    let types = site.seed(
        "PublishedFileType",
        2,
        |i| json!({"code": (["Maya Scene", "Nuke Script"][i])}),
    );
    // Published files of the first task of sh0010 (task 10: `tasks[10]` links to shots[10]).
    site.seed("PublishedFile", 30, |i| {
        json!({"code": format!("sh0010_v{i:03}.ma"), "name": "sh0010", "project": p,
               "version_number": i as i64, "entity": link("Shot", shots[10]),
               "task": link("Task", tasks[10]), "published_file_type": link("PublishedFileType", types[i % 2])})
    });
    site.seed("Playlist", 3, |i| {
        json!({"code": format!("dailies {i}"), "project": p,
               "versions": [link("Version", versions[i]), link("Version", versions[i + 3])]})
    });
    // Retired link targets read as absent, on the site and in the cache.
    site.delete("Version", versions[3]);
    site.delete("Asset", assets[7]);
    site.delete("HumanUser", users[2]);
}

/// `(local, passed through)` request counts from `/status`.
fn counts(status: &Value) -> (u64, u64) {
    let sum = |v: &Value| {
        v.as_object()
            .map(|m| m.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0)
    };
    (
        sum(&status["requests"]["served_locally_by_method"]),
        sum(&status["requests"]["pass_through_reasons"]),
    )
}

#[actix_web::test]
async fn a_pipelines_reads_are_answered_locally_and_equal_to_the_site() {
    let Some(client) = ClientScript::new("pipeline", "pipeline_reads.py") else {
        return;
    };
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    let shipped = Config::load_from(&shipped, true, &CliOverrides::default(), Vec::new())
        .expect("config.toml loads");
    for test_db in databases().await {
        let site = MockSite::start();
        populate(&site);
        let mut config = test_config(&test_db, Some(&site));
        config.schema.include = shipped.schema.include.clone();
        config.schema.exclude = shipped.schema.exclude.clone();
        let daemon = Daemon::start(config, listener()).await.expect("daemon");
        wait_primed(&daemon, Duration::from_secs(120)).await;
        let (local_before, pass_before) = counts(&status_of(&daemon).await);

        let via_cache = client.answers(&daemon.url(), "cache").await;
        let status = status_of(&daemon).await;
        let (local, pass) = counts(&status);
        let (local, pass) = (local - local_before, pass - pass_before);
        let direct = client.answers(&site.url(), "site").await;
        let calls = direct.as_object().expect("object");
        assert!(calls.len() >= 25, "{} calls", calls.len());
        for (call, expected) in calls {
            assert_eq!(
                &via_cache[call], expected,
                "{call}: sgcache differs from the site"
            );
        }
        assert_eq!(via_cache["all_shots"].as_array().map(Vec::len), Some(600));
        assert_eq!(via_cache["all_tasks"].as_array().map(Vec::len), Some(700));
        assert!(
            via_cache["notes_on_shot"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
                && via_cache["published_files_of_task"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
                && via_cache["versions_of_shot"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty()),
            "the reads return data"
        );
        // Every request is counted once, locally or passed through; at least 90 % local.
        assert!(local + pass > 0);
        assert!(
            local * 10 >= (local + pass) * 9,
            "{local} local, {pass} passed through: {}",
            status["requests"]["pass_through_reasons"]
        );
        eprintln!(
            "pipeline ({:?}): {local} requests answered locally, {pass} passed through {}",
            test_db.backend, status["requests"]["pass_through_reasons"]
        );
        daemon.stop().await;
    }
}
