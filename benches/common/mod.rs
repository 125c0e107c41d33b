//! Shared helpers of the benchmark binaries (not a bench itself).
#![allow(dead_code)]

pub mod floor;
pub mod replay;
pub mod wrk;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use serde_json::{Value, json};
use sgcache::config::{Config, Secret};
use sgcache_mock_site::MockSite;

/// `--quick` on the command line or `SGCACHE_BENCH_QUICK=1`: smaller data, shorter runs.
pub fn quick() -> bool {
    std::env::args().any(|a| a == "--quick")
        || std::env::var("SGCACHE_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The PostgreSQL admin URL (socket by default), or `None` when PostgreSQL is not reachable.
pub fn pg_admin_url() -> String {
    std::env::var("SGCACHE_BENCH_PG_URL")
        .or_else(|_| std::env::var("SGCACHE_TEST_PG_URL"))
        .unwrap_or_else(|_| {
            "postgres://root@localhost/postgres?host=/var/run/postgresql".to_owned()
        })
}

/// A fresh database: a SQLite file in a temporary directory, or a new PostgreSQL database
/// (dropped on `drop_pg`).
pub struct BenchDb {
    pub url: String,
    pub label: String,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl BenchDb {
    pub fn sqlite() -> BenchDb {
        let dir = tempfile::tempdir().expect("tempdir");
        BenchDb {
            url: format!("sqlite://{}", dir.path().join("cache.sqlite").display()),
            label: "SQLite (WAL)".to_owned(),
            _dir: Some(dir),
            pg_name: None,
        }
    }

    /// `tcp = false`: over the Unix socket `/var/run/postgresql`; `true`: TCP 127.0.0.1.
    pub async fn postgres(tcp: bool) -> Option<BenchDb> {
        let admin_url = pg_admin_url();
        let admin = match Database::connect(&admin_url).await {
            Ok(a) => a,
            Err(e) => {
                eprintln!(
                    "NOTE: PostgreSQL not reachable at {admin_url} ({e}): PostgreSQL rows SKIPPED"
                );
                return None;
            }
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("sgcache_bench_{}_{nanos}", std::process::id());
        admin
            .execute_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("CREATE DATABASE \"{name}\""),
            ))
            .await
            .expect("create bench database");
        admin.close().await.ok();
        let (url, label) = if tcp {
            (
                format!("postgres://root@127.0.0.1/{name}"),
                "PostgreSQL TCP 127.0.0.1".to_owned(),
            )
        } else {
            (
                format!("postgres://root@localhost/{name}?host=/var/run/postgresql"),
                "PostgreSQL Unix socket".to_owned(),
            )
        };
        Some(BenchDb {
            url,
            label,
            _dir: None,
            pg_name: Some(name),
        })
    }

    /// Drops the PostgreSQL database, unless `SGCACHE_BENCH_KEEP_DB` is set (diagnostics:
    /// the database's name is printed).
    pub async fn drop_pg(&mut self) {
        if std::env::var_os("SGCACHE_BENCH_KEEP_DB").is_some()
            && let Some(name) = self.pg_name.take()
        {
            eprintln!("SGCACHE_BENCH_KEEP_DB: PostgreSQL database {name} kept");
            return;
        }
        if let Some(name) = self.pg_name.take()
            && let Ok(admin) = Database::connect(&pg_admin_url()).await
        {
            let _ = admin
                .execute_raw(Statement::from_string(
                    DbBackend::Postgres,
                    format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                ))
                .await;
            admin.close().await.ok();
        }
    }
}

/// A daemon configuration against the mock site (scanner and poller off unless turned on).
pub fn config(db: &BenchDb, site: &MockSite) -> Config {
    let mut config = Config::default();
    config.database.url = db.url.clone();
    config.database.max_connections = 8;
    config.server.bind = "127.0.0.1:0".to_owned();
    config.server.workers = 2;
    config.shotgun.url = Some(site.url().parse().expect("the mock site URL"));
    config.shotgun.script_name = "sgcache".to_owned();
    config.shotgun.api_key = Secret::new("test-key");
    config.shotgun.retry_backoff = Duration::from_millis(20);
    config.shotgun.timeout = Duration::from_secs(30);
    config.schema.include = vec![
        "Project".into(),
        "Sequence".into(),
        "Asset".into(),
        "Shot".into(),
    ];
    config.schema.refresh_interval = Duration::from_secs(3600);
    config.scanner.enabled = false;
    config.scanner.page_size = 500;
    config.scanner.interval = Duration::from_secs(3600);
    config.events.enabled = false;
    config
}

pub fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

/// Seeds 2 projects, 10 sequences, 30 assets and `shots` Shots (0–3 asset links each, most
/// with a sequence). Returns the Shot ids.
pub fn seed(site: &MockSite, shots: usize) -> Vec<i64> {
    let projects = site.seed("Project", 2, |i| json!({"name": format!("Project {i}")}));
    let sequences = site.seed("Sequence", 10, |i| {
        json!({"code": format!("sq{i:02}"), "project": {"type": "Project", "id": projects[i % 2]}})
    });
    let assets = site.seed("Asset", 30, |i| {
        json!({"code": format!("asset{i:02}"), "project": {"type": "Project", "id": projects[i % 2]}})
    });
    site.seed("Shot", shots, |i| {
        let links: Vec<Value> = (0..i % 4)
            .map(|k| json!({"type": "Asset", "id": assets[(i * 7 + k * 3) % assets.len()]}))
            .collect();
        json!({
            "code": format!("sh{i:06}"),
            "project": {"type": "Project", "id": projects[i % 2]},
            "sg_sequence": if i % 5 == 0 { Value::Null } else { json!({"type": "Sequence", "id": sequences[i % 10]}) },
            "assets": links,
            "sg_status_list": (["ip", "fin", "wtg"][i % 3]),
            "sg_cut_in": i as i64 * 10,
            "sg_cut_out": i as i64 * 10 + 48,
            "description": if i % 3 == 0 { Value::Null } else { json!(format!("shot <{i}> & more")) },
        })
    })
}

/// Waits (up to `within`) until `check` holds, polling every 5 ms.
pub async fn wait_until(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        actix_web::rt::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the site has received no request for `quiet`: the daemon's background work on
/// it (calibration once priming ends, above all) has settled. The mock site runs in the bench's
/// process, on its 2 cores; a site's work is not sgcache's, and must not fall into what is
/// measured.
pub async fn wait_until_site_quiet(site: &MockSite, quiet: Duration, within: Duration) {
    let (mut seen, mut since) = (site.request_count(), Instant::now());
    wait_until(within, "the site to go quiet", || {
        let now = site.request_count();
        if now != seen {
            (seen, since) = (now, Instant::now());
        }
        since.elapsed() >= quiet
    })
    .await;
}

/// A `kB` figure of `/proc/self/status` (`VmRSS`, `VmHWM`).
pub fn proc_status_kb(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Resets `VmHWM` to the current RSS (Linux `clear_refs` 5); false if not permitted.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The `p`-th percentile (0–100) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The api3 envelope of a `read` with sgcache's own (trusted) credentials.
pub fn read_body(args: &Value) -> Value {
    json!({"method_name": "read", "params": [{"script_name": "sgcache", "script_key": "test-key"}, args]})
}

pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{cores} cores, {cpu}")
}
