//! Issue #13: locally answered reads through sgcache's `/api3/json`, next to real floors
//! measured in the same run: `/ping` (an empty actix-web round trip) and a hand-written floor
//! (`common::floor`: the best SQL for the same answer on the raw driver, prepared, plus JSON
//! encoding, no HTTP), and a replaying server (`common::replay`) that answers with the bytes
//! sgcache gave: the HTTP cost of the page's ~180 KB body, and the official client's own cost
//! for the paged `find`. One table per backend: SQLite, and PostgreSQL over its Unix socket when
//! `SGCACHE_TEST_PG_URL` or `SGCACHE_BENCH_PG_URL` is set.
//!
//! A daemon (`server.workers = 2`) primes itself from the in-process mock site (20,000 Shots,
//! 7,800 Tasks of which 7,566 active); load comes from a second process, `wrk`
//! (`apt-get install -y wrk`). Rows: find by id (16 connections: req/s; 1 connection: p50), a
//! 500-entity page of Tasks with 10 fields incl. entity links and a multi-entity field (random
//! pages, as the client's paging loop asks them: without counts; measured in rounds of one
//! second each of the floor, the replayed bodies and sgcache, so that a noisy machine's drift
//! does not fall between them), and a full client-paged
//! `find` of the active Tasks with the official Python client (the test suite's venv), next to
//! the same find against the mock site (an in-memory emulator).
//!
//! `cargo bench --bench reads` (`-- --quick` or `SGCACHE_BENCH_QUICK=1`: 5,000 Shots, 2,000
//! Tasks, shorter runs). `SGCACHE_BENCH_SQL=1` prints sgcache's SQL for the cases;
//! `SGCACHE_BENCH_LOG=info` installs a text log subscriber writing to a sink, to show what
//! per-request logging costs. `SGCACHE_BENCH_FLOOR_SNAPSHOT=1` makes PostgreSQL's page floor
//! read in one `REPEATABLE READ` snapshot, as sgcache's page does (a diagnostic: what the
//! snapshot's two round trips cost; the default floor reads without one).
mod common;

use std::cell::Cell;
use std::path::Path;
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::floor::FloorDb;
use common::replay::Replay;
use common::wrk::{self, MARK};
use common::{BenchDb, ms, percentile};
use serde_json::{Value, json};
use sgcache::Daemon;
use sgcache_mock_site::MockSite;

#[path = "../tests/python/venv.rs"]
mod venv;

const CONNS: u32 = 16;
const PAGE: u32 = 500;
const TASK_FIELDS: [&str; 10] = [
    "content",
    "sg_status_list",
    "entity",
    "project",
    "step",
    "task_assignees",
    "start_date",
    "due_date",
    "duration",
    "updated_at",
];

struct Sizes {
    shots: usize,
    tasks: usize,
    retired_tasks: usize,
    secs: u64,
    client_runs: usize,
}

/// Seeds Steps, HumanUsers and `n` Tasks (links to Shots and Assets, 0–2 assignees), then
/// retires `retired` of them. Returns the number of active Tasks.
fn seed_tasks(site: &MockSite, shots: &[i64], n: usize, retired: usize) -> usize {
    let project = site.entities("Project")[0]["id"].as_i64().expect("project");
    let assets: Vec<i64> = site
        .entities("Asset")
        .iter()
        .filter_map(|a| a["id"].as_i64())
        .collect();
    let steps = site.seed("Step", 6, |i| json!({"code": format!("step{i}")}));
    let users = site.seed(
        "HumanUser",
        20,
        |i| json!({"login": format!("user{i}"), "name": format!("User {i}")}),
    );
    let tasks = site.seed("Task", n, |i| {
        let entity = if i % 4 == 0 {
            json!({"type": "Asset", "id": assets[i % assets.len()]})
        } else {
            json!({"type": "Shot", "id": shots[i % shots.len()]})
        };
        let assignees: Vec<Value> = (0..i % 3)
            .map(|k| json!({"type": "HumanUser", "id": users[(i + k * 7) % users.len()]}))
            .collect();
        json!({
            "content": format!("task{i:05}"),
            "sg_status_list": (["wtg", "ip", "fin"][i % 3]),
            "entity": entity,
            "project": {"type": "Project", "id": project},
            "step": if i % 7 == 0 { Value::Null } else { json!({"type": "Step", "id": steps[i % 6]}) },
            "task_assignees": assignees,
            "start_date": format!("2026-{:02}-{:02}", 1 + i % 12, 1 + i % 28),
            "due_date": if i % 5 == 0 { Value::Null } else { json!(format!("2026-{:02}-28", 1 + i % 12)) },
            "duration": (i % 40) as i64 * 60,
        })
    });
    for id in tasks
        .iter()
        .step_by(tasks.len() / retired.max(1))
        .take(retired)
    {
        site.delete("Task", *id);
    }
    n - retired.min(n)
}

fn read_args(ty: &str, fields: &[&str], conditions: Value, per_page: u32, page: i64) -> Value {
    json!({"type": ty, "return_fields": fields,
           "filters": {"logical_operator": "and", "conditions": conditions},
           "return_only": "active", "paging": {"entities_per_page": per_page, "current_page": page},
           "api_return_image_urls": true})
}

async fn post(client: &awc::Client, url: &str, body: String) -> Value {
    let mut r = client
        .post(url)
        .insert_header(("Content-Type", "application/json"))
        .send_body(body)
        .await
        .expect("POST");
    r.json().limit(64 << 20).await.expect("JSON")
}

async fn status(client: &awc::Client, url: &str) -> Value {
    // A keep-alive connection idle during a wrk run may have been closed: retry.
    for attempt in 1.. {
        match client.get(url).send().await {
            Ok(mut r) => return r.json().limit(16 << 20).await.expect("status JSON"),
            Err(e) if attempt < 5 => {
                eprintln!("GET /status: {e}; retrying");
                actix_web::rt::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("GET /status: {e}"),
        }
    }
    unreachable!()
}

/// Sequential latency (p50) and, with `tasks > 1`, throughput of `op` run from `tasks`
/// concurrent tasks, each for `secs`.
async fn measure<F, Fut>(secs: f64, tasks: usize, op: F) -> (Duration, f64)
where
    F: Fn(usize) -> Fut + Clone + 'static,
    Fut: std::future::Future<Output = Vec<u8>>,
{
    let mut lat = Vec::new();
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < secs && lat.len() < 50_000 {
        let t = Instant::now();
        std::hint::black_box(op(lat.len()).await);
        lat.push(t.elapsed());
    }
    lat.sort();
    if tasks <= 1 {
        return (percentile(&lat, 50.0), 0.0);
    }
    let done = Rc::new(Cell::new(0usize));
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let t = Instant::now();
    let workers = (0..tasks).map(|w| {
        let (done, op) = (done.clone(), op.clone());
        async move {
            let mut k = w * 7919;
            while Instant::now() < deadline {
                std::hint::black_box(op(k).await);
                done.set(done.get() + 1);
                k += 1;
            }
        }
    });
    futures_util::future::join_all(workers).await;
    (
        percentile(&lat, 50.0),
        done.get() as f64 / t.elapsed().as_secs_f64(),
    )
}

/// Median and best seconds of the Python client's full paged find against `base_url`.
fn client_find(python: &Path, base_url: &str, runs: usize) -> (usize, f64, f64) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/paged_find.py");
    let out = Command::new(python)
        .arg(script)
        .args([base_url, "sgcache", "test-key", &runs.to_string()])
        .output()
        .expect("run the Python client");
    assert!(
        out.status.success(),
        "client against {base_url} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("client JSON");
    let mut secs: Vec<f64> = v["seconds"]
        .as_array()
        .expect("seconds")
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    secs.sort_by(f64::total_cmp);
    let n = v["entities"].as_u64().unwrap_or(0) as usize;
    (n, secs[secs.len() / 2], secs[0])
}

/// wrk on a blocking thread: the daemon's actors and the PostgreSQL connections opened on this
/// (the System's) thread must keep running during the load.
async fn load(
    url: &str,
    body: Option<&str>,
    range: (i64, i64),
    conns: u32,
    secs: u64,
    dir: &Path,
) -> wrk::WrkResult {
    let (url, body, dir) = (url.to_owned(), body.map(str::to_owned), dir.to_owned());
    actix_web::rt::task::spawn_blocking(move || {
        wrk::run(&url, body.as_deref(), range, conns, secs, &dir)
    })
    .await
    .expect("join wrk")
}

fn rss_mb() -> f64 {
    common::proc_status_kb("VmRSS").unwrap_or(0) as f64 / 1024.0
}

/// Asserts that sgcache answered `body` locally and that its `results` equal the floor's
/// (entities and `has_next_page`; `entity_count` only where the floor has one).
async fn check_same(
    client: &awc::Client,
    daemon: &Daemon,
    body: String,
    floor: Vec<u8>,
    what: &str,
) {
    let status_url = format!("{}/status", daemon.url());
    let local = |s: &Value| s["requests"]["served_locally"].as_u64().unwrap_or(0);
    let before = local(&status(client, &status_url).await);
    let got = post(client, &format!("{}/api3/json", daemon.url()), body).await;
    actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    let after = local(&status(client, &status_url).await);
    assert!(after > before, "{what} is answered locally: {got:.300}");
    let want: Value = serde_json::from_slice(&floor).expect("floor JSON");
    let (got, want) = (&got["results"], &want["results"]);
    assert_eq!(
        got["entities"], want["entities"],
        "{what}: sgcache and the floor differ"
    );
    assert_eq!(
        got["paging_info"]["has_next_page"], want["paging_info"]["has_next_page"],
        "{what}"
    );
    if let Some(n) = want["paging_info"].get("entity_count") {
        assert_eq!(&got["paging_info"]["entity_count"], n, "{what}");
    }
}

struct Row {
    what: String,
    ping: String,
    floor: String,
    sgcache: String,
    ratio: String,
    target: String,
}

/// One round of the page row: p50s measured one after the other within a few seconds.
struct PageRound {
    floor_db: Duration,
    replayed: Duration,
    sgcache: Duration,
}

impl PageRound {
    /// The floor's latency over HTTP.
    fn floor(&self) -> Duration {
        self.floor_db + self.replayed
    }
}

/// The median of `values` (not empty).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The page row: medians over the rounds; the ratio is the median of each round's ratio.
fn page_row(rounds: &[PageRound], ping: Duration, rps_n: f64) -> Row {
    let med =
        |f: &dyn Fn(&PageRound) -> Duration| median(rounds.iter().map(|r| ms(f(r))).collect());
    let ratios: Vec<f64> = rounds
        .iter()
        .map(|r| ms(r.sgcache) / ms(r.floor()))
        .collect();
    let (lo, hi) = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    let ratio = median(ratios);
    let sgcache = med(&|r| r.sgcache);
    Row {
        what: format!("{PAGE} Tasks, 10 fields, 1 conn (p50 ms)"),
        ping: format!("{:.3}", ms(ping)),
        floor: format!(
            "{:.3} ({:.3} + the same body replayed over HTTP {:.3})",
            med(&|r| r.floor()),
            med(&|r| r.floor_db),
            med(&|r| r.replayed)
        ),
        sgcache: format!("{sgcache:.3} ({CONNS} conns: {rps_n:.0} req/s)"),
        ratio: format!(
            "{ratio:.2}× floor ({} rounds: {lo:.2}–{hi:.2})",
            rounds.len()
        ),
        target: format!(
            "≤ 3 ms and ≤ floor: {}",
            verdict(sgcache <= 3.0 && ratio <= 1.0)
        ),
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "MET" } else { "MISSED" }
}

async fn run_backend(
    site: &MockSite,
    db: &BenchDb,
    sizes: &Sizes,
    shot_ids: (i64, i64),
    active_tasks: usize,
) -> Vec<Row> {
    let secs = sizes.secs;
    let mut config = common::config(db, site);
    config.scanner.enabled = true;
    config.server.workers = 2;
    config.schema.include = [
        "Project",
        "Sequence",
        "Asset",
        "Shot",
        "Task",
        "Step",
        "HumanUser",
    ]
    .map(String::from)
    .to_vec();
    let daemon = Daemon::start(config, common::listener())
        .await
        .expect("daemon starts");
    let cache = daemon.cache.clone();
    common::wait_until(Duration::from_secs(600), "primed cache", || {
        let view = cache.view();
        !view.schema.types.is_empty() && view.schema.types.keys().all(|t| view.complete.contains(t))
    })
    .await;
    common::wait_until_site_quiet(site, Duration::from_secs(3), Duration::from_secs(600)).await;
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let api = format!("{}/api3/json", daemon.url());
    let ping_url = format!("{}/ping", daemon.url());
    let dir = tempfile::tempdir().expect("tempdir");
    let floor = Rc::new(FloorDb::connect(&db.url).await);
    let pages = (active_tasks / PAGE as usize).max(1) as i64;

    let by_id = |id: i64| {
        common::read_body(&read_args(
            "Shot",
            &["code", "sg_status_list"],
            json!([{"path": "id", "relation": "is", "values": [id]}]),
            1,
            1,
        ))
        .to_string()
    };
    let page_body = |page: i64| {
        let mut args = read_args("Task", &TASK_FIELDS, json!([]), PAGE, page);
        args["return_paging_info_without_counts"] = json!(true);
        common::read_body(&args).to_string()
    };
    if std::env::var_os("SGCACHE_BENCH_SQL").is_some() {
        for body in [by_id(shot_ids.0), page_body(2)] {
            let v: Value = serde_json::from_str(&body).expect("json");
            let req = sgcache::api3::read::ReadRequest::parse(&v["params"][1]).expect("parse");
            let view = daemon.cache.view();
            if let Ok(sgcache::query::Decision::Local(c)) = sgcache::query::plan_read(
                &req,
                &view.schema,
                &view.site,
                &view.complete,
                &view.rules,
                daemon.pools.backend,
            ) {
                let st = c.page.statement(c.dialect);
                eprintln!(
                    "-- SQL of {}:\n{}\n-- values: {:?}",
                    req.entity_type, st.sql, st.values
                );
            }
        }
    }
    // The same answers, and answered locally.
    check_same(
        &client,
        &daemon,
        by_id(shot_ids.0 + 3),
        floor.shot_by_id(shot_ids.0 + 3).await,
        "find by id",
    )
    .await;
    if let Some(pipelined) = floor.shot_by_id_pipelined(shot_ids.0 + 3).await {
        check_same(
            &client,
            &daemon,
            by_id(shot_ids.0 + 3),
            pipelined,
            "find by id (pipelined)",
        )
        .await;
    }
    for page in [1, 2, pages, pages + 1] {
        check_same(
            &client,
            &daemon,
            page_body(page),
            floor.task_page(page as u32, PAGE).await,
            "Task page",
        )
        .await;
    }

    let rss0 = rss_mb();
    let ping1 = load(&ping_url, None, (0, 0), 1, secs, dir.path()).await;
    let ping_n = load(&ping_url, None, (0, 0), CONNS, secs, dir.path()).await;

    // Find by id.
    let span = shot_ids.1 - shot_ids.0 + 1;
    let f = floor.clone();
    let (floor_id_p50, floor_id_ops) = measure(secs as f64 / 2.0, CONNS as usize, move |k| {
        let f = f.clone();
        async move { f.shot_by_id(shot_ids.0 + (k as i64 * 7919) % span).await }
    })
    .await;
    // On PostgreSQL, the same on one pipelined connection: the floor is the better of the two.
    let f = floor.clone();
    let (_, floor_id_pipelined) = if floor.shot_by_id_pipelined(shot_ids.0).await.is_some() {
        measure(secs as f64 / 2.0, CONNS as usize, move |k| {
            let f = f.clone();
            async move {
                f.shot_by_id_pipelined(shot_ids.0 + (k as i64 * 7919) % span)
                    .await
                    .unwrap_or_default()
            }
        })
        .await
    } else {
        (Duration::ZERO, 0.0)
    };
    let floor_id_how = if floor_id_pipelined > floor_id_ops {
        "16 tasks on 1 pipelined connection, no HTTP"
    } else {
        "16 tasks on 16 connections, no HTTP"
    };
    let floor_id_ops = floor_id_ops.max(floor_id_pipelined);
    let body = by_id(MARK);
    let id1 = load(&api, Some(&body), shot_ids, 1, secs, dir.path()).await;
    let id_n = load(&api, Some(&body), shot_ids, CONNS, secs, dir.path()).await;
    let rss1 = rss_mb();

    // 500-Task pages (random pages, as the client's paging loop asks them), in rounds: each
    // round measures the floor (in-process), the same bodies replayed over HTTP and sgcache
    // over HTTP, one second each, so that the three see the same moment of a noisy machine.
    let ping_before_page = load(&ping_url, None, (0, 0), 1, secs.min(2), dir.path()).await;
    // The replaying server: HTTP with the answer's size, no work.
    let replay = Replay::start(daemon.url().to_owned(), 2);
    let replay_api = format!("{}/api3/json", replay.url);
    for page in 1..=pages {
        post(&client, &replay_api, page_body(page)).await;
    }
    let marked = page_body(MARK);
    let mut rounds = Vec::new();
    for _ in 0..secs.max(2) {
        let f = floor.clone();
        let (floor_p50, _) = measure(1.0, 1, move |k| {
            let f = f.clone();
            async move {
                f.task_page(1 + (k as i64 * 7) as u32 % pages as u32, PAGE)
                    .await
            }
        })
        .await;
        let replayed = load(&replay_api, Some(&marked), (1, pages), 1, 1, dir.path()).await;
        let served = load(&api, Some(&marked), (1, pages), 1, 1, dir.path()).await;
        rounds.push(PageRound {
            floor_db: floor_p50,
            replayed: replayed.p50,
            sgcache: served.p50,
        });
    }
    let page_n = load(&api, Some(&marked), (1, pages), CONNS, secs, dir.path()).await;
    let rss2 = rss_mb();

    // The official client's full paged find, against sgcache and against the mock site.
    let client_row = match venv::venv_python() {
        Some(python) => {
            let (cache_url, site_url, replay_url, runs) = (
                format!("{}/", daemon.url()),
                format!("{}/", site.url()),
                format!("{}/", replay.url),
                sizes.client_runs,
            );
            let r = actix_web::rt::task::spawn_blocking(move || {
                (
                    client_find(&python, &cache_url, runs),
                    client_find(&python, &site_url, runs),
                    client_find(&python, &replay_url, runs),
                )
            })
            .await
            .expect("join");
            Some(r)
        }
        None => None,
    };
    let (ping_ms, sg_ms) = (ms(ping1.p50), ms(id1.p50));
    replay.stop().await;
    daemon.stop().await;
    if let (Ok(keep), Some(path)) = (
        std::env::var("SGCACHE_BENCH_KEEP_DB"),
        db.url.strip_prefix("sqlite://"),
    ) {
        // Diagnostics: keep a copy of the SQLite file and its write-ahead log.
        std::fs::copy(path, &keep).expect("copy the database");
        let wal = format!("{path}-wal");
        if Path::new(&wal).exists() {
            std::fs::copy(&wal, format!("{keep}-wal")).expect("copy the write-ahead log");
        }
    }
    if let Ok(f) = Rc::try_unwrap(floor) {
        f.close().await;
    }

    let floor_id_http = floor_id_p50 + ping1.p50;
    let mut rows = vec![
        Row {
            what: format!("find by id, {CONNS} conns (req/s)"),
            ping: format!("{:.0}", ping_n.rps),
            floor: format!("{floor_id_ops:.0} ({floor_id_how})"),
            sgcache: format!("{:.0} (p99 {:.2} ms)", id_n.rps, ms(id_n.p99)),
            ratio: format!("{:.0} % of /ping", 100.0 * id_n.rps / ping_n.rps),
            target: format!(
                "≥ 20,000 and ≥ 35 % of /ping: {}",
                verdict(id_n.rps >= 20_000.0 && id_n.rps >= 0.35 * ping_n.rps)
            ),
        },
        Row {
            what: "find by id, 1 conn (p50 ms)".into(),
            ping: format!("{ping_ms:.3}"),
            floor: format!("{:.3} ({:.3} + /ping)", ms(floor_id_http), ms(floor_id_p50)),
            sgcache: format!("{sg_ms:.3} ({:.0} req/s)", id1.rps),
            ratio: format!("{:.2}× floor", sg_ms / ms(floor_id_http)),
            target: format!("≤ 0.25 ms: {}", verdict(sg_ms <= 0.25)),
        },
        page_row(&rounds, ping_before_page.p50, page_n.rps),
    ];
    rows.push(match client_row {
        Some(((n, med, best), (n_site, site_med, site_best), (n_replay, replay_med, _))) => {
            assert_eq!(
                n, active_tasks,
                "the client found every active Task via sgcache"
            );
            assert_eq!(
                n_site, active_tasks,
                "the client found every active Task on the mock site"
            );
            assert_eq!(
                n_replay, active_tasks,
                "the replayed find holds every active Task"
            );
            Row {
                what: format!("client find of {n} Tasks, 5 fields (ms)"),
                ping: "–".into(),
                floor: format!(
                    "sgcache's answers replayed: {:.0}; mock site (in-memory): {:.0} (best {:.0})",
                    replay_med * 1e3,
                    site_med * 1e3,
                    site_best * 1e3
                ),
                sgcache: format!("{:.0} (best {:.0})", med * 1e3, best * 1e3),
                ratio: format!(
                    "{:.2}× replayed, {:.2}× mock site",
                    med / replay_med,
                    med / site_med
                ),
                target: format!("≤ 200 ms: {}", verdict(med * 1e3 <= 200.0)),
            }
        }
        None => Row {
            what: "client find of the Tasks".into(),
            ping: "–".into(),
            floor: "–".into(),
            sgcache: "SKIPPED: python3 with shotgun_api3 not available".into(),
            ratio: "–".into(),
            target: "–".into(),
        },
    });
    rows.push(Row {
        what: "memory (RSS of the bench process, MB)".into(),
        ping: "–".into(),
        floor: "–".into(),
        sgcache: format!(
            "{rss0:.0} before load → {rss1:.0} after find by id → {rss2:.0} after pages"
        ),
        ratio: "–".into(),
        target: "flat".into(),
    });
    rows
}

fn main() {
    let quick = common::quick();
    let sizes = if quick {
        Sizes {
            shots: 5_000,
            tasks: 2_000,
            retired_tasks: 60,
            secs: 2,
            client_runs: 3,
        }
    } else {
        Sizes {
            shots: 20_000,
            tasks: 7_800,
            retired_tasks: 234,
            secs: 5,
            client_runs: 5,
        }
    };
    let log = std::env::var("SGCACHE_BENCH_LOG").ok();
    if let Some(level) = &log {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(level))
            .with_writer(std::io::sink)
            .init();
    }
    assert!(
        wrk::available(),
        "the reads bench needs wrk: apt-get install -y wrk"
    );
    let pg = std::env::var_os("SGCACHE_BENCH_PG_URL").is_some()
        || std::env::var_os("SGCACHE_TEST_PG_URL").is_some();
    println!(
        "# reads (issue #13): locally answered reads through /api3/json next to floors measured in the same run"
    );
    println!(
        "machine: {}; server.workers = 2; load: wrk (1 thread, a second process) for {} s per row",
        common::machine(),
        sizes.secs
    );
    println!(
        "logging: {}",
        log.as_deref()
            .map_or("none (no tracing subscriber)".to_owned(), |l| format!(
                "text subscriber at {l}, to a sink"
            ))
    );
    if *common::floor::IN_SNAPSHOT {
        println!(
            "PostgreSQL page floor: in one REPEATABLE READ snapshot (SGCACHE_BENCH_FLOOR_SNAPSHOT)"
        );
    }
    actix_web::rt::System::new().block_on(async move {
        let site = MockSite::start();
        let ids = common::seed(&site, sizes.shots);
        let shot_ids = (ids[0], *ids.last().expect("ids"));
        assert_eq!((shot_ids.1 - shot_ids.0 + 1) as usize, ids.len(), "Shot ids are contiguous");
        let active_tasks = seed_tasks(&site, &ids, sizes.tasks, sizes.retired_tasks);
        println!("data: {} Shots, {} Tasks ({active_tasks} active)", sizes.shots, sizes.tasks);
        // `SGCACHE_BENCH_ONLY=sqlite|postgres`: one backend.
        let only = std::env::var("SGCACHE_BENCH_ONLY").unwrap_or_default();
        let mut dbs = Vec::new();
        if only.is_empty() || only == "sqlite" {
            dbs.push(BenchDb::sqlite());
        }
        if only != "sqlite" && pg {
            if let Some(db) = BenchDb::postgres(false).await {
                dbs.push(db);
            }
        } else if !pg {
            println!("PostgreSQL: SKIPPED (set SGCACHE_TEST_PG_URL or SGCACHE_BENCH_PG_URL)");
        }
        for mut db in dbs {
            let rows = run_backend(&site, &db, &sizes, shot_ids, active_tasks).await;
            db.drop_pg().await;
            println!();
            println!("## {}", db.label);
            println!();
            println!("| row | /ping | floor (raw driver + JSON) | sgcache /api3/json | ratio | target |");
            println!("|---|---:|---:|---:|---:|---|");
            for r in rows {
                println!("| {} | {} | {} | {} | {} | {} |", r.what, r.ping, r.floor, r.sgcache, r.ratio, r.target);
            }
        }
        println!();
        println!("Floors: find by id = the row by primary key; the page = one SELECT with LEFT JOINs for link names + one batched query for the page's assignees, has_next_page from limit + 1 rows; both on the raw driver (rusqlite on SQLite; sqlx on PostgreSQL, and for find by id also one pipelined tokio-postgres connection, the better shown), prepared, serialised with serde straight to bytes. Link names resolve through every type the schema allows (Task.entity: Asset, Element, Scene, Sequence, Shot, Project; task_assignees: HumanUser, Group), as sgcache's do. The floor's latency for HTTP = its p50 + /ping p50 (find by id) or + the p50 of the same page bodies replayed over HTTP by a server that kept them (the page), 1 conn, measured in the same run. The page row runs in rounds (floor, replayed bodies, sgcache; one second each, one round per second of the other rows): medians over the rounds, the ratio is the median of the rounds' own ratios (their range in brackets). The client row's floor: the official client against that replaying server, which answers every request of the find with the bytes sgcache gave (kept during a warm-up find): the client's own HTTP and decoding cost.");
    });
}
