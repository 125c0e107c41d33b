//! Pass-through and write-back: every method reaches the site, the client gets the site's exact
//! bytes, and what the site answers ends up in the cache (read-your-writes).
use std::time::Duration;

use awc::Client;
use serde_json::{Value, json};
use sgcache::Daemon;
use sgcache_mock_site::MockSite;

use crate::support::{
    TestDb, assert_cache_matches_site, databases, eventually, listener, test_config, wait_primed,
};

fn auth() -> Value {
    json!({"script_name": "sgcache", "script_key": "test-key"})
}

pub(crate) fn rpc(method: &str, args: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"method_name": method, "params": [auth(), args]})).expect("json")
}

pub(crate) async fn post_raw(base: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let mut r = Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
        .post(format!("{base}/api3/json"))
        .insert_header(("content-type", "application/json; charset=utf-8"))
        .send_body(body)
        .await
        .expect("POST");
    (
        r.status().as_u16(),
        r.body().limit(64 << 20).await.expect("body").to_vec(),
    )
}

pub(crate) async fn results(base: &str, method: &str, args: Value) -> Value {
    let (_, body) = post_raw(base, rpc(method, args)).await;
    let v: Value = serde_json::from_slice(&body).expect("json reply");
    assert!(v.get("exception").is_none(), "{method}: {v}");
    v["results"].clone()
}

pub(crate) fn seed(site: &MockSite) {
    let project = site.create("Project", json!({"name": "Demo"}))["id"]
        .as_i64()
        .expect("id");
    site.seed(
        "Sequence",
        3,
        |i| json!({"code": format!("sq{i}"), "project": {"type": "Project", "id": project}}),
    );
    site.seed(
        "Asset",
        6,
        |i| json!({"code": format!("asset{i}"), "project": {"type": "Project", "id": project}}),
    );
    site.seed("Shot", 30, |i| {
        json!({"code": format!("sh{i:03}"), "project": {"type": "Project", "id": project},
               "sg_sequence": {"type": "Sequence", "id": 1 + (i as i64 % 3)},
               "assets": [{"type": "Asset", "id": 1 + (i as i64 % 6)}]})
    });
}

async fn primed_daemon(site: &MockSite, test_db: &TestDb) -> Daemon {
    let mut config = test_config(test_db, Some(site));
    config.schema.include = vec![
        "Project".into(),
        "Sequence".into(),
        "Shot".into(),
        "Asset".into(),
    ];
    config.events.enabled = false;
    config.server.write_back_wait = Duration::from_secs(10);
    let daemon = Daemon::start(config, listener()).await.expect("daemon");
    wait_primed(&daemon, Duration::from_secs(60)).await;
    daemon
}

/// The same writes against a twin site directly and through sgcache give the same bytes.
#[actix_web::test]
async fn every_write_method_returns_the_sites_bytes_and_updates_the_cache() {
    for test_db in databases().await {
        let (behind, twin) = (MockSite::start(), MockSite::start());
        let frozen = chrono::Utc::now();
        for site in [&behind, &twin] {
            site.freeze_clock(Some(frozen));
            seed(site);
        }
        let daemon = primed_daemon(&behind, &test_db).await;
        let base = daemon.url();
        let writes = [
            rpc(
                "create",
                json!({"type": "Shot", "fields": [
                {"field_name": "code", "value": "new_shot"},
                {"field_name": "sg_sequence", "value": {"type": "Sequence", "id": 2}},
                {"field_name": "assets", "value": [{"type": "Asset", "id": 3}, {"type": "Asset", "id": 4}]}],
                "return_fields": ["code", "sg_status_list"]}),
            ),
            rpc(
                "update",
                json!({"type": "Shot", "id": 5, "fields": [
                {"field_name": "code", "value": "renamed"},
                {"field_name": "sg_cut_in", "value": 1001}]}),
            ),
            rpc(
                "update",
                json!({"type": "Shot", "id": 6, "fields": [
                {"field_name": "assets", "value": [{"type": "Asset", "id": 5}], "multi_entity_update_mode": "add"}]}),
            ),
            rpc(
                "update",
                json!({"type": "Shot", "id": 7, "fields": [
                {"field_name": "assets", "value": [{"type": "Asset", "id": 2}], "multi_entity_update_mode": "remove"}]}),
            ),
            rpc(
                "update",
                json!({"type": "Shot", "id": 8, "fields": [
                {"field_name": "assets", "value": [{"type": "Asset", "id": 6}], "multi_entity_update_mode": "set"},
                {"field_name": "sg_sequence", "value": null}]}),
            ),
            rpc("delete", json!({"type": "Shot", "id": 9})),
            rpc("delete", json!({"type": "Shot", "id": 9})),
            rpc("revive", json!({"type": "Shot", "id": 9})),
            rpc(
                "batch",
                json!([
                {"request_type": "create", "type": "Asset", "fields": [{"field_name": "code", "value": "batch_asset"}], "return_fields": ["id"]},
                {"request_type": "update", "type": "Shot", "id": 10, "fields": [{"field_name": "description", "value": "from batch"}]},
                {"request_type": "delete", "type": "Shot", "id": 11}]),
            ),
            rpc(
                "update",
                json!({"type": "Shot", "id": 424242, "fields": [{"field_name": "code", "value": "x"}]}),
            ),
        ];
        for body in writes {
            let direct = post_raw(&twin.url(), body.clone()).await;
            let via = post_raw(&base, body.clone()).await;
            assert_eq!(via.0, direct.0, "status");
            assert_eq!(
                String::from_utf8_lossy(&via.1),
                String::from_utf8_lossy(&direct.1),
                "reply bytes for {}",
                String::from_utf8_lossy(&body)
            );
        }
        let schema = daemon.cache.view().schema;
        for ty in ["Shot", "Asset", "Sequence", "Project"] {
            assert_cache_matches_site(&daemon.pools, &schema, &behind, ty).await;
        }
        // The cache answers what was just written, without asking the site.
        behind.clear_requests();
        let shot = results(
            &base,
            "read",
            json!({"type": "Shot", "filters": {"logical_operator": "and", "conditions": [
            {"path": "code", "relation": "is", "values": ["renamed"]}]},
            "return_fields": ["code", "sg_cut_in", "assets"], "return_only": "active",
            "paging": {"entities_per_page": 10, "current_page": 1}}),
        )
        .await;
        assert_eq!(shot["entities"][0]["sg_cut_in"], 1001, "{shot}");
        // Only the one-row credential check (a HumanUser read) may reach the site.
        assert!(
            behind
                .requests()
                .iter()
                .all(|r| r.method != "read" || r.entity_type.as_deref() == Some("HumanUser")),
            "answered locally"
        );
        daemon.stop().await;
    }
}

#[actix_web::test]
async fn a_failed_batch_changes_nothing_and_faults_come_back_as_faults() {
    let site = MockSite::start();
    seed(&site);
    let test_db = TestDb::sqlite();
    let daemon = primed_daemon(&site, &test_db).await;
    let base = daemon.url();
    let (_, body) = post_raw(&base, rpc("batch", json!([
        {"request_type": "update", "type": "Shot", "id": 1, "fields": [{"field_name": "code", "value": "changed"}]},
        {"request_type": "update", "type": "Shot", "id": 1, "fields": [{"field_name": "no_such_field", "value": 1}]}]))).await;
    let reply: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(reply["exception"], true, "{reply}");
    let schema = daemon.cache.view().schema;
    assert_cache_matches_site(&daemon.pools, &schema, &site, "Shot").await;

    // The site down: a clear fault, quickly, as HTTP 200 (never a 502/504 the client would retry).
    site.pause();
    let started = std::time::Instant::now();
    let (status, body) = post_raw(
        &base,
        rpc(
            "update",
            json!({"type": "Shot", "id": 1, "fields": [
        {"field_name": "code", "value": "while down"}]}),
        ),
    )
    .await;
    assert_eq!(status, 200);
    let reply: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(reply["exception"], true, "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .expect("message")
            .contains("Shotgun site"),
        "{reply}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    site.resume();

    // A slow site: the pass-through gives up at shotgun.timeout (5 s in tests).
    site.set_latency(Duration::from_secs(8));
    let started = std::time::Instant::now();
    let (_, body) = post_raw(
        &base,
        rpc(
            "schema_field_read",
            json!({"type": "Shot", "field_name": "code", "project": {"type": "Project", "id": 1}}),
        ),
    )
    .await;
    let reply: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(reply["exception"], true, "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "bounded by the timeout"
    );
    site.clear_faults();
    daemon.stop().await;
}

#[actix_web::test]
async fn concurrent_clients_read_their_own_writes() {
    let site = MockSite::start();
    seed(&site);
    let test_db = TestDb::sqlite();
    let daemon = primed_daemon(&site, &test_db).await;
    let base = daemon.url();
    let clients = (1..=8).map(|id| {
        let base = base.clone();
        async move {
            for round in 0..5 {
                let code = format!("c{id}r{round}");
                results(&base, "update", json!({"type": "Shot", "id": id, "fields": [{"field_name": "code", "value": code}]})).await;
                let read = results(&base, "read", json!({"type": "Shot", "filters": {"logical_operator": "and", "conditions": [
                    {"path": "id", "relation": "is", "values": [id]}]}, "return_fields": ["code"], "return_only": "active",
                    "paging": {"entities_per_page": 1, "current_page": 1}})).await;
                assert_eq!(read["entities"][0]["code"], code.as_str(), "client {id} round {round}");
            }
        }
    });
    futures_util::future::join_all(clients).await;
    daemon.stop().await;
}

/// Peak resident memory of this process, from /proc (Linux).
fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[actix_web::test]
async fn file_traffic_streams_through_with_bounded_memory() {
    use sgcache_mock_site::files::{FNV_OFFSET, fnv1a, pattern_byte};
    let site = MockSite::start();
    let test_db = TestDb::sqlite();
    let mut config = test_config(&test_db, Some(&site));
    config.scanner.enabled = false;
    config.events.enabled = false;
    let daemon = Daemon::start(config, listener()).await.expect("daemon");
    let base = daemon.url();
    const SIZE: u64 = 256 << 20;
    let before = peak_rss_bytes();

    // Upload: generated chunk by chunk, never held whole by the test either.
    let chunks = futures_util::stream::iter((0..SIZE / (1 << 20)).map(|c| {
        let bytes: Vec<u8> = (c << 20..(c + 1) << 20).map(pattern_byte).collect();
        Ok::<_, std::io::Error>(actix_web::web::Bytes::from(bytes))
    }));
    let mut r = Client::builder()
        .disable_timeout()
        .finish()
        .post(format!("{base}/upload/upload_file?x=1"))
        .insert_header(("content-type", "application/octet-stream"))
        .send_stream(chunks)
        .await
        .expect("upload");
    let text = String::from_utf8(r.body().await.expect("body").to_vec()).expect("utf8");
    let expected_hash = (0..SIZE).fold(FNV_OFFSET, |h, i| fnv1a(h, &[pattern_byte(i)]));
    assert_eq!(text, format!("1:4242\n{SIZE} {expected_hash:016x}"));

    // Download.
    let mut r = Client::builder()
        .disable_timeout()
        .finish()
        .get(format!("{base}/file_serve/attachment/7?size={SIZE}"))
        .send()
        .await
        .expect("download");
    assert_eq!(
        r.headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()),
        Some(SIZE.to_string().as_str())
    );
    let mut offset = 0u64;
    use futures_util::StreamExt;
    while let Some(chunk) = r.next().await {
        let chunk = chunk.expect("chunk");
        for b in chunk.iter() {
            assert_eq!(*b, pattern_byte(offset), "byte {offset}");
            offset += 1;
        }
    }
    assert_eq!(offset, SIZE);
    let grown = peak_rss_bytes().saturating_sub(before);
    assert!(
        grown < 96 << 20,
        "peak memory grew by {} MiB moving {} MiB",
        grown >> 20,
        SIZE >> 20
    );

    let r = Client::default()
        .get(format!("{base}/thumbnail/x/y.png"))
        .send()
        .await
        .expect("thumb");
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/png")
    );
    // Browser links go to the site.
    let r = Client::builder()
        .disable_redirects()
        .finish()
        .get(format!("{base}/detail/Shot/5"))
        .send()
        .await
        .expect("detail");
    assert_eq!(r.status().as_u16(), 302);
    assert_eq!(
        r.headers().get("location").and_then(|v| v.to_str().ok()),
        Some(format!("{}/detail/Shot/5", site.url()).as_str())
    );
    daemon.stop().await;
}

/// A read passed through (here: an untrusted caller's) updates the rows the cache has and
/// fetches whole the rows it lacks.
#[actix_web::test]
async fn passed_through_reads_teach_the_cache() {
    use sea_orm::{ConnectionTrait, Statement};
    let site = MockSite::start();
    seed(&site);
    let test_db = TestDb::sqlite();
    let daemon = primed_daemon(&site, &test_db).await;
    // Behind sgcache's back: a change without an event, and a row the cache lost.
    site.quiet()
        .update("Shot", 3, json!({"code": "changed quietly"}));
    daemon
        .pools
        .reader
        .execute_raw(Statement::from_string(
            daemon.pools.reader.get_database_backend(),
            "DELETE FROM shot WHERE id = 4".to_owned(),
        ))
        .await
        .expect("delete behind sgcache's back");
    let body = json!({"method_name": "read", "params": [
        {"script_name": "quiet_script", "script_key": "quiet-key"},
        {"type": "Shot", "filters": {"logical_operator": "and", "conditions": [
            {"path": "id", "relation": "in", "values": [3, 4]}]},
         "return_fields": ["code", "updated_at", "updated_by"], "return_only": "active",
         "paging": {"entities_per_page": 10, "current_page": 1}}]});
    let (_, reply) = post_raw(&daemon.url(), serde_json::to_vec(&body).expect("json")).await;
    let reply: Value = serde_json::from_slice(&reply).expect("json");
    assert_eq!(reply["results"]["entities"][0]["code"], "changed quietly");
    let schema = daemon.cache.view().schema;
    eventually(
        Duration::from_secs(10),
        "the cache learned from the reply",
        || {
            let (pools, schema, site) = (&daemon.pools, &schema, &site);
            async move {
                crate::support::first_difference(pools, schema, site, &["Shot"])
                    .await
                    .is_none()
                    .then_some(())
            }
        },
    )
    .await;
    daemon.stop().await;
}
