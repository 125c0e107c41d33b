//! SQLite is single-instance: a second `serve` on one file refuses to start with one line.
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::crash::Sgcache;
use crate::support::{MockSite, eventually};

#[actix_web::test]
async fn a_second_serve_on_one_sqlite_file_refuses_to_start_with_one_line() {
    let site = MockSite::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let db_url = format!("sqlite://{}", dir.path().join("one.sqlite").display());
    let first = Sgcache::spawn(&site, &db_url);
    eventually(Duration::from_secs(60), "the first instance up", || async {
        first.status().await.map(|_| ())
    })
    .await;

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sgcache"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("SGCACHE_")) {
        cmd.env_remove(k);
    }
    let second = cmd
        .current_dir(dir.path())
        .args(["serve"])
        .env("SGCACHE_SHOTGUN_URL", site.url())
        .env("SGCACHE_SHOTGUN_SCRIPT_NAME", "sgcache")
        .env("SGCACHE_SHOTGUN_API_KEY", "test-key")
        .env("SGCACHE_DATABASE_URL", &db_url)
        .env("SGCACHE_SERVER_BIND", "127.0.0.1:0")
        .env("SGCACHE_SCHEMA_INCLUDE", r#"["Shot"]"#)
        .env("SGCACHE_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .output()
        .expect("run a second sgcache serve");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second instance started");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    assert!(err.contains("another sgcache instance"), "{err:?}");
    assert!(err.contains("one.sqlite"), "{err:?}");
    assert!(!err.contains("panicked"), "{err:?}");

    // The lock goes with the process, however it ends.
    first.kill9();
    let third = Sgcache::spawn(&site, &db_url);
    eventually(
        Duration::from_secs(60),
        "a new instance after the first died",
        || async { third.status().await.map(|_| ()) },
    )
    .await;
}
