//! Schema calls (`schema_read`, `schema_entity_read`, `schema_field_read`) without a project are
//! answered from the site's stored replies, byte for byte what the site answers, without
//! asking it; with a project, for unknown names and before a site reply is stored they pass
//! through. The stored replies follow the site's schema changes.
use std::sync::Arc;
use std::time::Duration;

use awc::Client;
use serde_json::{Value, json};
use sgcache::Daemon;
use sgcache_mock_site::{MockSite, Schema};

use crate::support::{
    databases, eventually, fixture_schema_config, listener, status_of, test_config,
};

fn auth() -> Value {
    json!({"script_name": "sgcache", "script_key": "test-key"})
}

/// The envelope the Python client sends: `[auth]` alone when the call has no arguments.
fn envelope(method: &str, args: Option<Value>) -> Vec<u8> {
    let params = match args {
        Some(args) => json!([auth(), args]),
        None => json!([auth()]),
    };
    serde_json::to_vec(&json!({"method_name": method, "params": params})).expect("json")
}

async fn post(base: &str, body: &[u8]) -> Vec<u8> {
    let mut response = Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
        .post(format!("{base}/api3/json"))
        .insert_header(("content-type", "application/json; charset=utf-8"))
        .send_body(body.to_vec())
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 200);
    response
        .body()
        .limit(64 << 20)
        .await
        .expect("body")
        .to_vec()
}

/// Schema calls that reached the site since the last `clear_requests`.
fn schema_calls_at_site(site: &MockSite) -> Vec<(String, Value)> {
    site.requests()
        .into_iter()
        .filter(|r| r.method.starts_with("schema_"))
        .map(|r| {
            (
                r.method,
                r.body["params"].get(1).cloned().unwrap_or(Value::Null),
            )
        })
        .collect()
}

async fn wait_site_schema(daemon: &Daemon) {
    eventually(
        Duration::from_secs(30),
        "schema loaded from the site",
        || async {
            let status = status_of(daemon).await;
            (status["actors"]["schema_loader"]["source"] == "site").then_some(())
        },
    )
    .await;
}

/// The local forms: `(method, args)`.
fn local_forms() -> Vec<(&'static str, Option<Value>)> {
    vec![
        ("schema_read", None),
        ("schema_read", Some(json!({}))),
        ("schema_entity_read", None),
        ("schema_field_read", Some(json!({"type": "Shot"}))),
        (
            "schema_field_read",
            Some(json!({"type": "Asset", "field_name": "shots"})),
        ),
        (
            "schema_field_read",
            Some(json!({"type": "Shot", "field_name": "code"})),
        ),
        (
            "schema_field_read",
            Some(json!({"type": "Task", "field_name": null})),
        ),
    ]
}

#[actix_web::test]
async fn schema_calls_without_a_project_are_the_sites_bytes_without_asking_it() {
    for db in databases().await {
        let site = MockSite::start();
        let mut config = test_config(&db, Some(&site));
        config.events.enabled = false;
        config.scanner.enabled = false;
        let daemon = Daemon::start(config, listener()).await.expect("daemon");
        let base = daemon.url();
        wait_site_schema(&daemon).await;

        for (method, args) in local_forms() {
            let body = envelope(method, args.clone());
            let expected = post(&site.url(), &body).await;
            site.clear_requests();
            let got = post(&base, &body).await;
            assert!(
                got == expected,
                "{method} {args:?} ({:?}): sgcache answered\n{}\nthe site\n{}",
                db.backend,
                String::from_utf8_lossy(&got[..got.len().min(300)]),
                String::from_utf8_lossy(&expected[..expected.len().min(300)]),
            );
            assert_eq!(
                schema_calls_at_site(&site),
                vec![],
                "{method} {args:?} was answered locally"
            );
        }

        // With a project, and for names the stored schema lacks: the site answers.
        let project = json!({"type": "Project", "id": 1});
        let passed = [
            ("schema_read", json!({"project": project})),
            ("schema_entity_read", json!({"project": project})),
            (
                "schema_field_read",
                json!({"type": "Shot", "project": project}),
            ),
            (
                "schema_field_read",
                json!({"type": "Shot", "field_name": "code", "project": project}),
            ),
            ("schema_field_read", json!({"type": "NoSuchType"})),
            (
                "schema_field_read",
                json!({"type": "Shot", "field_name": "no_such_field"}),
            ),
        ];
        for (method, args) in &passed {
            let body = envelope(method, Some(args.clone()));
            let expected = post(&site.url(), &body).await;
            site.clear_requests();
            let got = post(&base, &body).await;
            assert_eq!(got, expected, "{method} {args}: the site's bytes");
            assert_eq!(
                schema_calls_at_site(&site),
                vec![(method.to_string(), args.clone())],
                "{method} {args} passed through"
            );
        }

        let status = status_of(&daemon).await;
        let local = &status["requests"]["served_locally_by_method"];
        assert_eq!(local["schema_read"], 2, "{status}");
        assert_eq!(local["schema_entity_read"], 1, "{status}");
        assert_eq!(local["schema_field_read"], 4, "{status}");
        let reasons = &status["requests"]["pass_through_reasons"];
        assert_eq!(reasons["schema_with_project"], 4, "{reasons}");
        assert_eq!(reasons["schema_unknown_name"], 2, "{reasons}");
        assert!(daemon.stop().await);
    }
}

/// The Shot type of the fixture schema with one more field, as the site would then answer.
fn schema_with_new_shot_field(site: &MockSite) -> Schema {
    let current = site.schema();
    let mut read = current.schema_read();
    let mut field = read["Shot"]["code"].clone();
    field["name"]["value"] = json!("Brand New");
    read["Shot"]["sg_brand_new"] = field;
    let mut entities = current.schema_entity_read();
    entities["Shot"]["name"]["value"] = json!("Shot (renamed)");
    Schema::from_values(read, Some(entities)).expect("schema")
}

#[actix_web::test]
async fn stored_replies_follow_the_sites_schema() {
    for db in databases().await {
        let site = MockSite::start();
        let mut config = test_config(&db, Some(&site));
        config.events.enabled = false;
        config.scanner.enabled = false;
        config.schema.refresh_interval = Duration::from_millis(300);
        let daemon = Daemon::start(config, listener()).await.expect("daemon");
        let base = daemon.url();
        wait_site_schema(&daemon).await;
        let new_field = envelope(
            "schema_field_read",
            Some(json!({"type": "Shot", "field_name": "sg_brand_new"})),
        );
        let unknown: Value = serde_json::from_slice(&post(&base, &new_field).await).expect("json");
        assert_eq!(unknown["exception"], true, "not a field yet: {unknown}");

        let changed = Arc::new(schema_with_new_shot_field(&site));
        site.with_state(|state| state.store.schema = changed);
        for (method, args) in [
            (
                "schema_field_read",
                Some(json!({"type": "Shot", "field_name": "sg_brand_new"})),
            ),
            ("schema_entity_read", None),
            ("schema_read", None),
        ] {
            let body = envelope(method, args);
            let expected = post(&site.url(), &body).await;
            let base = base.clone();
            eventually(Duration::from_secs(30), "the new schema is served", || {
                let (body, expected, base) = (body.clone(), expected.clone(), base.clone());
                async move { (post(&base, &body).await == expected).then_some(()) }
            })
            .await;
        }
        site.clear_requests();
        let body = envelope("schema_read", None);
        let expected = post(&site.url(), &body).await;
        site.clear_requests();
        assert_eq!(post(&base, &body).await, expected);
        assert!(
            site.requests().iter().all(|r| r.method != "schema_read"),
            "answered locally"
        );
        assert!(daemon.stop().await);
    }
}

#[actix_web::test]
async fn without_a_stored_site_reply_schema_calls_pass_through() {
    for db in databases().await {
        let site = MockSite::start();
        let mut config = test_config(&db, Some(&site));
        config.events.enabled = false;
        config.scanner.enabled = false;
        // The schema comes from a file: that is not the site's current answer.
        fixture_schema_config(&mut config);
        let daemon = Daemon::start(config, listener()).await.expect("daemon");
        let base = daemon.url();
        eventually(Duration::from_secs(30), "schema loaded", || async {
            (status_of(&daemon).await["schema"]["loaded"] == true).then_some(())
        })
        .await;
        site.clear_requests();
        for (method, args) in local_forms() {
            let body = envelope(method, args.clone());
            let got = post(&base, &body).await;
            let expected = post(&site.url(), &body).await;
            assert_eq!(got, expected, "{method} {args:?}");
        }
        let reached = schema_calls_at_site(&site).len();
        assert_eq!(
            reached,
            2 * local_forms().len(),
            "every call went to the site"
        );
        let status = status_of(&daemon).await;
        assert_eq!(
            status["requests"]["pass_through_reasons"]["schema_not_stored"],
            local_forms().len(),
            "{status}"
        );
        assert!(daemon.stop().await);
    }
}
