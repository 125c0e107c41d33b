//! The upstream client against the mock site: retries with back-off on 503 and outages,
//! typed faults, bounded attempts.
use std::time::Duration;

use serde_json::json;
use sgcache::config::{Secret, ShotgunConfig};
use sgcache::upstream::{UpstreamClient, UpstreamError};

use crate::support::MockSite;

fn client(site: &MockSite, key: &str, attempts: u32) -> UpstreamClient {
    UpstreamClient::new(&ShotgunConfig {
        url: Some(site.url().parse().expect("the mock site URL")),
        script_name: "sgcache".into(),
        api_key: Secret::new(key),
        timeout: Duration::from_secs(2),
        max_attempts: attempts,
        retry_backoff: Duration::from_millis(10),
    })
}

#[actix_web::test]
async fn retries_transient_failures_then_succeeds() {
    let site = MockSite::start();
    site.create("Project", json!({"name": "P"}));
    site.fail_next(2, 503);
    let results = client(&site, "test-key", 4)
        .call(
            "read",
            Some(
                json!({"type": "Project", "filters": {"logical_operator": "and", "conditions": []},
                                    "return_fields": ["name"], "return_only": "active",
                                    "paging": {"entities_per_page": 10, "current_page": 1}}),
            ),
        )
        .await
        .expect("third attempt succeeds");
    assert_eq!(results["entities"][0]["name"], "P");
}

#[actix_web::test]
async fn gives_up_after_the_configured_attempts() {
    let site = MockSite::start();
    site.fail_next(5, 429);
    let err = client(&site, "test-key", 3)
        .info()
        .await
        .expect_err("still failing");
    assert!(
        matches!(err, UpstreamError::Http { status: 429, .. }),
        "{err}"
    );
    site.clear_faults();

    site.pause();
    let err = client(&site, "test-key", 2)
        .info()
        .await
        .expect_err("site down");
    assert!(err.is_unreachable(), "{err}");
    site.resume();
    client(&site, "test-key", 2).info().await.expect("back up");
}

#[actix_web::test]
async fn faults_are_typed_and_not_retried() {
    let site = MockSite::start();
    let err = client(&site, "wrong-key", 4)
        .call("schema_read", None)
        .await
        .expect_err("bad key");
    assert!(
        matches!(
            err,
            UpstreamError::Fault {
                code: Some(102),
                ..
            }
        ),
        "{err}"
    );
    let schema_calls = site
        .requests()
        .iter()
        .filter(|r| r.method == "schema_read")
        .count();
    assert_eq!(schema_calls, 1, "a fault is not retried");
}
