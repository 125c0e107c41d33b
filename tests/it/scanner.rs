//! The Scanner against the mock site on both backends: a full scan equals the site (rows,
//! links, retired rows), an interrupted full scan resumes from its cursor, and incremental
//! scans pick up writes made without events (changes and retirements).
use std::time::Duration;

use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use sgcache::Daemon;
use sgcache::actors::scanner::{Pass, decode_cursor, encode_cursor};
use sgcache::config::Config;
use sgcache::db::{self, Pools, registry};

use crate::support::{
    MockSite, TestDb, assert_cache_matches_site, databases, eventually, listener, test_config,
    wait_primed,
};

async fn get_json(url: &str) -> Value {
    let mut response = awc::Client::default().get(url).send().await.expect("GET");
    assert!(response.status().is_success(), "{url}");
    response.json().limit(10 << 20).await.expect("JSON")
}

/// A site with projects, sequences, assets and `shots` shots (some retired) linking them.
fn seed_site(site: &MockSite, shots: usize) {
    let projects = site.seed("Project", 2, |i| json!({"name": format!("Project {i}")}));
    let sequences = site.seed("Sequence", 10, |i| {
        json!({"code": format!("sq{i:02}"), "project": {"type": "Project", "id": projects[i % 2]}})
    });
    let assets = site.seed("Asset", 30, |i| {
        json!({"code": format!("asset{i:02}"), "project": {"type": "Project", "id": projects[i % 2]}})
    });
    let ids = site.seed("Shot", shots, |i| {
        let links: Vec<Value> = (0..i % 4)
            .map(|k| json!({"type": "Asset", "id": assets[(i * 7 + k * 3) % assets.len()]}))
            .collect();
        json!({
            "code": format!("sh{i:05}"),
            "project": {"type": "Project", "id": projects[i % 2]},
            "sg_sequence": if i % 5 == 0 { Value::Null } else { json!({"type": "Sequence", "id": sequences[i % 10]}) },
            "assets": links,
            "sg_status_list": (["ip", "fin", "wtg"][i % 3]),
            "sg_cut_in": if i % 7 == 0 { Value::Null } else { json!(i as i64 * 10) },
            "description": if i % 3 == 0 { Value::Null } else { json!(format!("shot <{i}> & more")) },
        })
    });
    for id in ids.iter().step_by(97) {
        assert!(site.quiet().delete("Shot", *id));
    }
}

fn scan_config(test_db: &TestDb, site: &MockSite) -> Config {
    let mut config = test_config(test_db, Some(site));
    config.scanner.page_size = 500;
    config.scanner.interval = Duration::from_secs(3600);
    config
}

async fn try_shot_state(pools: &Pools) -> Option<sgcache::db::entities::entity_state::Model> {
    registry::entity_states(&pools.reader)
        .await
        .expect("entity states")
        .into_iter()
        .find(|s| s.entity_type == "Shot")
}

async fn shot_state(pools: &Pools) -> sgcache::db::entities::entity_state::Model {
    try_shot_state(pools).await.expect("Shot state")
}

#[test]
fn the_cursor_encodes_the_pass() {
    assert_eq!(decode_cursor(None), (Pass::Active, 0));
    for (pass, id) in [
        (Pass::Active, 0),
        (Pass::Active, 42),
        (Pass::Retired, 0),
        (Pass::Retired, 7),
    ] {
        assert_eq!(decode_cursor(Some(encode_cursor(pass, id))), (pass, id));
    }
}

#[actix_web::test]
async fn a_full_scan_makes_the_cache_equal_to_the_site() {
    let site = MockSite::start();
    seed_site(&site, 3000);
    for test_db in databases().await {
        site.clear_requests();
        let daemon = Daemon::start(scan_config(&test_db, &site), listener())
            .await
            .expect("daemon starts");
        let status = wait_primed(&daemon, Duration::from_secs(120)).await;
        assert_eq!(status["schema"]["types"]["Shot"]["complete"], true);
        let scanner = &status["actors"]["scanner"];
        assert!(scanner["full_scans"].as_u64() >= Some(7), "{scanner}");
        assert_eq!(scanner["types"]["Shot"]["entities"], 3000, "{scanner}");
        let schema = daemon.cache.view().schema;
        for ty in ["Shot", "Sequence", "Asset", "Project"] {
            assert_cache_matches_site(&daemon.pools, &schema, &site, ty).await;
        }
        let state = shot_state(&daemon.pools).await;
        assert!(state.complete);
        assert_eq!(state.full_scan_cursor, None);
        assert!(state.scan_checkpoint.is_some() && state.last_full_scan_at.is_some());

        // Keyset paging: every Shot read is `id > cursor` sorted by id, for both passes.
        let shot_reads: Vec<Value> = site
            .requests()
            .into_iter()
            .filter(|r| r.method == "read" && r.entity_type.as_deref() == Some("Shot"))
            .map(|r| r.body["params"][1].clone())
            .collect();
        assert!(shot_reads.iter().any(|r| r["return_only"] == "retired"));
        assert!(
            shot_reads
                .iter()
                .filter(|r| r["return_only"] == "active")
                .count()
                >= 6,
            "pages of 500"
        );
        for r in &shot_reads {
            assert_eq!(r["filters"]["conditions"][0]["path"], "id");
            assert_eq!(r["sorts"][0]["field_name"], "id");
        }
        daemon.stop().await;
    }
}

#[actix_web::test]
async fn an_interrupted_full_scan_resumes_from_its_cursor() {
    let site = MockSite::start();
    seed_site(&site, 1500);
    for test_db in databases().await {
        let mut config = scan_config(&test_db, &site);
        config.scanner.page_size = 50;
        site.set_latency(Duration::from_millis(30));
        let daemon = Daemon::start(config.clone(), listener())
            .await
            .expect("daemon starts");
        let pools = daemon.pools.clone();
        eventually(Duration::from_secs(60), "Shot scan under way", || {
            let pools = pools.clone();
            async move {
                let state = try_shot_state(&pools).await?;
                state.full_scan_cursor.filter(|c| *c >= 300)
            }
        })
        .await;
        let status = get_json(&format!("{}/status", daemon.url())).await;
        let scanner = &status["actors"]["scanner"];
        assert_eq!(scanner["running"], true, "{scanner}");
        assert_eq!(scanner["current"]["entity_type"], "Shot", "{scanner}");
        assert_eq!(scanner["current"]["kind"], "full", "{scanner}");
        // Pages are counted once the fetch of the next page (which overlaps the write) has
        // returned: at most one page behind the stored cursor (6 pages of 50).
        assert!(scanner["current"]["page"].as_u64() >= Some(5), "{scanner}");
        assert!(
            scanner["current"]["total"].as_u64() >= Some(1000),
            "{scanner}"
        );
        assert_eq!(status["schema"]["types"]["Shot"]["complete"], false);
        daemon.stop().await;

        let pools = db::connect(&config.database).await.expect("reconnect");
        let stored = shot_state(&pools).await;
        pools.reader.close().await.ok();
        let cursor = stored.full_scan_cursor.expect("a stored cursor");
        assert!(!stored.complete);
        let (pass, last_id) = decode_cursor(Some(cursor));
        assert_eq!(pass, Pass::Active);
        assert!(last_id >= 300);

        site.clear_requests();
        site.set_latency(Duration::ZERO);
        let daemon = Daemon::start(config, listener())
            .await
            .expect("daemon restarts");
        wait_primed(&daemon, Duration::from_secs(120)).await;
        let first = site
            .requests()
            .into_iter()
            .find(|r| r.method == "read" && r.entity_type.as_deref() == Some("Shot"))
            .expect("a Shot read after the restart");
        let args = &first.body["params"][1];
        assert_eq!(args["return_only"], "active");
        assert_eq!(
            args["filters"]["conditions"][0],
            json!({"path": "id", "relation": "greater_than", "values": [last_id]}),
            "resumed from the stored cursor"
        );
        let schema = daemon.cache.view().schema;
        assert_cache_matches_site(&daemon.pools, &schema, &site, "Shot").await;
        daemon.stop().await;
    }
}

#[actix_web::test]
async fn incremental_scans_pick_up_writes_without_events() {
    let site = MockSite::start();
    seed_site(&site, 40);
    for test_db in databases().await {
        let mut config = scan_config(&test_db, &site);
        config.scanner.interval = Duration::from_millis(200);
        let daemon = Daemon::start(config, listener())
            .await
            .expect("daemon starts");
        wait_primed(&daemon, Duration::from_secs(60)).await;
        let active: Vec<i64> = site
            .entities("Shot")
            .iter()
            .filter(|e| e["_retired"] == false)
            .map(|e| e["id"].as_i64().expect("id"))
            .collect();
        let (changed, retired) = (active[3], active[4]);
        let code = format!("changed-{}", test_db.url.len());
        site.quiet()
            .update("Shot", changed, json!({"code": code, "sg_cut_in": 4242}));
        site.quiet()
            .update("Shot", retired, json!({"description": "about to go"}));
        assert!(site.quiet().delete("Shot", retired));

        let pools = daemon.pools.clone();
        let backend = pools.reader.get_database_backend();
        eventually(
            Duration::from_secs(20),
            "the quiet changes in the cache",
            || {
                let pools = pools.clone();
                let code = code.clone();
                async move {
                    let sql = format!(
                        "SELECT id, code, sg_cut_in, _active FROM shot WHERE id IN ({changed}, {retired}) ORDER BY id"
                    );
                    let rows = pools
                        .reader
                        .query_all_raw(Statement::from_string(backend, sql))
                        .await
                        .expect("query");
                    let mut ok = true;
                    for row in rows {
                        let id: i64 = row.try_get("", "id").ok()?;
                        let active: bool = row.try_get("", "_active").ok()?;
                        if id == changed {
                            let c: Option<String> = row.try_get("", "code").ok()?;
                            let cut: Option<i64> = row.try_get("", "sg_cut_in").ok()?;
                            ok &= c.as_deref() == Some(code.as_str()) && cut == Some(4242) && active;
                        } else {
                            ok &= !active;
                        }
                    }
                    ok.then_some(())
                }
            },
        )
        .await;
        let status = get_json(&format!("{}/status", daemon.url())).await;
        let scanner = &status["actors"]["scanner"];
        assert!(
            scanner["incremental_scans"].as_u64() >= Some(1),
            "{scanner}"
        );
        let schema = daemon.cache.view().schema;
        assert_cache_matches_site(&daemon.pools, &schema, &site, "Shot").await;
        let incremental = site
            .requests()
            .into_iter()
            .filter(|r| r.method == "read" && r.entity_type.as_deref() == Some("Shot"))
            .map(|r| r.body["params"][1].clone())
            .find(|a| a["filters"]["conditions"][1]["path"] == "updated_at")
            .expect("an incremental Shot read");
        assert_eq!(
            incremental["filters"]["conditions"][1]["relation"],
            "greater_than"
        );
        daemon.stop().await;
    }
}

#[actix_web::test]
async fn a_failing_site_is_retried_without_skipping_pages() {
    let site = MockSite::start();
    seed_site(&site, 600);
    let test_db = TestDb::sqlite();
    let mut config = scan_config(&test_db, &site);
    config.scanner.page_size = 100;
    let daemon = Daemon::start(config, listener())
        .await
        .expect("daemon starts");
    let pools = daemon.pools.clone();
    eventually(Duration::from_secs(60), "Shot scan under way", || {
        let pools = pools.clone();
        async move {
            try_shot_state(&pools)
                .await?
                .full_scan_cursor
                .filter(|c| *c > 0)
        }
    })
    .await;
    // More failures than the upstream client retries by itself.
    site.fail_next(8, 503);
    let status = wait_primed(&daemon, Duration::from_secs(120)).await;
    let scanner = &status["actors"]["scanner"];
    assert!(scanner["errors"].as_u64() >= Some(1), "{scanner}");
    let schema = daemon.cache.view().schema;
    assert_cache_matches_site(&daemon.pools, &schema, &site, "Shot").await;
    daemon.stop().await;
}

fn sgcache(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sgcache"));
    cmd.args(args).current_dir(dir);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("SGCACHE_")) {
        cmd.env_remove(k);
    }
    cmd.output().expect("run sgcache")
}

/// The summary line of `ty` in `sgcache scan` output: (kind, entities).
fn summary_line(stdout: &str, ty: &str) -> (String, u64) {
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(ty))
        .unwrap_or_else(|| panic!("no summary line for {ty} in {stdout}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    (cols[1].to_owned(), cols[2].parse().expect("entities"))
}

#[test]
fn the_scan_command_scans_chosen_types_and_projects() {
    let site = MockSite::start();
    seed_site(&site, 300);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[shotgun]\nurl = \"{}\"\nscript_name = \"sgcache\"\napi_key = \"test-key\"\n\
         [database]\nurl = \"sqlite://{}/cache.sqlite\"\n\
         [scanner]\npage_size = 50\n\
         [schema]\ninclude = [\"Project\", \"Sequence\", \"Shot\", \"Asset\"]\n",
        site.url(),
        dir.path().display()
    );
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).expect("write config");
    let path = path.to_str().expect("path");
    let project = site.entities("Project")[0]["id"].as_i64().expect("id");
    let in_project = site
        .entities("Shot")
        .iter()
        .filter(|e| e["project"]["id"].as_i64() == Some(project))
        .count() as u64;
    assert!(in_project > 0 && in_project < 300);

    let out = sgcache(
        &[
            "--config",
            path,
            "scan",
            "--full",
            "--types",
            "Shot,Sequence",
            "--projects",
            &project.to_string(),
        ],
        dir.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        summary_line(&stdout, "Shot"),
        ("full".to_owned(), in_project)
    );
    assert_eq!(summary_line(&stdout, "Sequence"), ("full".to_owned(), 5));
    assert!(!stdout.contains("Asset"), "{stdout}");
    let reads: Vec<Value> = site
        .requests()
        .into_iter()
        .filter(|r| r.method == "read" && r.entity_type.as_deref() == Some("Shot"))
        .map(|r| r.body["params"][1].clone())
        .collect();
    assert!(reads.iter().all(|r| {
        r["filters"]["conditions"][1]
            == json!({"path": "project", "relation": "in", "values": [{"type": "Project", "id": project}]})
    }));

    // Complete now: without --full the same command runs an incremental scan.
    let out = sgcache(&["--config", path, "scan", "--types", "Shot"], dir.path());
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(summary_line(&stdout, "Shot").0, "incremental");

    // --full restarts a complete type from scratch.
    let out = sgcache(
        &["--config", path, "scan", "--full", "--types", "Sequence"],
        dir.path(),
    );
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(summary_line(&stdout, "Sequence"), ("full".to_owned(), 10));

    let out = sgcache(&["--config", path, "scan", "--types", "Nope"], dir.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Nope is not a cached type"));
}

struct SchemaAlwaysChanged;
impl sgcache::actors::scanner::ScanObserver for SchemaAlwaysChanged {
    fn schema_changed(&mut self, _entity: &sgcache::schema::CachedEntity) -> bool {
        true
    }
}

#[actix_web::test]
async fn a_scan_resumes_in_the_retired_pass_and_keeps_its_start_time() {
    use sgcache::actors::scanner::{NoObserver, ScanError, ScanOptions, scan_type_full};
    use sgcache::actors::schema_loader::{apply_schema, fetch_schema};
    use sgcache::db::writer::{Apply, DbWriterHandle, EntityStatePatch, WriteOp};
    use sgcache::state::CacheState;
    use sgcache::upstream::UpstreamClient;

    let site = MockSite::start();
    seed_site(&site, 200);
    let retired: Vec<i64> = site
        .entities("Shot")
        .iter()
        .filter(|e| e["_retired"] == true)
        .map(|e| e["id"].as_i64().expect("id"))
        .collect();
    assert!(retired.len() >= 2);
    for test_db in databases().await {
        let config = scan_config(&test_db, &site);
        let pools = db::connect(&config.database).await.expect("connect");
        db::migrate(&pools).await.expect("migrate");
        let cache = CacheState::new();
        let (writer, arbiter) =
            DbWriterHandle::start(pools.writer.clone(), pools.backend, cache.clone());
        let upstream = UpstreamClient::new(&config.shotgun);
        let src = fetch_schema(&config, Some(&upstream))
            .await
            .expect("schema");
        let applied = apply_schema(&src, &config, &pools, &writer)
            .await
            .expect("apply");
        let shot = applied.cached.entity("Shot").expect("Shot").clone();
        let opts = ScanOptions::from_config(&config);

        // A schema change under the scan stops it before anything is written.
        let state = shot_state(&pools).await;
        let err = scan_type_full(
            &upstream,
            &writer,
            &shot,
            &state,
            &opts,
            &mut SchemaAlwaysChanged,
        )
        .await
        .expect_err("schema changed");
        assert!(matches!(err, ScanError::SchemaChanged(_)), "{err}");
        assert_eq!(shot_state(&pools).await.full_scan_cursor, None);

        // Resume in the retired pass after the first retired row.
        let started_at = "2020-01-02T03:04:05Z".to_owned();
        writer
            .apply(Apply {
                ops: vec![WriteOp::EntityState {
                    entity_type: "Shot".into(),
                    patch: EntityStatePatch {
                        full_scan_cursor: Some(Some(encode_cursor(Pass::Retired, retired[0]))),
                        full_scan_started_at: Some(Some(started_at.clone())),
                        ..Default::default()
                    },
                }],
                checkpoint: None,
            })
            .await
            .expect("store cursor");
        site.clear_requests();
        let state = shot_state(&pools).await;
        let summary = scan_type_full(&upstream, &writer, &shot, &state, &opts, &mut NoObserver)
            .await
            .expect("scan");
        assert_eq!(summary.entities, retired.len() as u64 - 1);
        let first = &site.requests()[0].body["params"][1];
        assert_eq!(first["return_only"], "retired");
        assert_eq!(
            first["filters"]["conditions"][0]["values"],
            json!([retired[0]])
        );
        let state = shot_state(&pools).await;
        assert!(state.complete);
        assert_eq!(state.full_scan_cursor, None);
        assert_eq!(
            state.scan_checkpoint,
            Some(started_at),
            "the original start"
        );
        assert!(cache.is_complete("Shot"));
        arbiter.stop();
        pools.reader.close().await.ok();
    }
}

/// A read of a type whose first full scan has not completed goes to the site; once complete,
/// the same read is answered from the cache.
#[actix_web::test]
async fn reads_pass_through_until_the_first_full_scan_completes() {
    let site = MockSite::start();
    seed_site(&site, 2000);
    let test_db = TestDb::sqlite();
    let mut config = scan_config(&test_db, &site);
    config.scanner.page_size = 100;
    config.events.enabled = false;
    site.set_latency(Duration::from_millis(30));
    let daemon = Daemon::start(config, listener()).await.expect("daemon");
    let read = json!({"method_name": "read", "params": [
        {"script_name": "sgcache", "script_key": "test-key"},
        {"type": "Shot", "filters": {"logical_operator": "and", "conditions": [
            {"path": "code", "relation": "is", "values": ["sh00042"]}]},
         "return_fields": ["code"], "return_only": "active",
         "paging": {"entities_per_page": 10, "current_page": 1}}]});
    let client_reads = |site: &MockSite| {
        site.requests()
            .iter()
            .filter(|r| r.method == "read" && r.body.to_string().contains("sh00042"))
            .count()
    };
    let post = |base: String, body: Value| async move {
        let mut r = awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish()
            .post(format!("{base}/api3/json"))
            .send_json(&body)
            .await
            .expect("POST");
        r.json::<Value>().limit(1 << 20).await.expect("json")
    };
    let url = format!("{}/status", daemon.url());
    eventually(Duration::from_secs(30), "the Shot scan under way", || {
        let url = url.clone();
        async move {
            let s = get_json(&url).await;
            (s["actors"]["scanner"]["current"]["entity_type"] == "Shot").then_some(())
        }
    })
    .await;
    let during = post(daemon.url(), read.clone()).await;
    assert_eq!(
        during["results"]["entities"][0]["code"], "sh00042",
        "{during}"
    );
    assert_eq!(
        client_reads(&site),
        1,
        "passed through while Shot is incomplete"
    );
    let status = get_json(&url).await;
    assert!(status["requests"]["pass_through_reasons"]["incomplete_type"].as_u64() >= Some(1));

    site.set_latency(Duration::ZERO);
    wait_primed(&daemon, Duration::from_secs(60)).await;
    let after = post(daemon.url(), read).await;
    assert_eq!(after, during, "the same answer");
    assert_eq!(
        client_reads(&site),
        1,
        "answered from the cache once complete"
    );
    daemon.stop().await;
}

/// A retirement by a script without events need not move `updated_at` (the mock's does not):
/// neither events nor incremental scans see it; the periodic id-set reconciliation does.
#[actix_web::test]
async fn reconciliation_finds_retirements_that_left_no_trace() {
    let site = MockSite::start();
    // Rows last updated an hour ago: outside every incremental scan's window.
    site.set_now_offset(chrono::Duration::hours(-1));
    seed_site(&site, 60);
    for test_db in databases().await {
        let mut config = scan_config(&test_db, &site);
        config.scanner.interval = Duration::from_millis(200);
        config.scanner.reconcile_interval = Duration::from_millis(300);
        config.scanner.page_size = 25;
        let daemon = Daemon::start(config, listener())
            .await
            .expect("daemon starts");
        wait_primed(&daemon, Duration::from_secs(60)).await;
        let victim = site
            .entities("Shot")
            .iter()
            .find(|e| e["_retired"] == false)
            .and_then(|e| e["id"].as_i64())
            .expect("an active shot");
        let before = site.entity("Shot", victim).expect("shot")["updated_at"].clone();
        assert!(site.quiet().delete("Shot", victim));
        assert_eq!(
            site.entity("Shot", victim).expect("shot")["updated_at"],
            before,
            "no trace"
        );

        let url = format!("{}/status", daemon.url());
        eventually(Duration::from_secs(20), "the retirement reconciled", || {
            let url = url.clone();
            async move {
                let s = get_json(&url).await;
                (s["actors"]["scanner"]["reconciled_rows"].as_u64() >= Some(1)).then_some(())
            }
        })
        .await;
        let schema = daemon.cache.view().schema;
        assert_cache_matches_site(&daemon.pools, &schema, &site, "Shot").await;
        daemon.stop().await;
    }
}
