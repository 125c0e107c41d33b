//! Verification: locally answered reads are re-run against the site and compared, in the
//! background; mismatches are counted, logged and healed; `sgcache verify --sample N`.
use std::time::{Duration, Instant};

use awc::Client;
use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::{Value, json};
use sgcache::Daemon;
use sgcache::config::{Config, VerifyMode};
use sgcache_mock_site::MockSite;

use crate::support::{TestDb, databases, eventually, listener, test_config};

fn auth() -> Value {
    json!({"script_name": "sgcache", "script_key": "test-key"})
}

/// Five Shots last changed an hour ago (older than any answer the cache gives in the test).
fn seed(site: &MockSite) {
    site.freeze_clock(Some(chrono::Utc::now() - chrono::Duration::hours(1)));
    site.seed(
        "Shot",
        5,
        |i| json!({"code": format!("sh{i}"), "sg_cut_in": 1000 + i as i64}),
    );
    site.freeze_clock(None);
}

fn verify_config(test_db: &TestDb, site: &MockSite) -> Config {
    let mut config = test_config(test_db, Some(site));
    config.schema.include = vec!["Shot".into()];
    config.events.enabled = false;
    config.verify.mode = VerifyMode::All;
    config.verify.max_requests_per_second = 50.0;
    config.verify.changed_since_leeway = Duration::ZERO;
    config.verify.error_backoff = Duration::from_millis(500);
    config
}

async fn primed(config: Config) -> Daemon {
    let daemon = Daemon::start(config, listener()).await.expect("daemon");
    let cache = daemon.cache.clone();
    eventually(Duration::from_secs(60), "Shot primed", || {
        let done = cache.is_complete("Shot");
        async move { done.then_some(()) }
    })
    .await;
    daemon
}

async fn read_shot(base: &str, id: i64) -> Value {
    let body = json!({"method_name": "read", "params": [auth(), {
        "type": "Shot", "filters": {"logical_operator": "and", "conditions": [
            {"path": "id", "relation": "is", "values": [id]}]},
        "return_fields": ["code", "sg_cut_in"], "return_only": "active",
        "sorts": [{"field_name": "code", "direction": "asc"}],
        "paging": {"entities_per_page": 50, "current_page": 1}}]});
    let mut r = Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
        .post(format!("{base}/api3/json"))
        .send_json(&body)
        .await
        .expect("POST");
    let v: Value = r.json().limit(8 << 20).await.expect("json");
    assert!(v.get("exception").is_none(), "{v}");
    v["results"]["entities"][0].clone()
}

async fn status(base: &str) -> Value {
    let mut r = Client::default()
        .get(format!("{base}/status"))
        .send()
        .await
        .expect("status");
    r.json().limit(4 << 20).await.expect("json")
}

async fn verifier_figure(base: &str, key: &str) -> u64 {
    status(base).await["actors"]["verifier"][key]
        .as_u64()
        .unwrap_or(0)
}

async fn wait_figure(base: &str, key: &str, at_least: u64) {
    let base = base.to_owned();
    let key = key.to_owned();
    eventually(
        Duration::from_secs(20),
        &format!("verifier {key} >= {at_least}"),
        || {
            let (base, key) = (base.clone(), key.clone());
            async move { (verifier_figure(&base, &key).await >= at_least).then_some(()) }
        },
    )
    .await;
}

async fn corrupt(url: &str, id: i64) {
    let db = Database::connect(url).await.expect("connect");
    let backend = db.get_database_backend();
    let done = db
        .execute_raw(Statement::from_string(
            backend,
            format!("UPDATE shot SET code = 'corrupt' WHERE id = {id}"),
        ))
        .await
        .expect("corrupt the row");
    assert_eq!(done.rows_affected(), 1);
    db.close().await.ok();
}

#[actix_web::test]
async fn a_corrupted_row_is_detected_counted_logged_and_healed() {
    for test_db in databases().await {
        let site = MockSite::start();
        seed(&site);
        let daemon = primed(verify_config(&test_db, &site)).await;
        let base = daemon.url();
        // A first read: credentials checked, the answer verified and matched.
        assert_eq!(
            read_shot(&base, 2).await["code"],
            site.entity("Shot", 2).expect("shot")["code"]
        );
        wait_figure(&base, "matched", 1).await;

        corrupt(&test_db.url, 3).await;
        // It's a cache: the corrupted value is answered...
        assert_eq!(read_shot(&base, 3).await["code"], "corrupt");
        // ...then found, counted, logged and healed.
        wait_figure(&base, "healed", 1).await;
        let s = status(&base).await;
        let v = &s["actors"]["verifier"];
        assert_eq!(v["mismatched"], 1, "{v}");
        assert_eq!(v["changed_since"], 0, "{v}");
        assert_eq!(v["by_type"]["Shot"]["fields"]["code"], 1, "{v}");
        assert_eq!(v["recent_mismatches"][0]["entity_ids"], json!([3]), "{v}");
        let expected = site.entity("Shot", 3).expect("shot")["code"].clone();
        assert_eq!(read_shot(&base, 3).await["code"], expected, "healed");

        let rows = daemon
            .pools
            .reader
            .query_all_raw(Statement::from_string(
                daemon.pools.reader.get_database_backend(),
                "SELECT entity_type, outcome, diff, entity_ids FROM sgcache_verification"
                    .to_owned(),
            ))
            .await
            .expect("verification log");
        assert_eq!(rows.len(), 1);
        let get = |c: &str| rows[0].try_get::<String>("", c).expect(c);
        assert_eq!(get("entity_type"), "Shot");
        assert_eq!(get("outcome"), "mismatch");
        assert_eq!(get("entity_ids"), "[3]");
        assert!(
            get("diff").contains("corrupt") && get("diff").contains("code"),
            "{}",
            get("diff")
        );
        daemon.stop().await;
    }
}

#[actix_web::test]
async fn a_change_after_the_answer_counts_as_changed_since() {
    let test_db = TestDb::sqlite();
    let site = MockSite::start();
    seed(&site);
    let daemon = primed(verify_config(&test_db, &site)).await;
    let base = daemon.url();
    read_shot(&base, 1).await;
    wait_figure(&base, "matched", 1).await;

    // The verifier's re-run reaches the site's data after the change below.
    site.set_latency(Duration::from_millis(1500));
    let answered = read_shot(&base, 2).await;
    site.update("Shot", 2, json!({"code": "changed on the site"}));
    assert_ne!(answered["code"], "changed on the site");
    wait_figure(&base, "changed_since", 1).await;
    site.clear_faults();
    let v = status(&base).await["actors"]["verifier"].clone();
    assert_eq!(v["mismatched"], 0, "{v}");
    assert_eq!(v["healed"], 0, "{v}");
    daemon.stop().await;
}

#[actix_web::test]
async fn with_the_site_down_verification_backs_off_and_reads_keep_answering() {
    let test_db = TestDb::sqlite();
    let site = MockSite::start();
    seed(&site);
    let daemon = primed(verify_config(&test_db, &site)).await;
    let base = daemon.url();
    read_shot(&base, 1).await;
    wait_figure(&base, "matched", 1).await;

    site.pause();
    for round in 0..6 {
        let started = Instant::now();
        let shot = read_shot(&base, 1 + round % 5).await;
        assert!(shot["code"].is_string(), "{shot}");
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "a local read took {:?}",
            started.elapsed()
        );
    }
    wait_figure(&base, "backoffs", 1).await;
    let v = status(&base).await["actors"]["verifier"].clone();
    assert!(v["errors"].as_u64() >= Some(1), "{v}");
    assert_eq!(v["mismatched"], 0, "{v}");

    // Back up: verification resumes.
    site.resume();
    let verified = v["verified"].as_u64().unwrap_or(0);
    eventually(Duration::from_secs(20), "verification resumed", || {
        let base = base.clone();
        async move {
            read_shot(&base, 4).await;
            actix_web::rt::time::sleep(Duration::from_millis(300)).await;
            (verifier_figure(&base, "verified").await > verified).then_some(())
        }
    })
    .await;
    daemon.stop().await;
}

#[actix_web::test]
async fn a_full_queue_drops_and_never_delays_responses() {
    let test_db = TestDb::sqlite();
    let site = MockSite::start();
    seed(&site);
    let mut config = verify_config(&test_db, &site);
    config.verify.queue_capacity = 1;
    let daemon = primed(config).await;
    let base = daemon.url();
    read_shot(&base, 1).await;
    wait_figure(&base, "matched", 1).await;

    site.set_latency(Duration::from_secs(2));
    let started = Instant::now();
    for i in 0..20 {
        let one = Instant::now();
        read_shot(&base, 1 + i % 5).await;
        assert!(
            one.elapsed() < Duration::from_millis(1000),
            "read {i} took {:?}",
            one.elapsed()
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "20 local reads took {:?}",
        started.elapsed()
    );
    let v = status(&base).await["actors"]["verifier"].clone();
    assert!(v["dropped"].as_u64() >= Some(15), "{v}");
    assert!(v["queued"].as_u64() <= Some(1), "{v}");
    site.clear_faults();
    daemon.stop().await;
}

#[actix_web::test]
async fn quarantine_passes_a_mismatching_type_through_until_rescanned() {
    let test_db = TestDb::sqlite();
    let site = MockSite::start();
    seed(&site);
    let mut config = verify_config(&test_db, &site);
    config.verify.quarantine = true;
    config.verify.quarantine_after = 1;
    let daemon = primed(config).await;
    let base = daemon.url();
    read_shot(&base, 1).await;
    wait_figure(&base, "matched", 1).await;

    corrupt(&test_db.url, 5).await;
    assert_eq!(read_shot(&base, 5).await["code"], "corrupt");
    wait_figure(&base, "quarantined", 1).await;
    let cache = daemon.cache.clone();
    eventually(Duration::from_secs(10), "Shot marked incomplete", || {
        let incomplete = !cache.is_complete("Shot");
        async move { incomplete.then_some(()) }
    })
    .await;
    // Until the rescan completes, reads of the type pass through (and are right).
    let expected = site.entity("Shot", 5).expect("shot")["code"].clone();
    assert_eq!(read_shot(&base, 5).await["code"], expected);
    let s = status(&base).await;
    assert!(
        s["requests"]["pass_through_reasons"]["incomplete_type"].as_u64() >= Some(1),
        "{}",
        s["requests"]
    );
    daemon.stop().await;
}

#[actix_web::test]
async fn verify_sample_reports_a_corrupted_row() {
    for test_db in databases().await {
        let site = MockSite::start();
        seed(&site);
        let mut config = verify_config(&test_db, &site);
        config.verify.mode = VerifyMode::Off;
        let daemon = primed(config).await;
        daemon.stop().await;
        corrupt(&test_db.url, 4).await;

        let dir = tempfile::tempdir().expect("tempdir");
        let env = [
            ("SGCACHE_DATABASE_URL", test_db.url.clone()),
            ("SGCACHE_SHOTGUN_URL", site.url()),
            ("SGCACHE_SHOTGUN_SCRIPT_NAME", "sgcache".to_owned()),
            ("SGCACHE_SHOTGUN_API_KEY", "test-key".to_owned()),
            ("SGCACHE_SCHEMA_INCLUDE", "[\"Shot\"]".to_owned()),
        ];
        let path = dir.path().to_owned();
        let out = actix_web::rt::task::spawn_blocking(move || {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sgcache"));
            cmd.args(["verify", "--sample", "50"]).current_dir(&path);
            for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("SGCACHE_")) {
                cmd.env_remove(k);
            }
            cmd.envs(env);
            cmd.output().expect("run sgcache verify")
        })
        .await
        .expect("join");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "a mismatch fails the command: {stdout} {stderr}"
        );
        assert!(
            stdout.contains("Shot: checked 5, matched 4, mismatched 1; fields: code (1); ids: [4]"),
            "{stdout}\n{stderr}"
        );
        assert!(stderr.contains("1 cached rows differ"), "{stderr}");
    }
}
