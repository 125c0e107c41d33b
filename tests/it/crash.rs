//! Crash safety: `kill -9` of a real `sgcache serve` process in the middle of a full scan, and
//! again in the middle of a busy event stream; after a restart the cache equals the site.
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use sgcache::db;

use crate::support::{MockSite, TestDb, assert_cache_matches_site, eventually, test_config};

pub(crate) struct Sgcache {
    child: Child,
    url: String,
}

impl Sgcache {
    pub(crate) fn spawn(site: &MockSite, db_url: &str) -> Sgcache {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("port")
            .local_addr()
            .expect("addr")
            .port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sgcache"));
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("SGCACHE_")) {
            cmd.env_remove(k);
        }
        // No config.toml in the working directory: defaults plus these variables.
        let child = cmd
            .current_dir(std::env::temp_dir())
            .args(["serve"])
            .env("SGCACHE_SHOTGUN_URL", site.url())
            .env("SGCACHE_SHOTGUN_SCRIPT_NAME", "sgcache")
            .env("SGCACHE_SHOTGUN_API_KEY", "test-key")
            .env("SGCACHE_SHOTGUN_RETRY_BACKOFF", "20ms")
            .env("SGCACHE_DATABASE_URL", db_url)
            .env("SGCACHE_SERVER_BIND", format!("127.0.0.1:{port}"))
            .env("SGCACHE_SCANNER_PAGE_SIZE", "100")
            .env("SGCACHE_SCANNER_INTERVAL", "300ms")
            .env("SGCACHE_EVENTS_POLL_INTERVAL", "50ms")
            .env(
                "SGCACHE_SCHEMA_INCLUDE",
                r#"["Project", "Sequence", "Shot", "Asset"]"#,
            )
            .env("SGCACHE_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sgcache");
        Sgcache {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    pub(crate) fn kill9(mut self) {
        // SIGKILL: no shutdown code runs.
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }

    pub(crate) async fn status(&self) -> Option<Value> {
        let mut r = awc::Client::default()
            .get(format!("{}/status", self.url))
            .send()
            .await
            .ok()?;
        r.json().limit(4 << 20).await.ok()
    }
}

impl Drop for Sgcache {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn seed(site: &MockSite, shots: usize) {
    let project = site.create("Project", json!({"name": "Crash"}))["id"]
        .as_i64()
        .expect("id");
    site.seed(
        "Sequence",
        10,
        |i| json!({"code": format!("sq{i}"), "project": {"type": "Project", "id": project}}),
    );
    site.seed(
        "Asset",
        20,
        |i| json!({"code": format!("a{i}"), "project": {"type": "Project", "id": project}}),
    );
    site.seed("Shot", shots, |i| {
        json!({"code": format!("sh{i:05}"), "project": {"type": "Project", "id": project},
               "sg_sequence": {"type": "Sequence", "id": 1 + (i as i64 % 10)},
               "assets": [{"type": "Asset", "id": 1 + (i as i64 % 20)}]})
    });
}

pub(crate) async fn compare(db_url: &str, site: &MockSite) {
    let test_db = TestDb::sqlite();
    let mut config = test_config(&test_db, None);
    config.database.url = db_url.to_owned();
    let pools = db::connect(&config.database).await.expect("connect");
    let applied = db::registry::load_applied(&pools.reader)
        .await
        .expect("registry");
    assert!(applied.types.contains_key("Shot"));
    // The cached schema as the daemon computed it, rebuilt from the site schema + rules.
    let site_schema = sgcache::schema::SiteSchema::from_json(
        &serde_json::from_str(include_str!("../fixtures/schema_read.json")).expect("json"),
        None,
    )
    .expect("schema");
    let rules = sgcache::schema::SelectionRules {
        include: vec![
            "Project".into(),
            "Sequence".into(),
            "Shot".into(),
            "Asset".into(),
        ],
        exclude: vec![],
    };
    let (cached, _) = sgcache::schema::select(&site_schema, &rules).expect("select");
    for ty in ["Project", "Sequence", "Shot", "Asset"] {
        assert_cache_matches_site(&pools, &cached, site, ty).await;
    }
}

#[actix_web::test]
async fn kill_9_during_a_full_scan_then_restart_ends_equal_to_the_site() {
    let site = MockSite::start();
    seed(&site, 6000);
    let dir = tempfile::tempdir().expect("tempdir");
    let db_url = format!("sqlite://{}", dir.path().join("crash.sqlite").display());

    let first = Sgcache::spawn(&site, &db_url);
    site.set_latency(Duration::from_millis(5));
    eventually(
        Duration::from_secs(60),
        "the Shot scan under way",
        || async {
            let s = first.status().await?;
            (s["actors"]["scanner"]["current"]["entity_type"] == "Shot"
                && s["actors"]["scanner"]["current"]["scanned"].as_u64() >= Some(1000))
            .then_some(())
        },
    )
    .await;
    first.kill9();
    site.set_latency(Duration::ZERO);

    // Writes while sgcache is dead: events and a quiet change.
    site.update("Shot", 10, json!({"code": "changed while down"}));
    site.quiet()
        .update("Shot", 20, json!({"description": "quiet while down"}));
    site.delete("Shot", 30);

    let second = Sgcache::spawn(&site, &db_url);
    // Complete again, and one incremental scan has run since (it sees the quiet change).
    eventually(
        Duration::from_secs(120),
        "every type complete and rescanned after the restart",
        || async {
            let s = second.status().await?;
            (s["schema"]["cached_types"].as_u64() > Some(0)
                && s["schema"]["complete_types"] == s["schema"]["cached_types"]
                && s["actors"]["scanner"]["types"]["Shot"]["kind"] == "incremental")
                .then_some(())
        },
    )
    .await;
    let resumed = site
        .requests()
        .into_iter()
        .filter(|r| r.method == "read" && r.entity_type.as_deref() == Some("Shot"))
        .any(|r| {
            r.body.to_string().contains("greater_than")
                && !r.body.to_string().contains("\"values\":[0]")
        });
    assert!(
        resumed,
        "the full scan resumed from its cursor instead of starting over"
    );
    drop(second);
    compare(&db_url, &site).await;
}

#[actix_web::test]
async fn kill_9_during_a_busy_event_stream_then_restart_ends_equal_to_the_site() {
    let site = MockSite::start();
    seed(&site, 300);
    let dir = tempfile::tempdir().expect("tempdir");
    let db_url = format!("sqlite://{}", dir.path().join("events.sqlite").display());

    let first = Sgcache::spawn(&site, &db_url);
    eventually(Duration::from_secs(60), "primed", || async {
        let s = first.status().await?;
        (s["schema"]["cached_types"].as_u64() > Some(0)
            && s["schema"]["complete_types"] == s["schema"]["cached_types"])
            .then_some(())
    })
    .await;
    // A stream of writes with events while the daemon follows it, then kill -9 mid-stream.
    for round in 0..3 {
        for id in 1..=100i64 {
            site.update(
                "Shot",
                id,
                json!({"code": format!("r{round}-{id}"), "sg_cut_in": round * 1000 + id}),
            );
        }
        if round == 1 {
            actix_web::rt::time::sleep(Duration::from_millis(150)).await;
        }
    }
    first.kill9();
    for id in 101..=150i64 {
        site.update("Shot", id, json!({"assets": [{"type": "Asset", "id": 1 + (id % 20)}, {"type": "Asset", "id": 1 + ((id + 5) % 20)}]}));
    }
    site.delete("Shot", 151);
    let last_event = site.last_event_id();

    let second = Sgcache::spawn(&site, &db_url);
    eventually(Duration::from_secs(60), "the poller caught up", || async {
        let s = second.status().await?;
        (s["actors"]["event_poller"]["checkpoint"].as_i64() >= Some(last_event)).then_some(())
    })
    .await;
    drop(second);
    compare(&db_url, &site).await;
}
