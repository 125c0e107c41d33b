//! Issue #6: events applied per second by the EventPoller, and poll-to-visible latency.
//!
//! A daemon on SQLite primes itself from the in-process mock site (scanner), then:
//! 1. throughput: N updates are written on the mock while its event log is held, the log is
//!    released, and the time until `/status` `actors.event_poller.checkpoint` reaches the last
//!    event id is measured;
//! 2. latency: one change is written on the mock, then the change is read through sgcache's
//!    `/api3/json` in a tight loop until it is visible (poll interval 50 ms).
//!
//! `cargo bench --bench events` (`-- --quick` or `SGCACHE_BENCH_QUICK=1` for a short run).
mod common;

use std::time::{Duration, Instant};

use common::{BenchDb, ms, percentile};
use serde_json::{Value, json};
use sgcache::Daemon;
use sgcache_mock_site::MockSite;

async fn post_json(client: &awc::Client, url: &str, body: &Value) -> Value {
    let mut r = client.post(url).send_json(body).await.expect("POST");
    r.json().limit(64 << 20).await.expect("JSON reply")
}

async fn checkpoint(client: &awc::Client, url: &str) -> i64 {
    let mut r = client.get(url).send().await.expect("GET /status");
    let status: Value = r.json().limit(16 << 20).await.expect("status JSON");
    status["actors"]["event_poller"]["checkpoint"]
        .as_i64()
        .unwrap_or(-1)
}

fn main() {
    let quick = common::quick();
    let (shots, updates, samples) = if quick {
        (1_000, 5_000, 20)
    } else {
        (5_000, 20_000, 50)
    };
    let poll = Duration::from_millis(50);
    println!("# events (issue #6): EventPoller on SQLite against the in-process mock site");
    println!("machine: {}", common::machine());
    println!(
        "note: the mock site runs in this process (its JSON encoding competes for the same cores); \
         poll interval {} ms, event pages of 500",
        poll.as_millis()
    );
    actix_web::rt::System::new().block_on(async move {
        let site = MockSite::start();
        let ids = common::seed(&site, shots);
        let db = BenchDb::sqlite();
        let mut config = common::config(&db, &site);
        config.scanner.enabled = true;
        config.events.enabled = true;
        config.events.poll_interval = poll;
        let daemon = Daemon::start(config, common::listener())
            .await
            .expect("daemon starts");
        let (cache, stats) = (daemon.cache.clone(), daemon.event_poller_stats.clone());
        common::wait_until(Duration::from_secs(120), "primed cache and a first poll", || {
            let view = cache.view();
            !view.schema.types.is_empty()
                && view.schema.types.keys().all(|t| view.complete.contains(t))
                && stats.pages.load(std::sync::atomic::Ordering::Relaxed) >= 1
        })
        .await;
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish();
        let status_url = format!("{}/status", daemon.url());
        let api_url = format!("{}/api3/json", daemon.url());

        // 1. Throughput.
        let first = site.last_event_id();
        site.hold_events();
        for i in 0..updates {
            site.update("Shot", ids[i % ids.len()], json!({"sg_cut_in": 1_000_000 + i as i64}));
        }
        let last = site.last_event_id();
        let events = last - first;
        let started = Instant::now();
        site.release_events();
        let deadline = started + Duration::from_secs(300);
        loop {
            if checkpoint(&client, &status_url).await >= last {
                break;
            }
            assert!(Instant::now() < deadline, "the poller did not reach event {last}");
            actix_web::rt::time::sleep(Duration::from_millis(5)).await;
        }
        let took = started.elapsed();
        // The cache has the last value of every Shot that was updated.
        let probe = ids[(updates - 1) % ids.len()];
        let reply = post_json(
            &client,
            &api_url,
            &common::read_body(&json!({"type": "Shot", "filters": [["id", "is", probe]], "return_fields": ["sg_cut_in"]})),
        )
        .await;
        assert_eq!(
            reply["results"]["entities"][0]["sg_cut_in"],
            json!(1_000_000 + updates as i64 - 1),
            "{reply}"
        );
        let rate = events as f64 / took.as_secs_f64();

        // 2. Poll-to-visible latency.
        let mut lat = Vec::with_capacity(samples);
        for k in 0..samples {
            // Desynchronise from the poll timer.
            actix_web::rt::time::sleep(Duration::from_millis(
                (k as u64 * 37) % poll.as_millis() as u64 + 5,
            ))
            .await;
            let id = ids[(k * 13) % ids.len()];
            let code = format!("lat{k}");
            let body = common::read_body(
                &json!({"type": "Shot", "filters": [["id", "is", id]], "return_fields": ["code"]}),
            );
            let t0 = Instant::now();
            site.update("Shot", id, json!({"code": code}));
            loop {
                let reply = post_json(&client, &api_url, &body).await;
                if reply["results"]["entities"][0]["code"] == json!(code) {
                    break;
                }
                assert!(t0.elapsed() < Duration::from_secs(30), "change never visible");
            }
            lat.push(t0.elapsed());
        }
        lat.sort();
        let status: Value = client
            .get(&status_url)
            .send()
            .await
            .expect("status")
            .json()
            .limit(16 << 20)
            .await
            .expect("json");
        let served_locally = status["requests"]["served_locally"].clone();
        // What one event page costs the mock site itself (it filters every event per read).
        let site_api = format!("{}/api3/json", site.url());
        let mut mock_page = Vec::new();
        let mut mock_empty = Vec::new();
        for (after, out) in [(last - 500, &mut mock_page), (last + 1000, &mut mock_empty)] {
            for _ in 0..5 {
                let body = common::read_body(&json!({"type": "EventLogEntry",
                    "filters": [["id", "greater_than", after]],
                    "return_fields": ["id", "event_type", "entity", "attribute_name", "meta", "created_at"],
                    "sorts": [{"field_name": "id", "direction": "asc"}],
                    "paging": {"entities_per_page": 500, "current_page": 1}}));
                let t = Instant::now();
                post_json(&client, &site_api, &body).await;
                out.push(t.elapsed());
            }
            out.sort();
        }
        daemon.stop().await;

        println!();
        println!("| measure | value |");
        println!("|---|---:|");
        println!("| updates written on the mock (held, then released) | {updates} |");
        println!("| events ({first}..={last}) | {events} |");
        println!("| time until checkpoint = last event id | {:.2} s |", took.as_secs_f64());
        println!("| events applied per second | {rate:.0} |");
        println!(
            "| poll-to-visible latency p50 / p99 / max ({samples} samples) | {:.1} / {:.1} / {:.1} ms |",
            ms(percentile(&lat, 50.0)),
            ms(percentile(&lat, 99.0)),
            ms(*lat.last().unwrap_or(&Duration::ZERO))
        );
        println!("| reads served locally (sanity) | {served_locally} |");
        println!(
            "| mock site alone: one full page of 500 events / an empty poll, with {} events stored (median of 5) | {:.1} / {:.1} ms |",
            last,
            ms(percentile(&mock_page, 50.0)),
            ms(percentile(&mock_empty, 50.0))
        );
        println!();
        println!(
            "target ≥ 5000 events/s on SQLite: {rate:.0}/s → {}",
            if rate >= 5000.0 { "MET" } else { "MISSED" }
        );
        println!(
            "latency floor: a change waits on average poll/2 = {} ms for the next poll, then one page round trip and one transaction",
            poll.as_millis() / 2
        );
    });
}
