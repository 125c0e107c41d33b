mod common;

use common::*;
use serde_json::json;
use sgcache_mock_site::MockSite;
use std::time::{Duration, Instant};

fn info_body() -> String {
    json!({"method_name": "info", "params": []}).to_string()
}

#[actix_web::test]
async fn injected_statuses_down_garbage_and_latency() {
    let site = MockSite::start();
    let url = site.url();
    site.fail_next(2, 502);
    for _ in 0..2 {
        let (status, body) = post_raw(&url, info_body()).await.unwrap();
        assert_eq!(status, 502);
        assert!(body.contains("<html>"));
    }
    assert_eq!(post_raw(&url, info_body()).await.unwrap().0, 200);

    site.set_down(true);
    assert_eq!(post_raw(&url, info_body()).await.unwrap().0, 503);
    assert_eq!(post_raw(&url, info_body()).await.unwrap().0, 503);
    site.set_down(false);
    assert_eq!(post_raw(&url, info_body()).await.unwrap().0, 200);

    site.set_garbage(true);
    let (status, body) = post_raw(&url, info_body()).await.unwrap();
    assert_eq!(status, 200);
    assert!(serde_json::from_str::<serde_json::Value>(&body).is_err());
    site.set_garbage(false);

    site.set_latency(Duration::from_millis(300));
    let t = Instant::now();
    assert_eq!(post_raw(&url, info_body()).await.unwrap().0, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    site.set_latency(Duration::ZERO);

    // every call is recorded, faulted or not
    let reqs = site.requests();
    assert_eq!(reqs.len(), 8);
    assert!(reqs.iter().all(|r| r.method == "info"));
    site.clear_requests();
    find(&url, "Shot", json!([]), json!(["code"])).await;
    let reqs = site.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "read");
    assert_eq!(reqs[0].entity_type.as_deref(), Some("Shot"));
}

#[actix_web::test]
async fn pause_refuses_connections_and_resume_rebinds_same_port() {
    let site = MockSite::start();
    let url = site.url();
    site.create("Shot", json!({"code": "kept"}));
    assert_eq!(post_raw(&url, info_body()).await.unwrap().0, 200);
    site.pause();
    assert!(!site.is_listening());
    assert!(
        std::net::TcpStream::connect(site.addr()).is_err(),
        "connection should be refused"
    );
    assert!(post_raw(&url, info_body()).await.is_err());
    site.resume();
    assert_eq!(site.url(), url);
    let r = find(&url, "Shot", json!([]), json!(["code"])).await;
    assert_eq!(r["entities"][0]["code"], json!("kept"));
}

#[test]
fn works_from_plain_threads_and_stops_on_drop() {
    let site = MockSite::start();
    let addr = site.addr();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let url = site.url();
            std::thread::spawn(move || {
                actix_rt::System::new().block_on(async move {
                    let r = call(
                        &url,
                        "create",
                        json!({"type": "Shot", "fields": fields(json!({"code": format!("t{i}")}))}),
                    )
                    .await;
                    assert!(r["results"]["id"].is_i64());
                })
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(site.entities("Shot").len(), 4);
    drop(site);
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[tokio::test]
async fn works_inside_tokio_test() {
    let site = MockSite::start();
    let shot = site.create("Shot", json!({"code": "x"}));
    assert_eq!(
        site.entity("Shot", shot["id"].as_i64().unwrap()).unwrap()["code"],
        json!("x")
    );
    site.stop();
}
