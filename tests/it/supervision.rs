//! Supervision: a dead DbWriter or a vanished database file stops the daemon with the error
//! (instead of every later write failing forever), recoverable failures show on `/status`,
//! and a schema reload never starts a second refresh loop.
use std::sync::atomic::Ordering;
use std::time::Duration;

use sgcache::Daemon;
use sgcache::actors::schema_loader::Reload;

use crate::support::{TestDb, eventually, fixture_schema_config, listener, test_config};

async fn start(db: &TestDb) -> Daemon {
    let mut config = test_config(db, None);
    fixture_schema_config(&mut config);
    config.server.shutdown_timeout = Duration::from_secs(5);
    Daemon::start(config, listener())
        .await
        .expect("daemon starts")
}

/// Runs the daemon until it stops by itself; its result, or a panic after `within`.
async fn run_until_it_stops(daemon: Daemon, within: Duration) -> std::io::Result<()> {
    let run = actix_web::rt::spawn(daemon.run_until_stopped());
    actix_web::rt::time::timeout(within, run)
        .await
        .expect("the daemon stopped by itself")
        .expect("join")
}

#[actix_web::test]
async fn a_stopped_db_writer_stops_the_daemon_with_the_error() {
    let db = TestDb::sqlite();
    let daemon = start(&db).await;
    let writer = daemon.writer.clone();
    let supervisor = daemon.supervisor.clone();
    writer.stop().await;
    let err = run_until_it_stops(daemon, Duration::from_secs(20))
        .await
        .expect_err("a fatal failure is an error");
    let message = err.to_string();
    assert!(
        message.contains("db_writer") && message.contains("the DbWriter stopped"),
        "{message}"
    );
    let recent = supervisor.recent();
    assert!(
        recent.iter().any(|f| f.fatal && f.actor == "db_writer"),
        "{recent:?}"
    );
}

#[actix_web::test]
async fn a_vanished_database_file_stops_the_daemon_with_the_error() {
    let db = TestDb::sqlite();
    let daemon = start(&db).await;
    let file = sgcache::db::sqlite_file(&db.url)
        .expect("a SQLite file")
        .to_path_buf();
    std::fs::remove_file(&file).expect("remove the database file");
    let err = run_until_it_stops(daemon, Duration::from_secs(20))
        .await
        .expect_err("a fatal failure is an error");
    let message = err.to_string();
    assert!(
        message.contains("db_writer") && message.contains("is gone"),
        "{message}"
    );
}

#[actix_web::test]
async fn a_stop_on_purpose_is_not_a_failure() {
    let db = TestDb::sqlite();
    let daemon = start(&db).await;
    let supervisor = daemon.supervisor.clone();
    assert!(daemon.stop().await);
    // Longer than the watch interval: the stopped DbWriter is not reported.
    actix_web::rt::time::sleep(Duration::from_millis(1200)).await;
    assert!(supervisor.recent().is_empty(), "{:?}", supervisor.recent());
}

#[actix_web::test]
async fn recoverable_failures_are_listed_on_status() {
    let db = TestDb::sqlite();
    let daemon = start(&db).await;
    daemon.scanner_stats.actor.error("site unreachable (test)");
    let body: serde_json::Value = awc::Client::new()
        .get(format!("{}/status", daemon.url()))
        .insert_header(("Accept", "application/json"))
        .send()
        .await
        .expect("GET /status")
        .json()
        .await
        .expect("JSON");
    let failures = body["failures"].as_array().expect("a failures list");
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["actor"], "scanner");
    assert_eq!(failures[0]["error"], "site unreachable (test)");
    assert_eq!(failures[0]["fatal"], false);
    assert!(daemon.stop().await);
}

/// Each Reload used to schedule its own next load beside the existing timer: N reloads made
/// N+1 refresh loops. With one scheduled load, loads keep to one per refresh interval.
#[actix_web::test]
async fn a_schema_reload_does_not_start_a_second_refresh_loop() {
    let db = TestDb::sqlite();
    let mut config = test_config(&db, None);
    fixture_schema_config(&mut config);
    let interval = Duration::from_millis(300);
    config.schema.refresh_interval = interval;
    let daemon = Daemon::start(config, listener())
        .await
        .expect("daemon starts");
    let stats = daemon.schema_loader_stats.clone();
    let loads = move || stats.actor.handled.load(Ordering::Relaxed);
    eventually(Duration::from_secs(30), "the first schema load", || {
        let n = loads();
        async move { (n >= 1).then_some(()) }
    })
    .await;
    for _ in 0..5 {
        let before = loads();
        let loader = daemon.schema_loader().expect("the only instance leads");
        loader.send(Reload).await.expect("reload");
        eventually(Duration::from_secs(30), "the reload", || {
            let n = loads();
            async move { (n > before).then_some(()) }
        })
        .await;
    }
    let before = loads();
    let window = Duration::from_millis(1500);
    actix_web::rt::time::sleep(window).await;
    let during = loads() - before;
    // One loop: at most window / interval (5) loads, plus one at the edge. Six loops would
    // make about 30.
    assert!(
        during <= 6,
        "{during} loads in {window:?} at one per {interval:?}"
    );
    assert!(during >= 1, "the refresh loop still runs");
    assert!(daemon.stop().await);
}
