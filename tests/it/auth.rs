//! Authentication of locally answered reads: the site's verdict on credentials is asked once,
//! remembered, and only trusted callers are answered from the cache.
use std::time::Duration;

use awc::Client;
use serde_json::{Value, json};
use sgcache::Daemon;
use sgcache_mock_site::MockSite;

use crate::support::{TestDb, listener, test_config, wait_primed};

fn read_body(script: &str, key: &str) -> Value {
    json!({"method_name": "read", "params": [{"script_name": script, "script_key": key}, {
        "type": "Shot", "filters": {"logical_operator": "and", "conditions": []}, "return_fields": ["code"],
        "return_only": "active", "paging": {"entities_per_page": 50, "current_page": 1}}]})
}

async fn post(base: &str, body: &Value) -> Value {
    let mut r = Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
        .post(format!("{base}/api3/json"))
        .send_json(body)
        .await
        .expect("POST");
    r.json().limit(8 << 20).await.expect("json")
}

fn shot_reads(site: &MockSite) -> usize {
    site.requests()
        .iter()
        .filter(|r| r.method == "read" && r.entity_type.as_deref() == Some("Shot"))
        .count()
}

#[actix_web::test]
async fn credentials_are_checked_once_and_only_trusted_callers_read_the_cache() {
    let site = MockSite::start();
    site.seed("Shot", 10, |i| json!({"code": format!("sh{i}")}));
    let test_db = TestDb::sqlite();
    let mut config = test_config(&test_db, Some(&site));
    config.schema.include = vec!["Shot".into()];
    config.events.enabled = false;
    let daemon = Daemon::start(config, listener()).await.expect("daemon");
    let base = daemon.url();
    let status = format!("{base}/status");
    wait_primed(&daemon, Duration::from_secs(30)).await;
    site.clear_requests();

    // A wrong key: the site's own authentication fault, and the next try is refused from memory.
    let reply = post(&base, &read_body("sgcache", "wrong")).await;
    assert_eq!(reply["exception"], true, "{reply}");
    assert_eq!(reply["error_code"], 102);
    let asked = site.requests().len();
    let again = post(&base, &read_body("sgcache", "wrong")).await;
    assert_eq!(again["error_code"], 102);
    assert_eq!(
        site.requests().len(),
        asked,
        "a fresh rejection is not asked again"
    );

    // The configured script: checked once, then answered locally.
    site.clear_requests();
    for _ in 0..3 {
        let reply = post(&base, &read_body("sgcache", "test-key")).await;
        assert_eq!(
            reply["results"]["entities"].as_array().map(Vec::len),
            Some(10),
            "{reply}"
        );
    }
    assert_eq!(shot_reads(&site), 0, "local");
    assert_eq!(
        site.requests().len(),
        1,
        "one credential check: {:?}",
        site.requests()
            .iter()
            .map(|r| &r.method)
            .collect::<Vec<_>>()
    );

    // Another script is valid on the site but not trusted here: its reads pass through.
    site.clear_requests();
    let reply = post(&base, &read_body("quiet_script", "quiet-key")).await;
    assert_eq!(
        reply["results"]["entities"].as_array().map(Vec::len),
        Some(10)
    );
    assert_eq!(shot_reads(&site), 1, "passed through");

    // The site down: credentials accepted before keep working; unknown ones cannot be checked.
    site.pause();
    let reply = post(&base, &read_body("sgcache", "test-key")).await;
    assert_eq!(
        reply["results"]["entities"].as_array().map(Vec::len),
        Some(10),
        "{reply}"
    );
    let reply = post(&base, &read_body("sgcache", "never-seen")).await;
    assert_eq!(reply["exception"], true, "{reply}");
    // `info` comes from the stored site info.
    let info = post(&base, &json!({"method_name": "info", "params": []})).await;
    assert!(info["results"]["version"].is_array(), "{info}");
    assert_eq!(
        info["results"]["sgcache"]["upstream_reachable"], false,
        "{info}"
    );
    site.resume();

    let status: Value = Client::default()
        .get(&status)
        .send()
        .await
        .expect("status")
        .json()
        .limit(1 << 20)
        .await
        .expect("json");
    let reasons = &status["requests"]["pass_through_reasons"];
    assert!(
        reasons["caller_not_trusted"].as_u64() >= Some(1),
        "{reasons}"
    );
    daemon.stop().await;
}
