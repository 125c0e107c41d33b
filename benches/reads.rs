//! Issue #4: latency and throughput of locally answered reads through sgcache's HTTP endpoint,
//! next to the floor (the same compiled SQL run directly with `sgcache::db::reader::execute`, and an
//! empty actix-web round trip, `/ping`).
//!
//! A daemon on SQLite (`server.workers = 2`) primes itself from the in-process mock site; the
//! load comes from a second process, `wrk` (`apt-get install -y wrk`), with 1 and 16
//! connections. Cases: (a) find by id, (b) a 500-entity page with 10 fields incl. links and a
//! multi-entity field, (c) a two-hop deep path filter AND a multi-entity condition.
//!
//! `cargo bench --bench reads` (`-- --quick` or `SGCACHE_BENCH_QUICK=1` for a short run).
mod common;

use std::cell::Cell;
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{BenchDb, ms, percentile};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use sgcache::Daemon;
use sgcache::api3::read::ReadRequest;
use sgcache::db::reader::execute;
use sgcache::query::{Decision, plan_read};
use sgcache_mock_site::MockSite;

/// A placeholder id replaced per request by wrk's Lua script (find by id).
const ID_MARK: i64 = 987_654_321;

struct WrkResult {
    p50: Duration,
    p99: Duration,
    rps: f64,
    requests: u64,
}

fn parse_duration(s: &str) -> Option<Duration> {
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| (&s[..i], &s[i..]))?;
    let v: f64 = num.parse().ok()?;
    let secs = match unit {
        "us" => v / 1e6,
        "ms" => v / 1e3,
        "s" => v,
        "m" => v * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// Runs wrk against `url`; `body` (with `ID_MARK` replaced by a random id in `ids`) is POSTed,
/// or GET when `None`.
fn wrk(
    url: &str,
    body: Option<&str>,
    ids: (i64, i64),
    conns: u32,
    secs: u64,
    dir: &std::path::Path,
) -> WrkResult {
    let script = dir.join(format!("wrk_{conns}.lua"));
    let lua = match body {
        None => String::new(),
        Some(body) => {
            let mark = ID_MARK.to_string();
            let (pre, post) = body.split_once(&mark).unwrap_or((body, ""));
            let req = if body.contains(&mark) {
                format!(
                    "request = function()\n  return wrk.format(nil, nil, nil, pre .. math.random({}, {}) .. post)\nend\n",
                    ids.0, ids.1
                )
            } else {
                "request = function()\n  return wrk.format(nil, nil, nil, pre)\nend\n".to_owned()
            };
            format!(
                "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nlocal pre = [==[{pre}]==]\nlocal post = [==[{post}]==]\n{req}"
            )
        }
    };
    std::fs::write(&script, lua).expect("write wrk script");
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
            "-s",
        ])
        .arg(&script)
        .arg(url)
        .output()
        .expect("run wrk (apt-get install -y wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wrk failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("Non-2xx"), "wrk saw errors:\n{text}");
    let pct = |p: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(p))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(parse_duration)
            .unwrap_or_else(|| panic!("no {p} in wrk output:\n{text}"))
    };
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"));
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if text.contains("Socket errors") {
        eprintln!(
            "wrk: {}",
            text.lines()
                .find(|l| l.contains("Socket errors"))
                .unwrap_or("")
        );
    }
    WrkResult {
        p50: pct("50%"),
        p99: pct("99%"),
        rps,
        requests,
    }
}

struct Floor {
    /// `ReadRequest::parse` + `plan_read` (not part of the floor).
    compile_p50: Duration,
    /// `query_all_raw` alone (no decoding to JSON).
    raw_p50: Duration,
    p50: Duration,
    p99: Duration,
    seq_ops: f64,
    conc_ops: f64,
}

/// The compiled SQL of `args`, run directly on the reader pool: sequentially (latency), then
/// from 16 concurrent tasks (throughput).
async fn floor(daemon: &Daemon, args: &Value, ids: (i64, i64), secs: f64) -> Floor {
    let compile = |id: i64| {
        let text = args
            .to_string()
            .replace(&ID_MARK.to_string(), &id.to_string());
        let req = ReadRequest::parse(&serde_json::from_str(&text).expect("json")).expect("parse");
        let view = daemon.cache.view();
        match plan_read(
            &req,
            &view.schema,
            &view.site,
            &view.complete,
            daemon.pools.backend,
        )
        .expect("plan")
        {
            Decision::Local(c) => c,
            Decision::PassThrough(r) => panic!("not answered locally: {r}"),
        }
    };
    if std::env::var_os("SGCACHE_BENCH_SQL").is_some() {
        let st = compile(ids.0).page.statement(compile(ids.0).dialect);
        eprintln!(
            "-- SQL of {}:\n{}\n-- values: {:?}",
            args["type"], st.sql, st.values
        );
    }
    let mut compile_lat = Vec::new();
    let reads: Vec<_> = (0..256)
        .map(|k| {
            let t = Instant::now();
            let c = compile(ids.0 + (k * 7919) % (ids.1 - ids.0 + 1));
            compile_lat.push(t.elapsed());
            c
        })
        .collect();
    compile_lat.sort();
    let reads = Rc::new(reads);
    let mut lat = Vec::new();
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < secs && lat.len() < 20_000 {
        let read = &reads[lat.len() % reads.len()];
        let t = Instant::now();
        execute(read, &daemon.pools.reader).await.expect("execute");
        lat.push(t.elapsed());
    }
    let seq_ops = lat.len() as f64 / started.elapsed().as_secs_f64();
    lat.sort();
    // The same statements without decoding the rows (sqlx + SQLite only).
    let mut raw = Vec::new();
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < secs / 2.0 && raw.len() < 10_000 {
        let read = &reads[raw.len() % reads.len()];
        let t = Instant::now();
        daemon
            .pools
            .reader
            .query_all_raw(read.page.statement(read.dialect))
            .await
            .expect("query");
        raw.push(t.elapsed());
    }
    raw.sort();
    let done = Rc::new(Cell::new(0u64));
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let t = Instant::now();
    let tasks = (0..16).map(|w| {
        let (reads, done, pools) = (reads.clone(), done.clone(), daemon.pools.clone());
        async move {
            let mut k = w;
            while Instant::now() < deadline {
                execute(&reads[k % reads.len()], &pools.reader)
                    .await
                    .expect("execute");
                done.set(done.get() + 1);
                k += 1;
            }
        }
    });
    futures_util::future::join_all(tasks).await;
    Floor {
        compile_p50: percentile(&compile_lat, 50.0),
        raw_p50: percentile(&raw, 50.0),
        p50: percentile(&lat, 50.0),
        p99: percentile(&lat, 99.0),
        seq_ops,
        conc_ops: done.get() as f64 / t.elapsed().as_secs_f64(),
    }
}

async fn status(client: &awc::Client, url: &str) -> Value {
    // A keep-alive connection idle during a wrk run may have been closed: retry.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match client.get(url).send().await {
            Ok(mut r) => return r.json().limit(16 << 20).await.expect("status JSON"),
            Err(e) if attempt < 5 => {
                eprintln!("GET /status: {e}; retrying");
                actix_web::rt::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("GET /status: {e}"),
        }
    }
}

fn main() {
    let quick = common::quick();
    let (shots, secs) = if quick { (5_000, 2) } else { (20_000, 5) };
    let conns = 16;
    // `SGCACHE_BENCH_LOG=info`: a text log subscriber like `sgcache serve`'s default
    // (`log.level = info`), writing to a sink, to show what per-request logging costs.
    let log = std::env::var("SGCACHE_BENCH_LOG").ok();
    if let Some(level) = &log {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(level))
            .with_writer(std::io::sink)
            .init();
    }
    println!(
        "# reads (issue #4): locally answered reads through sgcache's HTTP endpoint, SQLite, server.workers = 2"
    );
    println!("machine: {}", common::machine());
    println!(
        "logging: {}",
        log.as_deref()
            .map_or("none (no tracing subscriber)".to_owned(), |l| format!(
                "text subscriber at {l}, to a sink"
            ))
    );
    println!(
        "load: wrk (a second process, 1 thread) for {secs} s per row, on the same 2 cores as the daemon; {shots} Shots cached"
    );
    actix_web::rt::System::new().block_on(async move {
        let site = MockSite::start();
        let ids = common::seed(&site, shots);
        let (lo, hi) = (ids[0], *ids.last().expect("ids"));
        assert_eq!((hi - lo + 1) as usize, ids.len(), "Shot ids are contiguous");
        let asset = site.entities("Asset")[0]["id"].as_i64().expect("asset id");
        let db = BenchDb::sqlite();
        let mut config = common::config(&db, &site);
        config.scanner.enabled = true;
        config.server.workers = 2;
        let daemon = Daemon::start(config, common::listener())
            .await
            .expect("daemon starts");
        let cache = daemon.cache.clone();
        common::wait_until(Duration::from_secs(120), "primed cache", || {
            let view = cache.view();
            !view.schema.types.is_empty() && view.schema.types.keys().all(|t| view.complete.contains(t))
        })
        .await;
        let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
        let api = format!("{}/api3/json", daemon.url());
        let status_url = format!("{}/status", daemon.url());
        let dir = tempfile::tempdir().expect("tempdir");

        let cond = |path: &str, relation: &str, values: Value| json!({"path": path, "relation": relation, "values": values});
        let cases: Vec<(&str, Value, usize)> = vec![
            (
                "(a) find by id (2 fields)",
                json!({"type": "Shot", "return_fields": ["code", "sg_status_list"],
                       "filters": {"logical_operator": "and", "conditions": [cond("id", "is", json!([ID_MARK]))]},
                       "return_only": "active", "paging": {"entities_per_page": 1, "current_page": 1},
                       "api_return_image_urls": true}),
                1,
            ),
            (
                "(b) 500-entity page, 10 fields incl. links",
                json!({"type": "Shot",
                       "return_fields": ["code", "sg_status_list", "project", "sg_sequence", "assets", "sg_cut_in",
                                         "sg_cut_out", "description", "created_at", "updated_at"],
                       "filters": {"logical_operator": "and", "conditions": []},
                       "sorts": [{"field_name": "id", "direction": "asc"}],
                       "return_only": "active", "paging": {"entities_per_page": 500, "current_page": 1},
                       "api_return_image_urls": true}),
                500,
            ),
            (
                "(c) 2-hop deep path + multi-entity filter",
                json!({"type": "Shot", "return_fields": ["code", "sg_status_list", "sg_sequence"],
                       "filters": {"logical_operator": "and", "conditions": [
                           cond("sg_sequence.Sequence.project.Project.name", "is", json!(["Project 1"])),
                           cond("assets", "is", json!([{"type": "Asset", "id": asset}]))]},
                       "sorts": [{"field_name": "id", "direction": "asc"}],
                       "return_only": "active", "paging": {"entities_per_page": 100, "current_page": 1},
                       "api_return_image_urls": true}),
                0,
            ),
        ];

        // /ping: the empty round trip.
        let ping_url = format!("{}/ping", daemon.url());
        let ping1 = wrk(&ping_url, None, (lo, hi), 1, secs, dir.path());
        let ping_n = wrk(&ping_url, None, (lo, hi), conns, secs, dir.path());

        struct Out {
            name: &'static str,
            entities: usize,
            one: WrkResult,
            many: WrkResult,
            floor: Floor,
            /// `/ping` with 1 connection, measured right before this case.
            ping: WrkResult,
            local_share: f64,
        }
        let mut outs = Vec::new();
        for (name, args, expect) in cases {
            let body = common::read_body(&args).to_string();
            // Sanity: answered locally, with the expected number of entities.
            actix_web::rt::time::sleep(Duration::from_millis(300)).await;
            let before = status(&client, &status_url).await;
            let one_id = body.replace(&ID_MARK.to_string(), &lo.to_string());
            let mut r = client
                .post(&api)
                .insert_header(("Content-Type", "application/json"))
                .send_body(one_id)
                .await
                .expect("POST");
            let reply: Value = r.json().limit(64 << 20).await.expect("JSON");
            let entities = reply["results"]["entities"].as_array().map_or(0, Vec::len);
            assert!(entities > 0 && (expect == 0 || entities == expect), "{name}: {entities} entities: {reply:.300}");
            let after = status(&client, &status_url).await;
            let local = |s: &Value| s["requests"]["served_locally"].as_u64().unwrap_or(0);
            let passed = |s: &Value| s["requests"]["passed_through"].as_u64().unwrap_or(0);
            assert!(
                local(&after) > local(&before) && passed(&after) == passed(&before),
                "{name} is answered locally: {}",
                after["requests"]
            );

            actix_web::rt::time::sleep(Duration::from_millis(300)).await;
            let floor = floor(&daemon, &args, (lo, hi), secs as f64 / 2.0).await;
            let ping = wrk(&ping_url, None, (lo, hi), 1, secs.min(2), dir.path());
            let s0 = status(&client, &status_url).await;
            let one = wrk(&api, Some(&body), (lo, hi), 1, secs, dir.path());
            let many = wrk(&api, Some(&body), (lo, hi), conns, secs, dir.path());
            actix_web::rt::time::sleep(Duration::from_millis(300)).await;
            let s1 = status(&client, &status_url).await;
            let served = local(&s1) - local(&s0);
            let total = s1["requests"]["total"].as_u64().unwrap_or(0) - s0["requests"]["total"].as_u64().unwrap_or(0);
            let _ = (one.requests, many.requests);
            outs.push(Out {
                name,
                entities,
                one,
                many,
                floor,
                ping,
                local_share: served as f64 / total.max(1) as f64,
            });
        }
        daemon.stop().await;
        if let Ok(keep) = std::env::var("SGCACHE_BENCH_KEEP_DB") {
            // Diagnostics: keep a copy of the SQLite file.
            let path = db.url.trim_start_matches("sqlite://");
            std::fs::copy(path, &keep).expect("copy the database");
        }

        println!();
        println!("| request | conns | p50 ms | p99 ms | req/s |");
        println!("|---|---:|---:|---:|---:|");
        println!("| GET /ping (empty actix-web round trip) | 1 | {:.3} | {:.3} | {:.0} |", ms(ping1.p50), ms(ping1.p99), ping1.rps);
        println!("| GET /ping | {conns} | {:.3} | {:.3} | {:.0} |", ms(ping_n.p50), ms(ping_n.p99), ping_n.rps);
        for o in &outs {
            println!("| {} ({} entities) | 1 | {:.3} | {:.3} | {:.0} |", o.name, o.entities, ms(o.one.p50), ms(o.one.p99), o.one.rps);
            println!("| {} | {conns} | {:.3} | {:.3} | {:.0} |", o.name, ms(o.many.p50), ms(o.many.p99), o.many.rps);
        }
        println!();
        println!("Floor: the same compiled SQL via sgcache::db::reader::execute on the reader pool (no HTTP); floor p50 = execute p50 + /ping p50 (1 conn, measured right before the case).");
        println!();
        println!("| request | /ping p50 ms | parse+plan p50 ms | query_all_raw p50 ms (no decode) | execute p50 ms | execute p99 ms | execute ops/s (1 task) | execute ops/s (16 tasks) | floor p50 ms | sgcache p50 ms (1 conn) | ratio to floor | target ≤ 1.5× | served locally |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|");
        for o in &outs {
            let floor_p50 = o.floor.p50 + o.ping.p50;
            let ratio = o.one.p50.as_secs_f64() / floor_p50.as_secs_f64();
            println!(
                "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.0} | {:.0} | {:.3} | {:.3} | {:.2}× | {} | {:.1} % |",
                o.name,
                ms(o.ping.p50),
                ms(o.floor.compile_p50),
                ms(o.floor.raw_p50),
                ms(o.floor.p50),
                ms(o.floor.p99),
                o.floor.seq_ops,
                o.floor.conc_ops,
                ms(floor_p50),
                ms(o.one.p50),
                ratio,
                if ratio <= 1.5 { "MET" } else { "MISSED" },
                100.0 * o.local_share,
            );
        }
        println!();
        if let Some(a) = outs.first() {
            println!(
                "target ≥ 5000 find-by-id req/s ({conns} conns, 2 cores, SQLite): {:.0} req/s → {}",
                a.many.rps,
                if a.many.rps >= 5000.0 { "MET" } else { "MISSED" }
            );
        }
    });
}
