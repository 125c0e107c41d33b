//! Issue #3: entities ingested per second by a full scan (`scan_type_full`) from the
//! in-process mock site, on SQLite, PostgreSQL over the Unix socket and PostgreSQL over TCP
//! (sqlx 0.9 leaves Nagle on: the TCP row shows the delayed-ACK cost), with the time spent
//! inside `DbWriterHandle::apply` and the peak memory of the scan at two sizes.
//!
//! `cargo bench --bench ingest` (`-- --quick` or `SGCACHE_BENCH_QUICK=1` for a short run).
//! PostgreSQL: `SGCACHE_BENCH_PG_URL` (else `SGCACHE_TEST_PG_URL`, else the local socket).
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{BenchDb, proc_status_kb, reset_peak_rss};
use sgcache::Daemon;
use sgcache::actors::scanner::{ScanObserver, ScanOptions, scan_type_full};
use sgcache::db::registry;
use sgcache::schema::CachedEntity;
use sgcache::upstream::UpstreamClient;
use sgcache_mock_site::MockSite;

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::{Map, Value, json};

/// A fast stand-in for the site's `read` during the scan: the mock site's Shot records (taken
/// once from `MockSite::entities`), served by keyset (`id > after`, sorted by id) with a binary
/// search, so that a page costs O(page) — the in-process `MockSite` filters every row for every
/// page (O(n) per page, O(n²) per scan), which would dominate at 50,000 entities.
struct FastSite {
    records: Vec<(i64, Map<String, Value>)>,
}

async fn fast_api(body: web::Bytes, site: web::Data<FastSite>) -> HttpResponse {
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let args = &req["params"][1];
    let after = args["filters"]["conditions"][0]["values"][0]
        .as_i64()
        .unwrap_or(0);
    let per_page = args["paging"]["entities_per_page"].as_u64().unwrap_or(500) as usize;
    let fields: Vec<&str> = args["return_fields"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let retired = args["return_only"] == "retired";
    let start = site.records.partition_point(|(id, _)| *id <= after);
    let rest = if retired {
        &[][..]
    } else {
        &site.records[start..]
    };
    let page: Vec<Value> = rest
        .iter()
        .take(per_page)
        .map(|(_, r)| {
            let mut out = Map::new();
            out.insert("type".into(), json!("Shot"));
            out.insert("id".into(), r["id"].clone());
            for f in &fields {
                out.insert((*f).to_owned(), r.get(*f).cloned().unwrap_or(Value::Null));
            }
            Value::Object(out)
        })
        .collect();
    let reply = json!({"results": {"entities": page, "paging_info": {
        "entity_count": rest.len(), "has_next_page": rest.len() > per_page}}});
    HttpResponse::Ok()
        .content_type("application/json")
        .body(serde_json::to_vec(&reply).unwrap_or_default())
}

/// Starts the fast site on its own worker thread; returns its URL.
fn start_fast_site(site: &MockSite) -> (String, actix_web::dev::ServerHandle) {
    let mut records: Vec<(i64, Map<String, Value>)> = site
        .entities("Shot")
        .into_iter()
        .filter(|r| r["_retired"] != true)
        .filter_map(|r| Some((r["id"].as_i64()?, r.as_object()?.clone())))
        .collect();
    records.sort_by_key(|(id, _)| *id);
    let data = web::Data::new(FastSite { records });
    let listener = common::listener();
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(16 << 20))
            .default_service(web::to(fast_api))
    })
    .workers(1)
    .listen(listener)
    .expect("listen")
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (url, handle)
}

/// Times the writer: `schema_changed` is asked right before each `writer.apply(...)` of
/// `scan_type_full` and `progress` is told right after it (the final apply too).
#[derive(Default)]
struct WriterTimer {
    before: Option<Instant>,
    in_apply: Duration,
    applies: u64,
}

impl ScanObserver for WriterTimer {
    fn schema_changed(&mut self, _entity: &CachedEntity) -> bool {
        self.before = Some(Instant::now());
        false
    }
    fn progress(&mut self, _progress: &sgcache::actors::scanner::ScanProgress) {
        if let Some(t) = self.before.take() {
            self.in_apply += t.elapsed();
            self.applies += 1;
        }
    }
}

struct Row {
    backend: String,
    entities: u64,
    seconds: f64,
    writer_seconds: f64,
    applies: u64,
    rss_before_kb: u64,
    peak_kb: u64,
}

async fn run(mut db: BenchDb, shots: usize, fast: bool) -> Row {
    let site = MockSite::start();
    common::seed(&site, shots);
    let config = common::config(&db, &site);
    let daemon = Daemon::start(config.clone(), common::listener())
        .await
        .expect("daemon starts");
    let cache = daemon.cache.clone();
    common::wait_until(Duration::from_secs(60), "the schema", || {
        cache.view().schema.entity("Shot").is_some()
    })
    .await;
    let schema = daemon.cache.view().schema;
    let entity = schema.entity("Shot").expect("Shot cached");
    let state = registry::entity_states(&daemon.pools.reader)
        .await
        .expect("entity states")
        .into_iter()
        .find(|s| s.entity_type == "Shot")
        .expect("Shot state");
    let mut shotgun = config.shotgun.clone();
    let fast_site = fast.then(|| start_fast_site(&site));
    if let Some((url, _)) = &fast_site {
        shotgun.url = Some(url.parse().expect("the fast site URL"));
    }
    let upstream = UpstreamClient::new(&shotgun);
    let opts = ScanOptions::from_config(&config);

    // Peak memory of the scan: VmHWM reset just before (clear_refs), plus a 2 ms VmRSS sampler
    // in case the reset is not permitted.
    let hwm_reset = reset_peak_rss();
    let rss_before_kb = proc_status_kb("VmRSS").unwrap_or(0);
    let sampled_peak = Arc::new(AtomicU64::new(rss_before_kb));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (sampled_peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(rss) = proc_status_kb("VmRSS") {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };

    let mut timer = WriterTimer::default();
    let started = Instant::now();
    let summary = scan_type_full(&upstream, &daemon.writer, entity, &state, &opts, &mut timer)
        .await
        .expect("full scan");
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    sampler.join().ok();
    let hwm = if hwm_reset {
        proc_status_kb("VmHWM").unwrap_or(0)
    } else {
        0
    };
    let peak_kb = hwm.max(sampled_peak.load(Ordering::Relaxed));
    assert_eq!(summary.entities as usize, shots, "every Shot written");
    daemon.stop().await;
    if let Some((_, handle)) = fast_site {
        handle.stop(true).await;
    }
    drop(site);
    db.drop_pg().await;
    Row {
        backend: if fast {
            db.label.clone()
        } else {
            format!("{} — MockSite (O(n) per page)", db.label)
        },
        entities: summary.entities,
        seconds,
        writer_seconds: timer.in_apply.as_secs_f64(),
        applies: timer.applies,
        rss_before_kb,
        peak_kb,
    }
}

fn main() {
    let quick = common::quick();
    let (small, large) = if quick {
        (2_000, 10_000)
    } else {
        (10_000, 50_000)
    };
    println!("# ingest (issue #3): full scan of Shot from the in-process mock site, pages of 500");
    println!("machine: {}", common::machine());
    println!(
        "note: the site runs in this process (its JSON encoding competes for the same 2 cores), so \
         `total` is a lower bound; `in apply` is the time inside DbWriterHandle::apply. Rows without \
         a suffix read pages from a keyset stand-in serving MockSite's records (O(page) per page); \
         the last row reads from MockSite itself, which filters every row for every page."
    );
    let rows = actix_web::rt::System::new().block_on(async move {
        let mut rows = Vec::new();
        for shots in [small, large] {
            rows.push(run(BenchDb::sqlite(), shots, true).await);
        }
        for shots in [small, large] {
            if let Some(db) = BenchDb::postgres(false).await {
                rows.push(run(db, shots, true).await);
            }
        }
        if let Some(db) = BenchDb::postgres(true).await {
            rows.push(run(db, large, true).await);
        }
        // Reference: the same scan against the in-process MockSite itself.
        rows.push(run(BenchDb::sqlite(), large, false).await);
        rows
    });
    println!();
    println!(
        "| backend | entities | total s | entities/s (total) | in apply s | share | entities/s (writer only) | ms per 500-row apply | RSS before MiB | peak RSS MiB | peak − before MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.2} | {:.0} % | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.backend,
            r.entities,
            r.seconds,
            r.entities as f64 / r.seconds,
            r.writer_seconds,
            100.0 * r.writer_seconds / r.seconds,
            r.entities as f64 / r.writer_seconds,
            1e3 * r.writer_seconds / r.applies.max(1) as f64,
            r.rss_before_kb as f64 / 1024.0,
            r.peak_kb as f64 / 1024.0,
            r.peak_kb.saturating_sub(r.rss_before_kb) as f64 / 1024.0,
        );
    }
    println!();
    if let Some(r) = rows
        .iter()
        .find(|r| r.backend.starts_with("SQLite") && r.entities as usize == large)
    {
        let rate = r.entities as f64 / r.seconds;
        println!(
            "target ≥ 20000 entities/s on SQLite (total, {} entities): {:.0}/s → {}",
            r.entities,
            rate,
            if rate >= 20_000.0 { "MET" } else { "MISSED" }
        );
    }
    let growth = |label: &str| {
        let of = |n: usize| {
            rows.iter()
                .find(|r| r.backend == label && r.entities as usize == n)
                .map(|r| r.peak_kb.saturating_sub(r.rss_before_kb) as f64 / 1024.0)
        };
        if let (Some(a), Some(b)) = (of(small), of(large)) {
            println!(
                "memory, {label}: scan peak over baseline {a:.1} MiB at {small} vs {b:.1} MiB at {large} entities"
            );
        }
    };
    growth("SQLite (WAL)");
    growth("PostgreSQL Unix socket");
    let rate = |label: &str| {
        rows.iter()
            .filter(|r| r.backend == label && r.entities as usize == large)
            .map(|r| r.entities as f64 / r.seconds)
            .next()
    };
    if let (Some(sock), Some(tcp)) = (
        rate("PostgreSQL Unix socket"),
        rate("PostgreSQL TCP 127.0.0.1"),
    ) {
        println!(
            "PostgreSQL: Unix socket {sock:.0}/s vs TCP {tcp:.0}/s ({:.1}× — sqlx 0.9 does not set TCP_NODELAY)",
            sock / tcp
        );
    }
}
