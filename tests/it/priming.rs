//! Robust priming, on both backends, against the mock site: a value the cache cannot store
//! leaves that field uncached for its type (reported on `/status`, its reads passed through and
//! equal to the site's, remembered across a restart, cached again when the site's definition of
//! the field changes) while every type is primed; a type whose reads keep failing is retried
//! with back-off and never delays the others; and `sgcache serve` with the shipped
//! `config.toml` selection primes every cached type, thin link targets included.
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use sgcache::config::{CliOverrides, Config};

use crate::support::{
    FIXTURE_ENTITY_SCHEMA, MockSite, api3_read, databases, eventually, fixture_schema_config,
    listener, not_null_checkbox_schema, passed_through, status_of, test_config, wait_primed,
};

/// A site with users (their `email_inbox_general` checkbox unset: `null`), a project, a shot
/// and a task.
fn seeded_site() -> MockSite {
    let site = MockSite::start();
    let project = site.seed("Project", 1, |_| json!({"name": "Film"}))[0];
    site.seed(
        "HumanUser",
        3,
        |i| json!({"login": format!("u{i}"), "firstname": format!("U{i}"), "lastname": "X"}),
    );
    let link = json!({"type": "Project", "id": project});
    site.seed(
        "Shot",
        2,
        |i| json!({"code": format!("sh{i}"), "project": link}),
    );
    site.seed(
        "Task",
        2,
        |i| json!({"content": format!("t{i}"), "project": link}),
    );
    site
}

fn uncached_fields(status: &Value) -> Vec<(String, String, String)> {
    status["schema"]["uncached_fields"]
        .as_array()
        .expect("schema.uncached_fields")
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
            (s("entity_type"), s("field"), s("reason"))
        })
        .collect()
}

#[actix_web::test]
async fn a_value_the_cache_cannot_store_leaves_its_field_uncached_and_priming_completes() {
    for test_db in databases().await {
        let site = seeded_site();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(&test_db, Some(&site));
        config.schema.file = Some(not_null_checkbox_schema(dir.path()));
        config.schema.entity_file = Some(FIXTURE_ENTITY_SCHEMA.into());
        let daemon = sgcache::Daemon::start(config.clone(), listener())
            .await
            .expect("daemon starts");
        let status = wait_primed(&daemon, Duration::from_secs(60)).await;
        let marked = uncached_fields(&status);
        assert_eq!(marked.len(), 1, "{marked:?}");
        let (ty, field, reason) = &marked[0];
        assert_eq!(
            (ty.as_str(), field.as_str()),
            ("HumanUser", "email_inbox_general")
        );
        assert!(
            reason.contains("null") && reason.contains("cannot be null"),
            "{reason}"
        );
        assert_eq!(status["schema"]["types"]["HumanUser"]["complete"], true);
        assert!(
            status["actors"]["scanner"]["failing_types"]
                .as_object()
                .is_some_and(|f| f.is_empty()),
            "no type failed: {}",
            status["actors"]["scanner"]["failing_types"]
        );

        // Reads of the field pass through and equal the site's; the rest is local.
        let users = json!({"type": "HumanUser", "return_fields": ["name", "email_inbox_general"],
                           "sorts": [{"field_name": "id", "direction": "asc"}]});
        let from_cache = api3_read(&daemon.url(), &users).await;
        assert_eq!(from_cache, api3_read(&site.url(), &users).await);
        assert_eq!(
            from_cache["results"]["entities"].as_array().map(Vec::len),
            Some(3)
        );
        let names = json!({"type": "HumanUser", "return_fields": ["name"]});
        assert_eq!(
            api3_read(&daemon.url(), &names).await,
            api3_read(&site.url(), &names).await
        );
        let status = status_of(&daemon).await;
        assert_eq!(passed_through(&status, "uncached_field"), 1);
        assert_eq!(status["requests"]["served_locally_by_method"]["read"], 1);
        drop(daemon);

        // A restart keeps the mark: the field is still left uncached, nothing is rescanned.
        let daemon = sgcache::Daemon::start(config.clone(), listener())
            .await
            .expect("daemon restarts");
        let status = wait_primed(&daemon, Duration::from_secs(60)).await;
        assert_eq!(uncached_fields(&status), marked);
        assert_eq!(
            status["actors"]["scanner"]["full_scans"], 0,
            "nothing rescanned"
        );
        assert_eq!(
            api3_read(&daemon.url(), &users).await,
            api3_read(&site.url(), &users).await
        );
        assert_eq!(
            passed_through(&status_of(&daemon).await, "uncached_field"),
            1
        );
        drop(daemon);

        // The site's definition changes (null default: a nullable column): the mark no longer
        // applies, the field is cached again and its nulls are stored.
        let mut config = test_config(&test_db, Some(&site));
        fixture_schema_config(&mut config);
        let daemon = sgcache::Daemon::start(config, listener())
            .await
            .expect("daemon restarts");
        let status = wait_primed(&daemon, Duration::from_secs(60)).await;
        assert!(uncached_fields(&status).is_empty());
        assert_eq!(
            api3_read(&daemon.url(), &users).await,
            api3_read(&site.url(), &users).await
        );
        let status = status_of(&daemon).await;
        assert_eq!(passed_through(&status, "uncached_field"), 0);
        assert_eq!(status["requests"]["served_locally_by_method"]["read"], 1);
        drop(daemon);
    }
}

#[actix_web::test]
async fn a_type_whose_reads_keep_failing_does_not_delay_the_others() {
    for test_db in databases().await {
        let site = seeded_site();
        site.seed("Asset", 2, |i| json!({"code": format!("a{i}")}));
        // Asset comes early in the priming order (types are scanned by name).
        site.fail_reads_of("Asset", true);
        let config = test_config(&test_db, Some(&site));
        let daemon = sgcache::Daemon::start(config, listener())
            .await
            .expect("daemon starts");
        let status = eventually(
            Duration::from_secs(60),
            "every type but Asset primed",
            || async {
                let status = status_of(&daemon).await;
                let types = status["schema"]["types"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                let others = types
                    .iter()
                    .filter(|(name, _)| *name != "Asset")
                    .all(|(_, t)| t["complete"] == true);
                let failing = &status["actors"]["scanner"]["failing_types"]["Asset"];
                (types.len() > 1 && others && failing["failures"].as_u64() >= Some(2))
                    .then_some(status)
            },
        )
        .await;
        assert_eq!(status["schema"]["types"]["Asset"]["complete"], false);
        let failing = &status["actors"]["scanner"]["failing_types"]["Asset"];
        assert!(
            failing["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("503")),
            "{failing}"
        );
        assert!(failing["retry_at"].is_string(), "{failing}");
        // The site answers again: Asset is primed at its next retry and leaves the list.
        site.fail_reads_of("Asset", false);
        let status = wait_primed(&daemon, Duration::from_secs(60)).await;
        assert!(
            status["actors"]["scanner"]["failing_types"]
                .as_object()
                .is_some_and(|f| f.is_empty()),
            "{}",
            status["actors"]["scanner"]["failing_types"]
        );
        let assets = json!({"type": "Asset", "return_fields": ["code"]});
        assert_eq!(
            api3_read(&daemon.url(), &assets).await,
            api3_read(&site.url(), &assets).await
        );
        drop(daemon);
    }
}

#[actix_web::test]
async fn serve_with_the_default_config_selection_primes_every_cached_type() {
    let shipped = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"));
    let shipped = Config::load_from(shipped, true, &CliOverrides::default(), [])
        .expect("the shipped config.toml loads");
    for test_db in databases().await {
        let site = seeded_site();
        let mut config = test_config(&test_db, Some(&site));
        fixture_schema_config(&mut config);
        config.schema.include = shipped.schema.include.clone();
        config.schema.exclude = shipped.schema.exclude.clone();
        let daemon = sgcache::Daemon::start(config, listener())
            .await
            .expect("daemon starts");
        let status = wait_primed(&daemon, Duration::from_secs(90)).await;
        let types = status["schema"]["types"].as_object().expect("types");
        for rule in &shipped.schema.include {
            let ty = rule.split('.').next().unwrap_or_default();
            assert!(types.contains_key(ty), "{ty} is cached");
        }
        let schema = daemon.cache.view().schema;
        let thin: Vec<&str> = schema.thin_types().collect();
        assert!(!thin.is_empty(), "link targets are cached thinly");
        for ty in thin {
            assert_eq!(types[ty]["complete"], true, "thin type {ty} primed");
        }
        for (name, t) in types {
            assert_eq!(t["complete"], true, "{name} primed");
        }
        assert!(
            status["schema"]["priming"]
                .as_array()
                .is_some_and(Vec::is_empty)
        );
        assert!(uncached_fields(&status).is_empty());
        drop(daemon);
    }
}

/// Whether `table` has planner statistics: PostgreSQL's `reltuples` is -1 until the table is
/// first analyzed; SQLite's `sqlite_stat1` has rows for it only after `ANALYZE`.
async fn analyzed(daemon: &sgcache::Daemon, table: &str) -> bool {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let db = &daemon.pools.reader;
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => format!(
            "SELECT CAST(reltuples >= 0 AS INTEGER) AS ok FROM pg_class WHERE relname = '{table}'"
        ),
        _ => format!(
            "SELECT CAST(COUNT(*) > 0 AS INTEGER) AS ok FROM sqlite_stat1 WHERE tbl = '{table}'"
        ),
    };
    let row = db
        .query_one_raw(Statement::from_string(backend, sql))
        .await
        .ok()
        .flatten();
    row.and_then(|r| r.try_get::<i32>("", "ok").ok()) == Some(1)
}

#[actix_web::test]
async fn a_primed_type_has_planner_statistics() {
    for test_db in databases().await {
        let site = seeded_site();
        let user = site.entities("HumanUser")[0]["id"].clone();
        site.seed(
            "Task",
            1,
            |_| json!({"content": "assigned", "task_assignees": [{"type": "HumanUser", "id": user}]}),
        );
        let mut config = test_config(&test_db, Some(&site));
        fixture_schema_config(&mut config);
        let daemon = sgcache::Daemon::start(config, listener())
            .await
            .expect("daemon starts");
        wait_primed(&daemon, Duration::from_secs(60)).await;
        // The full scan's last write analyzes the type's table and association tables.
        for table in ["shot", "task", "humanuser", "task_task_assignees"] {
            assert!(
                analyzed(&daemon, table).await,
                "{table} analyzed on {:?}",
                test_db.backend
            );
        }
    }
}
