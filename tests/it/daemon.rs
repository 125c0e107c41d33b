//! `sgcache serve` in-process against the mock site: schema fetched, tables created,
//! `/status` and `/ping` answered; an unreachable site is retried without a panic.
use std::time::Duration;

use serde_json::Value;
use sgcache::Daemon;

use crate::support::{MockSite, columns, databases, eventually, listener, tables, test_config};

async fn get_json(url: &str) -> Value {
    let mut response = awc::Client::default().get(url).send().await.expect("GET");
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.json().limit(10 << 20).await.expect("JSON")
}

#[actix_web::test]
async fn serve_fetches_the_schema_creates_tables_and_reports_status() {
    let site = MockSite::start();
    for test_db in databases().await {
        let config = test_config(&test_db, Some(&site));
        let daemon = Daemon::start(config, listener())
            .await
            .expect("daemon starts");
        let base = daemon.url();

        let status = eventually(Duration::from_secs(20), "schema loaded", || {
            let url = format!("{base}/status");
            async move {
                let status = get_json(&url).await;
                (status["schema"]["loaded"] == true).then_some(status)
            }
        })
        .await;
        assert_eq!(status["service"], "sgcache");
        assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(
            status["database"]["backend"],
            match test_db.backend {
                sea_orm::DbBackend::Sqlite => "sqlite",
                _ => "postgres",
            }
        );
        assert_eq!(status["schema"]["types"]["Shot"]["table"], "shot");
        assert_eq!(
            status["schema"]["types"]["Shot"]["complete"], false,
            "no full scan yet"
        );
        assert_eq!(
            status["schema"]["types"]["Task"]["display_field"],
            "content"
        );
        assert!(
            status["actors"]["db_writer"]["transactions"]
                .as_u64()
                .expect("n")
                >= 1
        );
        assert_eq!(status["actors"]["schema_loader"]["source"], "site");
        assert!(status["uptime_seconds"].is_u64());

        let all = tables(&daemon.pools.reader).await;
        assert!(
            all.contains(&"shot".to_owned()) && all.contains(&"task_task_assignees".to_owned()),
            "{all:?}"
        );
        assert!(
            columns(&daemon.pools.reader, "task")
                .await
                .contains(&"entity__type".to_owned())
        );
        let schema_calls: Vec<_> = site
            .requests()
            .into_iter()
            .filter(|r| r.method.starts_with("schema"))
            .collect();
        assert!(!schema_calls.is_empty(), "the schema came from the site");

        let mut ping = awc::Client::default()
            .get(format!("{base}/ping"))
            .send()
            .await
            .expect("ping");
        assert_eq!(ping.body().await.expect("body"), "pong");
        daemon.stop().await;
    }
}

#[actix_web::test]
async fn an_unreachable_site_is_retried_while_the_daemon_keeps_serving() {
    let site = MockSite::start();
    site.pause();
    let test_db = crate::support::TestDb::sqlite();
    let config = test_config(&test_db, Some(&site));
    let daemon = Daemon::start(config, listener())
        .await
        .expect("daemon starts without the site");
    let status_url = format!("{}/status", daemon.url());
    let status = eventually(Duration::from_secs(10), "a failed schema load", || {
        let url = status_url.clone();
        async move {
            let status = get_json(&url).await;
            (status["actors"]["schema_loader"]["errors"].as_u64() >= Some(1)).then_some(status)
        }
    })
    .await;
    assert_eq!(status["schema"]["loaded"], false);
    assert!(
        status["actors"]["schema_loader"]["last_error"]
            .as_str()
            .expect("error text")
            .contains("reach")
    );

    // The site comes back: the loader's back-off retry picks it up.
    site.resume();
    eventually(
        Duration::from_secs(20),
        "schema loaded after the site came back",
        || {
            let url = status_url.clone();
            async move { (get_json(&url).await["schema"]["loaded"] == true).then_some(()) }
        },
    )
    .await;
    daemon.stop().await;
}
